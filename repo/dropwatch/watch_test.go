package dropwatch

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"
)

// recorder is a BatchFunc that behaves like the pipeline: it moves every
// file it is given out of the drop-in directory (into done/), remembering
// the bytes it saw.
type recorder struct {
	mu      sync.Mutex
	batches [][]string
	content map[string][]byte
	keep    map[string]int // leave the file in place this many times
	doneDir string
	got     chan string
}

func newRecorder(t *testing.T) *recorder {
	d := filepath.Join(t.TempDir(), "done")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return &recorder{content: map[string][]byte{}, keep: map[string]int{}, doneDir: d, got: make(chan string, 10000)}
}

func (r *recorder) handle(ctx context.Context, paths []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, append([]string(nil), paths...))
	for _, p := range paths {
		if r.keep[filepath.Base(p)] > 0 {
			r.keep[filepath.Base(p)]--
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			panic(err)
		}
		r.content[filepath.Base(p)] = b
		if err := os.Rename(p, filepath.Join(r.doneDir, filepath.Base(p))); err != nil {
			panic(err)
		}
		r.got <- filepath.Base(p)
	}
}

func (r *recorder) wait(t *testing.T, n int) []string {
	t.Helper()
	var names []string
	deadline := time.After(30 * time.Second)
	for len(names) < n {
		select {
		case name := <-r.got:
			names = append(names, name)
		case <-deadline:
			t.Fatalf("got %d of %d files: %v", len(names), n, names)
		}
	}
	return names
}

