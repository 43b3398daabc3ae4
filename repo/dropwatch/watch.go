package dropwatch

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
// the pipeline is expected to move every file it has decided about. ctx
// carries what the watcher saw of each file (size, mtime, renamed in or
// not): BatchFrom.
type BatchFunc func(ctx context.Context, paths []string)

// Watcher turns filesystem events in the drop-in directories, and in
// their subdirectories down to Depth levels (incoming/x86_64/,
// incoming/el9/x86_64/; new ones are watched as they appear), into batches
// of complete files. A subdirectory that is itself a configured drop-in
// directory is left to its own watch.
//
// A file is complete when one of these says so:
//   - its writer closed it after writing (inotify's IN_CLOSE_WRITE: cp,
//     scp, curl -o) or renamed it into place (IN_MOVED_TO: rsync, mv, an
//     uploader's partial name): it is taken at once. fsnotify v1.10 keeps
//     close-write unexported, so closeWatcher (closewrite.go) asks inotify
//     for these two beside it;
//   - an mtime older than the settle interval and a non-empty file: nothing
//     has written to it for that long (cp -p, curl -R, mv from another file
//     system and rsync all set the mtime last);
//   - otherwise: no event for the file during the settle interval and the
//     same size and mtime at both ends of it. The default settle (3s)
//     outlasts the pauses of scp over a slow link.
//
// In every case a regular file that some process still has open for
// writing is not complete, where the kernel can tell (OpenForWriting: a
// read lease, which needs the file's owner or CAP_LEASE).
//
// A close is the writer's word, not proof: a writer may close and reopen
// (`cat part >> file`), or stall longer than the settle. So the watcher
// tells the pipeline what it saw of each file (the size and mtime, and
// whether it was renamed in), and the pipeline returns a file that fails
// to parse to its directory instead of rejecting it while it is still
// changing or was written within the settle interval (repo's
// ActionDeferred).
//
// Complete files are gathered until events pause for a few milliseconds
// (WithGather), so a scripted burst becomes one batch while a single file
// goes through at once.
type Watcher struct {
	dirs   []string
	handle BatchFunc
	o      options
}

// DefaultSettle is the settle interval unless WithSettle (or the config's
// [daemon] settle) says otherwise: long enough for the pauses of scp or
// rsync --inplace over a slow link. Files closed after writing or renamed
// into place do not wait for it.
const DefaultSettle = 3 * time.Second

// Depth is how many levels of subdirectories below a drop-in directory
// are watched; deeper ones are never handed over, and Count reports them
// as skipped.
const Depth = 4

type options struct {
	settle     time.Duration
	gather     time.Duration
	maxDelay   time.Duration
	maxBatch   int
	emptyGrace time.Duration
	retryMin   time.Duration
	retryMax   time.Duration
	log        *slog.Logger
}

// Option configures a Watcher.
type Option func(*options) error

// WithSettle sets how long a file written in place must stay quiet (no
// events, same size and mtime) before it is taken when its writer neither
// closed it nor renamed it into place, and how recently written a drop-in
// that fails to parse may be before it is retried instead of rejected.
// Default DefaultSettle (3s).
func WithSettle(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("dropwatch: settle interval must be positive, not %v", d)
		}
		o.settle = d
		return nil
	}
}

// WithGather sets how long events must pause before complete files are
// handed over, so that a burst of renames is one batch. Default 10ms.
func WithGather(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("dropwatch: gather interval must not be negative, not %v", d)
		}
		o.gather = d
		return nil
	}
}

// WithMaxDelay bounds how long a complete file waits for a burst around it
// to finish before its batch is handed over anyway. Default 250ms.
func WithMaxDelay(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("dropwatch: max delay must be positive, not %v", d)
		}
		o.maxDelay = d
		return nil
	}
}

// batchLimit is how many of backlog ready files the next batch takes:
// up to maxBatch, and more when more wait (a quarter of the backlog, up
// to 16 × maxBatch). A publish of a big directory costs about the same for
// one new file as for thousands (each document is hashed whole), so a
// burst goes through in fewer, bigger batches: fewer publishes per file.
func batchLimit(backlog, maxBatch int) int {
	return min(backlog, max(maxBatch, min(backlog/4, 16*maxBatch)))
}

