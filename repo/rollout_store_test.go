package repo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/repoctl/repoctl/internal/etcdtest"
	"github.com/repoctl/repoctl/internal/sshtest"
	kv "github.com/repoctl/repoctl/repo/store"
	"github.com/repoctl/repoctl/upgrade"
	"github.com/repoctl/repoctl/upgrade/statetest"
)

// rolloutLockTTL is the run locks' lease in these tests: short, so that a
// dead holder's lock lapses within seconds.
const rolloutLockTTL = 2 * time.Second

// TestKVRolloutStoreConformance runs upgrade's Store suite on the store
// seam's adapter: on bbolt (run locks as flock files) and on a real etcd
// (run locks on session leases, each handle a node of its own).
func TestKVRolloutStoreConformance(t *testing.T) {
	t.Run("bbolt", func(t *testing.T) {
		var mu sync.Mutex
		paths := map[upgrade.Store]string{}
		open := func(t *testing.T, path string) upgrade.Store {
			db, err := kv.OpenBolt(path, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			st := newKVRolloutStore(db, path, upgrade.FileLocks(filepath.Join(filepath.Dir(path), "locks")))
			mu.Lock()
			paths[st] = path
			mu.Unlock()
			return st
		}
		pathOf := func(st upgrade.Store) string {
			mu.Lock()
			defer mu.Unlock()
			return paths[st]
		}
		statetest.Run(t, statetest.Impl{
			Open: func(t *testing.T) (upgrade.Store, func() upgrade.Store) {
				st := open(t, filepath.Join(t.TempDir(), "repoctl.db"))
				// One process holds a bbolt file: another handle shares its DB.
				return st, func() upgrade.Store {
					s := st.(*kvRolloutStore)
					return newKVRolloutStore(s.db, s.where, s.Locks)
				}
			},
			Reopen: func(t *testing.T, st upgrade.Store) upgrade.Store {
				if err := st.(*kvRolloutStore).db.Close(); err != nil {
					t.Fatal(err)
				}
				return open(t, pathOf(st))
			},
			Hold: func(t *testing.T, st upgrade.Store, id string) func() {
				return statetest.HoldFlock(t, st, filepath.Join(filepath.Dir(pathOf(st)), "locks"), id)
			},
		})
	})
	t.Run("etcd", func(t *testing.T) {
		srv := etcdtest.Start(t)
		var n, node atomic.Int64
		var mu sync.Mutex
		prefixes := map[upgrade.Store]string{}
		open := func(t *testing.T, prefix string) upgrade.Store {
			db, err := kv.OpenEtcd(context.Background(), kv.EtcdOptions{Endpoints: []string{srv.Endpoint}, Prefix: prefix,
				MaxTxnOps: etcdtest.MaxTxnOps, MaxRequestBytes: etcdtest.MaxRequestBytes})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			st := newKVRolloutStore(db, prefix, newEtcdRunLocks(kv.Client(db), prefix, fmt.Sprintf("node%d", node.Add(1)), rolloutLockTTL))
			mu.Lock()
			prefixes[st] = prefix
			mu.Unlock()
			return st
		}
		prefixOf := func(st upgrade.Store) string {
			mu.Lock()
			defer mu.Unlock()
			return prefixes[st]
		}
		statetest.Run(t, statetest.Impl{
			Open: func(t *testing.T) (upgrade.Store, func() upgrade.Store) {
				prefix := fmt.Sprintf("/rollouts/%d/", n.Add(1))
				return open(t, prefix), func() upgrade.Store { return open(t, prefix) }
			},
			Reopen: func(t *testing.T, st upgrade.Store) upgrade.Store {
				if err := st.(*kvRolloutStore).db.Close(); err != nil {
					t.Fatal(err)
				}
				return open(t, prefixOf(st))
			},
			// The holder is a client of its own that takes the lock and
			// then goes away without releasing it, as a killed node does:
			// its lease lapses after the TTL.
			Hold: func(t *testing.T, st upgrade.Store, id string) func() {
				cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: 5 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := newEtcdRunLocks(cli, prefixOf(st), "doomed", rolloutLockTTL).Lock(context.Background(), id); err != nil {
					cli.Close()
					t.Fatal(err)
				}
				var once sync.Once
				kill := func() { once.Do(func() { cli.Close() }) }
				t.Cleanup(kill)
				return kill
			},
			DeadAfter: rolloutLockTTL,
		})
	})
}

// TestRolloutManagerRefusesLocalUnfinished: a root that moved to etcd
// with unfinished rollouts left in ROOT/rollouts.db gets an error naming
// them, rather than a Manager that silently frees their hosts; once they
// are finished (here: marked done) the etcd Manager opens, and does not
// show the file's rollouts.
func TestRolloutManagerRefusesLocalUnfinished(t *testing.T) {
	srv := etcdtest.Start(t)
	root := t.TempDir()
	cfgText := fmt.Sprintf("[store]\nbackend = \"etcd\"\nendpoints = [%q]\nprefix = \"/moved/\"\n", srv.Endpoint)
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(root, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	put := func(state string) {
		t.Helper()
		hdr := fmt.Sprintf(`{"id":"20260301-100000-abcdef","state":%q,"plan":{"nevra":"app-2.0-1.el9.x86_64"},"created":"2026-03-01T10:00:00Z"}`, state)
		if err := upgrade.FileStore(root).Update(ctx, func(tx upgrade.StoreTx) error {
			return tx.PutRollout("20260301-100000-abcdef", []byte(hdr))
		}); err != nil {
			t.Fatal(err)
		}
	}
	put("halted")
	if _, _, err := RolloutManager(ctx, cfg); !errors.Is(err, ErrLocalRollouts) || !strings.Contains(err.Error(), "20260301-100000-abcdef (halted)") {
		t.Fatalf("RolloutManager with a halted local rollout: %v, want ErrLocalRollouts naming it", err)
	}
	put("done")
	m, done, err := RolloutManager(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	if rs, err := m.List(ctx); err != nil || len(rs) != 0 {
		t.Errorf("the etcd Manager lists %v, %v; want nothing", rs, err)
	}
	if got := m.Store().String(); !strings.Contains(got, "/moved.rollouts/") {
		t.Errorf("the Manager keeps its rollouts in %q, want etcd under /moved.rollouts/", got)
	}
}

// TestEtcdRunLockLost: a run lock whose lease is revoked under its holder
// (as when it lapsed while the node was cut off) says so on Lost, which
// makes upgrade stop the rollout, and another node can take it.
func TestEtcdRunLockLost(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client()
	ctx := context.Background()
	locks := newEtcdRunLocks(cli, "/lost/", "a", rolloutLockTTL)
	lk, err := locks.Lock(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Release()
	select {
	case <-lk.Lost():
		t.Fatal("Lost is closed while the lock is held")
	default:
	}
	if _, err := srv.Client().Revoke(ctx, lk.(*etcdRunLock).sess.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lk.Lost():
	case <-time.After(30 * time.Second):
		t.Fatal("Lost never closed after the lease was revoked")
	}
	other := newEtcdRunLocks(srv.Client(), "/lost/", "b", rolloutLockTTL)
	if live, err := other.Live(ctx, "r1"); err != nil || live {
		t.Errorf("Live after the lease went: %v, %v", live, err)
	}
	l2, err := other.Lock(ctx, "r1")
	if err != nil {
		t.Fatalf("another node's Lock after the lease went: %v", err)
	}
	l2.Release()
}

// TestRolloutStopsOnLostLock: a runner whose run lock's lease goes while
// a step runs on a real sshd host stops with ErrLockLost and writes
// nothing more: the record stays "running", for the node that takes the
// lock to resume.
func TestRolloutStopsOnLostLock(t *testing.T) {
	srv := etcdtest.Start(t)
	lab := sshtest.Start(t, []string{"app1"}, []string{"127.0.0.71"})
	gate := filepath.Join(t.TempDir(), "gate")
	t.Cleanup(func() { os.WriteFile(gate, nil, 0o644) })
	h := lab.Hosts[0]
	c := &upgrade.Config{KnownHosts: lab.KnownHosts, IdentityFile: lab.Identity, User: "root", Flavor: "el9",
		ConnectTimeout: upgrade.Duration{Duration: 5 * time.Second}, CommandTimeout: upgrade.Duration{Duration: 60 * time.Second},
		Commands: upgrade.Commands{Clean: "true", Update: "while [ ! -e " + gate + " ]; do sleep 0.1; done", Verify: "true", Restart: "true", Purge: "true"},
		Groups:   []upgrade.GroupConfig{{Name: "g1", Hosts: []upgrade.HostConfig{{Name: h.Name, Address: h.Address, Port: h.Port}}}}}
	inv, err := c.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := upgrade.NewPlan(inv, upgrade.PlanRequest{NEVRA: "app-2.0-1.el9.x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	db, err := kv.OpenEtcd(context.Background(), kv.EtcdOptions{Endpoints: []string{srv.Endpoint}, Prefix: "/lostrun/"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st := newKVRolloutStore(db, "etcd", newEtcdRunLocks(kv.Client(db), "/lostrun/", "a", rolloutLockTTL))
	updating := make(chan string, 1)
	m, err := upgrade.NewManager(t.TempDir(), upgrade.WithStore(st), upgrade.WithProgress(func(ev upgrade.Event) {
		if ev.Kind == upgrade.EventStepStart && strings.HasPrefix(ev.Phase, "update") {
			updating <- ev.Rollout
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	type result struct {
		r   *upgrade.Rollout
		err error
	}
	res := make(chan result, 1)
	go func() {
		r, err := m.Start(ctx, plan)
		res <- result{r, err}
	}()
	var id string
	select {
	case id = <-updating:
	case r := <-res:
		t.Fatalf("the rollout ended before its update: %v", r.err)
	case <-time.After(60 * time.Second):
		t.Fatal("the update never started")
	}
	cli := srv.Client()
	resp, err := cli.Get(ctx, RolloutLockPrefix("/lostrun/")+id)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("the run lock key: %v, %v", resp, err)
	}
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-res:
	case <-time.After(60 * time.Second):
		t.Fatal("the rollout went on after its lock was lost")
	}
	if !errors.Is(r.err, upgrade.ErrLockLost) {
		t.Errorf("Start after the lock was lost: %v, want ErrLockLost", r.err)
	}
	got, err := m.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != upgrade.StateRunning || got.Live {
		t.Errorf("record after the lost lock: state %s, live %v; want running, not live", got.State, got.Live)
	}
}
