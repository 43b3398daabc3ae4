package repo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// BatchFunc takes a batch of complete files, in the order they arrived. The
// watcher calls it from one goroutine, never concurrently, so one batch
// means one publish per affected repository. A file that still exists in a
// drop-in directory when BatchFunc returns is retried later with back-off;
// the pipeline is expected to move every file it has decided about.
type BatchFunc func(ctx context.Context, paths []string)

// DropWatcher turns filesystem events in the drop-in directories into
// batches of complete files.
//
// fsnotify v1.10 does not expose inotify's IN_CLOSE_WRITE, so "complete"
// means one of:
//   - a rename inside the directory from a partial name (fsnotify reports
//     Rename of the old name, then Create of the new one): the uploader's
//     protocol says the file is done, so it is taken at once;
//   - an mtime older than the settle interval and a non-empty file: nothing
//     has written to it for that long (cp -p, curl -R, mv from another file
//     system and rsync all set the mtime last);
//   - otherwise: no event for the file during the settle interval and the
//     same size and mtime at both ends of it.
//
// Complete files are gathered until events pause for a few milliseconds
// (WithGather), so a scripted burst becomes one batch while a single file
// goes through at once.
type DropWatcher struct {
	dirs   []string
	handle BatchFunc
	o      watchOptions
}

type watchOptions struct {
	settle     time.Duration
	gather     time.Duration
	maxDelay   time.Duration
	maxBatch   int
	emptyGrace time.Duration
	retryMin   time.Duration
	retryMax   time.Duration
	log        *slog.Logger
}

// WatchOption configures a DropWatcher.
type WatchOption func(*watchOptions) error

// WithSettle sets how long a file must stay quiet (no events, same size and
// mtime) before it is taken. Default 40ms.
func WithSettle(d time.Duration) WatchOption {
	return func(o *watchOptions) error {
		if d <= 0 {
			return fmt.Errorf("repo: settle interval must be positive, not %v", d)
		}
		o.settle = d
		return nil
	}
}

// WithGather sets how long events must pause before complete files are
// handed over, so that a burst of renames is one batch. Default 10ms.
func WithGather(d time.Duration) WatchOption {
	return func(o *watchOptions) error {
		if d < 0 {
			return fmt.Errorf("repo: gather interval must not be negative, not %v", d)
		}
		o.gather = d
		return nil
	}
}

// WithMaxDelay bounds how long a complete file waits for a burst around it
// to finish before its batch is handed over anyway. Default 250ms.
func WithMaxDelay(d time.Duration) WatchOption {
	return func(o *watchOptions) error {
		if d <= 0 {
			return fmt.Errorf("repo: max delay must be positive, not %v", d)
		}
		o.maxDelay = d
		return nil
	}
}

// WithMaxBatch caps the number of files per batch. Default 1000.
func WithMaxBatch(n int) WatchOption {
	return func(o *watchOptions) error {
		if n < 1 {
			return fmt.Errorf("repo: max batch must be at least 1, not %d", n)
		}
		o.maxBatch = n
		return nil
	}
}

// WithEmptyGrace sets how long an empty file is left alone, since writers
// such as cp create the file before they write it. Default 5s; after that
// the pipeline gets it (and rejects it).
func WithEmptyGrace(d time.Duration) WatchOption {
	return func(o *watchOptions) error {
		if d < 0 {
			return fmt.Errorf("repo: empty grace must not be negative, not %v", d)
		}
		o.emptyGrace = d
		return nil
	}
}

// WithRetry sets the back-off for files the pipeline left in place (a
// transient failure such as a full disk). Default 1s doubling to 1m.
func WithRetry(min, max time.Duration) WatchOption {
	return func(o *watchOptions) error {
		if min <= 0 || max < min {
			return fmt.Errorf("repo: bad retry bounds %v..%v", min, max)
		}
		o.retryMin, o.retryMax = min, max
		return nil
	}
}

// WithWatchLogger sets the logger; default discards.
func WithWatchLogger(l *slog.Logger) WatchOption {
	return func(o *watchOptions) error {
		if l == nil {
			return errors.New("repo: nil logger")
		}
		o.log = l
		return nil
	}
}

