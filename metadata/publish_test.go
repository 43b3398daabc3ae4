package metadata

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeEntry is a package as Publish sees it. Publish treats fragments as
// opaque, so these tests do not need the header reader.
func fakeEntry(i int, salt string) Entry {
	name := fmt.Sprintf("pkg%05d", i)
	href := name + "-1.0-1.x86_64.rpm"
	id := sha256.Sum256([]byte(href + salt))
	pkgid := hex.EncodeToString(id[:])
	return Entry{
		PkgID: pkgid, Name: name, Arch: "x86_64", Epoch: "0", Version: "1.0", Release: "1",
		Href: href, Size: int64(1000 + i), MTime: 1700000000,
		Primary: []byte(fmt.Sprintf("<package type=\"rpm\">\n  <name>%s</name>\n  <arch>x86_64</arch>\n  <version epoch=\"0\" ver=\"1.0\" rel=\"1\"/>\n  <checksum type=\"sha256\" pkgid=\"YES\">%s</checksum>\n  <summary>%s %s</summary>\n  <location href=\"%s\"/>\n</package>\n",
			name, pkgid, name, salt, href)),
		Filelists: []byte(fmt.Sprintf("<package pkgid=\"%s\" name=\"%s\" arch=\"x86_64\">\n  <version epoch=\"0\" ver=\"1.0\" rel=\"1\"/>\n  <file>/usr/bin/%s</file>\n</package>\n", pkgid, name, name)),
		Other:     []byte(fmt.Sprintf("<package pkgid=\"%s\" name=\"%s\" arch=\"x86_64\">\n  <version epoch=\"0\" ver=\"1.0\" rel=\"1\"/>\n</package>\n", pkgid, name)),
	}
}

func fakeEntries(n int, salt string) []Entry {
	es := make([]Entry, n)
	for i := range es {
		es[i] = fakeEntry(i, salt)
	}
	return es
}

// expectedDoc is the uncompressed document Publish must produce.
func expectedDoc(k int, entries []Entry) []byte {
	sorted, err := sortEntries(entries)
	if err != nil {
		panic(err)
	}
	d := docSpecs[k]
	b := d.header(len(sorted))
	for _, e := range sorted {
		b = append(b, d.frag(e)...)
	}
	return append(b, d.footer...)
}

// checkRepodata verifies repomd.xml and every file it names: existence,
// size, checksum, and that the uncompressed content is want (if given).
func checkRepodata(t *testing.T, repoDir string, want []Entry) *Repomd {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoDir, "repodata", "repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	md, err := ParseRepomd(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Records) != 3 {
		t.Fatalf("repomd has %d records", len(md.Records))
	}
	for k, r := range md.Records {
		if r.Type != docSpecs[k].typ {
			t.Fatalf("record %d is %q", k, r.Type)
		}
		b, err := os.ReadFile(filepath.Join(repoDir, r.Href))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != r.Checksum || int64(len(b)) != r.Size {
			t.Fatalf("%s: checksum/size mismatch", r.Href)
		}
		if !strings.HasPrefix(filepath.Base(r.Href), r.Checksum+"-"+r.Type+".xml.") {
			t.Fatalf("%s: name does not carry checksum", r.Href)
		}
		rc, err := decompressedReader(r.Href, bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		open, err := io.ReadAll(rc)
		if err != nil {
			t.Fatalf("%s: %v", r.Href, err)
		}
		if sum := sha256.Sum256(open); hex.EncodeToString(sum[:]) != r.OpenChecksum || int64(len(open)) != r.OpenSize {
			t.Fatalf("%s: open checksum/size mismatch", r.Href)
		}
		if want != nil && !bytes.Equal(open, expectedDoc(k, want)) {
			t.Fatalf("%s: content differs from expected document", r.Href)
		}
	}
	return md
}

func TestPublishWritesConsistentRepodata(t *testing.T) {
	for _, comp := range []string{"zstd", "gz"} {
		t.Run(comp, func(t *testing.T) {
			dir := t.TempDir()
			es := fakeEntries(300, "a")
			res, err := Publish(context.Background(), dir, es, WithCompression(comp), WithRevision("7"))
			if err != nil {
				t.Fatal(err)
			}
			if !res.Changed || res.Packages != 300 || res.Revision != "7" {
				t.Fatalf("result %+v", res)
			}
			md := checkRepodata(t, dir, es)
			if md.Revision != "7" {
				t.Fatalf("revision %q", md.Revision)
			}
			for _, r := range md.Records {
				ext := map[string]string{"zstd": ".zst", "gz": ".gz"}[comp]
				if !strings.HasSuffix(r.Href, ext) {
					t.Fatalf("href %q", r.Href)
				}
			}
		})
	}
}

