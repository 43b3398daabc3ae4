package repo

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/filelock"
)

// A CLI that is not ROOT's owner waits for the socket while some process
// holds the ROOT lock (a daemon starting up: it locks before it listens),
// and refuses at once when nobody does.
func TestConnectNotOwner(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	lock, err := filelock.Acquire(ctx, filepath.Join(root, "repoctl.lock"), filelock.Create(0o644))
	if err != nil {
		t.Fatal(err)
	}
	// 65534 (nobody) owns ROOT; the test runs as root, as CI does.
	if err := os.Chown(root, 65534, 65534); err != nil {
		t.Fatalf("chown (this test needs root): %v", err)
	}
	var notes []string
	notify := WithNotify(func(m string) { notes = append(notes, m) })
	if _, _, err := Connect(ctx, root, WithLockWait(300*time.Millisecond), notify); !errors.Is(err, ErrNotOwner) {
		t.Errorf("with the lock held: %v, want ErrNotOwner", err)
	}
	if len(notes) != 1 {
		t.Errorf("with the lock held: notices %q, want one saying it waits", notes)
	}
	if err := lock.Close(); err != nil {
		t.Fatal(err)
	}
	notes = nil
	if _, _, err := Connect(ctx, root, WithLockWait(time.Hour), notify); !errors.Is(err, ErrNotOwner) {
		t.Errorf("without a holder: %v, want ErrNotOwner", err)
	}
	if len(notes) != 0 {
		t.Errorf("without a holder: notices %q, want none: nothing to wait for", notes)
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		t.Errorf("ROOT holds %v, want only the lock file", ents)
	}
}
