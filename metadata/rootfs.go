package metadata

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"
)

// File operations inside a repository directory go through an os.Root
// opened on it, with slash-separated names relative to it: a symbolic
// link planted anywhere below the directory cannot redirect them outside
// (see PublishRoot). These helpers are the path-based ones they replace.

// rootPath names a file inside root in messages.
func rootPath(root *os.Root, name string) string {
	return filepath.Join(root.Name(), filepath.FromSlash(name))
}

// regularExists says whether name is a regular file, not a symbolic link.
func regularExists(root *os.Root, name string) bool {
	fi, err := root.Lstat(name)
	return err == nil && fi.Mode().IsRegular()
}

// readDirRoot lists a directory sorted by name, as os.ReadDir does.
func readDirRoot(root *os.Root, name string) ([]os.DirEntry, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	ents, err := f.ReadDir(-1)
	f.Close()
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	return ents, err
}

// syncDirRoot fsyncs a directory inside root.
func syncDirRoot(root *os.Root, name string) error {
	f, err := root.Open(name)
	if err != nil {
		return err
	}
	err = syncDirFile(f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("syncing %q: %w", f.Name(), cerr)
	}
	return err
}

// syncDirFile fsyncs an open directory, which makes creations, renames
// and removals of its entries durable.
func syncDirFile(f *os.File) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %q: %w", f.Name(), err)
	}
	return nil
}

// writeFileRoot creates name, which must not exist yet (O_EXCL: a
// symbolic link in its place is never followed), writes frames to it, and
// fsyncs it if sync is set. On failure the file is removed.
func writeFileRoot(root *os.Root, name string, frames [][]byte, sync bool) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("writing %q: %w", rootPath(root, name), err)
	}
	err = writeFrames(f, frames)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		root.Remove(name)
		return fmt.Errorf("writing %q: %w", rootPath(root, name), err)
	}
	return nil
}

// replaceFileRoot replaces name with frames through name.tmp, fsynced
// and renamed over name. A leftover name.tmp (a crashed writer's, or a
// planted symbolic link) is removed first, not written through.
func replaceFileRoot(root *os.Root, name string, frames [][]byte) error {
	tmp := name + ".tmp"
	if err := root.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := writeFileRoot(root, tmp, frames, true); err != nil {
		return err
	}
	if err := root.Rename(tmp, name); err != nil {
		root.Remove(tmp)
		return err
	}
	return nil
}

// writeFrames writes frames to f in order, up to 1024 at a time with
// writev: a document is thousands of small frames, one write each would
// be as many system calls.
func writeFrames(f *os.File, frames [][]byte) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	for len(frames) > 0 {
		batch := frames[:min(len(frames), 1024)]
		frames = frames[len(batch):]
		iov := make([][]byte, 0, len(batch))
		for _, b := range batch {
			if len(b) > 0 {
				iov = append(iov, b)
			}
		}
		for len(iov) > 0 {
			var n int
			var werr error
			if err := rc.Write(func(fd uintptr) bool {
				n, werr = unix.Writev(int(fd), iov)
				return werr != unix.EAGAIN
			}); err != nil {
				return err
			}
			if werr == unix.EINTR {
				continue
			}
			if werr != nil {
				return werr
			}
			if n == 0 {
				return io.ErrShortWrite
			}
			// Drop what was written; a partial frame stays, trimmed.
			for n > 0 && len(iov) > 0 {
				if n >= len(iov[0]) {
					n -= len(iov[0])
					iov = iov[1:]
				} else {
					iov[0] = iov[0][n:]
					n = 0
				}
			}
		}
	}
	return nil
}
