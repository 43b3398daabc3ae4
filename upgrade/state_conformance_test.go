package upgrade_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

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
			return holdFlock(t, st, filepath.Join(root, "rollouts.d"), id)
		},
	})
}

// holdFlock holds dir/ID.lock from another process, flock(1), until kill
// SIGKILLs it.
func holdFlock(t *testing.T, st upgrade.Locks, dir, id string) func() {
	t.Helper()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	// -o: the lock is flock(1)'s own, not sleep's; the group kill takes both.
	cmd := exec.Command("flock", "-o", "-x", filepath.Join(dir, id+".lock"), "sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("flock(1) is required (util-linux): %v", err)
	}
	done := false
	kill := func() {
		if done {
			return
		}
		done = true
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}
	t.Cleanup(kill)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if live, _ := st.Live(context.Background(), id); live {
			return kill
		}
		if time.Now().After(deadline) {
			t.Fatal("flock(1) never took the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
