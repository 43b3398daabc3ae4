package repo

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// TestPublishStateSameRepodata: the daemon's publishes through each
// directory's PublishState write exactly what a stateless publish of the
// same packages writes (the publisher before PublishState): after a bulk
// add, single adds, removes, re-adds of removed packages, and after a
// reopen (empty states). Checked by a stateless dry run against what is
// served: any byte of difference in primary, filelists or other (or a
// different file name) reads as a change.
func TestPublishStateSameRepodata(t *testing.T) {
	ctx := context.Background()
	root, _ := newTestRoot(t, "")
	src := t.TempDir()
	const n = 2000
	paths, err := testrpm.Corpus(ctx, src, n+40)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, root, WithKeyAlgo("ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { r.Close() }()
	const dir = "main/staging/el/9/x86_64"
	nevras := map[string]string{} // path → NEVRA
	add := func(ps ...string) {
		t.Helper()
		res, err := r.Add(ctx, ps, AddOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range res {
			if x.Action != ActionAdded {
				t.Fatalf("adding %s: %s %s", x.Path, x.Action, x.Reason)
			}
			nevras[x.Path] = x.NEVRA
		}
	}
	sameAsStateless := func(what string, want int) {
		t.Helper()
		r.noPubState = true
		defer func() { r.noPubState = false }()
		entries := r.indexEntries(dir)
		if len(entries) != want {
			t.Fatalf("%s: %d packages in the index, want %d", what, len(entries), want)
		}
		changed, err := r.wouldChange(ctx, dir, entries)
		if err != nil {
			t.Fatal(err)
		}
		if changed {
			t.Fatalf("%s: a stateless publish would write different repodata", what)
		}
		pk, err := repodataPackages(filepath.Join(root, "repo", dir))
		if err != nil || len(pk) != want {
			t.Fatalf("%s: served repodata lists %d packages (%v), want %d", what, len(pk), err, want)
		}
	}
	add(paths[:n]...)
	sameAsStateless("bulk add", n)
	for i := range 10 {
		add(paths[n+i])
	}
	sameAsStateless("single adds", n+10)
	// The index keeps its entries by pointer between publishes: the
	// state matches them so, not by href.
	if got := r.publishState(dir).Stats().ByPointer; got < 9*n {
		t.Fatalf("%d entries matched by pointer over 10 single adds into %d", got, n)
	}
	removed := []string{paths[3], paths[700], paths[701], paths[1999], paths[n+2]}
	for _, p := range removed {
		if _, err := r.Remove(ctx, nevras[p], RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	sameAsStateless("removes", n+5)
	add(removed[1], removed[3]) // the same files again
	add(paths[n+10 : n+30]...)
	sameAsStateless("re-adds and a batch", n+27)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if r, err = Open(ctx, root); err != nil {
		t.Fatal(err)
	}
	add(paths[n+30])
	if _, err := r.Remove(ctx, nevras[paths[5]], RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	sameAsStateless("after a reopen", n+27)
	add(paths[n+31])
	sameAsStateless("last add", n+28)
}
