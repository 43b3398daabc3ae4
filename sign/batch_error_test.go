package sign

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// TestSignBatchErrorStopsLaterBatches: when a batch fails (here: its
// journal cannot be written), no later batch may write anything, and none
// of their files may be reported as done.
func TestSignBatchErrorStopsLaterBatches(t *testing.T) {
	k := testKey(t, "ed25519")
	dir := t.TempDir()
	paths, err := testrpm.Corpus(context.Background(), dir, 12)
	if err != nil {
		t.Fatal(err)
	}
	// Signed once by another key, they have reserved space: re-signing
	// patches in place, which needs a journal.
	signAll(t, testKey(t, "rsa4096"), paths)
	before := map[string][]byte{}
	for _, p := range paths {
		before[p] = readAll(t, p)
	}
	// A dangling symlink as the journal directory: Recover finds nothing
	// there, but the first batch with an in-place patch cannot write its
	// journal.
	jdir := filepath.Join(t.TempDir(), "journals")
	if err := os.Symlink(filepath.Join(t.TempDir(), "gone"), jdir); err != nil {
		t.Fatal(err)
	}
	prog := &countProgress{}
	s, err := NewSigner(k, WithBatchSize(2), WithJournalDir(jdir), WithProgress(prog))
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.SignFiles(context.Background(), paths)
	if err == nil {
		t.Fatalf("no error although no journal can be written: %+v", res[:2])
	}
	if len(res) != len(paths) {
		t.Fatalf("%d results for %d paths", len(res), len(paths))
	}
	// Batches before the failing one are signed and reported; from the
	// failing batch on nothing is changed or reported as done.
	failed := -1
	for i, r := range res {
		if r.Action == "" {
			failed = i - i%2
			break
		}
	}
	if failed < 0 {
		t.Fatalf("every file reported done despite %v", err)
	}
	if len(prog.done) != failed {
		t.Fatalf("progress reported %d files, want the %d before the failing batch", len(prog.done), failed)
	}
	for i, r := range res {
		unchanged := bytes.Equal(before[r.Path], readAll(t, r.Path))
		if i < failed && (r.Err != nil || r.Action != ActionReplaced || unchanged) {
			t.Fatalf("%s (batch before the failure): %+v", r.Path, r)
		}
		if i >= failed && (r.Action != "" || !unchanged) {
			t.Fatalf("%s (batch %d, failure in batch %d) was touched: %+v", r.Path, i/2, failed/2, r)
		}
	}
	left, err := filepath.Glob(filepath.Join(dir, ".*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}
