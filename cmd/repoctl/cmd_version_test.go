package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/buildinfo"
)

// --version and `version` print the same build line; -o json gives its
// fields.
func TestVersion(t *testing.T) {
	out, stderr, code := runBin(t, "", "--version")
	if code != 0 {
		t.Fatalf("repoctl --version: exit %d: %s", code, stderr)
	}
	line := strings.TrimSpace(out)
	if !strings.HasPrefix(line, "repoctl ") || !strings.Contains(line, runtime.Version()) {
		t.Errorf("repoctl --version = %q, want \"repoctl VERSION … %s …\"", line, runtime.Version())
	}
	out2, stderr, code := runBin(t, "", "version")
	if code != 0 {
		t.Fatalf("repoctl version: exit %d: %s", code, stderr)
	}
	if strings.TrimSpace(out2) != line {
		t.Errorf("repoctl version = %q, --version = %q: want the same line", out2, line)
	}
	js, stderr, code := runBin(t, "", "version", "-o", "json")
	if code != 0 {
		t.Fatalf("repoctl version -o json: exit %d: %s", code, stderr)
	}
	var info buildinfo.Info
	if err := json.Unmarshal([]byte(js), &info); err != nil {
		t.Fatalf("version -o json: %v\n%s", err, js)
	}
	if info.Module != "github.com/repoctl/repoctl" || info.GoVersion != runtime.Version() ||
		info.Platform != runtime.GOOS+"/"+runtime.GOARCH || info.Version == "" {
		t.Errorf("version -o json = %+v", info)
	}
	if !strings.HasPrefix(line, "repoctl "+info.Version+" ") {
		t.Errorf("--version %q does not start with the module version %q", line, info.Version)
	}
}

// A binary built from the git clone with VCS stamping (what `make build`
// does) names the commit it was built from, its time, and whether the
// tree had changes, as git itself says.
func TestVersionFromVCS(t *testing.T) {
	requireTools(t, "git")
	bin := filepath.Join(t.TempDir(), "repoctl")
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, out)
	}
	git := func(args ...string) string {
		out, err := exec.Command("git", args...).Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	rev := git("rev-parse", "HEAD")
	when, err := time.Parse(time.RFC3339, git("log", "-1", "--format=%cI"))
	if err != nil {
		t.Fatal(err)
	}
	dirty := git("status", "--porcelain") != ""

	out, err := exec.Command(bin, "version", "-o", "json").Output()
	if err != nil {
		t.Fatalf("version -o json: %v", err)
	}
	var info buildinfo.Info
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("version -o json: %v\n%s", err, out)
	}
	if info.Revision != rev {
		t.Errorf("revision %q, git HEAD %q", info.Revision, rev)
	}
	if got, err := time.Parse(time.RFC3339, info.Time); err != nil || !got.Equal(when) {
		t.Errorf("time %q (%v), git says %v", info.Time, err, when)
	}
	if info.Modified != dirty {
		t.Errorf("modified %v, git status says dirty=%v", info.Modified, dirty)
	}
	// Untagged, the toolchain makes a pseudo-version from the commit.
	if git("tag", "--points-at", "HEAD") == "" && !strings.Contains(info.Version, rev[:12]) {
		t.Errorf("version %q does not name commit %s", info.Version, rev[:12])
	}
	line, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(line), "revision "+rev) {
		t.Errorf("--version %q lacks the revision %s", line, rev)
	}
}
