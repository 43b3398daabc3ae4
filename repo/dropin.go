package repo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/repoctl/repoctl/repo/dropwatch"
)

// DropInDepth is how many levels of subdirectories below a drop-in
// directory the daemon watches; Status counts deeper directories as
// Skipped.
const DropInDepth = dropwatch.Depth

// dropSeen is what the watcher saw of a drop-in it handed over.
type dropSeen = dropwatch.Seen

// dropBatch is what the watcher saw of the batch a drop-in came with, as
// AddOptions carries it to the pipeline (dropBatchFrom): kept apart from
// dropwatch.Batch so the pipeline and its tests name the fields they use.
type dropBatch struct {
	settle time.Duration
	files  map[string]dropSeen // by path as handed over
	// more is how many files were ready but left for the next batches:
	// while more wait, the pipeline may leave the publish to a later
	// batch (publishes coalesced; see Repo.mayDefer).
	more int
}

// dropBatchFrom is what the watcher saw of the batch ctx belongs to; nil
// outside a watcher's batch.
func dropBatchFrom(ctx context.Context) *dropBatch {
	b := dropwatch.BatchFrom(ctx)
	if b == nil {
		return nil
	}
	return &dropBatch{settle: b.Settle, files: b.Files, more: b.More}
}

// stillWritten says why a drop-in that is about to be rejected may have
// been judged on bytes its writer has not finished, or "" if it may not:
//
//   - some process still has it open for writing, where the kernel can
//     tell (dropwatch.OpenForWriting), or it changed since the watcher saw it or
//     since it was renamed into the spool (a writer that still has it open
//     writes on: a rename does not stop it, which is how a file "grew to
//     full size inside rejected/");
//   - it was written within the settle interval and not renamed into
//     place: a writer that closes and reopens (`cat part >> file`) sent
//     its close-write too early.
//
// Only files a watcher handed over are ever deferred (drop has them); a
// future mtime is no sign of a writer and never defers, so a junk file
// cannot come back forever.
func (r *Repo) stillWritten(it *ingestItem, drop *dropBatch) string {
	if it.seen == nil || it.recv == nil || drop == nil {
		return ""
	}
	fi, err := os.Lstat(it.Spool)
	if err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	if writing, _ := dropwatch.OpenForWriting(it.Spool); writing {
		return "still open for writing by another process"
	}
	switch {
	case fi.Size() != it.seen.Size || !fi.ModTime().Equal(it.seen.ModTime):
		return fmt.Sprintf("still being written: %d bytes when the watcher saw it, %d now", it.seen.Size, fi.Size())
	case fi.Size() != it.recv.Size() || !fi.ModTime().Equal(it.recv.ModTime()):
		return fmt.Sprintf("still being written: %d bytes when it was taken, %d now", it.recv.Size(), fi.Size())
	}
	if it.seen.Renamed {
		return ""
	}
	if age := time.Since(fi.ModTime()); age >= 0 && age < drop.settle {
		return fmt.Sprintf("written %v ago, within the settle interval %v", age.Round(time.Millisecond), drop.settle)
	}
	return ""
}

// dropInOf is the configured drop-in directory that path (a file the
// watcher found there or in a subdirectory) belongs to: the nearest one
// above it, as the watcher leaves a nested drop-in directory to its own
// configuration.
func dropInOf(byDir map[string]DropIn, path string) (string, bool) {
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		if _, ok := byDir[d]; ok {
			return d, true
		}
		if d == "/" || d == "." || d == filepath.Dir(d) {
			return "", false
		}
	}
}

// dropInSet is the set of the drop-in directories ds.
func dropInSet(ds []DropIn) map[string]bool {
	m := make(map[string]bool, len(ds))
	for _, d := range ds {
		m[filepath.Clean(d.Dir)] = true
	}
	return m
}
