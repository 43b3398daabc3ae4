package metadata

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// publishedDocs returns the uncompressed documents repoDir's repomd.xml
// names, after checking each file against its checksums.
func publishedDocs(t *testing.T, repoDir string) repodataDocs {
	t.Helper()
	md, err := readRepomdFile(filepath.Join(repoDir, "repodata", "repomd.xml"))
	if err != nil || md == nil {
		t.Fatalf("repomd.xml: %v", err)
	}
	var docs [3][]byte
	for k, d := range docSpecs {
		r := md.Record(d.typ)
		if r == nil {
			t.Fatalf("no %s record", d.typ)
		}
		// Verify both sums, whatever readMetadataFile skips.
		b, err := readMetadataFile(context.Background(), repoDir, r, "sha256", "")
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%x", sha256Sum(b)); got != r.OpenChecksum {
			t.Fatalf("%s open-checksum %s, want %s", d.typ, r.OpenChecksum, got)
		}
		docs[k] = b
	}
	return repodataDocs{docs[0], docs[1], docs[2]}
}

func assertSameDocs(t *testing.T, what string, want, got repodataDocs) {
	t.Helper()
	for _, c := range []struct {
		name      string
		want, got []byte
	}{{"primary.xml", want.primary, got.primary}, {"filelists.xml", want.filelists, got.filelists}, {"other.xml", want.other, got.other}} {
		if !bytes.Equal(c.want, c.got) {
			t.Errorf("%s: %s differs (- want, + got):\n%s", what, c.name, diffFirst(c.want, c.got))
		}
	}
}

