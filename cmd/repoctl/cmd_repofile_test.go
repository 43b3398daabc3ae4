package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/repoctl/repoctl/internal/testrpm"
	"github.com/repoctl/repoctl/repo"
)

// repofile's refusals exit 2 and print nothing on stdout; its choices are
// visible in the text and in -o json.
func TestRepoFileCLI(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "repoctl.toml"), []byte("[signing]\nalgo = \"ed25519\"\n[http]\npublic_url = \"https://repo.example/\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Nothing is known yet: no file, and not exit 0.
	if out, stderr, code := runIn(t, root, "repofile"); code == 0 || out != "" || !strings.Contains(stderr, "no dist release is known yet") {
		t.Errorf("repofile of an empty root: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	in := t.TempDir()
	var files []string
	for _, rel := range []string{"1.el8", "1.el9", "1.fc40"} {
		p, err := testrpm.Write(in, testrpm.Spec{Name: "cli", Version: "1", Release: rel, Arch: "x86_64", Summary: "s", License: "MIT"})
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	if out, stderr, code := runIn(t, root, append([]string{"add"}, files...)...); code != 0 {
		t.Fatalf("add: exit %d\n%s%s", code, out, stderr)
	}
	for _, tc := range []struct {
		args []string
		want string // in stderr
	}{
		{nil, "several dists (el, fc); pass --dist"},
		{[]string{"--channel", "qa"}, `unknown channel "qa"`},
		{[]string{"--repo", "other", "--dist", "el"}, `unknown repository "other"`},
		{[]string{"--dist", "sles"}, `unknown dist "sles"`},
		{[]string{"--release", "el/7"}, `unknown release "el/7" (known: el/8, el/9, fc/40)`},
		{[]string{"--release", "el7"}, `unknown release "el/7"`},
		{[]string{"--release", "../el/9"}, "not a release directory"},
		{[]string{"--release", "common"}, "in every .repo file"},
		{[]string{"--release", "el/9", "--dist", "fc"}, `"el/9" is not of dist "fc"`},
		{[]string{"--dist", "el", "--bogus"}, "unknown flag"},
	} {
		out, stderr, code := runIn(t, root, append([]string{"repofile"}, tc.args...)...)
		if code != exitUsage || out != "" || !strings.Contains(stderr, tc.want) {
			t.Errorf("repofile %v: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.args, code, out, stderr, tc.want)
		}
	}
	if out, stderr, code := runIn(t, root, "add", "--release", "el/../9", files[0]); code != exitUsage || !strings.Contains(stderr, "not a release directory") {
		t.Errorf("add --release el/../9: exit %d\n%s%s", code, out, stderr)
	}

	out, stderr, code := runIn(t, root, "repofile", "--dist", "el")
	if code != 0 {
		t.Fatalf("repofile --dist el: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"channel prod, el hosts, $releasever in 8, 9,", "[main-prod-el]\n",
		"baseurl=https://repo.example/main/prod/el/$releasever/$basearch/\nenabled=1\ngpgcheck=1\nrepo_gpgcheck=1\ngpgkey=https://repo.example/RPM-GPG-KEY-repoctl\n",
		"[main-prod-common]\n", "baseurl=https://repo.example/main/prod/common/$basearch/\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("repofile --dist el lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "staging") || strings.Contains(out, "/fc/") {
		t.Errorf("repofile --dist el names staging or fc:\n%s", out)
	}
	out, stderr, code = runIn(t, root, "repofile", "--release", "el9", "--channel", "staging")
	if code != 0 || !strings.Contains(out, "[main-staging-el9]\n") || !strings.Contains(out, "baseurl=https://repo.example/main/staging/el/9/$basearch/\n") {
		t.Errorf("repofile --release el9: exit %d %s\n%s", code, stderr, out)
	}

	out, stderr, code = runIn(t, root, "-o", "json", "repofile", "--dist", "fc", "--channel", "staging")
	var f repo.RepoFileResult
	if code != 0 || json.Unmarshal([]byte(out), &f) != nil {
		t.Fatalf("repofile -o json: exit %d %s\n%s", code, stderr, out)
	}
	if f.Channel != "staging" || f.Dist != "fc" || strings.Join(f.Releases, ",") != "fc/40" || !f.Common || len(f.Sections) != 4 {
		t.Fatalf("json: %+v", f)
	}
	want := []repo.RepoSection{
		{ID: "main-staging-fc", BaseURL: "https://repo.example/main/staging/fc/$releasever/$basearch/", Enabled: true, Release: "fc/$releasever", Arch: "$basearch"},
		{ID: "main-staging-fc-source", BaseURL: "https://repo.example/main/staging/fc/$releasever/SRPMS/", Release: "fc/$releasever", Arch: "SRPMS"},
		{ID: "main-staging-common", BaseURL: "https://repo.example/main/staging/common/$basearch/", Enabled: true, Release: "common", Arch: "$basearch"},
		{ID: "main-staging-common-source", BaseURL: "https://repo.example/main/staging/common/SRPMS/", Release: "common", Arch: "SRPMS"},
	}
	for i, w := range want {
		s := f.Sections[i]
		if s.ID != w.ID || s.BaseURL != w.BaseURL || s.Enabled != w.Enabled || s.Release != w.Release || s.Arch != w.Arch ||
			!s.GPGCheck || !s.RepoGPGCheck || s.GPGKey != "https://repo.example/RPM-GPG-KEY-repoctl" || s.Repo != "main" || s.Channel != "staging" {
			t.Errorf("section %d = %+v, want %+v", i, s, w)
		}
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatal(err)
	}
	sec, _ := raw["sections"].([]any)
	if len(sec) == 0 {
		t.Fatalf("no sections in %s", out)
	}
	for _, k := range []string{"id", "name", "baseurl", "enabled", "gpgcheck", "repo_gpgcheck", "gpgkey", "metadata_expire"} {
		if _, ok := sec[0].(map[string]any)[k]; !ok {
			t.Errorf("JSON section lacks %q: %v", k, sec[0])
		}
	}
}
