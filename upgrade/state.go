package upgrade

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// fileStore is the default Store: the records in one bbolt file, a
// header per rollout in bucket "rollouts" and its steps in bucket
// "steps"/ID (the layout every repoctl so far wrote), and run locks as
// flock files in a directory.
type fileStore struct {
	path  string
	locks *fileLocks
}

// FileStore is the Store NewManager uses by default: root/rollouts.db
// (bbolt) and root/rollouts.d/ID.lock (flock). It creates nothing until
// the first write: reading the state of a root without rollouts leaves it
// untouched. Writes are refused unless the process runs as root's owner
// (package rootowner).
func FileStore(root string) Store {
	return &fileStore{path: filepath.Join(root, "rollouts.db"), locks: &fileLocks{dir: filepath.Join(root, "rollouts.d"), owner: root}}
}

func (s *fileStore) String() string { return s.path }

func (s *fileStore) acquire() (*dbHandle, *bolt.DB, error) {
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

func (s *fileStore) View(ctx context.Context, fn func(StoreTx) error) error {
	if _, err := os.Stat(s.path); errors.Is(err, os.ErrNotExist) {
		return fn(boltTx{}) // no file: no rollouts, and nothing created
	}
	h, db, err := s.acquire()
	if err != nil {
		return err
	}
	defer h.release()
	return db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

// Update runs fn in a bbolt batch: concurrent writes share one commit,
// and bbolt's file lock makes the transaction exclusive across processes.
func (s *fileStore) Update(ctx context.Context, fn func(StoreTx) error) error {
	if err := checkOwner(filepath.Dir(s.path)); err != nil {
		return err
	}
	h, db, err := s.acquire()
	if err != nil {
		return err
	}
	defer h.release()
	return db.Batch(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketRollouts); err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketSteps); err != nil {
			return err
		}
		return fn(boltTx{tx})
	})
}

func (s *fileStore) Lock(ctx context.Context, id string) (RunLock, error) {
	return s.locks.Lock(ctx, id)
}

func (s *fileStore) Live(ctx context.Context, id string) (bool, error) {
	return s.locks.Live(ctx, id)
}

// boltTx is a StoreTx on bbolt; a nil tx is an empty store.
type boltTx struct{ tx *bolt.Tx }

func (t boltTx) bucket(name []byte) *bolt.Bucket {
	if t.tx == nil {
		return nil
	}
	return t.tx.Bucket(name)
}

func (t boltTx) Rollout(id string) ([]byte, error) {
	if b := t.bucket(bucketRollouts); b != nil {
		return b.Get([]byte(id)), nil
	}
	return nil, nil
}

func (t boltTx) ForEachRollout(fn func(id string, header []byte) error) error {
	b := t.bucket(bucketRollouts)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error { return fn(string(k), v) })
}

func (t boltTx) PutRollout(id string, header []byte) error {
	return t.tx.Bucket(bucketRollouts).Put([]byte(id), header)
}

func (t boltTx) ForEachStep(id string, fn func(key string, rec []byte) error) error {
	sb := t.bucket(bucketSteps)
	if sb == nil {
		return nil
	}
	b := sb.Bucket([]byte(id))
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error { return fn(string(k), v) })
}

func (t boltTx) PutStep(id, key string, rec []byte) error {
	sb, err := t.tx.Bucket(bucketSteps).CreateBucketIfNotExists([]byte(id))
	if err != nil {
		return err
	}
	return sb.Put([]byte(key), rec)
}

// fileLocks are run locks as flock files: flock goes away with the
// process, so kill -9 never leaves a stale lock behind. They are only
// seen by processes on the same machine.
type fileLocks struct {
	dir   string
	owner string // the root whose owner may write; "" for no check
}

// FileLocks are run locks as flock files dir/ID.lock, for a Store whose
// records are elsewhere but whose rollouts all run on this machine.
func FileLocks(dir string) Locks {
	return &fileLocks{dir: dir}
}

type flockRunLock struct{ l *filelock.Lock }

func (l *flockRunLock) Release() error        { return l.l.Close() }
func (l *flockRunLock) Lost() <-chan struct{} { return nil }

func (s *fileLocks) lockPath(id string) string { return filepath.Join(s.dir, id+".lock") }

func (s *fileLocks) Lock(ctx context.Context, id string) (RunLock, error) {
	if s.owner != "" {
		if err := checkOwner(s.owner); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return nil, fmt.Errorf("creating rollout lock dir %q: %w", s.dir, err)
	}
	l, err := filelock.Acquire(ctx, s.lockPath(id), filelock.Create(0o600), filelock.RecordPID())
	var held *filelock.HeldError
	switch {
	case errors.As(err, &held):
		return nil, fmt.Errorf("rollout %q (%s holds %q): %w", id, held.Holder, held.Path, ErrBusy)
	case err != nil:
		return nil, fmt.Errorf("locking rollout %q: %w", id, err)
	}
	return &flockRunLock{l: l}, nil
}

// Live probes the run lock without keeping it. A lock file that cannot be
// read says nothing is running, as a missing one does.
func (s *fileLocks) Live(ctx context.Context, id string) (bool, error) {
	held, _ := filelock.Held(s.lockPath(id))
	return held, nil
}
