package store_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/repoctl/repoctl/repo/store"
)

// TestBoltHeld: a bbolt file another handle holds fails to open with
// ErrHeld once the timeout passes (repo turns it into ErrLocked, naming
// a program outside repoctl), not with bbolt's own timeout error.
func TestBoltHeld(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.db")
	db, err := store.OpenBolt(p, time.Second)
	must(t, err)
	defer db.Close()
	second, err := store.OpenBolt(p, 50*time.Millisecond)
	if err == nil {
		second.Close()
		t.Fatal("a held file opened twice")
	}
	if !errors.Is(err, store.ErrHeld) {
		t.Fatalf("got %v, want ErrHeld", err)
	}
	must(t, db.Close())
	again, err := store.OpenBolt(p, time.Second)
	must(t, err)
	must(t, again.Close())
}
