// Package fsutil holds the few durability primitives that repo, sign and
// metadata all need: fsync of a file or a directory, and a write that
// replaces a file atomically. It exists so that the rules for "durable"
// are written once.
//
// It is not a general file library and does no locking; callers decide
// what must be durable and when (batching fsyncs is their job).
package fsutil

import (
	"fmt"
	"os"
	"path/filepath"
)

// SyncDir fsyncs a directory, which makes creations, renames and removals
// of its entries durable.
func SyncDir(dir string) error {
	return syncPath(dir)
}

// SyncFile fsyncs a file's contents and metadata.
func SyncFile(path string) error {
	return syncPath(path)
}

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing %q: %w", p, err)
	}
	return nil
}

// WriteFileAtomic replaces path with data: a temp file in the same
// directory, written, chmod'ed, fsynced, renamed over path, and the
// directory fsynced. A reader sees the old content or the new, never a
// mix, and a crash leaves at most a ".tmp-" file behind.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("writing %q: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("writing %q: %w", path, err)
	}
	return SyncDir(dir)
}
