package repo

// Rollout state in the store seam. upgrade keeps a rollout's records and
// run lock behind upgrade.Store; by default in ROOT/rollouts.db and
// ROOT/rollouts.d (its own files). With [store] backend = "etcd" they
// must be where every daemon of the HA pair sees them, or another node
// could not show, resume or conflict-check a rollout, and a rollout would
// be lost with its node: RolloutManager puts the records in etcd (buckets
// rollout.records and rollout.steps under PREFIX.rollouts/) and the run
// locks on etcd session leases (PREFIX.rollout-locks/ID), which lapse when
// the holder dies. Both are beside the store's prefix, not in it, as
// rollouts.db is beside repoctl.db: a rollout's progress is no change to
// the repository, and a command that compares the store's last change
// with what it read (ErrStoreChanged) must not see one in it.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	kv "github.com/repoctl/repoctl/repo/store"
	"github.com/repoctl/repoctl/upgrade"
)

// ErrLocalRollouts: the root keeps its state in etcd but ROOT/rollouts.db
// (written while it kept it on disk) has unfinished rollouts, which etcd
// does not have: they would silently free their hosts.
var ErrLocalRollouts = errors.New("repo: unfinished rollouts in the local rollouts.db")

var (
	bucketRolloutRecords = []byte("rollout.records") // rollout id → upgrade's header JSON
	bucketRolloutSteps   = []byte("rollout.steps")   // rollout id → bucket of step key → record JSON
)

// RolloutManager is the upgrade.Manager for cfg's root: rollouts in
// ROOT/rollouts.db with the bbolt backend (upgrade's default), in the
// shared store with etcd. opts go to upgrade.NewManager. The returned
// func closes what the Manager uses; call it when done.
//
// With etcd, a ROOT/rollouts.db that still has unfinished rollouts is an
// error (ErrLocalRollouts) rather than ignored: those rollouts own their
// hosts, and etcd does not know them. Finish or abort them with [store]
// backend = "bbolt" first. Finished ones stay in the file, unread.
func RolloutManager(ctx context.Context, cfg *Config, opts ...upgrade.Option) (*upgrade.Manager, func() error, error) {
	if cfg.Store.Backend != StoreEtcd {
		m, err := upgrade.NewManager(cfg.Root, opts...)
		if err != nil {
			return nil, nil, err
		}
		return m, func() error { return nil }, nil
	}
	if err := checkLocalRollouts(ctx, cfg.Root); err != nil {
		return nil, nil, err
	}
	db, err := openEtcdKV(ctx, cfg, RolloutPrefix(cfg.Store.Prefix))
	if err != nil {
		return nil, nil, err
	}
	ttl, _ := time.ParseDuration(cfg.Store.LeaseTTL) // checked by storeDefaults
	st := newKVRolloutStore(db, fmt.Sprintf("etcd %s%s", cfg.Store.Endpoints[0], RolloutPrefix(cfg.Store.Prefix)),
		newEtcdRunLocks(kv.Client(db), cfg.Store.Prefix, cfg.Store.Node, ttl))
	m, err := upgrade.NewManager(cfg.Root, append([]upgrade.Option{upgrade.WithStore(st)}, opts...)...)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return m, db.Close, nil
}

// checkLocalRollouts fails if root's rollouts.db has unfinished rollouts.
func checkLocalRollouts(ctx context.Context, root string) error {
	if _, err := os.Stat(filepath.Join(root, "rollouts.db")); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	local, err := upgrade.NewManager(root)
	if err != nil {
		return err
	}
	all, err := local.List(ctx)
	if err != nil {
		return fmt.Errorf("reading the rollouts kept before the store moved to etcd: %w", err)
	}
	var open []string
	for _, r := range all {
		if !r.State.Terminal() {
			open = append(open, fmt.Sprintf("%s (%s)", r.ID, r.State))
		}
	}
	if len(open) == 0 {
		return nil
	}
	return fmt.Errorf("%w %q: %s; [store] backend = \"etcd\" keeps rollouts in etcd, which does not have these: finish or abort them with backend = \"bbolt\" first",
		ErrLocalRollouts, filepath.Join(root, "rollouts.db"), strings.Join(open, ", "))
}

// kvRolloutStore is upgrade.Store on a kv.DB. Its Update is the store's
// own: on etcd an optimistic transaction that runs again when another
// writer changed what it read (so two nodes creating rollouts on one host
// cannot both commit: each reads every header), and that fails with
// kv.ErrConflict after the store's retries.
type kvRolloutStore struct {
	db    kv.DB
	where string
	upgrade.Locks
}

// newKVRolloutStore keeps the records in db and the run locks in locks.
func newKVRolloutStore(db kv.DB, where string, locks upgrade.Locks) *kvRolloutStore {
	return &kvRolloutStore{db: db, where: where, Locks: locks}
}

