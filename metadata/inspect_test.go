package metadata

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func repodataStateIn(t *testing.T, dir string) *RepodataState {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	st, err := ReadRepodataState(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestReadRepodataStateOfCreaterepoC: what createrepo_c writes (with its
// sqlite databases) reads back as the packages in the directory, by href
// and sha256, with no problems; every kind of damage a client would trip
// over is named.
func TestReadRepodataStateOfCreaterepoC(t *testing.T) {
	dir := t.TempDir()
	if st := repodataStateIn(t, dir); st.Repomd != nil || len(st.Problems) != 0 || st.Packages != nil {
		t.Fatalf("no repodata: %+v", st)
	}
	want := map[string]string{}
	for i := 0; i < 4; i++ {
		p := writeSmall(t, dir, i)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(b)
		want[filepath.Base(p)] = hex.EncodeToString(s[:])
	}
	if out, err := exec.Command("createrepo_c", dir).CombinedOutput(); err != nil {
		t.Fatalf("createrepo_c: %v\n%s", err, out)
	}
	st := repodataStateIn(t, dir)
	if st.Repomd == nil || st.Signature != nil || len(st.Problems) != 0 || len(st.Records) != 6 {
		t.Fatalf("createrepo_c's repodata: %d records, problems %q", len(st.Records), st.Problems)
	}
	got := map[string]string{}
	for _, p := range st.Packages {
		got[p.Href] = p.PkgID
		if p.ChecksumType != "sha256" || p.Name == "" || p.Version == "" || p.Arch == "" {
			t.Errorf("listed package %+v", p)
		}
	}
	if len(got) != len(want) {
		t.Errorf("listed %v, want %v", got, want)
	}
	for href, sum := range want {
		if got[href] != sum {
			t.Errorf("%s listed with %q, file has %s", href, got[href], sum)
		}
	}

	href := func(typ string) string {
		for _, r := range st.Records {
			if r.Type == typ {
				return r.Href
			}
		}
		t.Fatalf("no %s record", typ)
		return ""
	}
	// A changed filelists, a missing other database, a damaged primary.
	fl := filepath.Join(dir, href("filelists"))
	b, err := os.ReadFile(fl)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fl, append(b, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, href("other_db"))); err != nil {
		t.Fatal(err)
	}
	pr := filepath.Join(dir, href("primary"))
	b, err = os.ReadFile(pr)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(pr, b, 0o644); err != nil {
		t.Fatal(err)
	}
	st = repodataStateIn(t, dir)
	sort.Strings(st.Problems)
	joined := strings.Join(st.Problems, "\n")
	for _, w := range []string{href("filelists") + " (filelists) does not match", href("other_db") + " (other_db) is missing", "primary: "} {
		if !strings.Contains(joined, w) {
			t.Errorf("problems lack %q:\n%s", w, joined)
		}
	}
	if st.Packages != nil {
		t.Errorf("a damaged primary still listed %d packages", len(st.Packages))
	}

	if err := os.WriteFile(filepath.Join(dir, RepodataDir, "repomd.xml"), []byte("<repomd"), 0o644); err != nil {
		t.Fatal(err)
	}
	if st := repodataStateIn(t, dir); st.Repomd == nil || len(st.Problems) != 1 || !strings.Contains(st.Problems[0], "repomd.xml") {
		t.Errorf("unparsable repomd.xml: problems %q", st.Problems)
	}
}
