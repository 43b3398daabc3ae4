package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// TestCreaterepoRefusesManagedDir: standalone createrepo refuses a
// repository directory of a repoctl root (exit 2, naming republish and
// fsck), from inside it too, and a tree whose [paths] repo lies outside
// the root; --force writes it anyway, which fsck then reports and
// republish repairs.
func TestCreaterepoRefusesManagedDir(t *testing.T) {
	tmp := t.TempDir()
	root := filepath.Join(tmp, "root")
	served := filepath.Join(tmp, "served")
	other := filepath.Join(tmp, "other")
	for _, d := range []string{root, other} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "repoctl.toml"), []byte("[signing]\nalgo = \"ed25519\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "repoctl.toml"), []byte("[signing]\nalgo = \"ed25519\"\n[paths]\nrepo = \""+served+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pkg, err := testrpm.Write(t.TempDir(), testrpm.Spec{Name: "managed", Version: "1", Release: "1.el9", Arch: "x86_64",
		Summary: "managed", License: "MIT", Files: []testrpm.File{{Name: "/usr/share/managed", Body: []byte("x\n")}}})
	if err != nil {
		t.Fatal(err)
	}
	run := func(dir string, args ...string) (string, string, int) {
		t.Helper()
		return runBin(t, dir, args...)
	}
	for _, r := range []string{root, other} {
		if out, errOut, code := run(tmp, "--root", r, "add", pkg); code != 0 {
			t.Fatalf("add to %s: exit %d\n%s%s", r, code, out, errOut)
		}
	}
	dir := filepath.Join(root, "repo/main/staging/el/9/x86_64")
	md := filepath.Join(dir, "repodata/repomd.xml")
	before, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}

	refused := func(cwd, arg, wantRoot, wantDir string) {
		t.Helper()
		out, errOut, code := run(cwd, "createrepo", "--update", arg)
		if code != exitUsage {
			t.Errorf("createrepo %s (in %s): exit %d, want %d\n%s%s", arg, cwd, code, exitUsage, out, errOut)
		}
		for _, w := range []string{"managed by the repoctl root " + wantRoot, "republish" + wantDir, "fsck" + wantDir, "--force"} {
			if !strings.Contains(errOut, w) {
				t.Errorf("createrepo %s: message lacks %q:\n%s", arg, w, errOut)
			}
		}
	}
	refused(tmp, dir, root, " main/staging/el/9/x86_64")
	refused(dir, ".", root, " main/staging/el/9/x86_64")
	refused(tmp, root, root, "`")
	refused(tmp, filepath.Join(served, "main/staging/el/9/x86_64"), other, " main/staging/el/9/x86_64")
	after, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, before) {
		t.Fatal("a refused createrepo rewrote repomd.xml")
	}
	if _, err := os.Stat(md + ".asc"); err != nil {
		t.Fatalf("a refused createrepo touched repomd.xml.asc: %v", err)
	}

	// --force writes it, unsigned, as createrepo always does; fsck sees
	// it and republish brings the signature back.
	if out, errOut, code := run(tmp, "createrepo", "--force", "--revision", "by-hand", dir); code != 0 || !strings.Contains(out, "published 1 packages") {
		t.Fatalf("createrepo --force: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(md + ".asc"); !os.IsNotExist(err) {
		t.Fatalf("createrepo --force left repomd.xml.asc: %v", err)
	}
	out, errOut, code := run(tmp, "--root", root, "fsck")
	if code != exitRejected || !strings.Contains(out, "repomd-signature") || !strings.Contains(errOut, "does not match the store") {
		t.Errorf("fsck after createrepo --force: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := run(tmp, "--root", root, "republish", "main/staging/el/9/x86_64"); code != 0 {
		t.Fatalf("republish: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := run(tmp, "--root", root, "fsck"); code != 0 || !strings.HasPrefix(out, "clean: ") {
		t.Errorf("fsck after republish: exit %d\n%s%s", code, out, errOut)
	}
}
