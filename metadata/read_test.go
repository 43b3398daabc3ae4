package metadata

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// layout locates the parts of a valid package image.
type layout struct {
	sigIntro, sigIndex, sigData int
	sigCount, sigSize           int
	hdrIntro, hdrIndex, hdrData int
	hdrCount, hdrSize           int
	end                         int
}

func parseLayout(t testing.TB, b []byte) layout {
	t.Helper()
	var l layout
	l.sigIntro = leadSize
	l.sigCount = int(binary.BigEndian.Uint32(b[l.sigIntro+8:]))
	l.sigSize = int(binary.BigEndian.Uint32(b[l.sigIntro+12:]))
	l.sigIndex = l.sigIntro + introSize
	l.sigData = l.sigIndex + l.sigCount*indexSize
	l.hdrIntro = l.sigData + l.sigSize + (8-l.sigSize%8)%8
	l.hdrCount = int(binary.BigEndian.Uint32(b[l.hdrIntro+8:]))
	l.hdrSize = int(binary.BigEndian.Uint32(b[l.hdrIntro+12:]))
	l.hdrIndex = l.hdrIntro + introSize
	l.hdrData = l.hdrIndex + l.hdrCount*indexSize
	l.end = l.hdrData + l.hdrSize
	return l
}

// findEntry returns the position of tag's index entry in the main header.
func findEntry(t testing.TB, b []byte, l layout, tag uint32) int {
	t.Helper()
	for i := 0; i < l.hdrCount; i++ {
		at := l.hdrIndex + i*indexSize
		if binary.BigEndian.Uint32(b[at:]) == tag {
			return at
		}
	}
	t.Fatalf("tag %d not in header", tag)
	return 0
}

