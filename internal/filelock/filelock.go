// Package filelock is repoctl's one advisory file lock. Every writer that
// must be alone (the ROOT lock, a repository directory's repodata lock, a
// signing journal, a running rollout) takes it through here.
//
// The lock is flock(2): the kernel drops it when the holder's descriptor
// goes away, so a holder killed with SIGKILL never blocks anyone and there
// is no stale-lock cleanup to get wrong. The lock file's presence means
// nothing; only the flock does. A holder may write its pid into the file
// (RecordPID) so that a waiter can say whom it waits for; the pid is for
// messages only and never trusted.
//
// Locks on a path are github.com/gofrs/flock. A lock on a file that is
// already open (AcquireFile) is flock(2) on its descriptor, because gofrs
// only opens files by path itself (see AcquireFile).
package filelock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"time"

	"github.com/gofrs/flock"
	"golang.org/x/sys/unix"
)

// ErrHeld matches every *HeldError.
var ErrHeld = errors.New("lock is held by another process")

// HeldError says that another process holds the lock.
type HeldError struct {
	Path string
	// Holder names the holder for messages: "pid 123", or "another
	// process" when it recorded no pid.
	Holder string
	// Err is nil when the wait ran out, and ctx's error when the context
	// ended first.
	Err error
}

func (e *HeldError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("waiting for lock %q held by %s: %v", e.Path, e.Holder, e.Err)
	}
	return fmt.Sprintf("lock %q is held by %s", e.Path, e.Holder)
}

func (e *HeldError) Is(target error) bool { return target == ErrHeld }
func (e *HeldError) Unwrap() error        { return e.Err }

// Forever, given to Wait, waits until the context ends.
const Forever time.Duration = -1

type config struct {
	wait   time.Duration
	poll   time.Duration
	notify func(holder string)
	create bool
	perm   fs.FileMode
	pid    bool
}

// An Option changes how a lock is taken.
type Option func(*config)

// Wait is how long to wait for a held lock. The default, 0, fails at once;
// Forever waits until the context ends.
func Wait(d time.Duration) Option { return func(c *config) { c.wait = d } }

// Poll is how often a waiter tries again (default 100ms). flock(2) has no
// timeout and no context, so waiting is retrying with LOCK_NB.
func Poll(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.poll = d
		}
	}
}

// Notify is called once, with the holder ("pid 123"), when the lock is
// found held and the caller is going to wait. Default: nobody is told.
func Notify(fn func(holder string)) Option { return func(c *config) { c.notify = fn } }

// Create makes a missing lock file with mode perm. By default the file
// must exist: a journal that its owner removed is never brought back.
// AcquireFile ignores it.
func Create(perm fs.FileMode) Option { return func(c *config) { c.create, c.perm = true, perm } }

// RecordPID writes the holder's pid into the lock file once it is taken,
// and empties the file again on Close. Off by default: a journal's lock
// file holds the journal.
func RecordPID() Option { return func(c *config) { c.pid = true } }

func newConfig(opts []Option) config {
	c := config{poll: 100 * time.Millisecond, perm: 0o600}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// Lock is a held exclusive lock. Close releases it.
type Lock struct {
	path string
	fl   *flock.Flock // a lock taken by path
	// f is, for AcquireFile, the descriptor that holds the flock; for a
	// lock by path, the descriptor the pid was written through.
	f   *os.File
	pid bool
}

// Acquire takes path exclusively; the caller must be able to write the
// file. A held lock makes it wait as the options say, then fail with a
// *HeldError (errors.Is(err, ErrHeld)).
func Acquire(ctx context.Context, path string, opts ...Option) (*Lock, error) {
	c := newConfig(opts)
	// Read-write, as writers need: flock(2) works on a read-only
	// descriptor too, and then anyone who may read the file could take
	// the lock and stall its owner.
	flag := os.O_RDWR
	if c.create {
		flag |= os.O_CREATE
	}
	fl := flock.New(path, flock.SetFlag(flag), flock.SetPermissions(c.perm))
	if err := wait(ctx, path, c, fl.TryLock, func() string { return holderOf(path) }); err != nil {
		return nil, err
	}
	l := &Lock{path: path, fl: fl}
	if c.pid {
		l.recordPID()
	}
	return l, nil
}

// AcquireFile takes the already open file f exclusively; name names it in
// messages. It is for a lock file opened through an os.Root, where the
// open itself is what keeps a planted symbolic link from redirecting it
// outside the root. gofrs/flock cannot take such a file: flock.New takes
// a path and opens it with os.OpenFile (its options only set the open
// flags and the mode), which would follow the very links the os.Root
// refuses. So the flock goes on f's descriptor here, with the same
// waiting, holder and pid rules as Acquire.
//
// AcquireFile owns f: it closes f when it fails, and Close closes it.
func AcquireFile(ctx context.Context, f *os.File, name string, opts ...Option) (*Lock, error) {
	c := newConfig(opts)
	try := func() (bool, error) {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return false, nil
		}
		return err == nil, err
	}
	if err := wait(ctx, name, c, try, func() string { return readHolder(f) }); err != nil {
		f.Close()
		return nil, err
	}
	l := &Lock{path: name, f: f}
	if c.pid {
		l.pid = true
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt(pidLine(), 0)
		}
	}
	return l, nil
}

