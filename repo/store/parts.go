package store

import "errors"

// UpdateInParts commits part(tx, 0, n) as one Update. When the backend
// refuses that transaction as too large (an etcd server's --max-txn-ops
// or --max-request-bytes: ErrTxnTooLarge, refused before anything is
// written), it halves the range, down to one unit, and commits the parts
// in order. It is for writes whose units are each safe on their own
// (journal items, the records of signed packages, cache blocks, mirror
// state): a crash between parts leaves the earlier parts written and the
// later ones as they were, which the caller must be able to resume from.
// part sees lo == 0 in the first part and hi == n in the last, for what
// goes before or after every unit. It is not for a change that must be
// all or nothing: that stays one Update, and needs limits that hold it.
func UpdateInParts(db DB, n int, part func(tx Tx, lo, hi int) error) error {
	return updateRange(db, 0, n, part)
}

func updateRange(db DB, lo, hi int, part func(tx Tx, lo, hi int) error) error {
	err := db.Update(func(tx Tx) error { return part(tx, lo, hi) })
	if hi-lo <= 1 || !errors.Is(err, ErrTxnTooLarge) {
		return err
	}
	mid := lo + (hi-lo)/2
	if err := updateRange(db, lo, mid, part); err != nil {
		return err
	}
	return updateRange(db, mid, hi, part)
}
