package metadata

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/repoctl/repoctl/internal/filelock"
)

// LockFileName is the writer lock beside repodata/. It is taken with
// flock(2), so the kernel drops it when the holding process dies: a stale
// file never blocks anyone. The file holds the holder's pid for messages
// only; its presence means nothing.
const LockFileName = ".repodata.lock"

type repoLock struct {
	l *filelock.Lock
}

// lockPollInterval is how often a waiting writer retries.
var lockPollInterval = 100 * time.Millisecond

// acquireLock takes the lock of the repository directory repoDir (tests
// use it; the writers, which already hold a root, use acquireLockRoot).
func acquireLock(ctx context.Context, repoDir string, wait bool, p Progress) (*repoLock, error) {
	root, err := os.OpenRoot(repoDir)
	if err != nil {
		return nil, fmt.Errorf("opening lock %q: %w", filepath.Join(repoDir, LockFileName), err)
	}
	// The lock lives in the open file, not in the root.
	defer root.Close()
	return acquireLockRoot(ctx, root, wait, p)
}

// acquireLockRoot takes the lock of the repository directory root. The
// lock file is opened through root, and must be a regular file, not a
// symbolic link: the holder truncates it and writes its pid there.
func acquireLockRoot(ctx context.Context, root *os.Root, wait bool, p Progress) (*repoLock, error) {
	path := rootPath(root, LockFileName)
	f, err := root.OpenFile(LockFileName, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock %q: %w", path, err)
	}
	if err := checkLockFile(root, f); err != nil {
		f.Close()
		return nil, fmt.Errorf("opening lock %q: %w", path, err)
	}
	o := []filelock.Option{filelock.RecordPID(), filelock.Poll(lockPollInterval),
		filelock.Notify(func(holder string) { p.Notice(fmt.Sprintf("waiting for lock %s held by %s", path, holder)) })}
	if wait {
		o = append(o, filelock.Wait(filelock.Forever))
	}
	// The file was opened through root, so the lock goes on its
	// descriptor: a lock by path (gofrs/flock) would open the name again
	// and follow whatever link was planted there since.
	l, err := filelock.AcquireFile(ctx, f, path, o...)
	var held *filelock.HeldError
	switch {
	case errors.As(err, &held) && held.Err != nil:
		return nil, fmt.Errorf("waiting for lock %q held by %s: %w", path, held.Holder, held.Err)
	case held != nil:
		return nil, fmt.Errorf("%w: %q is held by %s", ErrLocked, path, held.Holder)
	case err != nil:
		return nil, err
	}
	return &repoLock{l: l}, nil
}

// checkLockFile refuses a lock that is not a regular file of its own
// name: os.Root follows a symbolic link that stays inside the root, and
// the lock file is truncated by whoever holds it.
func checkLockFile(root *os.Root, f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	lfi, err := root.Lstat(LockFileName)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || !os.SameFile(fi, lfi) {
		return errors.New("not a regular file")
	}
	return nil
}

func (l *repoLock) release() error {
	if l == nil || l.l == nil {
		return nil
	}
	// The file stays: removing it would let two writers lock two
	// different inodes.
	err := l.l.Close()
	l.l = nil
	return err
}
