package metadata

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// rewriteRecord replaces the file a repomd record names with content
// (gzip-compressed) and fixes the record, so that only the content is odd.
func rewriteRecord(t *testing.T, repoDir, typ string, content []byte) {
	t.Helper()
	p := filepath.Join(repoDir, "repodata", "repomd.xml")
	md, err := ParseRepomd(mustRead(t, p))
	if err != nil {
		t.Fatal(err)
	}
	r := md.Record(typ)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	osum := sha256.Sum256(content)
	if err := os.Remove(filepath.Join(repoDir, r.Href)); err != nil {
		t.Fatal(err)
	}
	r.Checksum, r.OpenChecksum = hex.EncodeToString(sum[:]), hex.EncodeToString(osum[:])
	r.Href = "repodata/" + r.Checksum + "-" + typ + ".xml.gz"
	r.Size, r.OpenSize = int64(buf.Len()), int64(len(content))
	if err := os.WriteFile(filepath.Join(repoDir, r.Href), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, md.Marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestUpdateWithBadExistingRepodata: damaged or hostile existing repodata
// is refused with ErrBadRepodata, and --update then reads every package:
// the result equals a full run.
func TestUpdateWithBadExistingRepodata(t *testing.T) {
	base := t.TempDir()
	for i := 0; i < 12; i++ {
		writeSmall(t, base, i)
	}
	ctx := context.Background()
	if _, err := CreateRepo(ctx, base, WithCacheDir(""), WithPublishOptions(WithCompression("gz"))); err != nil {
		t.Fatal(err)
	}
	want := publishedDocs(t, base)
	md, err := ParseRepomd(mustRead(t, filepath.Join(base, "repodata", "repomd.xml")))
	if err != nil {
		t.Fatal(err)
	}
	write := func(t *testing.T, p string, b []byte) {
		t.Helper()
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// why is what the refusal must name: every case is refused as
	// ErrBadRepodata, so only the reason shows which check fired.
	cases := map[string]struct {
		damage func(t *testing.T, dir string)
		why    string
	}{
		"repomd not xml": {func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "repodata", "repomd.xml"), []byte("<repomd><data type="))
		}, "repomd.xml: XML syntax error"},
		"repomd without filelists": {func(t *testing.T, dir string) {
			m := *md
			m.Records = []RepomdRecord{md.Records[0], md.Records[2]}
			write(t, filepath.Join(dir, "repodata", "repomd.xml"), m.Marshal())
		}, "repomd.xml has no filelists"},
		"href escapes repodata": {func(t *testing.T, dir string) {
			b := strings.Replace(string(mustRead(t, filepath.Join(dir, "repodata", "repomd.xml"))),
				md.Records[0].Href, "repodata/../../../etc/passwd.xml.gz", 1)
			write(t, filepath.Join(dir, "repodata", "repomd.xml"), []byte(b))
		}, "is outside repodata/"},
		"data file missing": {func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, md.Records[1].Href)); err != nil {
				t.Fatal(err)
			}
		}, "no such file or directory"},
		"gzip checksum mismatch": {func(t *testing.T, dir string) {
			p := filepath.Join(dir, md.Records[0].Href)
			b := mustRead(t, p)
			b[len(b)/2] ^= 1
			write(t, p, b)
		}, "gzip: invalid checksum"},
		"checksum mismatch": {func(t *testing.T, dir string) {
			// A valid gzip stream with one more member: it decompresses
			// to the same XML, so only repomd's checksum can tell.
			p := filepath.Join(dir, md.Records[0].Href)
			var extra bytes.Buffer
			zw := gzip.NewWriter(&extra)
			if err := zw.Close(); err != nil {
				t.Fatal(err)
			}
			write(t, p, append(mustRead(t, p), extra.Bytes()...))
		}, "does not match its checksum in repomd.xml"},
		"truncated gzip": {func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, md.Records[2].Href), 30); err != nil {
				t.Fatal(err)
			}
		}, "unexpected EOF"},
		"filelists out of order": {func(t *testing.T, dir string) {
			fl := want.filelists
			frags, err := splitPackages(fl)
			if err != nil {
				t.Fatal(err)
			}
			hdr := fl[:bytes.Index(fl, frags[0])]
			out := append([]byte(nil), hdr...)
			out = append(out, frags[1]...)
			out = append(out, frags[0]...)
			for _, f := range frags[2:] {
				out = append(out, f...)
			}
			out = append(out, FilelistsFooter()...)
			rewriteRecord(t, dir, "filelists", out)
		}, "do not follow primary's order"},
		"other lacks a package": {func(t *testing.T, dir string) {
			o := want.other
			frags, err := splitPackages(o)
			if err != nil {
				t.Fatal(err)
			}
			out := bytes.Replace(o, frags[3], nil, 1)
			rewriteRecord(t, dir, "other", out)
		}, "list 12, 12 and 11 packages"},
		"unformatted primary": {func(t *testing.T, dir string) {
			rewriteRecord(t, dir, "primary", bytes.ReplaceAll(want.primary, []byte("</package>\n"), []byte("</package>")))
		}, "unterminated <package>"},
		"expands past the cap": {func(t *testing.T, dir string) {
			maxOpenSize = 1000
			t.Cleanup(func() { maxOpenSize = 2 << 30 })
		}, "exceeds the size cap"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			copyRPMs(t, base, dir)
			if err := os.MkdirAll(filepath.Join(dir, "repodata"), 0o755); err != nil {
				t.Fatal(err)
			}
			ents, err := os.ReadDir(filepath.Join(base, "repodata"))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				write(t, filepath.Join(dir, "repodata", e.Name()), mustRead(t, filepath.Join(base, "repodata", e.Name())))
			}
			c.damage(t, dir)
			if _, err := loadExisting(ctx, dir); !errors.Is(err, ErrBadRepodata) || !strings.Contains(err.Error(), c.why) {
				t.Fatalf("loadExisting: want ErrBadRepodata naming %q, got %v", c.why, err)
			}
			p := &recProgress{}
			res, err := CreateRepo(ctx, dir, WithUpdate(true), WithCacheDir(""),
				WithPublishOptions(WithCompression("gz"), WithProgress(p)))
			maxOpenSize = 2 << 30
			if err != nil {
				t.Fatal(err)
			}
			if res.Reused != 0 || res.Read != 12 || res.ReusedFrom != "" {
				t.Fatalf("reused %d read %d from %q", res.Reused, res.Read, res.ReusedFrom)
			}
			if len(p.notices) != 1 || !strings.Contains(p.notices[0], "not reusing existing repodata") {
				t.Fatalf("notices %q", p.notices)
			}
			assertSameDocs(t, name, want, publishedDocs(t, dir))
		})
	}
}

