package repo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/repoctl/repoctl/internal/filelock"
)

// rootLock is the ROOT-level flock that makes one process at a time the
// owner of the store. bbolt has its own flock, but its failure is a bare
// "timeout"; this one knows who holds it and says so. The kernel drops it
// when the holder dies, so a kill -9 never leaves a stale lock.
type rootLock struct {
	l *filelock.Lock
}

// acquireLock takes path exclusively. If it is held, notify is told once
// and acquireLock polls until wait has passed (0 or less: fail at once) or
// ctx ends.
func acquireLock(ctx context.Context, path string, wait time.Duration, notify func(string)) (*rootLock, error) {
	wait = max(wait, 0)
	l, err := filelock.Acquire(ctx, path,
		filelock.Create(0o644), filelock.RecordPID(),
		filelock.Wait(wait), filelock.Poll(50*time.Millisecond),
		filelock.Notify(func(holder string) {
			if notify != nil {
				notify(fmt.Sprintf("waiting for %s, which holds %q (up to %s)", holder, path, wait.Round(time.Second)))
			}
		}))
	var held *filelock.HeldError
	switch {
	case errors.As(err, &held) && held.Err != nil:
		return nil, held.Err
	case held != nil:
		return nil, fmt.Errorf("%w: %s holds %q (a running `repoctl daemon` would have answered on its socket)", ErrLocked, held.Holder, path)
	case err != nil:
		return nil, err // already names the lock file
	}
	return &rootLock{l: l}, nil
}

func (l *rootLock) release() error {
	if l == nil || l.l == nil {
		return nil
	}
	err := l.l.Close()
	l.l = nil
	return err
}

func currentUID() int { return os.Getuid() }
