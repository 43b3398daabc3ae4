package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/repoctl/repoctl/internal/filelock"
)

// State of a rollout.
type State string

// States. Running and halted rollouts own their hosts; the others are
// terminal.
const (
	StateRunning    State = "running"
	StateHalted     State = "halted"
	StateDone       State = "done"
	StateAborted    State = "aborted"
	StateRolledBack State = "rolled-back"
)

// Terminal reports whether nothing more will happen to the rollout.
func (s State) Terminal() bool { return s == StateDone || s == StateAborted || s == StateRolledBack }

// Step record states.
const (
	StepRunning = "running" // started, not known to have finished
	StepDone    = "done"
	StepFailed  = "failed"
)

// StepRecord is one host's part of one phase, written before the command
// starts and again when it ends: a "running" record found on resume is a
// step that was in flight when the process died.
type StepRecord struct {
	Key        string    `json:"key"`
	Phase      string    `json:"phase"`
	Host       string    `json:"host"`
	State      string    `json:"state"`
	Command    string    `json:"command,omitempty"`
	ExitStatus int       `json:"exit_status"`
	Stdout     string    `json:"stdout,omitempty"`
	Stderr     string    `json:"stderr,omitempty"`
	Error      string    `json:"error,omitempty"`
	Runs       int       `json:"runs"`
	Started    time.Time `json:"started"`
	Finished   time.Time `json:"finished,omitzero"`
}

