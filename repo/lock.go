package repo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// rootLock is the ROOT-level flock that makes one process at a time the
// owner of the store. bbolt has its own flock, but its failure is a bare
// "timeout"; this one knows who holds it and says so. The kernel drops it
// when the holder dies, so a kill -9 never leaves a stale lock.
type rootLock struct {
	f *os.File
}

func lockHolder(f *os.File) string {
	b := make([]byte, 64)
	n, _ := f.ReadAt(b, 0)
	s := strings.TrimSpace(string(b[:n]))
	if _, err := strconv.Atoi(strings.Fields(s + " x")[0]); err != nil || s == "" {
		return "another process"
	}
	return "pid " + s
}

// acquireLock takes path exclusively. If it is held, notify is told once
// and acquireLock polls until wait has passed (0: fail at once) or ctx ends.
func acquireLock(ctx context.Context, path string, wait time.Duration, notify func(string)) (*rootLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock %q: %w", path, err)
	}
	deadline := time.Now().Add(wait)
	told := false
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %q: %w", path, err)
		}
		holder := lockHolder(f)
		if !time.Now().Before(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w: %s holds %q (a running `repoctl daemon` would have answered on its socket)", ErrLocked, holder, path)
		}
		if !told && notify != nil {
			notify(fmt.Sprintf("waiting for %s, which holds %q (up to %s)", holder, path, wait.Round(time.Second)))
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Record who we are for the next waiter; not needed for correctness.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &rootLock{f: f}, nil
}

func (l *rootLock) release() error {
	if l == nil || l.f == nil {
		return nil
	}
	l.f.Truncate(0)
	err := l.f.Close() // closing drops the flock
	l.f = nil
	return err
}

func currentUID() int { return os.Getuid() }
