package upgrade

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/repoctl/repoctl/internal/rootowner"
)

// Rollout state is written only by the owner of its root: root creating
// rollouts.db or a run lock there would lock the service user out of its
// own rollouts. Reading needs no check and creates nothing.
func TestRolloutStateNeedsOwner(t *testing.T) {
	root := t.TempDir()
	// 65534 (nobody) owns it; the test runs as root, as CI does.
	if err := os.Chown(root, 65534, 65534); err != nil {
		t.Fatalf("chown (this test needs root): %v", err)
	}
	st := records{st: FileStore(root)}
	ctx := context.Background()
	if err := st.create(ctx, &Rollout{ID: "r1", State: StateRunning}); !errors.Is(err, rootowner.ErrNotOwner) {
		t.Errorf("create as another user: %v, want ErrNotOwner", err)
	}
	if l, err := st.st.Lock(ctx, "r1"); !errors.Is(err, rootowner.ErrNotOwner) {
		if l != nil {
			l.Release()
		}
		t.Errorf("lock as another user: %v, want ErrNotOwner", err)
	}
	if rs, err := st.list(ctx); err != nil || len(rs) != 0 {
		t.Errorf("list as another user: %v %v, want nothing and no error", rs, err)
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("left %v in the root", ents)
	}
	// Its owner writes.
	if err := os.Chown(root, os.Geteuid(), os.Getegid()); err != nil {
		t.Fatal(err)
	}
	if err := st.create(ctx, &Rollout{ID: "r1", State: StateRunning}); err != nil {
		t.Errorf("create as the owner: %v", err)
	}
}
