package store

import (
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// Resident is a Tx whose store is mapped into the process's memory
// (bbolt). DropResident gives the mapped pages the transaction can see
// back to the page cache: they leave the process's resident set, and a
// later read maps them again from the page cache, so nothing is lost or
// re-read from disk. Without it every page a scan touched counts in the
// daemon's RSS until the kernel needs the memory.
type Resident interface {
	DropResident()
}

// DropResident is tx.DropResident() where tx's backend maps the store,
// and nothing elsewhere (etcd).
func DropResident(tx Tx) {
	if r, ok := tx.(Resident); ok {
		r.DropResident()
	}
}

func (t boltTx) DropResident() { BoltDropResident(t.tx) }

// BoltDropResident is DropResident for a bbolt transaction used outside
// the seam (repo's migration of old store files). It does nothing in a
// write transaction, whose size may count pages it has not written yet;
// in a read transaction bbolt cannot remap meanwhile, and the range (the
// file's size as the transaction sees it) lies within the mapping, since
// bbolt maps at least the whole file.
func BoltDropResident(tx *bolt.Tx) {
	if tx.Writable() {
		return
	}
	data, size := tx.DB().Info().Data, tx.Size()
	if data == 0 || size <= 0 {
		return
	}
	// Errors are ignored: the advice only saves memory.
	syscall.Syscall(syscall.SYS_MADVISE, data, uintptr(size), syscall.MADV_DONTNEED)
}
