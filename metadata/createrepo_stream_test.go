package metadata

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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

// TestDirCacheForgottenPuts: blocks put with forgetPuts are not kept in
// memory but are still read back, by this cache and by the next, and
// survive a compaction that drops everything else; a cache that gives
// its mapped pages back still reads the same bytes.
func TestDirCacheForgottenPuts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key := func(i int) string { s := sha256Sum([]byte{byte(i), byte(i >> 8)}); return fmt.Sprintf("%x", s) }
	data := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 64<<10+i) }
	c, err := NewDirCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	old := map[string][]byte{}
	for i := 0; i < 64; i++ { // 4 MB that the compaction drops
		old[key(i)] = data(i)
	}
	if err := c.PutBlocks(ctx, old); err != nil {
		t.Fatal(err)
	}
	c.forgetPuts = true
	fresh := map[string][]byte{}
	var keys []string
	for i := 100; i < 110; i++ {
		fresh[key(i)] = data(i)
		keys = append(keys, key(i))
	}
	if err := c.PutBlocks(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	if len(c.index) != len(old) || len(c.spilled) != len(fresh) {
		t.Fatalf("index %d, spilled %d: forgotten puts were kept", len(c.index), len(c.spilled))
	}
	check := func(what string, c *DirCache) {
		t.Helper()
		got, err := c.GetBlocks(ctx, keys)
		if err != nil {
			t.Fatal(err)
		}
		for k, want := range fresh {
			if !bytes.Equal(got[k], want) {
				t.Fatalf("%s: block %s: %d bytes, want %d", what, k[:8], len(got[k]), len(want))
			}
		}
	}
	check("same cache", c)
	before := mustStat(t, filepath.Join(dir, packName)).Size()
	if err := c.RetainBlocks(ctx, keys); err != nil {
		t.Fatal(err)
	}
	if after := mustStat(t, filepath.Join(dir, packName)).Size(); after >= before/2 {
		t.Fatalf("pack %d bytes after compaction, %d before: not compacted", after, before)
	}
	check("after compaction", c)
	c2, err := NewDirCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	check("next cache", c2)
	if got, _ := c2.GetBlocks(ctx, []string{key(1)}); len(got) != 0 {
		t.Fatal("a dropped block is still there")
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	c3 := &DirCache{dir: dir, root: root, name: packName, sum: sha256Of, sumSize: sha256.Size, dropPages: true}
	check("dropping pages", c3)
	if c3.mapping == nil {
		t.Fatal("the pack was not mapped")
	}
	for _, k := range keys {
		c3.drop(k)
	}
	check("after dropping pages", c3)
}

// CreateRepo's uncompressed pack checks records lazily: a damaged one is
// found by verify, is a miss for GetBlocks and has, is not copied by a
// compaction (which would give it a good checksum), and is replaced by a
// new put of the same key.
func TestDirCacheLazySums(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	key := func(i int) string { s := sha256.Sum256([]byte{byte(i)}); return hex.EncodeToString(s[:]) }
	data := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, 600<<10+i) }
	c := newRawCacheIn(root, dir)
	blocks := map[string][]byte{}
	for i := range 6 {
		blocks[key(i)] = data(i)
	}
	if err := c.PutBlocks(ctx, blocks); err != nil {
		t.Fatal(err)
	}
	// Damage block 2's data, leaving its record's header alone.
	p := filepath.Join(dir, rawPackName)
	b := mustRead(t, p)
	i := bytes.Index(b, data(2))
	if i < 0 {
		t.Fatal("block 2 not in the pack")
	}
	b[i+100] ^= 1
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}

	c = newRawCacheIn(root, dir)
	var keys []string
	for i := range 6 {
		keys = append(keys, key(i))
	}
	got, err := c.getUnverified(ctx, keys)
	if err != nil || len(got) != 6 {
		t.Fatalf("unverified: %d blocks, %v", len(got), err)
	}
	for i, k := range keys {
		if ok := c.verify(k, got[k]); ok != (i != 2) {
			t.Fatalf("block %d: verify %v", i, ok)
		}
	}
	if got, _ := c.GetBlocks(ctx, keys); len(got) != 5 || got[key(2)] != nil {
		t.Fatalf("GetBlocks returned %d blocks (damaged one: %v)", len(got), got[key(2)] != nil)
	}
	if ok, _ := c.has(ctx, key(2)); ok {
		t.Fatal("has a damaged block")
	}
	// Keeping 2 of 6 blocks compacts the pack, without the damaged one.
	before := mustStat(t, p).Size()
	if err := c.RetainBlocks(ctx, []string{key(0), key(2)}); err != nil {
		t.Fatal(err)
	}
	if after := mustStat(t, p).Size(); after >= before/2 {
		t.Fatalf("pack %d bytes after compaction, %d before: not compacted", after, before)
	}
	c = newRawCacheIn(root, dir)
	if got, _ := c.getUnverified(ctx, keys); len(got) != 1 || got[key(2)] != nil {
		t.Fatalf("after compaction: %d blocks (damaged one: %v)", len(got), got[key(2)] != nil)
	}
	// Put again, it is good.
	if err := c.PutBlocks(ctx, map[string][]byte{key(2): data(2)}); err != nil {
		t.Fatal(err)
	}
	c = newRawCacheIn(root, dir)
	if got, _ := c.GetBlocks(ctx, keys); len(got) != 2 || !bytes.Equal(got[key(2)], data(2)) {
		t.Fatalf("after a new put: %d blocks", len(got))
	}
}

// sortScannedAs, which takes the saved order for the files the state
// knows, orders files exactly as sortScanned: with new files anywhere,
// files in subdirectories, and a saved order that does not hold.
func TestSortScannedAs(t *testing.T) {
	var files []scannedFile
	for i := range 3000 {
		h := fmt.Sprintf("pkg-%04d-1.0-1.x86_64.rpm", (i*7919)%3000)
		if i%5 == 0 {
			h = fmt.Sprintf("sub%d/%s", i%3, h)
		}
		files = append(files, scannedFile{href: h, size: int64(i)})
	}
	want := slices.Clone(files)
	sortScanned(want)
	// The state knows every other file, at its place among those.
	old := map[string]*existingPackage{}
	n := 0
	for _, f := range want {
		if f.size%2 == 0 {
			n++
			old[f.href] = &existingPackage{pos: n}
		}
	}
	hrefs := func(fs []scannedFile) []string {
		var h []string
		for _, f := range fs {
			h = append(h, f.href)
		}
		return h
	}
	got := slices.Clone(files)
	sortScannedAs(got, old)
	if !slices.Equal(hrefs(got), hrefs(want)) {
		t.Fatal("saved order: not sortScanned's")
	}
	// A saved order that is wrong (two places swapped) is not trusted.
	var a, b *existingPackage
	for _, p := range old {
		if p.pos == 10 {
			a = p
		}
		if p.pos == 900 {
			b = p
		}
	}
	a.pos, b.pos = b.pos, a.pos
	got = slices.Clone(files)
	sortScannedAs(got, old)
	if !slices.Equal(hrefs(got), hrefs(want)) {
		t.Fatal("wrong saved order: not sortScanned's")
	}
	// Parsed repodata: no saved places.
	for _, p := range old {
		p.pos = 0
	}
	got = slices.Clone(files)
	sortScannedAs(got, old)
	if !slices.Equal(hrefs(got), hrefs(want)) {
		t.Fatal("no saved places: not sortScanned's")
	}
}
