package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Store is where a Manager keeps its rollout records and run locks. The
// default (NewManager without WithState) is FileStore(root): bbolt in
// ROOT/rollouts.db and flock files in ROOT/rollouts.d. repo adapts its
// shared store to it, so that the daemons of an HA pair see, resume and
// conflict-check each other's rollouts.
//
// A Store only keeps bytes: what a record means (the host-conflict rule,
// an abort that a late write must not undo) is decided here, once, on top
// of View and Update, so that every Store behaves alike. The conformance
// suite in upgrade/statetest checks that they do.
type Store interface {
	// View runs fn on one consistent snapshot of the records.
	View(ctx context.Context, fn func(StoreTx) error) error
	// Update runs fn in one serializable transaction: all of its writes
	// land or none do, and two Updates never both commit on a snapshot
	// the other changed. It may run fn more than once (an optimistic
	// store retrying after a conflict), so fn has no effect outside tx.
	Update(ctx context.Context, fn func(StoreTx) error) error
	Locks
	// String names where the records are, for messages.
	String() string
}

// Locks are the run locks of rollouts: whoever runs a rollout holds its
// lock, so that two processes never run one rollout at once.
type Locks interface {
	// Lock takes rollout id's run lock, failing with ErrBusy if a live
	// holder has it. A lock must free itself when its holder dies (the
	// process is killed, its node goes away), without anyone cleaning up.
	Lock(ctx context.Context, id string) (RunLock, error)
	// Live reports whether a live holder has id's run lock right now,
	// wherever it runs. An error means it could not be told.
	Live(ctx context.Context, id string) (bool, error)
}

// StoreTx is one transaction on the records. Values are upgrade's JSON;
// the slices are valid only inside the transaction.
type StoreTx interface {
	// Rollout is the header of rollout id, nil if there is none.
	Rollout(id string) ([]byte, error)
	// ForEachRollout calls fn for every rollout header, in id order.
	ForEachRollout(fn func(id string, header []byte) error) error
	PutRollout(id string, header []byte) error
	// ForEachStep calls fn for every step record of rollout id, in key
	// order.
	ForEachStep(id string, fn func(key string, rec []byte) error) error
	PutStep(id, key string, rec []byte) error
}

// RunLock is a held run lock.
type RunLock interface {
	// Release frees the lock. It is safe to call more than once.
	Release() error
	// Lost is closed if the lock is taken from its holder while held (an
	// etcd lease that lapsed while the node was cut off); nil for a lock
	// that cannot be lost. The rollout then stops: another node may
	// already run it.
	Lost() <-chan struct{}
}

func encodeRollout(r *Rollout) ([]byte, error) {
	c := *r
	c.Steps, c.Live = nil, false
	return json.Marshal(&c)
}

