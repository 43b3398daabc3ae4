package metadata

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	rpmutils "github.com/sassoftware/go-rpmutils"

	"github.com/repoctl/repoctl/internal/rpmhdr"
)

// Layout names the tests use.
const (
	leadSize        = rpmhdr.LeadSize
	introSize       = rpmhdr.IntroSize
	indexSize       = rpmhdr.EntrySize
	typeStringArray = rpmhdr.TypeStringArray
)

// The parts the reader assembles itself (header range, file list from
// dirnames/basenames/dirindexes, source arch) agree with go-rpmutils' own
// view of every fixture, and a package with fresh digests reads the same.
func TestHeaderAgreesWithGoRPMUtils(t *testing.T) {
	var paths []string
	ms, err := filepath.Glob(filepath.Join(sharedCorpus(t), "*.rpm"))
	if err != nil {
		t.Fatal(err)
	}
	paths = append(paths, ms...)
	gen := t.TempDir()
	generatedCorpus(t, gen)
	ms, err = filepath.Glob(filepath.Join(gen, "*.rpm"))
	if err != nil {
		t.Fatal(err)
	}
	paths = append(paths, ms...)
	if len(paths) < 25 {
		t.Fatalf("only %d fixtures", len(paths))
	}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		p, err := ReadPackage(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		ref, err := rpmutils.ReadHeader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: go-rpmutils: %v", path, err)
		}
		if r := ref.GetRange(); int64(r.Start) != p.HeaderStart || int64(r.End) != p.HeaderEnd {
			t.Errorf("%s: range %d-%d, go-rpmutils %d-%d", path, p.HeaderStart, p.HeaderEnd, r.Start, r.End)
		}
		n, err := ref.GetNEVRA()
		if err != nil {
			t.Fatal(err)
		}
		if p.Name != n.Name || p.Epoch != n.Epoch || p.Version != n.Version || p.Release != n.Release ||
			(p.Arch != n.Arch && p.Arch != "src") {
			t.Errorf("%s: NEVRA %s, go-rpmutils %+v", path, p.NEVRA(), n)
		}
		files, err := ref.GetFiles()
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != len(p.Files) {
			t.Fatalf("%s: %d files, go-rpmutils %d", path, len(p.Files), len(files))
		}
		for i, f := range files {
			if f.Name() != p.Files[i].Path && filepath.Clean(p.Files[i].Path) != f.Name() {
				t.Errorf("%s: file %d %q, go-rpmutils %q", path, i, p.Files[i].Path, f.Name())
			}
		}
		// The fuzz helper's fresh digests leave a valid package as it was.
		raw, err := rpmhdr.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(withFreshDigests(raw), raw.Bytes()) {
			t.Errorf("%s: fresh digests differ from the package's own", path)
		}
	}
}