// wait tries until the lock is taken, the wait runs out or ctx ends.
func wait(ctx context.Context, path string, c config, try func() (bool, error), holder func() string) error {
	deadline := time.Now().Add(c.wait)
	told := false
	for {
		ok, err := try()
		if ok {
			return nil
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("locking %q: %w", path, err)
		}
		h := holder()
		if c.wait == 0 || (c.wait > 0 && !time.Now().Before(deadline)) {
			return &HeldError{Path: path, Holder: h}
		}
		if !told && c.notify != nil {
			c.notify(h)
			told = true
		}
		t := time.NewTimer(c.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return &HeldError{Path: path, Holder: h, Err: ctx.Err()}
		case <-t.C:
		}
	}
}

// recordPID writes our pid through a second descriptor, since gofrs keeps
// its own to itself; flock belongs to the inode, so either one serves.
// Only if that descriptor is the locked inode: the path may have been
// replaced since the lock was taken.
func (l *Lock) recordPID() {
	f, err := os.OpenFile(l.path, os.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return
	}
	a, err1 := f.Stat()
	b, err2 := l.fl.Stat()
	if err1 != nil || err2 != nil || !os.SameFile(a, b) || f.Truncate(0) != nil {
		f.Close()
		return
	}
	_, _ = f.WriteAt(pidLine(), 0)
	l.f, l.pid = f, true
}

// Stat describes the locked file (the open descriptor, not the path).
func (l *Lock) Stat() (fs.FileInfo, error) {
	if l.fl != nil {
		return l.fl.Stat()
	}
	return l.f.Stat()
}

// Close releases the lock. The file stays: removing it would let two
// processes lock two different inodes of the same name.
func (l *Lock) Close() error {
	if l == nil {
		return nil
	}
	var err error
	if l.f != nil {
		if l.pid {
			_ = l.f.Truncate(0)
		}
		err = l.f.Close()
		l.f = nil
	}
	if l.fl != nil {
		if uerr := l.fl.Unlock(); err == nil {
			err = uerr
		}
		l.fl = nil
	}
	return err
}

// Held says whether a process holds path's lock now, without keeping it.
// A missing file is not held.
func Held(path string) (bool, error) {
	fl := flock.New(path, flock.SetFlag(os.O_RDONLY))
	ok, err := fl.TryRLock()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("probing lock %q: %w", path, err)
	}
	if ok {
		return false, fl.Unlock()
	}
	return true, nil
}

func pidLine() []byte { return []byte(strconv.Itoa(os.Getpid()) + "\n") }

func holderOf(path string) string {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return "another process"
	}
	defer f.Close()
	return readHolder(f)
}

// readHolder reads the pid a holder recorded. Anything else in the file
// (nothing yet, a journal, garbage) names nobody.
func readHolder(f *os.File) string {
	buf := make([]byte, 64)
	n, _ := f.ReadAt(buf, 0)
	line, _, _ := bytes.Cut(buf[:n], []byte("\n"))
	s := string(bytes.TrimSpace(line))
	if pid, err := strconv.Atoi(s); err != nil || pid <= 0 {
		return "another process"
	}
	return "pid " + s
}