func samplePackage(t testing.TB) []byte {
	t.Helper()
	s := testrpm.Small(7)
	s.Epoch = 3
	s.Changelog = append(s.Changelog, testrpm.Change{Time: time.Unix(1680000000, 0), Author: "x", Text: "y"})
	b, err := testrpm.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadPackageValid(t *testing.T) {
	b := samplePackage(t)
	p, err := ReadPackage(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	l := parseLayout(t, b)
	if p.NEVRA() != "bulk00007-3:1.0-1.el9.x86_64" {
		t.Errorf("NEVRA = %q", p.NEVRA())
	}
	if p.HeaderStart != int64(l.hdrIntro) || p.HeaderEnd != int64(l.end) {
		t.Errorf("header range = %d-%d, want %d-%d", p.HeaderStart, p.HeaderEnd, l.hdrIntro, l.end)
	}
	if len(p.Files) != 3 || p.Files[1].Type != "dir" && p.Files[0].Type != "dir" {
		t.Errorf("files = %+v", p.Files)
	}
	if len(p.Changelog) != 2 {
		t.Errorf("changelog = %+v", p.Changelog)
	}
	if p.PkgID != "" {
		t.Errorf("ReadPackage set PkgID %q", p.PkgID)
	}
}

func TestReadFileChecksumSizeMTime(t *testing.T) {
	b := samplePackage(t)
	path := filepath.Join(t.TempDir(), "x.rpm")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	mt := time.Unix(1234567890, 0)
	if err := os.Chtimes(path, mt, mt); err != nil {
		t.Fatal(err)
	}
	p, err := ReadFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if p.PkgID != hex.EncodeToString(sum[:]) {
		t.Errorf("PkgID = %s, want %x", p.PkgID, sum)
	}
	if p.PackageSize != int64(len(b)) || p.FileTime != mt.Unix() {
		t.Errorf("size/mtime = %d/%d, want %d/%d", p.PackageSize, p.FileTime, len(b), mt.Unix())
	}
	e, err := p.Entry("x.rpm", RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if e.PkgID != p.PkgID || e.Size != p.PackageSize || e.MTime != p.FileTime || e.Href != "x.rpm" || e.Epoch != "3" {
		t.Errorf("entry = %+v", e)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ReadFile(ctx, path); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ReadFile: %v", err)
	}
	if _, err := ReadFile(context.Background(), filepath.Dir(path)); !errors.Is(err, ErrNotRPM) {
		t.Errorf("ReadFile(dir) = %v, want ErrNotRPM", err)
	}
	if _, err := ReadFile(context.Background(), path+".missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadFile(missing) = %v", err)
	}
}

func TestReadMalformed(t *testing.T) {
	good := samplePackage(t)
	l := parseLayout(t, good)
	mut := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), good...))
	}
	put32 := func(b []byte, at int, v uint32) []byte {
		binary.BigEndian.PutUint32(b[at:], v)
		return b
	}
	nameEntry := findEntry(t, good, l, tagName)
	sizeEntry := findEntry(t, good, l, tagSize) // INT32

	cases := []struct {
		name string
		in   []byte
		opts []ReadOption
		want error
	}{
		{"zero-length", nil, nil, ErrNotRPM},
		{"text", []byte("this is not an rpm, just some text\n"), nil, ErrNotRPM},
		{"bad lead magic", mut(func(b []byte) []byte { b[0] = 0; return b }), nil, ErrNotRPM},
		{"magic only", good[:4], nil, ErrTruncated},
		{"lead version", mut(func(b []byte) []byte { b[4] = 9; return b }), nil, ErrMalformed},
		{"signature type", mut(func(b []byte) []byte { b[79] = 1; return b }), nil, ErrMalformed},
		{"bad signature header magic", mut(func(b []byte) []byte { b[l.sigIntro] = 0; return b }), nil, ErrMalformed},
		{"bad main header magic", mut(func(b []byte) []byte { b[l.hdrIntro+1] = 0; return b }), nil, ErrMalformed},
		{"huge signature count", mut(func(b []byte) []byte { return put32(b, l.sigIntro+8, 0xffffffff) }), nil, ErrTooLarge},
		{"huge signature store", mut(func(b []byte) []byte { return put32(b, l.sigIntro+12, 0xfffffff0) }), nil, ErrTooLarge},
		{"huge main count", mut(func(b []byte) []byte { return put32(b, l.hdrIntro+8, 1<<20) }), nil, ErrTooLarge},
		{"huge main store", mut(func(b []byte) []byte { return put32(b, l.hdrIntro+12, 0x7fffffff) }), nil, ErrTooLarge},
		{"store over option limit", good, []ReadOption{WithMaxHeaderSize(64)}, ErrTooLarge},
		{"entries over option limit", good, []ReadOption{WithMaxEntries(2)}, ErrTooLarge},
		{"no entries", mut(func(b []byte) []byte { return put32(b, l.hdrIntro+8, 0) }), nil, ErrMalformed},
		{"count larger than file", mut(func(b []byte) []byte { return put32(b, l.hdrIntro+8, 4000) }), nil, ErrTruncated},
		{"offset past store", mut(func(b []byte) []byte { return put32(b, nameEntry+8, uint32(l.hdrSize+100)) }), nil, ErrMalformed},
		{"negative offset", mut(func(b []byte) []byte { return put32(b, nameEntry+8, 0x80000000) }), nil, ErrMalformed},
		{"int count past store", mut(func(b []byte) []byte { return put32(b, sizeEntry+12, uint32(l.hdrSize/4+1)) }), nil, ErrMalformed},
		{"huge count", mut(func(b []byte) []byte { return put32(b, sizeEntry+12, 0x7fffffff) }), nil, ErrMalformed},
		{"misaligned int", mut(func(b []byte) []byte {
			return put32(b, sizeEntry+8, binary.BigEndian.Uint32(b[sizeEntry+8:])+1)
		}), nil, ErrMalformed},
		{"unknown type", mut(func(b []byte) []byte { return put32(b, nameEntry+4, 42) }), nil, ErrMalformed},
		{"string count zero", mut(func(b []byte) []byte { return put32(b, nameEntry+12, 0) }), nil, ErrMalformed},
		{"string array count past NULs", mut(func(b []byte) []byte {
			b = put32(b, nameEntry+4, typeStringArray)
			return put32(b, nameEntry+12, uint32(l.hdrSize))
		}), nil, ErrMalformed},
		{"unterminated string", mut(func(b []byte) []byte {
			// Point NAME at the store's last byte and make it non-NUL.
			b[l.end-1] = 'x'
			return put32(b, nameEntry+8, uint32(l.hdrSize-1))
		}), nil, ErrMalformed},
		{"header digest mismatch", mut(func(b []byte) []byte {
			off := binary.BigEndian.Uint32(b[nameEntry+8:])
			b[l.hdrData+int(off)] ^= 0x20
			return b
		}), nil, ErrMalformed},
		{"name tag missing", mut(func(b []byte) []byte { return put32(b, nameEntry, 999999) }), nil, ErrMalformed},
	}
	// Truncation at every offset inside lead and headers.
	for _, cut := range []int{1, 3, 50, leadSize - 1, leadSize, leadSize + 8, l.sigIndex + 5, l.sigData, l.hdrIntro - 1, l.hdrIntro, l.hdrIntro + 10, l.hdrIndex + 3, l.hdrData, l.end - 1} {
		cases = append(cases, struct {
			name string
			in   []byte
			opts []ReadOption
			want error
		}{"truncated at " + strconv.Itoa(cut), good[:cut], nil, ErrTruncated})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := ReadPackage(bytes.NewReader(c.in), c.opts...)
			if !errors.Is(err, c.want) {
				t.Fatalf("ReadPackage = %v, %v; want %v", p, err, c.want)
			}
			path := filepath.Join(t.TempDir(), "bad.rpm")
			if err := os.WriteFile(path, c.in, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := ReadFile(context.Background(), path, c.opts...); !errors.Is(err, c.want) {
				t.Fatalf("ReadFile = %v; want %v", err, c.want)
			}
		})
	}
	// Every single truncation point must be a clean ErrTruncated.
	for cut := 1; cut < l.end; cut++ {
		if _, err := ReadPackage(bytes.NewReader(good[:cut])); !errors.Is(err, ErrTruncated) {
			t.Fatalf("truncated at %d: %v", cut, err)
		}
	}
	// Past the headers the payload is not needed for metadata.
	if _, err := ReadPackage(bytes.NewReader(good[:l.end])); err != nil {
		t.Fatalf("headers only: %v", err)
	}
}