// readRollout is rollout id with its step records.
func readRollout(tx StoreTx, id string) (*Rollout, error) {
	r, err := readHeader(tx, id)
	if err != nil {
		return nil, err
	}
	err = tx.ForEachStep(id, func(k string, v []byte) error {
		var s StepRecord
		if err := json.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("decoding step %q of %q: %w", k, id, err)
		}
		r.Steps = append(r.Steps, s)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

func writeRollout(tx StoreTx, r *Rollout) error {
	b, err := encodeRollout(r)
	if err != nil {
		return err
	}
	return tx.PutRollout(r.ID, b)
}

// records is the meaning of a Store's bytes.
type records struct{ st Store }

func (s records) putStep(ctx context.Context, id string, rec StepRecord) error {
	b, err := json.Marshal(&rec)
	if err != nil {
		return err
	}
	return s.st.Update(ctx, func(tx StoreTx) error { return tx.PutStep(id, rec.Key, b) })
}

// saveState writes the rollout header, but never over an abort made by
// another process meanwhile.
func (s records) saveState(ctx context.Context, r *Rollout) error {
	aborted := false
	err := s.st.Update(ctx, func(tx StoreTx) error {
		aborted = false
		if cur, err := readHeader(tx, r.ID); err == nil && cur.State == StateAborted && r.State != StateAborted {
			aborted = true
			return nil
		}
		c := *r
		c.Updated = time.Now().UTC()
		if err := writeRollout(tx, &c); err != nil {
			return err
		}
		r.Updated = c.Updated
		return nil
	})
	if err == nil && aborted {
		r.State = StateAborted
	}
	return err
}

// readHeader is rollout id without its steps.
func readHeader(tx StoreTx, id string) (*Rollout, error) {
	v, err := tx.Rollout(id)
	if err != nil {
		return nil, fmt.Errorf("reading rollout %q: %w", id, err)
	}
	if v == nil {
		return nil, fmt.Errorf("rollout %q: %w", id, ErrNotFound)
	}
	var r Rollout
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decoding rollout %q: %w", id, err)
	}
	return &r, nil
}

func (s records) live(ctx context.Context, id string) bool {
	// A lock that cannot be probed says nothing runs, as a missing one
	// does: status must still answer.
	l, _ := s.st.Live(ctx, id)
	return l
}

func (s records) get(ctx context.Context, id string) (*Rollout, error) {
	var r *Rollout
	err := s.st.View(ctx, func(tx StoreTx) error {
		var err error
		r, err = readRollout(tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	r.Live = s.live(ctx, r.ID)
	return r, nil
}

func (s records) list(ctx context.Context) ([]*Rollout, error) {
	var out []*Rollout
	err := s.st.View(ctx, func(tx StoreTx) error {
		out = out[:0]
		var ids []string
		if err := tx.ForEachRollout(func(id string, _ []byte) error {
			ids = append(ids, id)
			return nil
		}); err != nil {
			return err
		}
		for _, id := range ids {
			r, err := readRollout(tx, id)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, r := range out {
		r.Live = s.live(ctx, r.ID)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

func planHosts(p *Plan) map[string]bool {
	mine := map[string]bool{}
	for _, ph := range p.Phases {
		for _, t := range ph.Tasks {
			mine[t.Target.Addr()] = true
		}
	}
	return mine
}

// conflict returns ErrLocked if an unfinished rollout other than self owns
// any of the hosts.
func conflict(tx StoreTx, mine map[string]bool, self string) error {
	return tx.ForEachRollout(func(id string, v []byte) error {
		if id == self {
			return nil
		}
		var o Rollout
		if err := json.Unmarshal(v, &o); err != nil {
			return fmt.Errorf("decoding rollout %q: %w", id, err)
		}
		if o.State.Terminal() {
			return nil
		}
		for _, ph := range o.Plan.Phases {
			for _, t := range ph.Tasks {
				if mine[t.Target.Addr()] {
					return fmt.Errorf("%w: %s (%s) belongs to rollout %s (%s); resume or abort it first",
						ErrLocked, t.Target.Host, t.Target.Addr(), o.ID, o.State)
				}
			}
		}
		return nil
	})
}

// create inserts r unless an unfinished rollout owns any of its hosts. The
// check and the insert are one Update: two processes (or nodes) creating
// overlapping rollouts at once cannot both commit.
func (s records) create(ctx context.Context, r *Rollout) error {
	mine := planHosts(&r.Plan)
	return s.st.Update(ctx, func(tx StoreTx) error {
		if err := conflict(tx, mine, r.ID); err != nil {
			return err
		}
		if v, err := tx.Rollout(r.ID); err != nil || v != nil {
			return errors.Join(err, fmt.Errorf("rollout %q exists already", r.ID))
		}
		return writeRollout(tx, r)
	})
}

func (s records) checkHosts(ctx context.Context, plan *Plan) error {
	return s.st.View(ctx, func(tx StoreTx) error { return conflict(tx, planHosts(plan), "") })
}

// abort marks rollout id aborted, unless it is finished.
func (s records) abort(ctx context.Context, id string) (*Rollout, error) {
	var r *Rollout
	err := s.st.Update(ctx, func(tx StoreTx) error {
		var err error
		if r, err = readRollout(tx, id); err != nil {
			return err
		}
		if r.State.Terminal() {
			return fmt.Errorf("aborting %s (%s): %w", id, r.State, ErrFinished)
		}
		r.State, r.Updated = StateAborted, time.Now().UTC()
		return writeRollout(tx, r)
	})
	if err != nil {
		return r, err
	}
	r.Live = s.live(ctx, id)
	return r, nil
}
