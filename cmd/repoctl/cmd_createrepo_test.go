package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// TestCreaterepoCLI drives the real binary: publish with a junk file
// (exit 3, message naming it, JSON summary), an unchanged rerun, and a
// second writer that will not wait (exit 4).
func TestCreaterepoCLI(t *testing.T) {
	requireTools(t, "flock")
	tmp := t.TempDir()
	repo := filepath.Join(tmp, "repo")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := testrpm.Write(repo, testrpm.Small(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(repo, "junk.rpm"), []byte("definitely not an rpm"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (stdout, stderr string, code int) {
		t.Helper()
		return runBin(t, "", args...)
	}

	out, errOut, code := run("createrepo", "--compress-type", "gz", "--revision", "r1", repo)
	if code != exitRejected || !strings.Contains(errOut, "junk.rpm") || !strings.Contains(out, "published 5 packages") {
		t.Fatalf("first run: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	md, err := os.ReadFile(filepath.Join(repo, "repodata", "repomd.xml"))
	if err != nil || !strings.Contains(string(md), "<revision>r1</revision>") || !strings.Contains(string(md), "-primary.xml.gz\"/>") {
		t.Fatalf("repomd.xml: %v\n%s", err, md)
	}

	if err := os.Remove(filepath.Join(repo, "junk.rpm")); err != nil {
		t.Fatal(err)
	}
	if _, err := testrpm.Write(repo, testrpm.Small(9)); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = run("createrepo", "--dry-run", "--update", "--compress-type", "gz", "--revision", "r1", repo)
	if code != 0 || !strings.Contains(out, "would publish 6 packages") {
		t.Fatalf("dry run: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	md2, err := os.ReadFile(filepath.Join(repo, "repodata", "repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if string(md2) != string(md) {
		t.Fatal("dry run rewrote repomd.xml")
	}
	if err := os.Remove(filepath.Join(repo, testrpm.Small(9).FileName())); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = run("-o", "json", "createrepo", "--update", "--compress-type", "gz", "--revision", "r1", repo)
	var res struct {
		Packages int    `json:"packages"`
		Reused   int    `json:"reused"`
		Error    string `json:"error"`
		Skipped  []any  `json:"skipped"`
		Publish  struct {
			Changed bool `json:"changed"`
		} `json:"publish"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Packages != 5 || res.Reused != 5 || res.Publish.Changed || res.Skipped == nil {
		t.Fatalf("json rerun: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	md2, err = os.ReadFile(filepath.Join(repo, "repodata", "repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if string(md2) != string(md) {
		t.Fatal("unchanged repository: repomd.xml rewritten")
	}

	// Another writer holds the lock.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	holder := exec.CommandContext(ctx, "flock", filepath.Join(repo, ".repodata.lock"), "sleep", "30")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer holder.Wait()
	time.Sleep(300 * time.Millisecond)
	out, errOut, code = run("createrepo", "--no-wait", repo)
	if code != exitBusy || !strings.Contains(errOut, "locked") {
		t.Fatalf("locked: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	cancel()

	if _, errOut, code = run("createrepo", "--compress-type", "lz4", repo); code != exitUsage {
		t.Fatalf("bad compression: exit %d\n%s", code, errOut)
	}
	if _, errOut, code = run("createrepo"); code != exitUsage {
		t.Fatalf("no DIR: exit %d\n%s", code, errOut)
	}
}
