package metadata

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// publishedSmall is a new repository of testrpm.Small(lo) to
// Small(hi-1), published once with the default cache (and so a saved
// state).
func publishedSmall(t *testing.T, lo, hi int) string {
	t.Helper()
	dir := t.TempDir()
	for i := lo; i < hi; i++ {
		writeSmall(t, dir, i)
	}
	if _, err := CreateRepo(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// fullRunOf publishes a copy of dir's packages from scratch and returns
// its documents: what every --update must equal.
func fullRunOf(t *testing.T, dir string) repodataDocs {
	t.Helper()
	full := t.TempDir()
	copyRPMs(t, dir, full)
	if _, err := CreateRepo(context.Background(), full, WithCacheDir("")); err != nil {
		t.Fatal(err)
	}
	return publishedDocs(t, full)
}

func TestCreateRepoUpdateFastPath(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for i := 0; i < 400; i++ {
		writeSmall(t, dir, i)
	}
	res, err := CreateRepo(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	update := func(what, from string, read int) *CreateResult {
		t.Helper()
		res, err := CreateRepo(ctx, dir, WithUpdate(true))
		if err != nil {
			t.Fatal(err)
		}
		if res.ReusedFrom != from || res.Read != read {
			t.Fatalf("%s: reused from %q, read %d; want %q, %d", what, res.ReusedFrom, res.Read, from, read)
		}
		assertSameDocs(t, what, fullRunOf(t, dir), publishedDocs(t, dir))
		return res
	}

	writeSmall(t, dir, 5000)
	res = update("one added", "state", 1)
	if c := res.Publish.BlocksCompressed; c < 3 || c > 6 {
		t.Fatalf("one added: %d blocks compressed", c)
	}

	// Changed in place: new content and mtime, same name.
	s := testrpm.Small(17)
	s.Release = "2.el9"
	s.BuildTime = time.Unix(1700001000, 0)
	b, err := testrpm.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, testrpm.Small(17).FileName())
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	update("one changed", "state", 1)

	if err := os.Remove(filepath.Join(dir, testrpm.Small(33).FileName())); err != nil {
		t.Fatal(err)
	}
	update("one removed", "state", 0)

	// Nothing changed: nothing rewritten.
	if res = update("nothing changed", "state", 0); res.Publish.Changed {
		t.Fatal("unchanged repository rewritten")
	}

	// Another tool rewrote repodata/: the state no longer describes it.
	if out, err := exec.Command("createrepo_c", "--no-database", dir).CombinedOutput(); err != nil {
		t.Fatalf("createrepo_c: %v\n%s", err, out)
	}
	writeSmall(t, dir, 5001)
	update("after createrepo_c", "repodata", 1)

	// A damaged state is not trusted.
	st := filepath.Join(dir, CacheDirName, stateFileName)
	sb := mustRead(t, st)
	sb[len(sb)/2] ^= 0x40
	if err := os.WriteFile(st, sb, 0o644); err != nil {
		t.Fatal(err)
	}
	writeSmall(t, dir, 5002)
	update("damaged state", "repodata", 1)

	// Torn uncompressed blocks are not trusted either.
	raw := filepath.Join(dir, CacheDirName, rawPackName)
	fi := mustStat(t, raw)
	if err := os.Truncate(raw, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	writeSmall(t, dir, 5003)
	update("torn raw pack", "repodata", 1)

	// Different render options: the state is not used.
	res, err = CreateRepo(ctx, dir, WithUpdate(true), WithRenderOptions(RenderOptions{BaseURL: "http://mirror.example/repo"}))
	if err != nil || res.ReusedFrom != "repodata" || res.Read != res.Packages {
		t.Fatalf("new base URL: %v, reused from %q, read %d of %d", err, res.ReusedFrom, res.Read, res.Packages)
	}
}

func TestStateRoundTripAndDamage(t *testing.T) {
	s := &repoState{checksums: [3]string{"a", "b", "c"}, codecID: "zstd", base: "", changelog: -2,
		entries: []stateEntry{{href: "x.rpm", pkgid: "p", size: 10, mtime: 20, lens: [3]uint64{1, 2, 3}},
			{href: "y.rpm", size: 1, lens: [3]uint64{4, 5, 6}}},
		blocks: []stateBlock{{n: 2, keys: [3]string{"k1", "k2", "k3"}}}}
	b := s.marshal()
	got, err := unmarshalState(b)
	if err != nil || got.entries[1].href != "y.rpm" || got.blocks[0].keys[2] != "k3" || got.changelog != -2 {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for i := 0; i < len(b); i++ {
		c := append([]byte(nil), b...)
		c[i] ^= 0x01
		if _, err := unmarshalState(c); err == nil {
			t.Fatalf("flipped byte %d accepted", i)
		}
		if _, err := unmarshalState(b[:i]); err == nil {
			t.Fatalf("truncated at %d accepted", i)
		}
	}
}

func TestCreateRepoDryRunWritesNothing(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		writeSmall(t, dir, i)
	}
	dry := WithPublishOptions(WithDryRun(true))
	res, err := CreateRepo(ctx, dir, dry)
	if err != nil || !res.Publish.DryRun || !res.Publish.Changed || res.Packages != 50 {
		t.Fatalf("dry run on a new repository: %v %+v", err, res)
	}
	for _, p := range []string{"repodata", CacheDirName} {
		if pathExists(filepath.Join(dir, p)) {
			t.Fatalf("dry run created %s", p)
		}
	}
	if _, err := CreateRepo(ctx, dir); err != nil {
		t.Fatal(err)
	}
	snapshot := func() map[string]string {
		m := map[string]string{}
		for _, d := range []string{"repodata", CacheDirName} {
			ents, err := os.ReadDir(filepath.Join(dir, d))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				fi, err := e.Info()
				if err != nil {
					t.Fatal(err)
				}
				m[d+"/"+e.Name()] = fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
			}
		}
		return m
	}
	before := snapshot()
	writeSmall(t, dir, 77)
	res, err = CreateRepo(ctx, dir, WithUpdate(true), dry)
	if err != nil || !res.Publish.Changed || res.Read != 1 {
		t.Fatalf("dry run with a new package: %v %+v", err, res)
	}
	if after := snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("dry run wrote:\nbefore %v\nafter  %v", before, after)
	}
	// The dry run's checksums are the real run's.
	real, err := CreateRepo(ctx, dir, WithUpdate(true))
	if err != nil {
		t.Fatal(err)
	}
	for k := range real.Publish.Records {
		if real.Publish.Records[k].Checksum != res.Publish.Records[k].Checksum {
			t.Fatalf("dry run predicted %s, real run wrote %s", res.Publish.Records[k].Checksum, real.Publish.Records[k].Checksum)
		}
	}
	if res, err = CreateRepo(ctx, dir, WithUpdate(true), dry); err != nil || res.Publish.Changed {
		t.Fatalf("dry run on an up-to-date repository: %v %+v", err, res.Publish)
	}
}

// damageRawBlocks flips a byte in the middle of the data of raw.pack's
// records for keys (their headers stay valid, so only their checksums
// tell), and returns how many it damaged.
func damageRawBlocks(t *testing.T, dir string, keys map[string]bool) int {
	t.Helper()
	p := filepath.Join(dir, CacheDirName, rawPackName)
	b := mustRead(t, p)
	n := 0
	for pos := 0; pos+packRecHead+4 <= len(b) && string(b[pos:pos+4]) == packMagic; {
		key := fmt.Sprintf("%x", b[pos+4:pos+4+32])
		l := int(binary.BigEndian.Uint32(b[pos+36:]))
		start := pos + packRecHead
		if keys[key] {
			// Inside a package's name, so that every fragment still
			// looks like one <package> element.
			i := bytes.Index(b[start+l/2:start+l], []byte(`name`))
			if i < 0 {
				t.Fatalf("no name in block %s", key)
			}
			b[start+l/2+i+1] ^= 0x20
			n++
		}
		pos = start + l + 4
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// savedState reads dir's createrepo state.
func savedState(t *testing.T, dir string) *repoState {
	t.Helper()
	s, err := unmarshalState(mustRead(t, filepath.Join(dir, CacheDirName, stateFileName)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A saved block whose packages are all still there, in order and
// unchanged, is taken whole: its documents and its encoded state entries
// as saved. Where a new package comes first in a block, the block after
// it is found whole but cannot be taken so (the partition has moved), and
// its packages go in one by one. Either way the published files and the
// saved state are byte for byte a full run's.
func TestCreateRepoUpdateWholeBlocks(t *testing.T) {
	ctx := context.Background()
	dir := publishedSmall(t, 100, 700)
	var taken, drifted int
	streamWhole = func(ok bool) {
		if ok {
			taken++
		} else {
			drifted++
		}
	}
	defer func() { streamWhole = nil }()
	update := func(what string) {
		t.Helper()
		taken, drifted = 0, 0
		res, err := CreateRepo(ctx, dir, WithUpdate(true))
		if err != nil || res.ReusedFrom != "state" {
			t.Fatalf("%s: %v, reused from %q", what, err, res.ReusedFrom)
		}
		full := t.TempDir()
		copyRPMs(t, dir, full)
		if _, err := CreateRepo(ctx, full); err != nil {
			t.Fatal(err)
		}
		assertSameDocs(t, what, publishedDocs(t, full), publishedDocs(t, dir))
		gmd, err := readRepomdFile(filepath.Join(dir, "repodata", "repomd.xml"))
		if err != nil {
			t.Fatal(err)
		}
		wmd, err := readRepomdFile(filepath.Join(full, "repodata", "repomd.xml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docSpecs {
			if g, w := gmd.Record(d.typ), wmd.Record(d.typ); g.Checksum != w.Checksum || g.Size != w.Size {
				t.Fatalf("%s: compressed %s differs from a full run's", what, d.typ)
			}
		}
		if g, w := mustRead(t, filepath.Join(dir, CacheDirName, stateFileName)), mustRead(t, filepath.Join(full, CacheDirName, stateFileName)); !bytes.Equal(g, w) {
			t.Fatalf("%s: saved state differs from a full run's", what)
		}
	}
	nBlocks := len(savedState(t, dir).blocks)
	update("nothing changed")
	if taken != nBlocks || drifted != 0 {
		t.Fatalf("nothing changed: %d of %d blocks taken whole, %d drifted", taken, nBlocks, drifted)
	}
	writeSmall(t, dir, 5) // sorts first, before the first block
	update("added at the start")
	if taken != nBlocks-1 || drifted != 1 {
		t.Fatalf("added at the start: %d of %d blocks taken whole, %d drifted; want %d and 1", taken, nBlocks, drifted, nBlocks-1)
	}
	nBlocks = len(savedState(t, dir).blocks)
	writeSmall(t, dir, 9000) // sorts last: the last block grows
	update("added at the end")
	if taken != nBlocks-1 || drifted != 0 {
		t.Fatalf("added at the end: %d of %d blocks taken whole, %d drifted; want %d and 0", taken, nBlocks, drifted, nBlocks-1)
	}
	if err := os.Remove(filepath.Join(dir, testrpm.Small(400).FileName())); err != nil {
		t.Fatal(err)
	}
	update("removed")
	if taken < nBlocks-2 {
		t.Fatalf("removed: %d of %d blocks taken whole", taken, nBlocks)
	}

	// A file that is no package, among a saved block's: the block is
	// not found whole by the dispatch, but it is still the saved block
	// once the file is skipped, and nothing is compressed again.
	st := savedState(t, dir)
	junk := ""
	pos := 0
	for _, bl := range st.blocks {
		if bl.n >= 2 {
			m0, m1 := st.entries[pos].href, st.entries[pos+1].href
			if j := strings.TrimSuffix(m0, ".rpm") + "0.rpm"; strings.Compare(m0, j) < 0 && strings.Compare(j, m1) < 0 {
				junk = j
				break
			}
		}
		pos += bl.n
	}
	if junk == "" {
		t.Fatal("no name sorts inside a saved block")
	}
	if err := os.WriteFile(filepath.Join(dir, junk), []byte("not an rpm"), 0o644); err != nil {
		t.Fatal(err)
	}
	taken, drifted = 0, 0
	res, err := CreateRepo(ctx, dir, WithUpdate(true))
	if !errors.Is(err, ErrSomeSkipped) || res == nil || len(res.Skipped) != 1 {
		t.Fatalf("junk inside a block: %v, %+v", err, res)
	}
	if res.ReusedFrom != "state" || res.Publish.Changed || res.Publish.BlocksCompressed != 0 {
		t.Fatalf("junk inside a block: reused from %q, changed %v, %d blocks compressed", res.ReusedFrom, res.Publish.Changed, res.Publish.BlocksCompressed)
	}
	if n := len(st.blocks); taken != n || drifted != 0 {
		t.Fatalf("junk inside a block: %d of %d blocks taken as saved, %d drifted", taken, n, drifted)
	}
}

// Blocks of raw.pack are read unchecked and checked where they are used:
// a damaged block that --update would hash whole, or copy fragments out
// of, makes it build again without the state, with the same result as a
// full run; the damage is gone after it.
func TestCreateRepoUpdateDamagedRawBlocks(t *testing.T) {
	ctx := context.Background()
	dir := publishedSmall(t, 0, 600)
	update := func(what, from string, read int) {
		t.Helper()
		res, err := CreateRepo(ctx, dir, WithUpdate(true))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if res.ReusedFrom != from || res.Read != read {
			t.Fatalf("%s: reused from %q, read %d; want %q, %d", what, res.ReusedFrom, res.Read, from, read)
		}
		assertSameDocs(t, what, fullRunOf(t, dir), publishedDocs(t, dir))
	}

	// Nothing changed: every block is taken whole, none is copied. One
	// damaged block (the last document's, in the middle) is found while
	// hashing.
	s := savedState(t, dir)
	if len(s.blocks) < 4 {
		t.Fatalf("%d blocks: too few for the test", len(s.blocks))
	}
	if n := damageRawBlocks(t, dir, map[string]bool{s.blocks[len(s.blocks)/2].keys[2]: true}); n != 1 {
		t.Fatalf("damaged %d records", n)
	}
	update("block hashed whole damaged", "repodata", 0)
	update("after the rebuild", "state", 0)

	// One package added: the old blocks that are not kept whole are
	// rebuilt from their fragments. Only those are damaged, so only
	// copying can find it.
	s = savedState(t, dir)
	href := filepath.Base(writeSmall(t, dir, 5000))
	hrefs := []string{href}
	for _, e := range s.entries {
		hrefs = append(hrefs, e.href)
	}
	slices.SortFunc(hrefs, func(a, b string) int { return comparePublished(a, "", b, "") })
	newBlocks := map[string]bool{}
	for _, sp := range partitionBy(len(hrefs), func(i int) bool { return hashCut(hrefs[i]) }) {
		newBlocks[strings.Join(hrefs[sp.lo:sp.hi], "\x00")] = true
	}
	around := map[string]bool{}
	pos := 0
	for _, bl := range s.blocks {
		var members []string
		for _, e := range s.entries[pos : pos+bl.n] {
			members = append(members, e.href)
		}
		if !newBlocks[strings.Join(members, "\x00")] {
			for _, k := range bl.keys {
				around[k] = true
			}
		}
		pos += bl.n
	}
	if len(around) == 0 {
		t.Fatal("no block around the new package")
	}
	if n := damageRawBlocks(t, dir, around); n != len(around) {
		t.Fatalf("damaged %d of %d records", n, len(around))
	}
	update("block copied from damaged", "repodata", 1)
	update("after the second rebuild", "state", 0)
}

// The early open-checksum streams (prefixHash) hash the saved blocks
// before the build, which takes over at the first block it changes:
// after adds at the start, middle and end, a replacement, a removal and
// no change, repomd.xml's checksums and sizes (open ones too) are a full
// run's, and the build took over past the start at least once per
// document.
func TestCreateRepoUpdatePrefixHashes(t *testing.T) {
	ctx := context.Background()
	dir := publishedSmall(t, 100, 700)
	prefixWait = true
	var mu sync.Mutex
	took := map[int]int{} // document → highest boundary
	prefixTook = func(doc, b int) { mu.Lock(); took[doc] = max(took[doc], b); mu.Unlock() }
	defer func() { prefixWait, prefixTook = false, nil }()
	records := func(d string) []RepomdRecord {
		md, err := readRepomdFile(filepath.Join(d, "repodata", "repomd.xml"))
		if err != nil || md == nil {
			t.Fatalf("repomd.xml: %v", err)
		}
		return md.Records
	}
	update := func(what string, after ...func()) {
		t.Helper()
		res, err := CreateRepo(ctx, dir, WithUpdate(true))
		if err != nil || res.ReusedFrom != "state" {
			t.Fatalf("%s: %v, reused from %q", what, err, res.ReusedFrom)
		}
		for _, f := range after {
			f()
		}
		full := t.TempDir()
		copyRPMs(t, dir, full)
		if _, err := CreateRepo(ctx, full, WithCacheDir("")); err != nil {
			t.Fatal(err)
		}
		got, want := records(dir), records(full)
		for k := range want {
			g, w := got[k], want[k]
			if g.Checksum != w.Checksum || g.OpenChecksum != w.OpenChecksum || g.Size != w.Size || g.OpenSize != w.OpenSize {
				t.Fatalf("%s: %s: got %s/%s %d/%d, want %s/%s %d/%d", what, w.Type, g.Checksum, g.OpenChecksum, g.Size, g.OpenSize,
					w.Checksum, w.OpenChecksum, w.Size, w.OpenSize)
			}
		}
	}
	writeSmall(t, dir, 5) // sorts first
	update("added at the start")
	writeSmall(t, dir, 400)
	update("added in the middle")
	writeSmall(t, dir, 9000) // sorts last
	update("added at the end")
	// Names that are no package, a dangling symlink and a FIFO: the
	// header counts only the packages, and so do the early streams.
	gone, fifo := filepath.Join(dir, "zz-gone.rpm"), filepath.Join(dir, "zz-fifo.rpm")
	if err := os.Symlink("nowhere", gone); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	writeSmall(t, dir, 9001)
	clear(took)
	update("added beside names that are no package", func() {
		for _, p := range []string{gone, fifo} {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
	})
	for k := range docSpecs {
		if took[k] == 0 {
			t.Fatalf("beside names that are no package: %s: the build never took over past the start (%v)", docSpecs[k].typ, took)
		}
	}
	s := testrpm.Small(650)
	s.Release = "2.el9"
	s.BuildTime = time.Unix(1700001000, 0)
	b, err := testrpm.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, testrpm.Small(650).FileName()), b, 0o644); err != nil {
		t.Fatal(err)
	}
	update("replaced in place")
	if err := os.Remove(filepath.Join(dir, testrpm.Small(300).FileName())); err != nil {
		t.Fatal(err)
	}
	update("removed")
	// A whole block removed: the next saved block comes one place
	// earlier than it was, and is not the saved one in that place.
	st := savedState(t, dir)
	pos := 0
	for _, bl := range st.blocks[:len(st.blocks)/2] {
		pos += bl.n
	}
	for _, e := range st.entries[pos : pos+st.blocks[len(st.blocks)/2].n] {
		if err := os.Remove(filepath.Join(dir, e.href)); err != nil {
			t.Fatal(err)
		}
	}
	update("block removed")
	update("nothing changed")
	for k := range docSpecs {
		if took[k] == 0 {
			t.Fatalf("%s: the build never took over past the start (%v)", docSpecs[k].typ, took)
		}
	}
}

// An empty directory publishes empty repodata and saves a state for it
// without a notice (a fresh pack with no blocks is never written), and
// --update after it reuses that state; so does one whose last package
// went, where the older pack is stale.
func TestCreateRepoEmptySavesState(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	run := func(what string, opts ...CreateOption) *CreateResult {
		t.Helper()
		p := &recProgress{}
		res, err := CreateRepo(ctx, dir, append(opts, WithPublishOptions(WithProgress(p)))...)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(p.notices) != 0 {
			t.Fatalf("%s: notices %q", what, p.notices)
		}
		return res
	}
	run("empty")
	if res := run("empty, --update", WithUpdate(true)); res.ReusedFrom != "state" || res.Packages != 0 {
		t.Fatalf("empty, --update: reused from %q, %d packages", res.ReusedFrom, res.Packages)
	}
	p := writeSmall(t, dir, 1)
	if res := run("one package", WithUpdate(true)); res.Packages != 1 || res.Read != 1 {
		t.Fatalf("one package: %d packages, read %d", res.Packages, res.Read)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	run("last package removed")
	if _, err := os.Stat(filepath.Join(dir, CacheDirName, rawPackName)); !os.IsNotExist(err) {
		t.Fatalf("stale raw pack kept: %v", err)
	}
	if res := run("then --update", WithUpdate(true)); res.ReusedFrom != "state" || res.Packages != 0 {
		t.Fatalf("then --update: reused from %q, %d packages", res.ReusedFrom, res.Packages)
	}
}
