package metadata

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestRepomdMarshalMatchesCreaterepoC: createrepo_c's repomd.xml, parsed
// and written again by us, comes out byte for byte the same, revision
// escaping included.
func TestRepomdMarshalMatchesCreaterepoC(t *testing.T) {
	for _, rev := range []string{"1700000000", `odd <rev> & "quoted"`} {
		dir := t.TempDir()
		writeSmall(t, dir, 1)
		writeSmall(t, dir, 2)
		cmd := exec.Command("createrepo_c", "--no-database", "--revision", rev, dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("createrepo_c: %v\n%s", err, out)
		}
		theirs, err := os.ReadFile(filepath.Join(dir, "repodata", "repomd.xml"))
		if err != nil {
			t.Fatal(err)
		}
		md, err := ParseRepomd(theirs)
		if err != nil {
			t.Fatal(err)
		}
		if md.Revision != rev || len(md.Records) != 3 {
			t.Fatalf("parsed %+v", md)
		}
		if ours := md.Marshal(); !bytes.Equal(ours, theirs) {
			t.Fatalf("repomd.xml differs (- createrepo_c, + ours):\n%s", diffFirst(theirs, ours))
		}
	}
}
