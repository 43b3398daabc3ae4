package repo

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// stillWritten says why a drop-in that is about to be rejected may have
// been judged on bytes its writer has not finished, or "" if it may not:
//
//   - some process still has it open for writing, where the kernel can
//     tell (openForWriting), or it changed since the watcher saw it or
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
	if writing, _ := openForWriting(it.Spool); writing {
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

// countDropIn counts what waits in the drop-in directory dir and its
// subdirectories down to DropInDepth: files the watcher will take
// (incoming: regular files, ignored names aside), and directories below
// that depth, which it never looks into (skipped). Subdirectories that
// are drop-in directories of their own (others) are counted with those.
// Symbolic links are not followed.
func countDropIn(dir string, others map[string]bool) (incoming, skipped int) {
	var walk func(d string, depth int)
	walk = func(d string, depth int) {
		ents, err := os.ReadDir(d)
		if err != nil {
			return
		}
		for _, e := range ents {
			if IgnoredName(e.Name()) {
				continue
			}
			p := filepath.Join(d, e.Name())
			switch {
			case e.IsDir() && others[p]:
			case e.IsDir() && depth < DropInDepth:
				walk(p, depth+1)
			case e.IsDir():
				skipped++
			case e.Type().IsRegular():
				incoming++
			}
		}
	}
	walk(dir, 0)
	return incoming, skipped
}

// dropInSet is the set of the drop-in directories ds.
func dropInSet(ds []DropIn) map[string]bool {
	m := make(map[string]bool, len(ds))
	for _, d := range ds {
		m[filepath.Clean(d.Dir)] = true
	}
	return m
}