// Rollout is the persisted state machine.
type Rollout struct {
	ID          string    `json:"id"`
	State       State     `json:"state"`
	Plan        Plan      `json:"plan"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
	PID         int       `json:"pid"`
	Hostname    string    `json:"hostname"`
	Error       string    `json:"error,omitempty"`
	RollingBack bool      `json:"rolling_back,omitempty"`
	// FailedPhase is the phase whose failure started the rollback.
	FailedPhase string `json:"failed_phase,omitempty"`
	// Live is computed on read: whether a process holds the rollout's lock
	// right now. A "running" rollout that is not live was interrupted.
	Live  bool         `json:"live"`
	Steps []StepRecord `json:"steps,omitempty"`
}

var (
	bucketRollouts = []byte("rollouts")
	bucketSteps    = []byte("steps")
)

// handles shares one open DB per file within this process. bbolt's flock
// is per open file, so two opens in one process would wait on each other;
// and a rollout's hosts write their step records concurrently, which
// db.Batch turns into one transaction and one fsync. The file is closed as
// soon as no operation is pending, so that `rollout status` in another
// process gets its turn while commands run on the hosts.
var handles sync.Map // path → *dbHandle

type dbHandle struct {
	mu   sync.Mutex
	db   *bolt.DB
	refs int
}

type store struct {
	path    string
	lockDir string
}

// newStore creates nothing: reading the state of a root without rollouts
// leaves it untouched.
func newStore(root string) (*store, error) {
	return &store{path: filepath.Join(root, "rollouts.db"), lockDir: filepath.Join(root, "rollouts.d")}, nil
}

func (s *store) acquire() (*dbHandle, *bolt.DB, error) {
	v, _ := handles.LoadOrStore(s.path, &dbHandle{})
	h := v.(*dbHandle)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.db == nil {
		db, err := bolt.Open(s.path, 0o600, &bolt.Options{Timeout: 30 * time.Second})
		if err != nil {
			return nil, nil, fmt.Errorf("opening rollout state %q: %w", s.path, err)
		}
		h.db = db
	}
	h.refs++
	return h, h.db, nil
}

func (h *dbHandle) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.refs--; h.refs == 0 {
		h.db.Close()
		h.db = nil
	}
}

// do runs fn in a transaction; concurrent writes share one commit.
func (s *store) do(ctx context.Context, write bool, fn func(tx *bolt.Tx) error) error {
	if write {
		if err := s.checkOwner(); err != nil {
			return err
		}
	}
	h, db, err := s.acquire()
	if err != nil {
		return err
	}
	defer h.release()
	if write {
		return db.Batch(func(tx *bolt.Tx) error {
			if _, err := tx.CreateBucketIfNotExists(bucketRollouts); err != nil {
				return err
			}
			if _, err := tx.CreateBucketIfNotExists(bucketSteps); err != nil {
				return err
			}
			return fn(tx)
		})
	}
	return db.View(fn)
}

func putRollout(tx *bolt.Tx, r *Rollout) error {
	c := *r
	c.Steps, c.Live = nil, false
	b, err := json.Marshal(&c)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketRollouts).Put([]byte(r.ID), b)
}

func getRollout(tx *bolt.Tx, id string) (*Rollout, error) {
	rb := tx.Bucket(bucketRollouts)
	if rb == nil {
		return nil, fmt.Errorf("rollout %q: %w", id, ErrNotFound)
	}
	v := rb.Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("rollout %q: %w", id, ErrNotFound)
	}
	var r Rollout
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decoding rollout %q: %w", id, err)
	}
	if sb := tx.Bucket(bucketSteps); sb != nil {
		if b := sb.Bucket([]byte(id)); b != nil {
			err := b.ForEach(func(k, v []byte) error {
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
		}
	}
	return &r, nil
}

func (s *store) putStep(ctx context.Context, id string, rec StepRecord) error {
	b, err := json.Marshal(&rec)
	if err != nil {
		return err
	}
	return s.do(ctx, true, func(tx *bolt.Tx) error {
		sb, err := tx.Bucket(bucketSteps).CreateBucketIfNotExists([]byte(id))
		if err != nil {
			return err
		}
		return sb.Put([]byte(rec.Key), b)
	})
}

// saveState writes the rollout header, but never over an abort made by
// another process meanwhile.
func (s *store) saveState(ctx context.Context, r *Rollout) error {
	return s.do(ctx, true, func(tx *bolt.Tx) error {
		if cur, err := getRollout(tx, r.ID); err == nil && cur.State == StateAborted && r.State != StateAborted {
			r.State = StateAborted
			return nil
		}
		r.Updated = time.Now().UTC()
		return putRollout(tx, r)
	})
}

func (s *store) get(ctx context.Context, id string) (*Rollout, error) {
	if _, err := os.Stat(s.path); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("rollout %q: %w", id, ErrNotFound)
	}
	var r *Rollout
	err := s.do(ctx, false, func(tx *bolt.Tx) error {
		var err error
		r, err = getRollout(tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	r.Live = s.live(r.ID)
	return r, nil
}

func (s *store) list(ctx context.Context) ([]*Rollout, error) {
	var out []*Rollout
	if _, err := os.Stat(s.path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	err := s.do(ctx, false, func(tx *bolt.Tx) error {
		rb := tx.Bucket(bucketRollouts)
		if rb == nil {
			return nil
		}
		return rb.ForEach(func(k, _ []byte) error {
			r, err := getRollout(tx, string(k))
			if err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	for _, r := range out {
		r.Live = s.live(r.ID)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, err
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
func conflict(tx *bolt.Tx, mine map[string]bool, self string) error {
	rb := tx.Bucket(bucketRollouts)
	if rb == nil {
		return nil
	}
	return rb.ForEach(func(k, v []byte) error {
		if string(k) == self {
			return nil
		}
		var o Rollout
		if err := json.Unmarshal(v, &o); err != nil {
			return fmt.Errorf("decoding rollout %q: %w", k, err)
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
// check and the insert are one transaction, and bbolt's file lock makes
// that transaction exclusive across processes.
func (s *store) create(ctx context.Context, r *Rollout) error {
	mine := planHosts(&r.Plan)
	return s.do(ctx, true, func(tx *bolt.Tx) error {
		if err := conflict(tx, mine, r.ID); err != nil {
			return err
		}
		return putRollout(tx, r)
	})
}

// runLock is held by the process running a rollout. flock goes away with
// the process, so kill -9 never leaves a stale lock behind.
type runLock struct{ l *filelock.Lock }

func (s *store) lockPath(id string) string { return filepath.Join(s.lockDir, id+".lock") }

func (s *store) lock(id string) (*runLock, error) {
	if err := s.checkOwner(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.lockDir, 0o750); err != nil {
		return nil, fmt.Errorf("creating rollout lock dir %q: %w", s.lockDir, err)
	}
	l, err := filelock.Acquire(context.Background(), s.lockPath(id), filelock.Create(0o600), filelock.RecordPID())
	var held *filelock.HeldError
	switch {
	case errors.As(err, &held):
		return nil, fmt.Errorf("rollout %q (%s holds %q): %w", id, held.Holder, held.Path, ErrBusy)
	case err != nil:
		return nil, fmt.Errorf("locking rollout %q: %w", id, err)
	}
	return &runLock{l: l}, nil
}

func (l *runLock) release() {
	if l != nil {
		_ = l.l.Close()
	}
}

// live probes the run lock without keeping it. A lock file that cannot be
// read says nothing is running, as a missing one does.
func (s *store) live(id string) bool {
	held, _ := filelock.Held(s.lockPath(id))
	return held
}