func TestPublishEmptyRepository(t *testing.T) {
	dir := t.TempDir()
	if _, err := Publish(context.Background(), dir, nil); err != nil {
		t.Fatal(err)
	}
	checkRepodata(t, dir, []Entry{})
}

func TestPublishUnchangedKeepsRepomdBytes(t *testing.T) {
	dir := t.TempDir()
	es := fakeEntries(200, "a")
	ctx := context.Background()
	if _, err := Publish(ctx, dir, es); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "repodata", "repomd.xml")
	before, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	fi1, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	// Make an mtime change observable.
	time.Sleep(20 * time.Millisecond)
	// Same content, different order and a cache that has nothing.
	rev := append([]Entry(nil), es...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	res, err := Publish(ctx, dir, rev)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed {
		t.Fatal("unchanged repository reported as changed")
	}
	after, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	fi2, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) || !fi1.ModTime().Equal(fi2.ModTime()) || !os.SameFile(fi1, fi2) {
		t.Fatal("repomd.xml was rewritten")
	}
	// A different explicit revision is a change.
	res, err = Publish(ctx, dir, es, WithRevision("other"))
	if err != nil || !res.Changed {
		t.Fatalf("revision change: %v %+v", err, res)
	}
	// A different compression is a change.
	res, err = Publish(ctx, dir, es, WithRevision("other"), WithCompression("gz"))
	if err != nil || !res.Changed {
		t.Fatalf("compression change: %v %+v", err, res)
	}
	checkRepodata(t, dir, es)
}

func TestPublishRejectsBadEntries(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	es := fakeEntries(3, "a")
	es[1].Href = es[0].Href
	if _, err := Publish(ctx, dir, es); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("duplicate href: %v", err)
	}
	es = fakeEntries(3, "a")
	es[2].Other = []byte("<package>unterminated")
	if _, err := Publish(ctx, dir, es); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("bad fragment: %v", err)
	}
	if pathExists(filepath.Join(dir, "repodata")) {
		t.Fatal("bad entries reached the repository")
	}
	for _, o := range []PublishOption{WithCompression("lz4"), WithGrace(-1), WithRevision(""), WithWorkers(-1)} {
		if _, err := Publish(ctx, dir, nil, o); !errors.Is(err, ErrBadOption) {
			t.Fatalf("bad option accepted: %v", err)
		}
	}
}

// memCache is a BlockCache in memory that counts traffic.
type memCache struct {
	mu   sync.Mutex
	m    map[string][]byte
	puts int
}

func (c *memCache) GetBlocks(_ context.Context, keys []string) (map[string][]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]byte{}
	for _, k := range keys {
		if b, ok := c.m[k]; ok {
			out[k] = b
		}
	}
	return out, nil
}

func (c *memCache) PutBlocks(_ context.Context, bs map[string][]byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string][]byte{}
	}
	for k, b := range bs {
		c.m[k] = b
		c.puts++
	}
	return nil
}

func TestPublishBlockCacheRecompressesOnlyChangedBlocks(t *testing.T) {
	for _, comp := range []string{"zstd", "gz"} {
		t.Run(comp, func(t *testing.T) {
			dir := t.TempDir()
			ctx := context.Background()
			cache := &memCache{}
			es := fakeEntries(2000, "a")
			res, err := Publish(ctx, dir, es, WithBlockCache(cache), WithCompression(comp))
			if err != nil {
				t.Fatal(err)
			}
			if res.BlocksReused != 0 || res.BlocksCompressed < 3*(2000/blockMax) {
				t.Fatalf("first publish: %+v", res)
			}
			es = append(es, fakeEntry(5000, "new"))
			res, err = Publish(ctx, dir, es, WithBlockCache(cache), WithCompression(comp))
			if err != nil {
				t.Fatal(err)
			}
			// One block per document, or two if the new package split one.
			if res.BlocksCompressed < 3 || res.BlocksCompressed > 6 || res.BlocksReused == 0 {
				t.Fatalf("adding one package compressed %d blocks, reused %d", res.BlocksCompressed, res.BlocksReused)
			}
			checkRepodata(t, dir, es)
			// A cold publish of the same content yields the same bytes.
			cold := t.TempDir()
			if _, err := Publish(ctx, cold, es, WithCompression(comp)); err != nil {
				t.Fatal(err)
			}
			a, err := ParseRepomd(mustRead(t, filepath.Join(dir, "repodata", "repomd.xml")))
			if err != nil {
				t.Fatal(err)
			}
			b, err := ParseRepomd(mustRead(t, filepath.Join(cold, "repodata", "repomd.xml")))
			if err != nil {
				t.Fatal(err)
			}
			for k := range a.Records {
				if a.Records[k].Checksum != b.Records[k].Checksum {
					t.Fatalf("cached and cold publish differ for %s", a.Records[k].Type)
				}
			}
		})
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
