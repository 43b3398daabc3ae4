package sign

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/repoctl/repoctl/internal/rpmhdr"
	"github.com/repoctl/repoctl/internal/testrpm"
)

// basePackages returns a package with reserved space (from the corpus) and
// one rpmpack package without.
func basePackages(t testing.TB) map[string][]byte {
	t.Helper()
	dir := t.TempDir()
	p, err := testrpm.Write(dir, testrpm.Small(3))
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"archer":  readAll(t, filepath.Join(corpusDir(t), "Archer-3.4.5-6.x86_64.rpm")),
		"rpmpack": readAll(t, p),
	}
}

type mutation struct {
	name string
	mut  func(b []byte, p *pkg) []byte
	want error
}

func mutations() []mutation {
	put32 := func(b []byte, off int64, v uint32) []byte {
		c := bytes.Clone(b)
		binary.BigEndian.PutUint32(c[off:], v)
		return c
	}
	flip := func(b []byte, off int64) []byte {
		c := bytes.Clone(b)
		c[off] ^= 0x55
		return c
	}
	return []mutation{
		{"empty", func(b []byte, p *pkg) []byte { return nil }, ErrNotRPM},
		{"short lead", func(b []byte, p *pkg) []byte { return b[:50] }, ErrNotRPM},
		{"text file", func(b []byte, p *pkg) []byte { return bytes.Repeat([]byte("hello\n"), 100) }, ErrNotRPM},
		{"bad lead magic", func(b []byte, p *pkg) []byte { return flip(b, 1) }, ErrNotRPM},
		{"lead signature type", func(b []byte, p *pkg) []byte { return flip(b, 79) }, ErrCorrupt},
		{"only lead", func(b []byte, p *pkg) []byte { return b[:leadSize] }, ErrCorrupt},
		{"cut in sig intro", func(b []byte, p *pkg) []byte { return b[:leadSize+9] }, ErrCorrupt},
		{"cut in sig header", func(b []byte, p *pkg) []byte { return b[:leadSize+40] }, ErrCorrupt},
		{"cut in main header", func(b []byte, p *pkg) []byte { return b[:p.mainOff+100] }, ErrCorrupt},
		{"cut before payload", func(b []byte, p *pkg) []byte { return b[:p.payloadOff-1] }, ErrCorrupt},
		{"cut in payload", func(b []byte, p *pkg) []byte { return b[:p.payloadOff+(p.size-p.payloadOff)/2] }, ErrCorrupt},
		{"last byte missing", func(b []byte, p *pkg) []byte { return b[:len(b)-1] }, ErrCorrupt},
		{"trailing junk", func(b []byte, p *pkg) []byte { return append(bytes.Clone(b), "junk"...) }, ErrCorrupt},
		{"sig header magic", func(b []byte, p *pkg) []byte { return flip(b, leadSize+1) }, ErrCorrupt},
		{"sig il huge", func(b []byte, p *pkg) []byte { return put32(b, leadSize+8, 0xffffffff) }, ErrTooLarge},
		{"sig il zero", func(b []byte, p *pkg) []byte { return put32(b, leadSize+8, 0) }, ErrCorrupt},
		{"sig dl huge", func(b []byte, p *pkg) []byte { return put32(b, leadSize+12, 0x7fffffff) }, ErrTooLarge},
		{"sig dl beyond file", func(b []byte, p *pkg) []byte { return put32(b, leadSize+12, 1<<20) }, ErrCorrupt},
		{"main il huge", func(b []byte, p *pkg) []byte { return put32(b, p.mainOff+8, 0x10000000) }, ErrTooLarge},
		{"main dl beyond file", func(b []byte, p *pkg) []byte { return put32(b, p.mainOff+12, 1<<27) }, ErrCorrupt},
		{"sig entry offset", func(b []byte, p *pkg) []byte { return put32(b, leadSize+16+16+8, 0x7fff0000) }, ErrCorrupt},
		{"sig entry negative offset", func(b []byte, p *pkg) []byte { return put32(b, leadSize+16+16+8, 0xfffffff0) }, ErrCorrupt},
		{"sig entry type", func(b []byte, p *pkg) []byte { return put32(b, leadSize+16+16+4, 99) }, ErrCorrupt},
		{"sig entry count", func(b []byte, p *pkg) []byte { return put32(b, leadSize+16+16+12, 0x7fffffff) }, ErrCorrupt},
		{"main entry offset", func(b []byte, p *pkg) []byte { return put32(b, p.mainOff+16+16*3+8, 0x00ffffff) }, ErrCorrupt},
		{"main entry count", func(b []byte, p *pkg) []byte { return put32(b, p.mainOff+16+16*3+12, 0x00ffffff) }, ErrCorrupt},
		{"main header data byte", func(b []byte, p *pkg) []byte { return flip(b, p.payloadOff-20) }, ErrCorrupt},
		{"payload byte", func(b []byte, p *pkg) []byte { return flip(b, p.payloadOff+(p.size-p.payloadOff)/2) }, ErrCorrupt},
		{"payload last byte", func(b []byte, p *pkg) []byte { return flip(b, p.size-1) }, ErrCorrupt},
	}
}