func startWatcher(t *testing.T, dir string, r *recorder, opts ...Option) {
	t.Helper()
	w, err := New([]string{dir}, r.handle, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	// Let the watch be installed before the test writes; the startup scan
	// covers files written earlier, so this only avoids a slower path.
	time.Sleep(20 * time.Millisecond)
}

func dropRename(t *testing.T, dir, name string, body []byte) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".part")
	if err := os.WriteFile(tmp, body, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func TestIgnoredName(t *testing.T) {
	for name, want := range map[string]bool{
		"foo-1-1.x86_64.rpm":       false,
		"junk":                     false,
		".foo.rpm":                 true,
		".#foo.rpm":                true,
		"foo.rpm.part":             true,
		"foo.rpm.tmp":              true,
		"foo.rpm~":                 true,
		"#foo.rpm#":                true,
		"foo.rpm.partial":          true,
		"":                         true,
		"foo.rpm.crdownload":       true,
		"foo-1-1.x86_64.rpm.part1": false,
	} {
		if got := IgnoredName(name); got != want {
			t.Errorf("IgnoredName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestWatcherRenameAndPartials(t *testing.T) {
	dir := t.TempDir()
	r := newRecorder(t)
	startWatcher(t, dir, r)

	// Partial and hidden names are never taken, even when complete.
	for _, n := range []string{".hidden.rpm", "a.rpm.part", "b.rpm.tmp", "c.rpm~"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dropRename(t, dir, "one.rpm", []byte("payload one"))
	got := r.wait(t, 1)
	if got[0] != "one.rpm" {
		t.Fatalf("got %v, want one.rpm", got)
	}
	time.Sleep(200 * time.Millisecond)
	select {
	case n := <-r.got:
		t.Fatalf("watcher took ignored file %q", n)
	default:
	}
	for _, n := range []string{".hidden.rpm", "a.rpm.part", "b.rpm.tmp", "c.rpm~"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("ignored file %q: %v", n, err)
		}
	}
}

func TestWatcherBurstCoalesces(t *testing.T) {
	dir := t.TempDir()
	r := newRecorder(t)
	// Generous settle and gather intervals keep the batching assertion
	// independent of how loaded the machine is.
	startWatcher(t, dir, r, WithSettle(300*time.Millisecond), WithGather(300*time.Millisecond), WithMaxDelay(5*time.Second))
	const n = 100
	for i := 0; i < n; i++ {
		dropRename(t, dir, fmt.Sprintf("p%03d.rpm", i), []byte(fmt.Sprint(i)))
	}
	names := r.wait(t, n)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.batches) >= n/2 {
		t.Errorf("100 files took %d batches: the burst was not coalesced", len(r.batches))
	}
	// Handed over in arrival order.
	for i, name := range names {
		if want := fmt.Sprintf("p%03d.rpm", i); name != want {
			t.Fatalf("file %d is %q, want %q (order lost)", i, name, want)
		}
	}
}

func TestWatcherStartupScan(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 5; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("old%d.rpm", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "half.rpm.part"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newRecorder(t)
	startWatcher(t, dir, r)
	if got := r.wait(t, 5); len(got) != 5 {
		t.Fatalf("got %v", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "half.rpm.part")); err != nil {
		t.Fatal(err)
	}
}

// A writer that writes in place, slowly, is not taken before it is done.
func TestWatcherSlowWriterInPlace(t *testing.T) {
	dir := t.TempDir()
	r := newRecorder(t)
	// The settle is far longer than the writer's pauses, so that a
	// loaded machine stalling the writer cannot make it look finished.
	startWatcher(t, dir, r, WithSettle(3*time.Second))
	f, err := os.Create(filepath.Join(dir, "slow.rpm"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("z"), 1000)
	for i := 0; i < 20; i++ {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r.wait(t, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if got := len(r.content["slow.rpm"]); got != 20000 {
		t.Fatalf("taken with %d bytes, want 20000 (taken before complete)", got)
	}
}

// An empty file is given the grace period, then taken once written.
func TestWatcherEmptyThenWritten(t *testing.T) {
	dir := t.TempDir()
	r := newRecorder(t)
	startWatcher(t, dir, r, WithEmptyGrace(2*time.Second))
	p := filepath.Join(dir, "late.rpm")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := os.WriteFile(p, []byte("now complete"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.wait(t, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if got := string(r.content["late.rpm"]); got != "now complete" {
		t.Fatalf("taken as %q", got)
	}
}

// A file the pipeline leaves in place comes back after the back-off.
func TestWatcherRetriesLeftovers(t *testing.T) {
	dir := t.TempDir()
	r := newRecorder(t)
	r.keep["sticky.rpm"] = 2
	startWatcher(t, dir, r, WithRetry(50*time.Millisecond, 100*time.Millisecond))
	dropRename(t, dir, "sticky.rpm", []byte("x"))
	r.wait(t, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.batches) != 3 {
		t.Fatalf("handled in %d batches, want 3 (two retries)", len(r.batches))
	}
}

// A rename from a partial name, a file its writer closed, or a file whose
// mtime is already old, is complete by construction and is taken without
// waiting for the settle interval; a file still open for writing is not.
func TestWatcherFastPaths(t *testing.T) {
	dir := t.TempDir()
	r := newRecorder(t)
	startWatcher(t, dir, r, WithSettle(time.Hour))
	fresh := filepath.Join(dir, "fresh.rpm")
	f, err := os.Create(fresh)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("being written")); err != nil {
		t.Fatal(err)
	}
	dropRename(t, dir, "renamed.rpm", []byte("complete"))
	if got := r.wait(t, 1); got[0] != "renamed.rpm" {
		t.Fatalf("got %v, want renamed.rpm", got)
	}
	// A hard link: no close-write and no rename, only the old mtime says
	// that nothing writes to it.
	old := filepath.Join(t.TempDir(), "old.rpm")
	if err := os.WriteFile(old, []byte("copied with cp -p"), 0o644); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(old, filepath.Join(dir, "old.rpm")); err != nil {
		t.Fatal(err)
	}
	if got := r.wait(t, 1); got[0] != "old.rpm" {
		t.Fatalf("got %v, want old.rpm", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "closed.rpm"), []byte("written and closed by cp"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := r.wait(t, 1); got[0] != "closed.rpm" {
		t.Fatalf("got %v, want closed.rpm", got)
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case n := <-r.got:
		t.Fatalf("took %q before it settled", n)
	default:
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatal(err)
	}
}

// Directories that appear below a watched drop-in directory are watched,
// down to Depth levels; deeper ones are not.
func TestWatcherSubdirectories(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-time.Hour)
	put := func(d, name string) string {
		t.Helper()
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := os.Chtimes(put(filepath.Join(dir, "el9", "x86_64"), "early.rpm"), old, old); err != nil {
		t.Fatal(err)
	}
	r := newRecorder(t)
	startWatcher(t, dir, r, WithSettle(500*time.Millisecond))
	dropRename(t, mkdir(t, filepath.Join(dir, "x86_64")), "late.rpm", []byte("late"))
	tree := filepath.Join(t.TempDir(), "tree")
	if err := os.Chtimes(put(filepath.Join(tree, "sub"), "moved.rpm"), old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tree, filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	put(filepath.Join(dir, "a", "b", "c", "d"), "depth4.rpm")
	deep := put(filepath.Join(dir, "a", "b", "c", "d", "e"), "depth5.rpm")
	got := map[string]bool{}
	for _, n := range r.wait(t, 4) {
		got[n] = true
	}
	if !reflect.DeepEqual(got, map[string]bool{"early.rpm": true, "late.rpm": true, "moved.rpm": true, "depth4.rpm": true}) {
		t.Fatalf("took %v", got)
	}
	time.Sleep(time.Second) // twice the settle
	select {
	case n := <-r.got:
		t.Fatalf("took %q, below the watched depth", n)
	default:
	}
	if _, err := os.Stat(deep); err != nil {
		t.Fatal(err)
	}
	// Handed over under their own paths.
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.batches {
		for _, p := range b {
			if filepath.Dir(p) == dir {
				t.Errorf("%s: handed over from the top directory", p)
			}
		}
	}
}

func mkdir(t *testing.T, d string) string {
	t.Helper()
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// A file its writer keeps open is not taken, however long it stays quiet;
// once closed it is, whole.
func TestWatcherOpenWriterNotTaken(t *testing.T) {
	dir := t.TempDir()
	r := newRecorder(t)
	startWatcher(t, dir, r, WithSettle(100*time.Millisecond))
	f, err := os.Create(filepath.Join(dir, "held.rpm"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("first half ")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // ten settle intervals
	select {
	case n := <-r.got:
		t.Fatalf("took %q while its writer had it open", n)
	default:
	}
	if _, err := f.Write([]byte("second half")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r.wait(t, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if got := string(r.content["held.rpm"]); got != "first half second half" {
		t.Fatalf("taken as %q", got)
	}
}
