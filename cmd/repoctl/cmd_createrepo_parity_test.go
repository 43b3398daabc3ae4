package main

import (
	"bytes"
	"compress/gzip"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// repodataXML returns the uncompressed primary, filelists and other of
// dir's repodata, found through repomd.xml as a client finds them.
func repodataXML(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "repodata", "repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	var md struct {
		Data []struct {
			Type     string `xml:"type,attr"`
			Location struct {
				Href string `xml:"href,attr"`
			} `xml:"location"`
		} `xml:"data"`
	}
	if err := xml.Unmarshal(b, &md); err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, d := range md.Data {
		if d.Type != "primary" && d.Type != "filelists" && d.Type != "other" {
			continue
		}
		f, err := os.Open(filepath.Join(dir, d.Location.Href))
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %v", d.Location.Href, err)
		}
		x, err := io.ReadAll(zr)
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if err != nil {
			t.Fatal(err)
		}
		out[d.Type] = x
	}
	if len(out) != 3 {
		t.Fatalf("%s: repomd.xml names %v", dir, md.Data)
	}
	return out
}

// TestCreaterepoFlagsParity runs `repoctl createrepo` and createrepo_c with
// the same flags on copies of the same files (same mtimes) and compares
// the uncompressed XML byte for byte. The flags must mean what
// createrepo_c's mean, --changelog-limit 0 included.
func TestCreaterepoFlagsParity(t *testing.T) {
	requireTools(t, "createrepo_c")
	src := t.TempDir()
	for i := 0; i < 4; i++ {
		s := testrpm.Small(i)
		for j := 0; j < 4; j++ {
			s.Changelog = append(s.Changelog, testrpm.Change{Time: time.Unix(int64(1700000000-j*86400), 0),
				Author: fmt.Sprintf("Dev %d <dev@example.com> - 1.%d", j, j), Text: fmt.Sprintf("- change %d of %s", j, s.Name)})
		}
		if _, err := testrpm.Write(src, s); err != nil {
			t.Fatal(err)
		}
	}
	copyTree := func() string {
		dst := t.TempDir()
		out, err := exec.Command("cp", "-p", "-r", src+"/.", dst).CombinedOutput()
		if err != nil {
			t.Fatalf("cp: %v\n%s", err, out)
		}
		return dst
	}
	for _, c := range [][]string{
		{"--changelog-limit", "0"},
		{"--changelog-limit", "2"},
		{"--changelog-limit", "-1"},
		{},
		{"--baseurl", "http://mirror.example.com/el9/"},
		{"--workers", "1", "--revision", "rev7"},
	} {
		t.Run(fmt.Sprint(c), func(t *testing.T) {
			ours, theirs := copyTree(), copyTree()
			args := append([]string{"createrepo", "--compress-type", "gz"}, c...)
			if out, err := exec.Command(repoctlBin, append(args, ours)...).CombinedOutput(); err != nil {
				t.Fatalf("repoctl %v: %v\n%s", args, err, out)
			}
			peer := append([]string{"--no-database", "--general-compress-type", "gz"}, c...)
			if out, err := exec.Command("createrepo_c", append(peer, theirs)...).CombinedOutput(); err != nil {
				t.Fatalf("createrepo_c %v: %v\n%s", peer, err, out)
			}
			a, b := repodataXML(t, ours), repodataXML(t, theirs)
			for _, k := range []string{"primary", "filelists", "other"} {
				if !bytes.Equal(a[k], b[k]) {
					t.Errorf("%s differs from createrepo_c's with %v\nours:\n%.1500s\ntheirs:\n%.1500s", k, c, a[k], b[k])
				}
			}
		})
	}
}
