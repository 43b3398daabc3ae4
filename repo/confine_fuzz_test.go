package repo

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/repoctl/repoctl/internal/nevra"
)

// FuzzPlacement builds placements from arbitrary header strings the way
// the pipeline does (nevra.FileName, Route, newPlacement) and asserts that
// whatever is accepted names a file directly inside the repository
// directory it was meant for, and that the confined tree can place and
// remove it there and nowhere else.
func FuzzPlacement(f *testing.F) {
	f.Add("hello", "1.0", "1.el9", "noarch")
	f.Add("../../../../prod/el/9/x86_64/rtok", "1.0", "1.el9", "noarch")
	f.Add("x", "1/../../..", "1.el9/../..", "x86_64/../..")
	f.Add("src", "1", "1.el8_9", "src")
	f.Add("a", "1", "1.fc40", "aarch64")
	f.Add("n", "1", "..", "..")
	cfg, err := LoadConfig(f.TempDir(), "")
	if err != nil {
		f.Fatal(err)
	}
	cfg.Routing.Default = "el/9"
	treeDir := filepath.Join(f.TempDir(), "repo")
	tr, err := openTree(treeDir)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { tr.close() })
	src := filepath.Join(f.TempDir(), "pkg.rpm")
	if err := os.WriteFile(src, []byte("bytes"), 0o644); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name, version, release, arch string) {
		fileName, err := nevra.FileName(name, version, release, arch)
		if err != nil {
			return
		}
		dist, arches, err := cfg.Route(release, arch, arch == "src")
		if err != nil {
			return
		}
		for _, a := range arches {
			pl, err := newPlacement("main", "staging", dist, a, fileName)
			if err != nil {
				if !errors.Is(err, ErrEscape) {
					t.Fatalf("newPlacement error %v does not wrap ErrEscape", err)
				}
				continue
			}
			want := filepath.Join(treeDir, "main", "staging", filepath.FromSlash(dist), a)
			got := filepath.Join(treeDir, filepath.FromSlash(pl.File))
			if filepath.Dir(got) != want || filepath.Base(got) != fileName || !filepath.IsLocal(pl.File) ||
				strings.Contains(pl.File, "..") || filepath.Join(treeDir, pl.Dir) != want {
				t.Fatalf("placement %+v of %q %q %q %q leaves %s", pl, name, version, release, arch, want)
			}
			if err := tr.linkIn(src, pl); err != nil {
				t.Fatalf("placing %+v: %v", pl, err)
			}
			if _, err := os.Stat(got); err != nil {
				t.Fatalf("placed %+v but %s: %v", pl, got, err)
			}
			if err := tr.remove(pl.File); err != nil {
				t.Fatal(err)
			}
		}
	})
}
