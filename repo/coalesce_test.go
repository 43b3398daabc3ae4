package repo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/testrpm"
	"github.com/repoctl/repoctl/repo/dropwatch"
)

// msgCounter counts log records by message.
type msgCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *msgCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *msgCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == nil {
		h.n = map[string]int{}
	}
	key := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "dir" {
			key += " " + a.Value.String()
		}
		return true
	})
	h.n[key]++
	return nil
}
func (h *msgCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *msgCounter) WithGroup(string) slog.Handler      { return h }
func (h *msgCounter) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[msg]
}

// coalesceRoot opens a fresh root logging into a counter, and returns a
// function that ingests one new package as a drop-in batch with more
// files said to wait behind it.
func coalesceRoot(t *testing.T) (*Repo, *msgCounter, string, func(i, more int) string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	h := &msgCounter{}
	r := openPL(t, root, WithLogger(slog.New(h)))
	incoming := r.Config().DropIns[0].Dir
	x86 := filepath.Join(root, "repo/main/staging/el/9/x86_64")
	ingest := func(i, more int) string {
		t.Helper()
		p := writeSpec(t, incoming, spec(fmt.Sprintf("co%02d", i), "1", "1.el9", "x86_64"))
		res, err := r.Ingest(context.Background(), []string{p}, AddOptions{Move: true, Who: "daemon",
			drop: &dropBatch{settle: time.Second, files: map[string]dropSeen{}, more: more}})
		if err != nil || len(res) != 1 || res[0].Action != ActionAdded {
			t.Fatalf("ingesting %s: %+v %v", p, res, err)
		}
		return res[0].NEVRA
	}
	return r, h, x86, ingest
}

// TestCoalescedPublishCountBound: while a backlog remains, batches record
// without publishing, but never more than coalesceMaxPackages packages
// behind the repodata; the batch that ends the backlog publishes all.
func TestCoalescedPublishCountBound(t *testing.T) {
	defer func(n int) { coalesceMaxPackages = n }(coalesceMaxPackages)
	coalesceMaxPackages = 3
	r, h, x86, ingest := coalesceRoot(t)
	base := h.count("published main/staging/el/9/x86_64") // the empty repodata of a fresh root
	var all []string
	for i := range 7 {
		all = append(all, ingest(i, 10))
	}
	// Batches 1, 2 coalesce, 3 publishes (3 behind), 4, 5 coalesce, 6
	// publishes, 7 coalesces.
	if got := h.count("published main/staging/el/9/x86_64") - base; got != 2 {
		t.Errorf("%d publishes of x86_64 for 7 batches with a backlog and a bound of 3, want 2", got)
	}
	if got := h.count("publish coalesced"); got != 5 {
		t.Errorf("%d batches coalesced, want 5", got)
	}
	pk := mustPkgs(t, x86)
	for i, n := range all {
		if _, ok := pk[n]; ok != (i < 6) {
			t.Errorf("%s listed: %v after the bound's publish at batch 6", n, ok)
		}
	}
	dirty, err := r.st.dirtyDirs()
	if err != nil || len(dirty) != 1 || dirty[0] != "main/staging/el/9/x86_64" {
		t.Errorf("dirty marks with a publish left: %v %v", dirty, err)
	}
	all = append(all, ingest(7, 0)) // the backlog is gone
	if got := h.count("published main/staging/el/9/x86_64") - base; got != 3 {
		t.Errorf("%d publishes after the last batch, want 3", got)
	}
	pk = mustPkgs(t, x86)
	for _, n := range all {
		if _, ok := pk[n]; !ok {
			t.Errorf("%s not listed once the backlog is gone", n)
		}
	}
	if dirty, err := r.st.dirtyDirs(); err != nil || len(dirty) != 0 {
		t.Errorf("dirty marks after the backlog: %v %v", dirty, err)
	}
}

// TestCoalescedPublishLagBound: the first batch that ends max_publish_lag
// after the first unpublished one publishes, backlog or not.
func TestCoalescedPublishLagBound(t *testing.T) {
	defer func(f func() time.Time) { coalesceNow = f }(coalesceNow)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	coalesceNow = func() time.Time { return now }
	_, h, x86, ingest := coalesceRoot(t)
	base := h.count("published main/staging/el/9/x86_64")
	a := ingest(0, 10)
	now = now.Add(29 * time.Second)
	b := ingest(1, 10)
	if got := h.count("published main/staging/el/9/x86_64") - base; got != 0 {
		t.Fatalf("%d publishes within the lag, want 0", got)
	}
	now = now.Add(time.Second) // 30s (DefaultMaxPublishLag) since a
	c := ingest(2, 10)
	if got := h.count("published main/staging/el/9/x86_64") - base; got != 1 {
		t.Fatalf("%d publishes once the lag is reached, want 1", got)
	}
	pk := mustPkgs(t, x86)
	for _, n := range []string{a, b, c} {
		if _, ok := pk[n]; !ok {
			t.Errorf("%s not listed after the lag's publish", n)
		}
	}
	// The lag counts from the first batch left unpublished, not from
	// the last publish.
	now = now.Add(time.Hour)
	ingest(3, 10)
	if got := h.count("published main/staging/el/9/x86_64") - base; got != 1 {
		t.Errorf("%d publishes, want 1: the hour before batch 4 had nothing unpublished", got)
	}
}

