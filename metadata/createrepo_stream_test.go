package metadata

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// heldCounter replaces streamHeld for one test: it tracks how many read
// packages' fragments the build holds at once.
type heldCounter struct {
	mu             sync.Mutex
	cur, max, seen int
	onAdd          func(seen int)
}

func countHeld(t *testing.T) *heldCounter {
	t.Helper()
	h := &heldCounter{}
	streamHeld = func(d int) {
		h.mu.Lock()
		h.cur += d
		if d > 0 {
			h.seen++
		}
		h.max = max(h.max, h.cur)
		seen, f := h.seen, h.onAdd
		h.mu.Unlock()
		if d > 0 && f != nil {
			f(seen)
		}
	}
	t.Cleanup(func() { streamHeld = nil })
	return h
}

// TestCreateRepoStreamsThroughWindow: with a read window of 3, a few
// thousand packages are never held more than 3 at a time, and the output
// is byte-identical to the in-memory build's and to createrepo_c's, also
// when files that are not packages change the count in the headers.
func TestCreateRepoStreamsThroughWindow(t *testing.T) {
	const n, window = 3000, 3
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := testrpm.Corpus(ctx, dir, n); err != nil {
		t.Fatal(err)
	}
	// createrepo_c's copy: hard links to the packages only.
	clean := t.TempDir()
	ms := mustGlob(t, filepath.Join(dir, "*.rpm"))
	for _, m := range ms {
		if err := os.Link(m, filepath.Join(clean, filepath.Base(m))); err != nil {
			t.Fatal(err)
		}
	}
	// Not packages, sorting among them: the headers' count is first
	// written for n+3 and then rewritten.
	for _, name := range []string{"bulk00000-0-bad.x86_64.rpm", "bulk01500-0-bad.x86_64.rpm", "zzz.rpm"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("not an rpm"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, comp := range []string{"gz", "zstd"} {
		t.Run(comp, func(t *testing.T) {
			h := countHeld(t)
			res, err := CreateRepo(ctx, dir, WithReadWindow(window), WithReadWorkers(2),
				WithPublishOptions(WithCompression(comp), WithRevision("7")))
			if !errors.Is(err, ErrSomeSkipped) || res == nil || res.Packages != n || len(res.Skipped) != 3 {
				t.Fatalf("createrepo: %v %+v", err, res)
			}
			if h.seen != n || h.cur != 0 {
				t.Fatalf("%d packages went through the window (%d still held), want %d", h.seen, h.cur, n)
			}
			if h.max > window || h.max < 1 {
				t.Fatalf("held %d packages at once, window %d", h.max, window)
			}
			// The in-memory build (a dry run, without the block cache)
			// would publish exactly these files.
			dry, err := CreateRepo(ctx, dir, WithCacheDir(""),
				WithPublishOptions(WithCompression(comp), WithRevision("7"), WithDryRun(true)))
			if !errors.Is(err, ErrSomeSkipped) || dry.Publish.Changed {
				t.Fatalf("dry run: %v %+v", err, dry.Publish)
			}
			for k, r := range res.Publish.Records {
				d := dry.Publish.Records[k]
				if r.Checksum != d.Checksum || r.OpenChecksum != d.OpenChecksum || r.Size != d.Size || r.OpenSize != d.OpenSize {
					t.Errorf("%s: streamed %+v, in memory %+v", r.Type, r, d)
				}
			}
			assertSameDocs(t, "streamed vs createrepo_c", oracleRepodata(t, clean), publishedDocs(t, dir))
			assertNoStreamLeftovers(t, dir)
			// --update from the saved state reuses every package.
			upd, err := CreateRepo(ctx, dir, WithUpdate(true), WithReadWindow(window),
				WithPublishOptions(WithCompression(comp), WithRevision("7")))
			if !errors.Is(err, ErrSomeSkipped) || upd.ReusedFrom != "state" || upd.Reused != n || upd.Publish.Changed {
				t.Fatalf("--update: %v %+v", err, upd)
			}
		})
	}
}

func assertNoStreamLeftovers(t *testing.T, dir string) {
	t.Helper()
	for _, p := range []string{genDirName, CacheDirName + "/" + rawPackNew, CacheDirName + "/" + stateSpoolName,
		CacheDirName + "/" + stateFileName + ".tmp"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
}

// TestCreateRepoStreamFailureLeavesRepodata: a run cancelled halfway
// through the stream leaves the published repodata and the saved state as
// they were, and no temporary files.
func TestCreateRepoStreamFailureLeavesRepodata(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := testrpm.Corpus(ctx, dir, 600); err != nil {
		t.Fatal(err)
	}
	if _, err := CreateRepo(ctx, dir); err != nil {
		t.Fatal(err)
	}
	before := publishedDocs(t, dir)
	state := mustRead(t, filepath.Join(dir, CacheDirName, stateFileName))
	for i := 600; i < 700; i++ {
		writeSmall(t, dir, i)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h := countHeld(t)
	h.onAdd = func(seen int) {
		if seen == 300 {
			cancel()
		}
	}
	if _, err := CreateRepo(cctx, dir, WithReadWindow(8)); !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	assertSameDocs(t, "after a cancelled run", before, publishedDocs(t, dir))
	if got := mustRead(t, filepath.Join(dir, CacheDirName, stateFileName)); string(got) != string(state) {
		t.Error("the saved state changed")
	}
	assertNoStreamLeftovers(t, dir)
	// And the next run publishes everything.
	res, err := CreateRepo(ctx, dir, WithUpdate(true))
	if err != nil || res.Packages != 700 || res.ReusedFrom != "state" || res.Read != 100 {
		t.Fatalf("next run: %v %+v", err, res)
	}
}