func (s *kvRolloutStore) String() string { return s.where }

func (s *kvRolloutStore) View(ctx context.Context, fn func(upgrade.StoreTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(tx kv.Tx) error { return fn(kvRolloutTx{tx}) })
}

func (s *kvRolloutStore) Update(ctx context.Context, fn func(upgrade.StoreTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var fnErr error
	err := s.db.Update(func(tx kv.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketRolloutRecords); err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketRolloutSteps); err != nil {
			return err
		}
		fnErr = fn(kvRolloutTx{tx})
		return fnErr
	})
	if err != nil && err != fnErr {
		// The store's error, not upgrade's refusal (ErrLocked, ErrFinished).
		return fmt.Errorf("writing rollout state (%s): %w", s.where, err)
	}
	return err
}

type kvRolloutTx struct{ tx kv.Tx }

func (t kvRolloutTx) Rollout(id string) ([]byte, error) {
	if b := t.tx.Bucket(bucketRolloutRecords); b != nil && id != "" {
		return b.Get([]byte(id)), nil
	}
	return nil, nil
}

func (t kvRolloutTx) ForEachRollout(fn func(id string, header []byte) error) error {
	b := t.tx.Bucket(bucketRolloutRecords)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error { return fn(string(k), v) })
}

func (t kvRolloutTx) PutRollout(id string, header []byte) error {
	return t.tx.Bucket(bucketRolloutRecords).Put([]byte(id), header)
}

func (t kvRolloutTx) ForEachStep(id string, fn func(key string, rec []byte) error) error {
	sb := t.tx.Bucket(bucketRolloutSteps)
	if sb == nil || id == "" {
		return nil
	}
	b := sb.Bucket([]byte(id))
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error { return fn(string(k), v) })
}

func (t kvRolloutTx) PutStep(id, key string, rec []byte) error {
	b, err := t.tx.Bucket(bucketRolloutSteps).CreateBucketIfNotExists([]byte(id))
	if err != nil {
		return err
	}
	return b.Put([]byte(key), rec)
}

// etcdRunLocks are run locks as etcd keys PREFIX.rollout-locks/ID bound
// to the holder's session lease: the key exists exactly while a live
// holder keeps the lease alive, on whatever node it runs, and goes when
// the holder releases it, closes its session, or dies (the lease lapses
// after ttl).
type etcdRunLocks struct {
	cli    *clientv3.Client
	prefix string
	holder string
	ttl    time.Duration
}

// RolloutPrefix is where the rollout records of the installation at etcd
// prefix storePrefix are: beside the prefix, as the run locks are.
func RolloutPrefix(storePrefix string) string {
	return strings.TrimSuffix(storePrefix, "/") + ".rollouts/"
}

// RolloutLockPrefix is where the run locks of the installation at etcd
// prefix storePrefix are, beside the prefix as the election is.
func RolloutLockPrefix(storePrefix string) string {
	return strings.TrimSuffix(storePrefix, "/") + ".rollout-locks/"
}

func newEtcdRunLocks(cli *clientv3.Client, storePrefix, node string, ttl time.Duration) *etcdRunLocks {
	host, _ := os.Hostname()
	return &etcdRunLocks{cli: cli, prefix: RolloutLockPrefix(storePrefix), ttl: ttl,
		holder: fmt.Sprintf("pid %d on %s (node %s)", os.Getpid(), host, node)}
}

type etcdRunLock struct {
	sess *concurrency.Session
	key  string
	once sync.Once
	err  error
}

func (l *etcdRunLock) Lost() <-chan struct{} { return l.sess.Done() }

func (l *etcdRunLock) Release() error {
	l.once.Do(func() {
		// Revoking the lease deletes the key with it.
		l.err = l.sess.Close()
	})
	return l.err
}

func (s *etcdRunLocks) Lock(ctx context.Context, id string) (upgrade.RunLock, error) {
	secs := max(1, int((s.ttl+time.Second-1)/time.Second))
	sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(secs), concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return nil, fmt.Errorf("locking rollout %q: etcd session: %w", id, err)
	}
	key := s.prefix + id
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, s.holder, clientv3.WithLease(sess.Lease()))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("locking rollout %q: %w", id, err)
	}
	if !resp.Succeeded {
		sess.Close()
		holder := "another process"
		if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
			holder = shownLeader(string(kvs[0].Value))
		}
		return nil, fmt.Errorf("rollout %q (%s holds %q): %w", id, holder, key, upgrade.ErrBusy)
	}
	return &etcdRunLock{sess: sess, key: key}, nil
}

func (s *etcdRunLocks) Live(ctx context.Context, id string) (bool, error) {
	resp, err := s.cli.Get(ctx, s.prefix+id, clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("probing the run lock of rollout %q: %w", id, err)
	}
	return resp.Count > 0, nil
}