// FuzzParseExisting feeds arbitrary documents to the code that slices and
// matches existing repodata, and arbitrary bytes to the repomd and state
// decoders: none may panic, and what is accepted must be consistent.
func FuzzParseExisting(f *testing.F) {
	es := fakeEntries(3, "f")
	f.Add(expectedDoc(0, es), expectedDoc(1, es), expectedDoc(2, es))
	f.Add([]byte("\n<package </package>\n"), []byte(""), []byte("<package"))
	f.Add([]byte(`<x>
<package type="rpm"><name>a</name><arch>b</arch><version epoch="0" ver="1" rel="1"/><checksum type="sha256" pkgid="YES">`+strings.Repeat("a", 64)+`</checksum><time file="1" build="2"/><size package="3"/><location href="a&amp;b.rpm"/></package>
</x>`), []byte("<x>\n<package pkgid=\""+strings.Repeat("a", 64)+"\">\n</package>\n</x>"), []byte("<x>\n<package pkgid=\""+strings.Repeat("a", 64)+"\">\n</package>\n</x>"))
	// Real createrepo_c output for the shared corpus, as --update reads it.
	real := f.TempDir()
	ms, err := filepath.Glob(filepath.Join(sharedCorpus(f), "*.rpm"))
	if err != nil || len(ms) == 0 {
		f.Fatalf("corpus: %v (%d packages)", err, len(ms))
	}
	for _, m := range ms {
		if err := os.Link(m, filepath.Join(real, filepath.Base(m))); err != nil {
			b, err := os.ReadFile(m)
			if err != nil {
				f.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(real, filepath.Base(m)), b, 0o644); err != nil {
				f.Fatal(err)
			}
		}
	}
	if out, err := exec.Command("createrepo_c", "--no-database", "--general-compress-type", "gz", real).CombinedOutput(); err != nil {
		f.Fatalf("createrepo_c: %v\n%s", err, out)
	}
	var docs [3][]byte
	for i, kind := range []string{"primary", "filelists", "other"} {
		gz, err := filepath.Glob(filepath.Join(real, "repodata", "*-"+kind+".xml.gz"))
		if err != nil || len(gz) != 1 {
			f.Fatalf("createrepo_c wrote %v for %s", gz, kind)
		}
		zf, err := os.Open(gz[0])
		if err != nil {
			f.Fatal(err)
		}
		zr, err := gzip.NewReader(zf)
		if err != nil {
			f.Fatal(err)
		}
		docs[i], err = io.ReadAll(zr)
		if cerr := zf.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			f.Fatal(err)
		}
	}
	if m, err := parseExisting(context.Background(), docs); err != nil || len(m) != len(ms) {
		f.Fatalf("createrepo_c's repodata of %d packages parses as %d: %v", len(ms), len(m), err)
	}
	f.Add(docs[0], docs[1], docs[2])
	f.Add(docs[0][:len(docs[0])/2], docs[1], docs[2])
	f.Fuzz(func(t *testing.T, primary, filelists, other []byte) {
		m, err := parseExisting(context.Background(), [3][]byte{primary, filelists, other})
		if err == nil {
			for href, p := range m {
				if p.Href != href || len(p.PkgID) != 64 ||
					!bytes.HasPrefix(p.Primary, pkgOpen) || !bytes.HasSuffix(p.Other, pkgClose) {
					t.Fatalf("inconsistent package %q", href)
				}
			}
		}
		ParseRepomd(primary)
		unmarshalState(filelists)
	})
}
