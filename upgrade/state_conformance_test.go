package upgrade_test

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/repoctl/repoctl/upgrade"
	"github.com/repoctl/repoctl/upgrade/statetest"
)

// TestFileStoreConformance runs the Store suite on the default store:
// ROOT/rollouts.db and flock files in ROOT/rollouts.d.
func TestFileStoreConformance(t *testing.T) {
	var mu sync.Mutex
	roots := map[upgrade.Store]string{}
	open := func(root string) upgrade.Store {
		st := upgrade.FileStore(root)
		mu.Lock()
		roots[st] = root
		mu.Unlock()
		return st
	}
	statetest.Run(t, statetest.Impl{
		Open: func(t *testing.T) (upgrade.Store, func() upgrade.Store) {
			root := t.TempDir()
			return open(root), func() upgrade.Store { return open(root) }
		},
		Reopen: func(t *testing.T, st upgrade.Store) upgrade.Store {
			mu.Lock()
			root := roots[st]
			mu.Unlock()
			return open(root)
		},
		Hold: func(t *testing.T, st upgrade.Store, id string) func() {
			mu.Lock()
			root := roots[st]
			mu.Unlock()
			return statetest.HoldFlock(t, st, filepath.Join(root, "rollouts.d"), id)
		},
	})
}