func writeSmall(t *testing.T, dir string, i int) string {
	t.Helper()
	p, err := testrpm.Write(dir, testrpm.Small(i))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// copyTree copies the *.rpm files of src (not recursive) to a new temp dir.
func copyRepoFiles(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	copyRPMs(t, src, dst)
	return dst
}

// onlyControlCharSkips accepts ErrSomeSkipped when every skipped package
// is one createrepo_c refuses too.
func onlyControlCharSkips(t *testing.T, res *CreateResult, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if !errors.Is(err, ErrSomeSkipped) || res == nil {
		t.Fatal(err)
	}
	for _, s := range res.Skipped {
		if !errors.Is(s.Err, ErrControlChars) {
			t.Fatalf("skipped %s: %v", s.Path, s.Err)
		}
	}
}

func TestCreateRepoMatchesCreaterepoC(t *testing.T) {
	for _, comp := range []string{"zstd", "gz"} {
		t.Run(comp, func(t *testing.T) {
			dir := t.TempDir()
			copyRPMs(t, sharedCorpus(t), dir)
			for i := 0; i < 5; i++ {
				writeSmall(t, dir, i)
			}
			res, err := CreateRepo(context.Background(), dir, WithPublishOptions(WithCompression(comp)))
			onlyControlCharSkips(t, res, err)
			assertSameDocs(t, "createrepo vs createrepo_c", oracleRepodata(t, dir), publishedDocs(t, dir))
		})
	}
}

// TestCreateRepoUpdate: --update on createrepo_c's repodata (gz and xz)
// and then on ours gives exactly a full run's output, reading only the
// new files.
func TestCreateRepoUpdate(t *testing.T) {
	ctx := context.Background()
	for _, existing := range []string{"gz", "xz"} {
		t.Run(existing, func(t *testing.T) {
			dir := t.TempDir()
			copyRPMs(t, sharedCorpus(t), dir)
			if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 30; i++ {
				writeSmall(t, filepath.Join(dir, map[bool]string{true: "sub", false: "."}[i%3 == 0]), i)
			}
			cmd := exec.Command("createrepo_c", "--no-database", "--general-compress-type", existing, dir)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("createrepo_c: %v\n%s", err, out)
			}
			before := filepath.Join(dir, "repodata", "repomd.xml")
			if !strings.Contains(string(mustRead(t, before)), ".xml."+existing) {
				t.Fatalf("createrepo_c did not write %s", existing)
			}
			old, err := loadExisting(ctx, dir)
			if err != nil || len(old) == 0 {
				t.Fatalf("loading createrepo_c repodata: %d %v", len(old), err)
			}

			// A new package, and one old package whose bytes change
			// while its size and mtime stay: --update must not read it.
			writeSmall(t, dir, 100)
			victim := filepath.Join(dir, testrpm.Small(1).FileName())
			pristine := t.TempDir()
			copyRPMs(t, dir, pristine)
			copyRPMs(t, filepath.Join(dir, "sub"), pristine) // flattened: for the oracle only
			st, err := os.Stat(victim)
			if err != nil {
				t.Fatal(err)
			}
			junk := bytes.Repeat([]byte{0xa5}, int(st.Size()))
			if err := os.WriteFile(victim, junk, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(victim, st.ModTime(), st.ModTime()); err != nil {
				t.Fatal(err)
			}

			res, err := CreateRepo(ctx, dir, WithUpdate(true), WithPublishOptions(WithCompression("gz")))
			onlyControlCharSkips(t, res, err)
			if res.Read != 1 || res.Reused != res.Packages-1 {
				t.Fatalf("update read %d, reused %d of %d", res.Read, res.Reused, res.Packages)
			}
			got := publishedDocs(t, dir)

			// The same files, untouched, in a full run.
			full := t.TempDir()
			copyRPMs(t, dir, full)
			if err := os.MkdirAll(filepath.Join(full, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			copyRPMs(t, filepath.Join(dir, "sub"), filepath.Join(full, "sub"))
			copyRPMs(t, pristine, full) // restores the victim's real bytes
			for _, e := range mustGlob(t, filepath.Join(full, "*.rpm")) {
				if _, err := os.Stat(filepath.Join(full, "sub", filepath.Base(e))); err == nil {
					if err := os.Remove(e); err != nil {
						t.Fatal(err)
					}
				}
			}
			fres, err := CreateRepo(ctx, full)
			onlyControlCharSkips(t, fres, err)
			if fres.Packages != res.Packages {
				t.Fatalf("full run has %d packages, update %d", fres.Packages, res.Packages)
			}
			assertSameDocs(t, "update vs full run", publishedDocs(t, full), got)
			assertSameDocs(t, "full run vs createrepo_c", oracleRepodata(t, full), publishedDocs(t, full))

			// --update again on our own (zstd) output after one more.
			writeSmall(t, dir, 101)
			writeSmall(t, full, 101)
			res, err = CreateRepo(ctx, dir, WithUpdate(true))
			onlyControlCharSkips(t, res, err)
			if res.Read != 1 {
				t.Fatalf("second update read %d", res.Read)
			}
			fres, err = CreateRepo(ctx, full)
			onlyControlCharSkips(t, fres, err)
			assertSameDocs(t, "second update vs full run", publishedDocs(t, full), publishedDocs(t, dir))
		})
	}
}

func mustGlob(t *testing.T, pat string) []string {
	t.Helper()
	m, err := filepath.Glob(pat)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCreateRepoSkipsBadFiles(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var good []string
	for i := 0; i < 3; i++ {
		good = append(good, writeSmall(t, dir, i))
	}
	if err := os.MkdirAll(filepath.Join(dir, "nested", "deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeSmall(t, filepath.Join(dir, "nested", "deeper"), 7)
	// Not scanned: repodata/ and dot directories.
	for _, d := range []string{".hidden", "repodata"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
		writeSmall(t, filepath.Join(dir, d), 9)
	}
	goodBytes := mustRead(t, good[0])
	bad := map[string][]byte{
		"junk.rpm":      bytes.Repeat([]byte("not an rpm "), 100),
		"empty.rpm":     nil,
		"truncated.rpm": goodBytes[:300],
		"garbled.rpm":   append(append([]byte(nil), goodBytes[:96+16]...), bytes.Repeat([]byte{0xff}, 4000)...),
	}
	for n, b := range bad {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res, err := CreateRepo(ctx, dir, WithReadWorkers(3))
	if !errors.Is(err, ErrSomeSkipped) {
		t.Fatalf("want ErrSomeSkipped, got %v", err)
	}
	if res == nil || res.Packages != 4 || len(res.Skipped) != len(bad) {
		t.Fatalf("result %+v", res)
	}
	for _, s := range res.Skipped {
		name := filepath.Base(s.Path)
		if bad[name] == nil && name != "empty.rpm" || !strings.Contains(s.Reason, name) {
			t.Errorf("skipped %q: %s", s.Path, s.Reason)
		}
		if !errors.Is(s.Err, ErrNotRPM) && !errors.Is(s.Err, ErrTruncated) && !errors.Is(s.Err, ErrMalformed) && !errors.Is(s.Err, ErrTooLarge) {
			t.Errorf("%s: unexpected error class %v", name, s.Err)
		}
	}
	docs := publishedDocs(t, dir)
	if !bytes.Contains(docs.primary, []byte(`packages="4"`)) ||
		!bytes.Contains(docs.primary, []byte(`<location href="nested/deeper/bulk00007-`)) ||
		bytes.Contains(docs.primary, []byte("bulk00009")) {
		t.Fatalf("unexpected primary:\n%s", docs.primary[:400])
	}
	// Still bad next time: skipped again, nothing reused wrongly.
	res, err = CreateRepo(ctx, dir, WithUpdate(true))
	if !errors.Is(err, ErrSomeSkipped) || len(res.Skipped) != len(bad) || res.Reused != 4 || res.Publish.Changed {
		t.Fatalf("second run: %v %+v", err, res)
	}
}

func TestCreateRepoUnchangedIsNotRewritten(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		writeSmall(t, dir, i)
	}
	if _, err := CreateRepo(ctx, dir); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "repodata", "repomd.xml")
	b1, fi1 := mustRead(t, p), mustStat(t, p)
	time.Sleep(1100 * time.Millisecond) // a rewrite would show in the mtime
	for _, update := range []bool{false, true} {
		res, err := CreateRepo(ctx, dir, WithUpdate(update))
		if err != nil {
			t.Fatal(err)
		}
		if res.Publish.Changed {
			t.Fatalf("update=%v: unchanged repository rewritten", update)
		}
	}
	b2, fi2 := mustRead(t, p), mustStat(t, p)
	if !bytes.Equal(b1, b2) || !fi1.ModTime().Equal(fi2.ModTime()) {
		t.Fatal("repomd.xml changed")
	}
	ents, err := os.ReadDir(filepath.Join(dir, "repodata"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 4 {
		t.Fatalf("repodata has %d entries", len(ents))
	}
	// The cache lives outside repodata/.
	if !pathExists(filepath.Join(dir, CacheDirName, packName)) {
		t.Fatal("no block cache")
	}
}

func mustStat(t *testing.T, p string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

func TestDirCacheTornRecordIsAMiss(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	c, err := NewDirCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	k1, k2 := fmt.Sprintf("%064x", 1), fmt.Sprintf("%064x", 2)
	if err := c.PutBlocks(ctx, map[string][]byte{k1: []byte("one")}); err != nil {
		t.Fatal(err)
	}
	if err := c.PutBlocks(ctx, map[string][]byte{k2: []byte("two")}); err != nil {
		t.Fatal(err)
	}
	// Damage the last byte of the second record's data.
	p := filepath.Join(dir, packName)
	b := mustRead(t, p)
	b[len(b)-sha256Size-1] ^= 0xff
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	c2, err := NewDirCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c2.GetBlocks(ctx, []string{k1, k2})
	if err != nil || string(got[k1]) != "one" || got[k2] != nil {
		t.Fatalf("got %q %v", got, err)
	}
	// The next append replaces the torn tail.
	k3 := fmt.Sprintf("%064x", 3)
	if err := c2.PutBlocks(ctx, map[string][]byte{k3: []byte("three")}); err != nil {
		t.Fatal(err)
	}
	c3, err := NewDirCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err = c3.GetBlocks(ctx, []string{k1, k2, k3})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got[k3]) != "three" {
		t.Fatalf("after append: %q", got)
	}
	// Retaining only k3 compacts once the dead part dominates.
	big := fmt.Sprintf("%064x", 4)
	if err := c3.PutBlocks(ctx, map[string][]byte{big: bytes.Repeat([]byte("x"), 3<<20)}); err != nil {
		t.Fatal(err)
	}
	if err := c3.RetainBlocks(ctx, []string{k3}); err != nil {
		t.Fatal(err)
	}
	if fi := mustStat(t, p); fi.Size() > 1024 {
		t.Fatalf("pack not compacted: %d bytes", fi.Size())
	}
	c4, err := NewDirCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err = c4.GetBlocks(ctx, []string{k1, k3, big})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || string(got[k3]) != "three" {
		t.Fatalf("after compaction: %d blocks", len(got))
	}
}

const sha256Size = 32

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// TestCreaterepoCUpdatesOurRepodata: the other direction. createrepo_c
// --update reads our multi-member gz repodata and reuses it; its output
// then equals its own full run.
func TestCreaterepoCUpdatesOurRepodata(t *testing.T) {
	dir := t.TempDir()
	copyRPMs(t, sharedCorpus(t), dir)
	for i := 0; i < 150; i++ {
		writeSmall(t, dir, i)
	}
	res, err := CreateRepo(context.Background(), dir, WithPublishOptions(WithCompression("gz")))
	onlyControlCharSkips(t, res, err)
	if res.Publish.BlocksCompressed < 6 {
		t.Fatalf("want several gzip members per file, got %d blocks", res.Publish.BlocksCompressed)
	}
	writeSmall(t, dir, 500)
	list := filepath.Join(t.TempDir(), "read.txt")
	cmd := exec.Command("createrepo_c", "--no-database", "--update", "--read-pkgs-list", list, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("createrepo_c --update: %v\n%s", err, out)
	}
	// It re-read only the new package: the rest came from our XML.
	if read := strings.Fields(string(mustRead(t, list))); len(read) != 1 || !strings.Contains(read[0], "bulk00500") {
		t.Fatalf("createrepo_c re-read %v", read)
	}
	got := make([][]byte, 3)
	md, err := readRepomdFile(filepath.Join(dir, "repodata", "repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	for k, d := range docSpecs {
		if got[k], err = readMetadataFile(context.Background(), dir, md.Record(d.typ), "sha256", ""); err != nil {
			t.Fatal(err)
		}
	}
	assertSameDocs(t, "createrepo_c --update on ours vs createrepo_c full", oracleRepodata(t, dir), repodataDocs{got[0], got[1], got[2]})
}

// scanRPMs finds every *.rpm as createrepo_c would, across more entries
// than one directory read returns and more directories than it keeps
// open, following symbolic links to files, skipping dangling ones, dot
// directories and the top repodata/, and taking --skip-stat's known
// sizes as they are.
func TestScanRPMs(t *testing.T) {
	dir := t.TempDir()
	write := func(rel string, size int) {
		t.Helper()
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]int64{}
	for i := range 2500 {
		rel := fmt.Sprintf("f%04d.rpm", i)
		write(rel, i%7)
		want[rel] = int64(i % 7)
	}
	for i := range 70 {
		rel := fmt.Sprintf("d%02d/x.rpm", i)
		write(rel, i)
		want[rel] = int64(i)
	}
	write("d00/repodata/z.rpm", 3) // only the top repodata/ is skipped
	want["d00/repodata/z.rpm"] = 3
	write("dir.rpm/in.rpm", 4) // a directory named *.rpm is walked
	want["dir.rpm/in.rpm"] = 4
	write(".hidden/h.rpm", 1)
	write("repodata/r.rpm", 1)
	write("notes.txt", 1)
	if err := os.Symlink("f0006.rpm", filepath.Join(dir, "link.rpm")); err != nil {
		t.Fatal(err)
	}
	want["link.rpm"] = 6
	if err := os.Symlink("missing.rpm", filepath.Join(dir, "dangling.rpm")); err != nil {
		t.Fatal(err)
	}
	want["f0001.rpm"] = 99 // known: not stat'ed
	files, err := scanRPMs(context.Background(), dir, 2, map[string][2]int64{"f0001.rpm": {99, 5}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, f := range files {
		if _, dup := got[f.href]; dup {
			t.Fatalf("%s listed twice", f.href)
		}
		got[f.href] = f.size
		if f.path() != filepath.Join(dir, filepath.FromSlash(f.href)) {
			t.Fatalf("%s: path %s", f.href, f.path())
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d files, want %d", len(got), len(want))
	}
	for h, sz := range want {
		if g, ok := got[h]; !ok || g != sz {
			t.Fatalf("%s: size %d (found %v), want %d", h, g, ok, sz)
		}
	}
}