// NewDropWatcher watches dirs (created if missing, not recursive) and hands
// complete files to handle.
func NewDropWatcher(dirs []string, handle BatchFunc, opts ...WatchOption) (*DropWatcher, error) {
	o := watchOptions{
		settle:     40 * time.Millisecond,
		gather:     10 * time.Millisecond,
		maxDelay:   250 * time.Millisecond,
		maxBatch:   1000,
		emptyGrace: 5 * time.Second,
		retryMin:   time.Second,
		retryMax:   time.Minute,
		log:        slog.New(slog.DiscardHandler),
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if len(dirs) == 0 {
		return nil, errors.New("repo: no drop-in directory to watch")
	}
	if handle == nil {
		return nil, errors.New("repo: nil batch handler")
	}
	w := &DropWatcher{handle: handle, o: o}
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, fmt.Errorf("watching %q: %w", d, err)
		}
		w.dirs = append(w.dirs, filepath.Clean(abs))
	}
	return w, nil
}

// IgnoredName reports whether a file name in a drop-in directory is never
// taken: dotfiles (which covers editors' .#locks and rsync's .name.XXXX) and
// the usual partial-download names.
func IgnoredName(name string) bool {
	switch {
	case name == "", strings.HasPrefix(name, "."), strings.HasPrefix(name, "#"),
		strings.HasSuffix(name, "~"),
		strings.HasSuffix(name, ".part"), strings.HasSuffix(name, ".partial"),
		strings.HasSuffix(name, ".tmp"), strings.HasSuffix(name, ".crdownload"),
		strings.HasSuffix(name, ".swp"):
		return true
	}
	return false
}

// pending is a file seen but not yet handed over.
type pending struct {
	seq     uint64    // arrival order
	first   time.Time // first seen
	last    time.Time // last event or change
	size    int64
	mtime   time.Time
	ready   bool
	readyAt time.Time
	retries int
	retryAt time.Time // zero unless backing off
}

type batchDone struct {
	paths []string
}

