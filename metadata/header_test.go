package metadata

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	rpmutils "github.com/sassoftware/go-rpmutils"
)

// The reader parses the validated header itself (go-rpmutils decodes
// every entry through reflection and a map, which dominated the cost of a
// run). go-rpmutils stays the reference: on every fixture both must read
// the same value for every tag, the same NEVRA and the same header range.
func crossCheckWithRPMUtils(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := newReadConfig(nil)
	raw, err := readRawHeaders(bytes.NewReader(b), cfg)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	ref, err := rpmutils.ReadHeader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: go-rpmutils: %v", path, err)
	}
	if r := ref.GetRange(); int64(r.Start) != int64(raw.hdrStart) || int64(r.End) != int64(raw.hdrEnd) {
		t.Errorf("%s: range %d-%d, go-rpmutils %d-%d", path, raw.hdrStart, raw.hdrEnd, r.Start, r.End)
	}
	check := func(x *headerIndex, offset int) {
		for _, e := range x.ents {
			tag := int(e.tag)
			if offset == 0 && tag < 1000 || offset != 0 && tag >= 1000 {
				continue // go-rpmutils routes these to the other header
			}
			rtag := tag
			if offset != 0 {
				rtag = tag + offset
			}
			if tag > 16384 {
				continue
			}
			if got, ok := x.strs(tag); ok {
				want, err := ref.GetStrings(rtag)
				if err != nil || !slices.Equal(got, want) {
					t.Errorf("%s: tag %d = %q, go-rpmutils %q (%v)", filepath.Base(path), tag, got, want, err)
				}
			} else if got, ok := x.nums(tag); ok {
				want, err := ref.GetUint64s(rtag)
				if err != nil || !slices.Equal(got, want) {
					t.Errorf("%s: tag %d = %v, go-rpmutils %v (%v)", filepath.Base(path), tag, got, want, err)
				}
			}
		}
	}
	check(&raw.main, 0)
	// Signature tags at or above 1000 are offset by 16384 in go-rpmutils.
	check(&raw.sig, 16384)
	p, err := packageFromHeader(raw)
	if err != nil {
		t.Fatal(err)
	}
	n, err := ref.GetNEVRA()
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != n.Name || p.Epoch != n.Epoch || p.Version != n.Version || p.Release != n.Release {
		t.Errorf("%s: NEVR %s, go-rpmutils %+v", path, p.NEVRA(), n)
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
}

func TestHeaderValuesMatchGoRPMUtils(t *testing.T) {
	var paths []string
	ms, _ := filepath.Glob(filepath.Join(sharedCorpus(t), "*.rpm"))
	paths = append(paths, ms...)
	gen := t.TempDir()
	generatedCorpus(t, gen)
	ms, _ = filepath.Glob(filepath.Join(gen, "*.rpm"))
	paths = append(paths, ms...)
	if len(paths) < 25 {
		t.Fatalf("only %d fixtures", len(paths))
	}
	for _, p := range paths {
		crossCheckWithRPMUtils(t, p)
	}
}