// TestCoalescedPublishZeroLag: max_publish_lag = "0s" publishes every
// batch.
func TestCoalescedPublishZeroLag(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(plConfig+"[daemon]\nmax_publish_lag = \"0s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &msgCounter{}
	r := openPL(t, root, WithLogger(slog.New(h)))
	incoming := r.Config().DropIns[0].Dir
	for i := range 3 {
		p := writeSpec(t, incoming, spec(fmt.Sprintf("z%d", i), "1", "1.el9", "x86_64"))
		if _, err := r.Ingest(context.Background(), []string{p}, AddOptions{Move: true,
			drop: &dropBatch{files: map[string]dropSeen{}, more: 5}}); err != nil {
			t.Fatal(err)
		}
	}
	if got := h.count("publish coalesced"); got != 0 {
		t.Errorf("%d batches coalesced with max_publish_lag 0s", got)
	}
}

// TestCoalescedPublishCrash: a batch that left its publish is in the
// store with its directory marked dirty, so a crash at any point of it
// loses nothing: the next Open publishes it (or rolls it forward).
func TestCoalescedPublishCrash(t *testing.T) {
	errCrash := errors.New("simulated crash")
	for _, state := range []string{stateSigned, statePlaced, "recorded"} {
		t.Run(state, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			r := openPL(t, root)
			incoming := r.Config().DropIns[0].Dir
			drop := func(name string, more int) (string, error) {
				p := writeSpec(t, incoming, spec(name, "1", "1.el9", "x86_64"))
				res, err := r.Ingest(context.Background(), []string{p}, AddOptions{Move: true,
					drop: &dropBatch{files: map[string]dropSeen{}, more: more}})
				if err != nil {
					return "", err
				}
				return res[0].NEVRA, nil
			}
			first, err := drop("first", 5)
			if err != nil {
				t.Fatal(err)
			}
			if state != "recorded" {
				failpoint = func(s string) error {
					if s == state {
						return errCrash
					}
					return nil
				}
			}
			_, err = drop("second", 5)
			failpoint = nil
			if state != "recorded" && !errors.Is(err, errCrash) {
				t.Fatalf("Ingest: %v, want the simulated crash", err)
			}
			if state == "recorded" && err != nil {
				t.Fatal(err)
			}
			x86 := filepath.Join(root, "repo/main/staging/el/9/x86_64")
			if _, ok := mustPkgs(t, x86)[first]; ok {
				t.Fatalf("%s published although its batch coalesced", first)
			}
			// Close without the daemon's flush: a crash as far as the
			// repodata go.
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			r2 := openPL(t, root)
			pk := mustPkgs(t, x86)
			for _, n := range []string{first, "second-1-1.el9.x86_64"} {
				if _, ok := pk[n]; !ok {
					t.Errorf("%s not published after the restart: %v", n, keys(pk))
				}
			}
			list, err := r2.List(context.Background(), ListOptions{})
			if err != nil || len(list) != 2 {
				t.Errorf("store after restart: %d packages %v", len(list), err)
			}
			if dirty, err := r2.st.dirtyDirs(); err != nil || len(dirty) != 0 {
				t.Errorf("dirty marks after restart: %v %v", dirty, err)
			}
		})
	}
}

// TestDaemonCoalescesBurst: a burst into a running daemon with small
// batches publishes fewer times than it has batches, never leaves more
// than the bound unpublished, and ends with everything listed.
func TestDaemonCoalescesBurst(t *testing.T) {
	defer func(n int) { coalesceMaxPackages = n }(coalesceMaxPackages)
	coalesceMaxPackages = 12
	root, _ := newTestRoot(t, "")
	stage := filepath.Join(t.TempDir(), "stage")
	const n = 60
	var names []string
	for i := range n {
		if err := os.MkdirAll(stage, 0o755); err != nil {
			t.Fatal(err)
		}
		p, err := testrpm.Write(stage, testrpm.Small(i))
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, filepath.Base(p))
	}
	var logBuf syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- RunDaemon(ctx, root, WithHTTPListen("off"), WithReady(func(DaemonInfo) { close(ready) }),
			WithDaemonLogger(slog.New(slog.NewTextHandler(&logBuf, nil))),
			WithWatchOptions(dropwatch.WithMaxBatch(5)))
	}()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("daemon: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("daemon not ready within a minute")
	}
	incoming := filepath.Join(root, "incoming")
	for _, name := range names {
		if err := os.Rename(filepath.Join(stage, name), filepath.Join(incoming, name)); err != nil {
			t.Fatal(err)
		}
	}
	x86 := filepath.Join(root, "repo/main/staging/el/9/x86_64")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		got, err := repodataCount(x86)
		if err == nil && got == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d listed after 3 minutes (%v)\n%s", got, n, err, logBuf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	log := logBuf.String()
	batches := strings.Count(log, `msg="ingest batch"`)
	publishes := strings.Count(log, `msg=published dir=main/staging/el/9/x86_64`)
	coalesced := strings.Count(log, `msg="publish coalesced`)
	if batches < 2 || coalesced == 0 || publishes >= batches {
		t.Errorf("%d batches, %d coalesced, %d publishes of x86_64: want some coalesced, fewer publishes than batches\n%s",
			batches, coalesced, publishes, log)
	}
	// The bound: no coalesced batch leaves 12 packages unpublished.
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, `msg="publish coalesced`) {
			continue
		}
		_, v, ok := strings.Cut(line, "unpublished_packages=")
		var k int
		if !ok {
			t.Fatalf("no unpublished_packages in %q", line)
		}
		if _, err := fmt.Sscan(v, &k); err != nil || k >= 12 {
			t.Errorf("coalesced beyond the bound of 12: %q (%v)", line, err)
		}
	}
}
