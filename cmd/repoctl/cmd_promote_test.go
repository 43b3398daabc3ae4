package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// TestPromoteBuildCLI drives the real binary: a build of x86_64, aarch64
// and its SRPM is promoted by NAME-VERSION-RELEASE in one command, which
// used to fail with "name the NEVRA"; --dry-run shows every file it would
// place and changes nothing; --arch narrows; `list` shows the result.
func TestPromoteBuildCLI(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "repoctl.toml"), []byte("[signing]\nalgo = \"ed25519\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string, int) {
		t.Helper()
		return runIn(t, root, args...)
	}
	in := filepath.Join(dir, "in")
	if err := os.MkdirAll(in, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"add"}
	for _, arch := range []string{"x86_64", "aarch64", "src"} {
		p, err := testrpm.Write(in, testrpm.Spec{Name: "uxtool", Version: "1.1", Release: "1.el9", Arch: arch, Summary: "t", License: "MIT",
			Files: []testrpm.File{{Name: "/usr/share/uxtool/" + arch, Body: []byte(arch)}}})
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, p)
	}
	if o, e, code := run(args...); code != 0 {
		t.Fatalf("add: exit %d\n%s%s", code, o, e)
	}

	out, e, code := run("promote", "uxtool-1.1-1.el9", "--to", "prod", "--dry-run")
	if code != 0 {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, e)
	}
	for _, want := range []string{"would promote uxtool-1.1-1.el9 (3 packages) staging → prod",
		"place main/prod/el/9/x86_64/uxtool-1.1-1.el9.x86_64.rpm", "place main/prod/el/9/aarch64/uxtool-1.1-1.el9.aarch64.rpm",
		"place main/prod/el/9/SRPMS/uxtool-1.1-1.el9.src.rpm", "republish main/prod/el/9/SRPMS"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	for _, arch := range []string{"x86_64", "aarch64"} {
		if _, err := os.Stat(filepath.Join(root, "repo/main/prod/el/9", arch, "uxtool-1.1-1.el9."+arch+".rpm")); err == nil {
			t.Errorf("dry run placed the %s package", arch)
		}
	}
	if l, _, _ := run("list", "--channel", "prod"); strings.Contains(l, "uxtool") {
		t.Errorf("dry run promoted:\n%s", l)
	}
	out, _, code = run("-o", "json", "promote", "uxtool", "--arch", "x86_64,src", "--dry-run")
	var dry struct {
		Promote struct {
			Packages []struct {
				NEVRA string `json:"nevra"`
			} `json:"packages"`
		} `json:"promote"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &dry) != nil || len(dry.Promote.Packages) != 2 ||
		dry.Promote.Packages[0].NEVRA != "uxtool-1.1-1.el9.x86_64" || dry.Promote.Packages[1].NEVRA != "uxtool-1.1-1.el9.src" {
		t.Errorf("--arch x86_64,src dry run: exit %d\n%s", code, out)
	}
	if _, e, code := run("promote", "uxtool", "--arch", "../x", "--yes"); code != exitUsage {
		t.Errorf("hostile --arch: exit %d, want %d\n%s", code, exitUsage, e)
	}

	out, e, code = run("-o", "json", "promote", "uxtool-1.1-1.el9", "--to", "prod", "--yes")
	if code != 0 {
		t.Fatalf("promote: exit %d\n%s%s", code, out, e)
	}
	var res struct {
		NEVRA    string `json:"nevra"`
		Packages []struct {
			NEVRA string   `json:"nevra"`
			Files []string `json:"files"`
		} `json:"packages"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Packages) != 3 || res.NEVRA != "uxtool-1.1-1.el9.aarch64" {
		t.Fatalf("promote -o json: %v\n%s", err, out)
	}
	for _, p := range res.Packages {
		for _, f := range p.Files {
			if _, err := os.Stat(filepath.Join(root, "repo", f)); err != nil {
				t.Errorf("%s: %v", p.NEVRA, err)
			}
		}
	}
	list, _, code := run("list", "--channel", "prod")
	for _, n := range []string{"uxtool-1.1-1.el9.x86_64", "uxtool-1.1-1.el9.aarch64", "uxtool-1.1-1.el9.src"} {
		if code != 0 || !strings.Contains(list, n) {
			t.Errorf("list --channel prod lacks %s (exit %d):\n%s", n, code, list)
		}
	}
	out, _, code = run("promote", "uxtool-1.1-1.el9", "--yes")
	if code != 0 || !strings.Contains(out, "already in prod: uxtool-1.1-1.el9 (3 packages)") || !strings.Contains(out, "uxtool-1.1-1.el9.src (previous: none, already there)") {
		t.Errorf("second promote: exit %d\n%s", code, out)
	}
}
