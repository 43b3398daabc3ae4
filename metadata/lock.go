package metadata

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// LockFileName is the writer lock beside repodata/. It is taken with
// flock(2), so the kernel drops it when the holding process dies: a stale
// file never blocks anyone. The file holds the holder's pid for messages
// only; its presence means nothing.
const LockFileName = ".repodata.lock"

type repoLock struct {
	f *os.File
}

// lockPollInterval is how often a waiting writer retries. flock has no
// timeout or context, so we poll with LOCK_NB to honour ctx.
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
	noticed := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %q: %w", path, err)
		}
		holder := lockHolder(f)
		if !wait {
			f.Close()
			return nil, fmt.Errorf("%w: %q is held by %s", ErrLocked, path, holder)
		}
		if !noticed {
			p.Notice(fmt.Sprintf("waiting for lock %s held by %s", path, holder))
			noticed = true
		}
		t := time.NewTimer(lockPollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("waiting for lock %q held by %s: %w", path, holder, ctx.Err())
		case <-t.C:
		}
	}
	// Record who we are for the next waiter's message.
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt(pid, 0)
	}
	return &repoLock{f: f}, nil
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

func lockHolder(f *os.File) string {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	s := string(bytes.TrimSpace(buf[:n]))
	if _, err := strconv.Atoi(s); err != nil || s == "" {
		return "another process"
	}
	return "pid " + s
}

func (l *repoLock) release() error {
	if l == nil || l.f == nil {
		return nil
	}
	// Closing the descriptor releases the flock. The file stays: removing
	// it would let two writers lock two different inodes.
	err := l.f.Close()
	l.f = nil
	return err
}
