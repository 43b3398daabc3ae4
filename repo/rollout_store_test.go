package repo

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/repoctl/repoctl/internal/etcdtest"
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