// Run watches until ctx is done. It returns after the batch in progress,
// if any, has returned: cancel the context passed to BatchFunc separately
// (via batchCtx) to abort it. batchCtx may be nil, meaning ctx.
func (w *DropWatcher) Run(ctx context.Context, batchCtx context.Context) error {
	if batchCtx == nil {
		batchCtx = ctx
	}
	fw, err := fsnotify.NewBufferedWatcher(4096)
	if err != nil {
		return fmt.Errorf("starting fsnotify: %w", err)
	}
	defer fw.Close()
	watched := map[string]bool{}
	for _, d := range w.dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating drop-in directory %q: %w", d, err)
		}
		if err := fw.Add(d); err != nil {
			return fmt.Errorf("watching %q: %w", d, err)
		}
		watched[d] = true
	}
	log := w.o.log
	log.Info("watching drop-in directories", "dirs", w.dirs)

	var seq uint64
	files := map[string]*pending{}
	inflight := map[string]bool{}
	dirty := map[string]bool{} // events for in-flight files

	// touch records an event (or a scan hit) for path. renamed says the
	// event is the Create half of a rename inside the directory.
	var lastEvent time.Time
	touch := func(path string, now time.Time, renamed bool) {
		if inflight[path] {
			dirty[path] = true
			return
		}
		fi, err := os.Lstat(path)
		if err != nil || fi.IsDir() {
			delete(files, path)
			return
		}
		p := files[path]
		if p == nil {
			seq++
			p = &pending{seq: seq, first: now}
			files[path] = p
		}
		p.last, p.size, p.mtime, p.ready = now, fi.Size(), fi.ModTime(), false
		p.retryAt = time.Time{}
		switch {
		case !fi.Mode().IsRegular():
			// A symlink, FIFO, device or socket is never read: the
			// pipeline moves it aside to rejected/ with its reason, at
			// once, instead of leaving it here forever.
			p.ready, p.readyAt = true, now
		case fi.Size() > 0 && (renamed || fi.ModTime().Before(now.Add(-w.o.settle))):
			p.ready, p.readyAt = true, now
		}
	}
	scan := func(now time.Time) {
		for _, d := range w.dirs {
			ents, err := os.ReadDir(d)
			if err != nil {
				log.Error("scanning drop-in directory", "dir", d, "err", err)
				continue
			}
			// ReadDir sorts by name; older files first is a better guess
			// at arrival order, but names keep it deterministic.
			for _, e := range ents {
				if IgnoredName(e.Name()) || e.IsDir() {
					continue
				}
				path := filepath.Join(d, e.Name())
				if _, ok := files[path]; !ok {
					touch(path, now, false)
				}
			}
		}
	}
	scan(time.Now())

	batches := make(chan []string)
	done := make(chan batchDone)
	handlerExit := make(chan struct{})
	go func() {
		defer close(handlerExit)
		for b := range batches {
			start := time.Now()
			w.handle(batchCtx, b)
			log.Debug("batch handled", "files", len(b), "took", time.Since(start))
			done <- batchDone{paths: b}
		}
	}()
	busy := false
	defer func() {
		close(batches)
		if busy {
			<-done
		}
		<-handlerExit
	}()

	prevRename := ""
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		// Promote quiet files to ready, find the next moment to look again.
		next := now.Add(time.Hour)
		unsettled := 0
		var ready []string
		var oldestReady time.Time
		for path, p := range files {
			if !p.retryAt.IsZero() {
				if now.Before(p.retryAt) {
					next = minTime(next, p.retryAt)
					continue
				}
				p.retryAt = time.Time{}
				p.last = now.Add(-w.o.settle) // due for a check now
			}
			if !p.ready {
				due := p.last.Add(w.o.settle)
				if now.Before(due) {
					unsettled++
					next = minTime(next, due)
					continue
				}
				fi, err := os.Lstat(path)
				if err != nil || fi.IsDir() {
					delete(files, path)
					continue
				}
				if fi.Size() != p.size || !fi.ModTime().Equal(p.mtime) {
					p.last, p.size, p.mtime = now, fi.Size(), fi.ModTime()
					unsettled++
					next = minTime(next, now.Add(w.o.settle))
					continue
				}
				if fi.Size() == 0 && now.Sub(p.first) < w.o.emptyGrace {
					// Re-check at the end of the grace period; a write
					// before then resets the clock via touch.
					next = minTime(next, p.first.Add(w.o.emptyGrace))
					continue
				}
				p.ready, p.readyAt = true, now
			}
			ready = append(ready, path)
			if oldestReady.IsZero() || p.readyAt.Before(oldestReady) {
				oldestReady = p.readyAt
			}
		}

		var out chan []string
		var batch []string
		if len(ready) > 0 && !busy {
			flushAt := oldestReady.Add(w.o.maxDelay)
			quietAt := lastEvent.Add(w.o.gather)
			if (unsettled == 0 && !now.Before(quietAt)) || len(ready) >= w.o.maxBatch || !now.Before(flushAt) {
				sort.Slice(ready, func(i, j int) bool { return files[ready[i]].seq < files[ready[j]].seq })
				if len(ready) > w.o.maxBatch {
					ready = ready[:w.o.maxBatch]
				}
				batch = ready
				out = batches
			} else {
				next = minTime(next, flushAt)
				if unsettled == 0 {
					next = minTime(next, quietAt)
				}
			}
		}
		if out == nil {
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			timer.Reset(max(next.Sub(now), time.Millisecond))
		}

		select {
		case <-ctx.Done():
			return nil
		case out <- batch:
			busy = true
			for _, path := range batch {
				inflight[path] = true
			}
		case d := <-done:
			busy = false
			now := time.Now()
			for _, path := range d.paths {
				delete(inflight, path)
				p := files[path]
				if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
					delete(files, path)
					if dirty[path] {
						delete(dirty, path)
					}
					continue
				}
				if dirty[path] {
					// Replaced while we worked on it: a new file, start over.
					delete(dirty, path)
					delete(files, path)
					touch(path, now, false)
					continue
				}
				if p == nil {
					continue
				}
				delay := w.o.retryMin << min(p.retries, 16)
				if delay > w.o.retryMax || delay <= 0 {
					delay = w.o.retryMax
				}
				p.retries++
				p.ready = false
				p.retryAt = now.Add(delay)
				log.Warn("file left in drop-in directory, retrying later", "path", path, "retry_in", delay)
			}
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("repo: fsnotify closed its event channel")
			}
			dir, name := filepath.Split(ev.Name)
			dir = filepath.Clean(dir)
			renamed := ev.Has(fsnotify.Create) && prevRename == dir
			prevRename = ""
			if ev.Has(fsnotify.Rename) && IgnoredName(name) {
				// fsnotify sends a rename inside a watched directory as
				// Rename(old name) immediately followed by Create(new
				// name). Only a partial old name counts: the pipeline
				// moving a finished file out must not vouch for whatever
				// is created next.
				prevRename = dir
			}
			if !watched[dir] || IgnoredName(name) {
				continue
			}
			lastEvent = time.Now()
			switch {
			case ev.Has(fsnotify.Create), ev.Has(fsnotify.Write), ev.Has(fsnotify.Chmod):
				touch(ev.Name, lastEvent, renamed)
			case ev.Has(fsnotify.Remove), ev.Has(fsnotify.Rename):
				if inflight[ev.Name] {
					continue // the pipeline moving it away
				}
				delete(files, ev.Name)
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("repo: fsnotify closed its error channel")
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				log.Warn("fsnotify queue overflowed, rescanning drop-in directories")
				scan(time.Now())
				lastEvent = time.Now()
				continue
			}
			log.Error("fsnotify", "err", err)
		case <-timer.C:
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
