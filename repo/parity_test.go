package repo

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// repomdRecord is one <data> of repomd.xml, as a client reads it.
type repomdRecord struct {
	Type         string `xml:"type,attr"`
	Checksum     string `xml:"checksum"`
	OpenChecksum string `xml:"open-checksum"`
	Location     struct {
		Href string `xml:"href,attr"`
	} `xml:"location"`
	Size     int64 `xml:"size"`
	OpenSize int64 `xml:"open-size"`
}

func readRepomd(t *testing.T, dir string) []repomdRecord {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "repodata", "repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	var md struct {
		Data []repomdRecord `xml:"data"`
	}
	if err := xml.Unmarshal(b, &md); err != nil {
		t.Fatal(err)
	}
	return md.Data
}

func gunzipFile(t *testing.T, p string) []byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPublishedRepodataMatchesCreaterepoC compares what the pipeline
// publishes (adds, a promote, a remove) with what createrepo_c writes for
// the same files with the same mtimes: the uncompressed XML byte for byte,
// and repomd.xml record by record (types and their order, open checksums
// and sizes; the compressed bytes differ by compressor).
func TestPublishedRepodataMatchesCreaterepoC(t *testing.T) {
	needTools(t, "createrepo_c")
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte("[signing]\nalgo = \"ed25519\"\n[publish]\ncompression = \"gz\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := openPL(t, root)
	in := t.TempDir()
	var files []string
	for i := 0; i < 6; i++ {
		s := testrpm.Small(i)
		for j := 0; j < 12; j++ { // more than the changelog limit of 10
			s.Changelog = append(s.Changelog, testrpm.Change{Time: time.Unix(int64(1690000000-j*3600), 0),
				Author: fmt.Sprintf("Dev <dev@example.test> - 1.%d", j), Text: fmt.Sprintf("- change %d", j)})
		}
		p, err := testrpm.Write(in, s)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	files = append(files, writeSpec(t, in, spec("noarchpkg", "2", "3.el9", "noarch")))
	if _, err := r.Add(ctx, files, AddOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{testrpm.Small(1).FileName(), testrpm.Small(2).FileName()} {
		if _, err := r.Promote(ctx, PromoteRequest{Package: strings.TrimSuffix(n, ".rpm")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Remove(ctx, strings.TrimSuffix(testrpm.Small(3).FileName(), ".rpm"), RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"main/staging/el/9/x86_64", "main/prod/el/9/x86_64", "main/staging/el/9/aarch64"} {
		t.Run(rel, func(t *testing.T) {
			ours := filepath.Join(root, "repo", rel)
			theirs := t.TempDir()
			ents, err := os.ReadDir(ours)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, e := range ents {
				if strings.HasSuffix(e.Name(), ".rpm") {
					if out, err := exec.Command("cp", "-p", filepath.Join(ours, e.Name()), theirs).CombinedOutput(); err != nil {
						t.Fatalf("cp: %v\n%s", err, out)
					}
					n++
				}
			}
			if n == 0 {
				t.Fatalf("%s has no packages", rel)
			}
			if out, err := exec.Command("createrepo_c", "--no-database", "--general-compress-type", "gz", theirs).CombinedOutput(); err != nil {
				t.Fatalf("createrepo_c: %v\n%s", err, out)
			}
			a, b := readRepomd(t, ours), readRepomd(t, theirs)
			if len(a) != len(b) {
				t.Fatalf("repomd.xml: %d records, createrepo_c %d", len(a), len(b))
			}
			for i := range a {
				x, y := a[i], b[i]
				if x.Type != y.Type || x.OpenChecksum != y.OpenChecksum || x.OpenSize != y.OpenSize {
					t.Errorf("record %d: ours %s open %s/%d, createrepo_c %s open %s/%d", i, x.Type, x.OpenChecksum, x.OpenSize, y.Type, y.OpenChecksum, y.OpenSize)
				}
				if !strings.HasPrefix(x.Location.Href, "repodata/") || !strings.HasSuffix(x.Location.Href, ".xml.gz") {
					t.Errorf("record %s href %q", x.Type, x.Location.Href)
				}
				if fi, err := os.Stat(filepath.Join(ours, x.Location.Href)); err != nil || fi.Size() != x.Size {
					t.Errorf("record %s: size %d in repomd, file %v %v", x.Type, x.Size, fi, err)
				}
				xa, ya := gunzipFile(t, filepath.Join(ours, x.Location.Href)), gunzipFile(t, filepath.Join(theirs, y.Location.Href))
				if !bytes.Equal(xa, ya) {
					t.Errorf("%s differs from createrepo_c's:\nours:\n%.2000s\ntheirs:\n%.2000s", x.Type, xa, ya)
				}
			}
		})
	}
}
