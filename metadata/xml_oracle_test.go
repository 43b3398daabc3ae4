package metadata

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// sharedCorpus is createrepo_c's own test packages; CI clones the repo
// with shared/ beside it.
func sharedCorpus(t testing.TB) string {
	t.Helper()
	d := filepath.Join("..", "..", "shared", "corpus", "createrepo_c-testdata")
	if _, err := os.Stat(d); err != nil {
		t.Fatalf("shared corpus missing: %v", err)
	}
	return d
}

// copyRPMs copies every *.rpm of src into dst keeping mtimes.
func copyRPMs(t testing.TB, src, dst string) {
	t.Helper()
	ms, err := filepath.Glob(filepath.Join(src, "*.rpm"))
	if err != nil || len(ms) == 0 {
		t.Fatalf("no rpms in %s: %v", src, err)
	}
	for _, m := range ms {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(m)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dst, filepath.Base(m))
		if err := os.WriteFile(out, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(out, st.ModTime(), st.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
}

type repodataDocs struct{ primary, filelists, other []byte }

// oracleRepodata runs Debian's createrepo_c on dir and returns its
// uncompressed documents.
func oracleRepodata(t testing.TB, dir string, args ...string) repodataDocs {
	t.Helper()
	bin, err := exec.LookPath("createrepo_c")
	if err != nil {
		t.Fatalf("createrepo_c is required as the oracle: %v", err)
	}
	out := t.TempDir()
	args = append([]string{"--simple-md-filenames", "--no-database", "--compress-type", "gz",
		"--outputdir", out}, args...)
	cmd := exec.Command(bin, append(args, dir)...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANGUAGE=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("createrepo_c: %v\n%s", err, b)
	}
	read := func(name string) []byte {
		f, err := os.Open(filepath.Join(out, "repodata", name+".xml.gz"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return repodataDocs{read("primary"), read("filelists"), read("other")}
}

// ourRepodata reads every *.rpm in dir and assembles the documents the
// way createrepo_c orders them (by file name). Packages createrepo_c
// refuses (control characters) are left out, as it does.
func ourRepodata(t testing.TB, dir string, o RenderOptions) (repodataDocs, []string) {
	t.Helper()
	ms, err := filepath.Glob(filepath.Join(dir, "*.rpm"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(ms, func(i, j int) bool { return filepath.Base(ms[i]) < filepath.Base(ms[j]) })
	var entries []*Entry
	var skipped []string
	for _, m := range ms {
		p, err := ReadFile(context.Background(), m)
		if err != nil {
			t.Fatalf("ReadFile: %v", err)
		}
		e, err := p.Entry(filepath.Base(m), o)
		if errors.Is(err, ErrControlChars) {
			skipped = append(skipped, filepath.Base(m))
			continue
		}
		if err != nil {
			t.Fatalf("Entry %s: %v", m, err)
		}
		entries = append(entries, e)
	}
	var d repodataDocs
	d.primary = append(d.primary, PrimaryHeader(len(entries))...)
	d.filelists = append(d.filelists, FilelistsHeader(len(entries))...)
	d.other = append(d.other, OtherHeader(len(entries))...)
	for _, e := range entries {
		d.primary = append(d.primary, e.Primary...)
		d.filelists = append(d.filelists, e.Filelists...)
		d.other = append(d.other, e.Other...)
	}
	d.primary = append(d.primary, PrimaryFooter()...)
	d.filelists = append(d.filelists, FilelistsFooter()...)
	d.other = append(d.other, OtherFooter()...)
	return d, skipped
}

// diffFirst describes where two documents first differ, with a few lines
// of context in unified style.
func diffFirst(want, got []byte) string {
	wl := strings.SplitAfter(string(want), "\n")
	gl := strings.SplitAfter(string(got), "\n")
	i := 0
	for i < len(wl) && i < len(gl) && wl[i] == gl[i] {
		i++
	}
	var b strings.Builder
	fmt.Fprintf(&b, "@@ line %d @@\n", i+1)
	for k := max(0, i-3); k < i; k++ {
		fmt.Fprintf(&b, " %s", wl[k])
	}
	for k := i; k < min(len(wl), i+6); k++ {
		fmt.Fprintf(&b, "-%q\n", wl[k])
	}
	for k := i; k < min(len(gl), i+6); k++ {
		fmt.Fprintf(&b, "+%q\n", gl[k])
	}
	return b.String()
}

func assertSameRepodata(t *testing.T, dir string, o RenderOptions) {
	t.Helper()
	assertSameRepodataArgs(t, dir, o)
}

// assertSameRepodataArgs compares with createrepo_c run with extra flags
// that correspond to o.
func assertSameRepodataArgs(t *testing.T, dir string, o RenderOptions, args ...string) {
	t.Helper()
	want := oracleRepodata(t, dir, args...)
	got, skipped := ourRepodata(t, dir, o)
	if len(skipped) > 0 {
		t.Logf("left out like createrepo_c: %d packages, e.g. %v", len(skipped), skipped[:min(3, len(skipped))])
	}
	for _, c := range []struct {
		name      string
		want, got []byte
	}{{"primary.xml", want.primary, got.primary}, {"filelists.xml", want.filelists, got.filelists}, {"other.xml", want.other, got.other}} {
		if !bytes.Equal(c.want, c.got) {
			t.Errorf("%s differs from createrepo_c (- createrepo_c, + ours):\n%s", c.name, diffFirst(c.want, c.got))
		}
	}
}

func TestRepodataMatchesCreaterepoCSharedCorpus(t *testing.T) {
	dir := t.TempDir()
	copyRPMs(t, sharedCorpus(t), dir)
	assertSameRepodata(t, dir, RenderOptions{})
}
