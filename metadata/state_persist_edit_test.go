package metadata

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestPublishStateEditedLayout: edits of a saved state that leave the
// rebuilt documents, and so repomd.xml's checksums, as they are, are
// refused with ErrStaleState all the same: pkgids swapped between two
// packages, and fragment lengths (32-bit) that add up to the block's
// only modulo 2^32 (one package far past its block, the next wrapping
// round), before anything slices the block by them (which would panic).
func TestPublishStateEditedLayout(t *testing.T) {
	ctx := context.Background()
	es := make([]Entry, 50)
	for i := range es {
		es[i] = fakeEntry(i, "a")
	}
	dir := t.TempDir()
	cache, err := NewDirCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	state := NewPublishState(t.TempDir())
	defer state.Close()
	if _, err := Publish(ctx, dir, es, WithState(state), WithBlockCache(cache), WithRevision("1")); err != nil {
		t.Fatal(err)
	}
	repomd, err := os.ReadFile(filepath.Join(dir, RepodataDir, "repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	var good bytes.Buffer
	if err := state.Save(&good); err != nil {
		t.Fatal(err)
	}
	if s, err := LoadPublishState(ctx, t.TempDir(), &good, repomd, cache, nil); err != nil {
		t.Fatalf("the saved state: %v", err)
	} else {
		s.Close()
	}
	a, b := &state.pkgs[state.order[0]], &state.pkgs[state.order[1]]
	if state.blocks[0].hi < 2 {
		t.Fatal("setup: the first two packages are not in one block")
	}
	refused := func(what string) {
		t.Helper()
		var edited bytes.Buffer
		if err := state.Save(&edited); err != nil {
			t.Fatal(err)
		}
		if s, err := LoadPublishState(ctx, t.TempDir(), &edited, repomd, cache, nil); !errors.Is(err, ErrStaleState) {
			if s != nil {
				s.Close()
			}
			t.Errorf("%s: %v, want ErrStaleState", what, err)
		}
	}
	// Two packages' pkgids swapped: every block, and so every checksum,
	// is as published, but the state would take one package's fragments
	// for the other's.
	a.pkgid, b.pkgid = b.pkgid, a.pkgid
	refused("pkgids swapped")
	a.pkgid, b.pkgid = b.pkgid, a.pkgid
	a.lens[0] += 1 << 31
	b.lens[0] += 1 << 31 // the sum wraps round to the block's length
	refused("lengths that wrap")
}