// WithMaxBatch sets the number of files per batch; a backlog of more than
// four times that is taken in batches of a quarter of it, up to 16 times
// as many (batchLimit). Default 1000.
func WithMaxBatch(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("dropwatch: max batch must be at least 1, not %d", n)
		}
		o.maxBatch = n
		return nil
	}
}

// WithEmptyGrace sets how long an empty file is left alone, since writers
// such as cp create the file before they write it. Default 5s; after that
// the pipeline gets it (and rejects it).
func WithEmptyGrace(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("dropwatch: empty grace must not be negative, not %v", d)
		}
		o.emptyGrace = d
		return nil
	}
}

// WithRetry sets the back-off for files the pipeline left in place (a
// transient failure such as a full disk). Default 1s doubling to 1m.
func WithRetry(min, max time.Duration) Option {
	return func(o *options) error {
		if min <= 0 || max < min {
			return fmt.Errorf("dropwatch: bad retry bounds %v..%v", min, max)
		}
		o.retryMin, o.retryMax = min, max
		return nil
	}
}

// WithLogger sets the logger; default discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("dropwatch: nil logger")
		}
		o.log = l
		return nil
	}
}

// New watches dirs (created if missing) and their subdirectories
// down to Depth levels, and hands complete files to handle.
func New(dirs []string, handle BatchFunc, opts ...Option) (*Watcher, error) {
	o := options{
		settle:     DefaultSettle,
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
		return nil, errors.New("dropwatch: no drop-in directory to watch")
	}
	if handle == nil {
		return nil, errors.New("dropwatch: nil batch handler")
	}
	w := &Watcher{handle: handle, o: o}
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

// completion says how the watcher learnt that a file is complete.
type completion uint8

const (
	settled          completion = iota // quiet for the settle interval, or an old mtime
	closedAfterWrite                   // IN_CLOSE_WRITE
	renamedIn                          // IN_MOVED_TO, or a rename from a partial name
)

// pending is a file seen but not yet handed over.
type pending struct {
	seq     uint64    // arrival order
	root    string    // the configured drop-in directory it is under
	first   time.Time // first seen
	last    time.Time // last event or change
	size    int64
	mtime   time.Time
	ready   bool
	by      completion // how it became ready
	readyAt time.Time
	retries int
	retryAt time.Time // zero unless backing off
	// returned is when a batch left the file here (a transient fault, or
	// the pipeline found it still being written and moved it back): the
	// rename back must not count as its writer's word that it is complete.
	returned time.Time
}

// watchedDir is a directory being watched, depth levels below root.
type watchedDir struct {
	root  string
	depth int
}

// handover is a batch and what the watcher saw of each file.
type handover struct {
	paths []string
	seen  *Batch
	// waited is how long its oldest file had been ready when formed.
	waited time.Duration
}

type batchDone struct {
	paths []string
}

// Seen is what the watcher knew of a file when it handed it over.
type Seen struct {
	Root    string // configured drop-in directory the file is under
	Size    int64
	ModTime time.Time
	// Renamed: it was renamed into place, which is the uploader's word
	// that it is complete; a file closed after writing may be reopened.
	Renamed bool
}

// Batch is what the watcher saw of one batch. It travels in the context
// passed to BatchFunc (BatchFrom), so BatchFunc keeps its signature: the
// pipeline compares a file with what was seen before it rejects it.
type Batch struct {
	Settle time.Duration   // the watcher's settle interval
	Files  map[string]Seen // by path as handed over
	// More is how many files were ready but left for the next batches:
	// while more wait, the pipeline may leave the publish to a later
	// batch (publishes coalesced).
	More int
}

type batchKey struct{}

func withBatch(ctx context.Context, b *Batch) context.Context {
	return context.WithValue(ctx, batchKey{}, b)
}

// BatchFrom is what the watcher saw of the batch ctx belongs to; nil
// outside a watcher's batch.
func BatchFrom(ctx context.Context) *Batch {
	b, _ := ctx.Value(batchKey{}).(*Batch)
	return b
}

// Run watches until ctx is done. It returns after the batch in progress,
// if any, has returned: cancel the context passed to BatchFunc separately
// (via batchCtx) to abort it. batchCtx may be nil, meaning ctx.
func (w *Watcher) Run(ctx context.Context, batchCtx context.Context) error {
	if batchCtx == nil {
		batchCtx = ctx
	}
	log := w.o.log
	fw, err := fsnotify.NewBufferedWatcher(4096)
	if err != nil {
		return fmt.Errorf("starting fsnotify: %w", err)
	}
	defer fw.Close()
	var closes <-chan closeEvent
	cw, err := newCloseWatcher()
	if err != nil {
		log.Warn("no close-write events; files written in place wait for the settle interval", "settle", w.o.settle, "err", err)
	} else {
		defer cw.close()
		closes = cw.events
	}

	roots := map[string]bool{}
	for _, d := range w.dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating drop-in directory %q: %w", d, err)
		}
		roots[d] = true
	}
	watched := map[string]watchedDir{}
	var seq uint64
	// files is every file seen and not handed over; waiting is the part
	// of it that is not ready (settling, in its empty grace, backing off).
	// Each pass of the loop looks at waiting only, and counts the ready
	// ones in nReady, so that a burst of 100,000 renames costs each event
	// O(1) instead of a pass over the whole backlog.
	files := map[string]*pending{}
	waiting := map[string]*pending{}
	nReady := 0
	var oldestReady time.Time // no later than the oldest readyAt of a ready file
	inflight := map[string]bool{}
	dirty := map[string]bool{} // events for in-flight files
	setReady := func(path string, p *pending, at time.Time, by completion) {
		if !p.ready {
			p.ready = true
			nReady++
			delete(waiting, path)
		}
		p.readyAt, p.by = at, by
		if oldestReady.IsZero() || at.Before(oldestReady) {
			oldestReady = at
		}
	}
	setWaiting := func(path string, p *pending) {
		if p.ready {
			p.ready = false
			nReady--
		}
		waiting[path] = p
	}
	forget := func(path string) {
		if p := files[path]; p != nil && p.ready {
			nReady--
		}
		delete(files, path)
		delete(waiting, path)
	}

	// touch records an event (or a scan hit) for path, a file under root;
	// by says whether the event itself vouches for the file.
	var lastEvent time.Time
	touch := func(path, root string, now time.Time, by completion) {
		if inflight[path] {
			dirty[path] = true
			return
		}
		fi, err := os.Lstat(path)
		if err != nil || fi.IsDir() {
			forget(path)
			return
		}
		p := files[path]
		if p == nil {
			seq++
			p = &pending{seq: seq, root: root, first: now}
			files[path] = p
			waiting[path] = p
		}
		if by != settled && now.Sub(p.returned) < w.o.settle {
			// The event may be the pipeline's own rename back, arriving
			// after its batch: it says nothing of the writer.
			by = settled
		}
		// fsnotify and the close-write watcher deliver apart, so an event
		// of a change already seen can come after the file became ready.
		same := p.ready && fi.Size() == p.size && fi.ModTime().Equal(p.mtime)
		p.last, p.size, p.mtime = now, fi.Size(), fi.ModTime()
		p.retryAt = time.Time{}
		if same {
			p.by = max(p.by, by)
			return
		}
		setWaiting(path, p)
		p.by = settled
		switch {
		case !fi.Mode().IsRegular():
			// A symlink, FIFO, device or socket is never read: the
			// pipeline moves it aside to rejected/ with its reason, at
			// once, instead of leaving it here forever.
			setReady(path, p, now, settled)
		case fi.Size() > 0 && (by != settled || fi.ModTime().Before(now.Add(-w.o.settle))):
			if writing, _ := OpenForWriting(path); writing {
				// A writer still has it open: the settle check decides.
				break
			}
			setReady(path, p, now, by)
		}
	}
	// watchTree watches dir, depth levels below root, and its
	// subdirectories down to Depth, and offers the files it finds:
	// at start, for a directory that appears (cp -r, mv), and after an
	// event queue overflow.
	var watchTree func(dir, root string, depth int, now time.Time) error
	watchTree = func(dir, root string, depth int, now time.Time) error {
		if _, ok := watched[dir]; !ok {
			if err := fw.Add(dir); err != nil {
				return fmt.Errorf("watching %q: %w", dir, err)
			}
			if cw != nil {
				if err := cw.add(dir); err != nil {
					log.Warn("no close-write events for a drop-in directory", "dir", dir, "err", err)
				}
			}
			watched[dir] = watchedDir{root: root, depth: depth}
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("scanning drop-in directory %q: %w", dir, err)
		}
		// ReadDir sorts by name; older files first is a better guess at
		// arrival order, but names keep it deterministic.
		for _, e := range ents {
			if IgnoredName(e.Name()) {
				continue
			}
			path := filepath.Join(dir, e.Name())
			if e.IsDir() {
				if depth < Depth && !roots[path] {
					if err := watchTree(path, root, depth+1, now); err != nil {
						log.Error("watching drop-in subdirectory", "dir", path, "err", err)
					}
				}
				continue
			}
			if _, ok := files[path]; !ok {
				touch(path, root, now, settled)
			}
		}
		return nil
	}
	// unwatchTree forgets dir and everything below it: it was removed or
	// renamed (a rename within the tree is watched anew under its new name).
	unwatchTree := func(dir string) {
		for d := range watched {
			if within(d, dir) {
				fw.Remove(d) // ErrNonExistentWatch: the kernel dropped it already
				if cw != nil {
					cw.remove(d)
				}
				delete(watched, d)
			}
		}
		for p := range files {
			if within(p, dir) && !inflight[p] {
				forget(p)
			}
		}
	}
	scan := func(now time.Time) {
		for _, d := range w.dirs {
			if err := watchTree(d, d, 0, now); err != nil {
				log.Error("scanning drop-in directory", "dir", d, "err", err)
			}
		}
	}
	now := time.Now()
	for _, d := range w.dirs {
		if err := fw.Add(d); err != nil {
			return fmt.Errorf("watching %q: %w", d, err)
		}
		watched[d] = watchedDir{root: d}
		if cw != nil {
			if err := cw.add(d); err != nil {
				log.Warn("no close-write events for a drop-in directory", "dir", d, "err", err)
			}
		}
	}
	log.Info("watching drop-in directories", "dirs", w.dirs, "depth", Depth, "settle", w.o.settle, "close_write", cw != nil)
	scan(now)

	batches := make(chan handover)
	done := make(chan batchDone)
	handlerExit := make(chan struct{})
	go func() {
		defer close(handlerExit)
		for b := range batches {
			start := time.Now()
			w.handle(withBatch(batchCtx, b.seen), b.paths)
			log.Debug("batch handled", "files", len(b.paths), "ready_for", b.waited, "took", time.Since(start))
			done <- batchDone{paths: b.paths}
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
		for path, p := range waiting {
			if !p.retryAt.IsZero() {
				if now.Before(p.retryAt) {
					next = minTime(next, p.retryAt)
					continue
				}
				p.retryAt = time.Time{}
				p.last = now.Add(-w.o.settle) // due for a check now
			}
			due := p.last.Add(w.o.settle)
			if now.Before(due) {
				unsettled++
				next = minTime(next, due)
				continue
			}
			fi, err := os.Lstat(path)
			if err != nil || fi.IsDir() {
				forget(path)
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
			if writing, _ := OpenForWriting(path); writing {
				// Quiet, but its writer still has it open (a stalled
				// scp): not complete; look again a settle later.
				p.last = now
				next = minTime(next, now.Add(w.o.settle))
				continue
			}
			setReady(path, p, now, settled)
		}
		if nReady == 0 {
			oldestReady = time.Time{}
		}

		var out chan handover
		var batch handover
		if nReady > 0 && !busy {
			flushAt := oldestReady.Add(w.o.maxDelay)
			quietAt := lastEvent.Add(w.o.gather)
			if (unsettled == 0 && !now.Before(quietAt)) || nReady >= w.o.maxBatch || !now.Before(flushAt) {
				// Once a batch, not once an event: the ready files in
				// arrival order.
				ready := make([]string, 0, nReady)
				for path, p := range files {
					if p.ready {
						ready = append(ready, path)
					}
				}
				sort.Slice(ready, func(i, j int) bool { return files[ready[i]].seq < files[ready[j]].seq })
				ready = ready[:batchLimit(len(ready), w.o.maxBatch)]
				seen := &Batch{Settle: w.o.settle, Files: make(map[string]Seen, len(ready)), More: nReady - len(ready)}
				for _, path := range ready {
					p := files[path]
					seen.Files[path] = Seen{Root: p.root, Size: p.size, ModTime: p.mtime, Renamed: p.by == renamedIn}
				}
				batch = handover{paths: ready, seen: seen, waited: now.Sub(oldestReady)}
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
			for _, path := range batch.paths {
				inflight[path] = true
				// Handed over: neither ready nor waiting until it returns.
				files[path].ready = false
				nReady--
			}
			oldestReady = time.Time{}
			for _, p := range files {
				if p.ready && (oldestReady.IsZero() || p.readyAt.Before(oldestReady)) {
					oldestReady = p.readyAt
				}
			}
		case d := <-done:
			busy = false
			now := time.Now()
			for _, path := range d.paths {
				delete(inflight, path)
				p := files[path]
				if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
					forget(path)
					delete(dirty, path)
					continue
				}
				if p == nil {
					continue
				}
				if dirty[path] {
					// Replaced while we worked on it, or moved back by the
					// pipeline because it was still being written: a new
					// file as far as we know, start over.
					delete(dirty, path)
					forget(path)
					touch(path, p.root, now, settled)
					if q := files[path]; q != nil {
						q.returned = now
					}
					continue
				}
				p.returned = now
				delay := w.o.retryMin << min(p.retries, 16)
				if delay > w.o.retryMax || delay <= 0 {
					delay = w.o.retryMax
				}
				p.retries++
				setWaiting(path, p)
				p.retryAt = now.Add(delay)
				log.Warn("file left in drop-in directory, retrying later", "path", path, "retry_in", delay)
			}
		case ce := <-closes:
			wd, ok := watched[filepath.Dir(ce.path)]
			if !ok || IgnoredName(filepath.Base(ce.path)) {
				continue
			}
			lastEvent = time.Now()
			by := closedAfterWrite
			if ce.moved {
				by = renamedIn
			}
			touch(ce.path, wd.root, lastEvent, by)
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("dropwatch: fsnotify closed its event channel")
			}
			dir, name := filepath.Split(ev.Name)
			dir = filepath.Clean(dir)
			by := settled
			if ev.Has(fsnotify.Create) && prevRename == dir {
				by = renamedIn
			}
			prevRename = ""
			if ev.Has(fsnotify.Rename) && IgnoredName(name) {
				// fsnotify sends a rename inside a watched directory as
				// Rename(old name) immediately followed by Create(new
				// name). Only a partial old name counts: the pipeline
				// moving a finished file out must not vouch for whatever
				// is created next. (The close-write watcher's IN_MOVED_TO
				// says the same where it runs; this covers where not.)
				prevRename = dir
			}
			wd, ok := watched[dir]
			if !ok || IgnoredName(name) {
				continue
			}
			lastEvent = time.Now()
			switch {
			case ev.Has(fsnotify.Create), ev.Has(fsnotify.Write), ev.Has(fsnotify.Chmod):
				if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
					if ev.Has(fsnotify.Create) && wd.depth < Depth && !roots[ev.Name] {
						if err := watchTree(ev.Name, wd.root, wd.depth+1, lastEvent); err != nil {
							log.Error("watching drop-in subdirectory", "dir", ev.Name, "err", err)
						}
					}
					continue
				}
				touch(ev.Name, wd.root, lastEvent, by)
			case ev.Has(fsnotify.Remove), ev.Has(fsnotify.Rename):
				if _, isDir := watched[ev.Name]; isDir {
					unwatchTree(ev.Name)
					continue
				}
				if inflight[ev.Name] {
					continue // the pipeline moving it away
				}
				forget(ev.Name)
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("dropwatch: fsnotify closed its error channel")
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

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
