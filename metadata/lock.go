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

func acquireLock(ctx context.Context, repoDir string, wait bool, p Progress) (*repoLock, error) {
	path := filepath.Join(repoDir, LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
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
