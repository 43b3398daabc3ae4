package repo

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// dialTimeout bounds how long Connect waits for a daemon that is there but
// slow to accept; a missing daemon fails at once (ENOENT/ECONNREFUSED).
const dialTimeout = 3 * time.Second

// Connect returns the Service the CLI should use for root: the running
// daemon's socket client when one answers, else the repository opened
// locally under the ROOT lock. The returned func releases it.
//
// The daemon takes the lock before it opens its socket, so between the two
// a CLI can find neither. Connect then keeps trying both, for up to the
// lock wait (WithLockWait, default 30s), and never reports "locked" just
// because a daemon is starting. The same loop waits out another CLI that
// holds the lock for a moment.
func Connect(ctx context.Context, root string, opts ...Option) (Service, func() error, error) {
	o := options{lockWait: 30 * time.Second}
	for _, f := range opts {
		if err := f(&o); err != nil {
			return nil, nil, err
		}
	}
	cfg, err := LoadConfig(root, o.configFile)
	if err != nil {
		return nil, nil, err
	}
	deadline := time.Now().Add(o.lockWait)
	told := false
	for {
		if c, err := Dial(ctx, cfg.Paths.Socket, dialTimeout); err == nil {
			c.progress = o.progress
			return c, c.Close, nil
		}
		last := !time.Now().Before(deadline)
		// The last attempt's ErrLocked names the holder.
		r, err := Open(ctx, root, append(append([]Option(nil), opts...), WithLockWait(0))...)
		if err == nil {
			return r, r.Close, nil
		}
		// Not ROOT's owner: only the daemon may do the work. While a
		// process holds the ROOT lock, that may be the daemon starting
		// up, so its socket is waited for like the lock.
		notOwner := errors.Is(err, ErrNotOwner)
		if notOwner && (last || !lockHeld(filepath.Join(cfg.Root, "repoctl.lock"))) {
			return nil, nil, fmt.Errorf("no daemon answers on %q: %w", cfg.Paths.Socket, err)
		}
		if !notOwner && (!errors.Is(err, ErrLocked) || last) {
			return nil, nil, err
		}
		if !told && o.notify != nil {
			o.notify("another repoctl process holds " + cfg.Root + "; waiting for it or for the daemon's socket")
			told = true
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