func TestReadOptionsRejectNonsense(t *testing.T) {
	for _, o := range []ReadOption{WithMaxHeaderSize(0), WithMaxHeaderSize(1 << 30), WithMaxEntries(-1), WithMaxEntries(1 << 20)} {
		if _, err := ReadPackage(bytes.NewReader(nil), o); err == nil || errors.Is(err, ErrNotRPM) {
			t.Errorf("option accepted: %v", err)
		}
	}
}

func TestEntryNeedsChecksum(t *testing.T) {
	p, err := ReadPackage(bytes.NewReader(samplePackage(t)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Entry("x.rpm", RenderOptions{}); err == nil {
		t.Fatal("Entry without PkgID succeeded")
	}
}

// Files above wholeFileMax stream through the hash instead of being read
// whole; both ways must agree on checksum and size.
func TestReadFileLargeStreams(t *testing.T) {
	s := testrpm.Small(9)
	body := make([]byte, wholeFileMax+(1<<20))
	rand.New(rand.NewSource(1)).Read(body)
	s.Files = append(s.Files, testrpm.File{Name: "/usr/share/big.bin", Body: body})
	b, err := testrpm.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) <= wholeFileMax {
		t.Fatalf("package only %d bytes", len(b))
	}
	path := filepath.Join(t.TempDir(), "big.rpm")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := ReadFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if p.PkgID != hex.EncodeToString(sum[:]) || p.PackageSize != int64(len(b)) {
		t.Fatalf("PkgID/size = %s/%d, want %x/%d", p.PkgID, p.PackageSize, sum, len(b))
	}
	q, err := ReadPackage(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if q.HeaderEnd != p.HeaderEnd || len(q.Files) != len(p.Files) {
		t.Fatalf("stream and memory reads differ")
	}
}

// A tiny file that declares the largest allowed header must not make the
// reader allocate that much.
func TestReadTruncatedHugeHeaderAllocatesLittle(t *testing.T) {
	good := samplePackage(t)
	l := parseLayout(t, good)
	b := append([]byte(nil), good[:l.hdrIntro+introSize+64]...)
	binary.BigEndian.PutUint32(b[l.hdrIntro+12:], defaultMaxStore)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const runs = 20
	for range runs {
		if _, err := ReadPackage(bytes.NewReader(b)); !errors.Is(err, ErrTruncated) {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 1<<20 {
		t.Fatalf("truncated %d-byte file cost %d bytes per read", len(b), per)
	}
}

// Structured mutations of index entries (type, offset, count) with the
// digest check off, so that value extraction sees hostile layouts: never
// a panic, only sentinels, and whatever is accepted renders.
func TestReadMutatedIndexEntries(t *testing.T) {
	var seeds [][]byte
	ms, err := filepath.Glob(filepath.Join(sharedCorpus(t), "*.rpm"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	seeds = append(seeds, samplePackage(t))
	cfg, err := newReadConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.skipDigest = true
	rng := rand.New(rand.NewSource(3))
	interesting := []uint32{0, 1, 2, 3, 4, 7, 8, 15, 16, 0x7fffffff, 0x80000000, 0xffffffff}
	accepted := 0
	for iter := range 30000 {
		b := append([]byte(nil), seeds[rng.Intn(len(seeds))]...)
		l := parseLayout(t, b)
		for range 1 + rng.Intn(3) {
			e := l.hdrIndex + rng.Intn(l.hdrCount)*indexSize
			field := 4 + 4*rng.Intn(3) // type, offset or count
			var v uint32
			switch rng.Intn(3) {
			case 0:
				v = interesting[rng.Intn(len(interesting))]
			case 1:
				v = uint32(rng.Intn(l.hdrSize + 8))
			default:
				v = binary.BigEndian.Uint32(b[e+field:]) + uint32(rng.Intn(5)) - 2
			}
			if field == 4 && rng.Intn(2) == 0 {
				v = uint32(rng.Intn(10))
			}
			binary.BigEndian.PutUint32(b[e+field:], v)
		}
		p, err := func() (p *Package, err error) {
			defer func() {
				if v := recover(); v != nil {
					t.Fatalf("iteration %d: panic %v", iter, v)
				}
			}()
			return readPackage(bytes.NewReader(b), cfg)
		}()
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrTooLarge) ||
				strings.Contains(err.Error(), "panicked") {
				t.Fatalf("iteration %d: %v", iter, err)
			}
			continue
		}
		accepted++
		p.PkgID = "00"
		if _, err := p.Entry("x.rpm", RenderOptions{ChangelogLimit: -1}); err != nil && !errors.Is(err, ErrControlChars) {
			t.Fatalf("iteration %d: Entry: %v", iter, err)
		}
	}
	if accepted == 0 {
		t.Fatal("no mutation was accepted; extraction was never exercised")
	}
	t.Logf("%d mutated headers accepted and rendered", accepted)
}
