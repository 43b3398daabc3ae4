package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// TestCreaterepoRetainAndSkipStatCLI: --retain-old-md bounds the
// superseded files kept in repodata/ (0: none), --skip-stat reads only
// files the repodata does not list, and their misuse exits 2.
func TestCreaterepoRetainAndSkipStatCLI(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	files := func() int {
		ents, err := os.ReadDir(filepath.Join(repo, "repodata"))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	for i := range 4 {
		if _, err := testrpm.Write(repo, testrpm.Small(i)); err != nil {
			t.Fatal(err)
		}
		if out, errOut, code := runBin(t, "", "createrepo", "-q", "--update", "--retain-old-md", "1", repo); code != 0 {
			t.Fatalf("createrepo: exit %d\n%s%s", code, out, errOut)
		}
	}
	// repomd.xml, the current three and one superseded generation.
	if n := files(); n != 7 {
		t.Fatalf("--retain-old-md 1: %d files in repodata/, want 7", n)
	}
	if _, err := testrpm.Write(repo, testrpm.Small(9)); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runBin(t, "", "createrepo", "--update", "--skip-stat", "--retain-old-md", "0", repo)
	if code != 0 || !strings.Contains(out, "read 1, reused 4") {
		t.Fatalf("--skip-stat: exit %d\n%s%s", code, out, errOut)
	}
	if n := files(); n != 4 {
		t.Fatalf("--retain-old-md 0: %d files in repodata/, want 4", n)
	}
	for _, args := range [][]string{
		{"createrepo", "--skip-stat", repo},
		{"createrepo", "--retain-old-md", "-1", repo},
	} {
		if out, errOut, code := runBin(t, "", args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d\n%s%s", args, code, exitUsage, out, errOut)
		}
	}
}