// TestMalformedRefusedUntouched: junk, truncated and tampered packages are
// refused with the right sentinel and stay byte-identical on disk.
func TestMalformedRefusedUntouched(t *testing.T) {
	k := testKey(t, "ed25519")
	s, err := NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	for name, base := range basePackages(t) {
		p, err := readPkg(bytes.NewReader(base), int64(len(base)))
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		var paths []string
		want := map[string][]byte{}
		var ms []mutation
		for i, m := range mutations() {
			b := m.mut(base, p)
			path := filepath.Join(dir, name+"-"+string(rune('a'+i))+".rpm")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			paths = append(paths, path)
			want[path] = b
			ms = append(ms, m)
		}
		res, err := s.SignFiles(context.Background(), paths)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			if !errors.Is(r.Err, ms[i].want) {
				t.Errorf("%s/%s: err %v, want %v", name, ms[i].name, r.Err, ms[i].want)
			}
			if got := readAll(t, r.Path); !bytes.Equal(got, want[r.Path]) {
				t.Errorf("%s/%s: file changed on disk", name, ms[i].name)
			}
			// verify reports the same problem instead of passing.
			rep, err := VerifyFile(context.Background(), r.Path, []*Key{k})
			if err == nil && rep.OK {
				t.Errorf("%s/%s: verify says OK", name, ms[i].name)
			}
		}
	}
	// Not a regular file.
	if _, err := s.SignFile(context.Background(), t.TempDir()); !errors.Is(err, ErrNotRPM) {
		t.Errorf("directory: %v", err)
	}
}

// FuzzReadPackage feeds arbitrary bytes through everything that parses a
// file: nothing may panic, and a signature area we build must read back
// through rpmhdr with the main header where it was.
func FuzzReadPackage(f *testing.F) {
	for _, b := range basePackages(f) {
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	// Signed packages too: other vendors' v4 and v6 signatures, and ours.
	for _, n := range []string{"empty-signed-rsa-0-0.x86_64.rpm", "empty-signed-eddsa-0-0.x86_64.rpm", "empty-signed-v6-multiple-0-0.x86_64.rpm"} {
		f.Add(readAll(f, filepath.Join(corpusDir(f), n)))
	}
	signedDir := f.TempDir()
	ours, err := testrpm.Write(signedDir, testrpm.Small(4))
	if err != nil {
		f.Fatal(err)
	}
	signAll(f, testKey(f, "ed25519"), []string{ours})
	f.Add(readAll(f, ours))
	// The unchanged seeds are intact packages: their digests must pass,
	// and their NEVRA must come out, so the checks below can fail.
	seeds := map[string]bool{}
	for _, b := range basePackages(f) {
		seeds[string(b)] = true
	}
	seeds[string(readAll(f, ours))] = true
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := readPkg(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if !errors.Is(err, ErrNotRPM) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		r := bytes.NewReader(b[p.payloadOff:])
		checks, derr := checkDigests(context.Background(), p, r, nil, true)
		name := nevra(p)
		if strings.ContainsAny(name, "\n\x00") {
			t.Fatalf("NEVRA %q", name)
		}
		if seeds[string(b)] {
			if derr != nil || name == "" {
				t.Fatalf("intact seed: digests %v, NEVRA %q", derr, name)
			}
			for _, c := range checks {
				if c.err != nil {
					t.Fatalf("intact seed: %s: %v", c.name, c.err)
				}
			}
		}
		// Flipping a byte of the main header must fail a header digest
		// when the package has one.
		if len(p.main.blob) > 0 && derr == nil {
			bad := bytes.Clone(b)
			bad[p.payloadOff-1] ^= 0xff
			if q, err := readPkg(bytes.NewReader(bad), int64(len(bad))); err == nil {
				qc, err := checkDigests(context.Background(), q, bytes.NewReader(bad[q.payloadOff:]), nil, true)
				if err != nil {
					t.Fatal(err)
				}
				headerChecked, failed := false, false
				for _, c := range qc {
					if strings.HasPrefix(c.name, "Header") && strings.Contains(c.name, "digest") {
						headerChecked = true
						failed = failed || c.err != nil
					}
				}
				if headerChecked && !failed {
					t.Fatalf("a changed main header passed its digests: %+v", qc)
				}
			}
		}
		var es []entry
		for _, e := range p.sig.entries {
			if len(es) < rpmhdr.SigMaxEntries-3 {
				es = append(es, e)
			}
		}
		area := newSigArea(es, p.reserveTag())
		img := append(append(bytes.Clone(p.lead), area...), p.main.blob...)
		h, err := rpmhdr.Parse(img)
		if err != nil {
			t.Fatalf("own signature header does not parse: %v", err)
		}
		if h.SigArea() != len(area) || !bytes.Equal(h.Main.Blob, p.main.blob) {
			t.Fatal("own signature area misplaces the main header")
		}
	})
}
