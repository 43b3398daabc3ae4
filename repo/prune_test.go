package repo

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The retention test, on a daemon with the real CLI: with keep = 2,
// after 1.0, 2.0 and 3.0 land in staging, staging's repodata lists only
// 2.0 and 3.0, while prod, which holds 1.0, still serves it. prune
// --dry-run changes nothing. The pruned staging file is still served
// within the grace period and gone after it.
func TestRetentionKeepTwo(t *testing.T) {
	needTools(t, "dnf", "rpm")
	root, url := newTestRoot(t, lcConfig+"[publish]\ngrace = \"3s\"\n[retention]\nkeep = 2\nchannel_versions = 1\n")
	d := startDaemon(t, root)
	defer d.stop()
	in := t.TempDir()
	add := func(v string) {
		t.Helper()
		if out, stderr, code := runCLI(t, root, "add", lcBuild(t, in, "app", v)); code != 0 {
			t.Fatalf("add %s: exit %d\n%s%s", v, code, out, stderr)
		}
	}
	add("1.0")
	if out, stderr, code := runCLI(t, root, "promote", "app-1.0-1.el9.x86_64", "--yes"); code != 0 {
		t.Fatalf("promote: exit %d\n%s%s", code, out, stderr)
	}
	add("2.0")
	prunedAfter := time.Now() // 1.0 cannot leave staging before this
	add("3.0")
	staging := filepath.Join(root, "repo/main/staging/el/9/x86_64")
	prod := filepath.Join(root, "repo/main/prod/el/9/x86_64")
	if got := keys(mustPkgs(t, staging)); !slices.Equal(got, []string{"app-2.0-1.el9.x86_64", "app-3.0-1.el9.x86_64"}) {
		t.Errorf("staging lists %v, want 2.0 and 3.0", got)
	}
	if got := keys(mustPkgs(t, prod)); !slices.Equal(got, []string{"app-1.0-1.el9.x86_64"}) {
		t.Errorf("prod lists %v, want 1.0", got)
	}
	get := func(rel string) int {
		t.Helper()
		resp, err := http.Get(url + rel)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := get("main/prod/el/9/x86_64/app-1.0-1.el9.x86_64.rpm"); c != 200 {
		t.Errorf("prod's 1.0: HTTP %d", c)
	}
	// A host on prod installs 1.0 with every check on.
	repofile, stderr, code := runCLI(t, root, "repofile", "--channel", "prod")
	if code != 0 {
		t.Fatal(stderr)
	}
	h := newELHost(t, repofile)
	h.mustDNF("install", "app")
	if got := h.installed("app"); got != "app-1.0-1.el9.x86_64" {
		t.Errorf("prod host installed %q", got)
	}

	var evs []Event
	cliJSON(t, root, &evs, "history")
	var pruned *Event
	for i := range evs {
		if evs[i].Action == EventPrune {
			pruned = &evs[i]
		}
	}
	if pruned == nil || pruned.Channel != "staging" || pruned.Details["removed"] != "app-1.0-1.el9.x86_64" || pruned.Details["keep"] != "2" {
		t.Errorf("prune event: %+v", pruned)
	}

	// --dry-run with a stricter keep says what it would take and changes nothing.
	repomd := filepath.Join(staging, "repodata/repomd.xml")
	before, err := os.ReadFile(repomd)
	if err != nil {
		t.Fatal(err)
	}
	var dry PruneResult
	cliJSON(t, root, &dry, "prune", "--keep", "1", "--dry-run")
	if !dry.DryRun || len(dry.Channels) != 2 {
		t.Fatalf("dry run: %+v", dry)
	}
	for _, c := range dry.Channels {
		want := []string{}
		if c.Channel == "staging" {
			want = []string{"app-2.0-1.el9.x86_64"}
		}
		if !slices.Equal(c.Removed, want) || c.Version != 0 {
			t.Errorf("dry run %s: %+v, want %v", c.Channel, c, want)
		}
	}
	text, _, _ := runCLI(t, root, "prune", "--keep", "1", "--dry-run")
	if !strings.Contains(text, "would prune app-2.0-1.el9.x86_64 from staging") {
		t.Errorf("dry run text:\n%s", text)
	}
	if after, _ := os.ReadFile(repomd); !bytes.Equal(before, after) {
		t.Error("prune --dry-run rewrote staging's repomd.xml")
	}
	if got := keys(mustPkgs(t, staging)); len(got) != 2 {
		t.Errorf("dry run changed staging: %v", got)
	}

	// The pruned staging file goes, but only after the grace period.
	pf := filepath.Join(staging, "app-1.0-1.el9.x86_64.rpm")
	var goneAt time.Time
	waitFor(t, time.Minute, "the pruned staging file to go", func() (bool, string) {
		_, err := os.Stat(pf)
		if os.IsNotExist(err) {
			goneAt = time.Now()
			return true, ""
		}
		return false, fmt.Sprint(err)
	})
	if dt := goneAt.Sub(prunedAfter); dt < 3*time.Second {
		t.Errorf("pruned file deleted %v after the prune, before the 3s grace", dt)
	}
	if c := get("main/staging/el/9/x86_64/app-1.0-1.el9.x86_64.rpm"); c != 404 {
		t.Errorf("pruned staging file after grace: HTTP %d", c)
	}
	if c := get("main/prod/el/9/x86_64/app-1.0-1.el9.x86_64.rpm"); c != 200 {
		t.Errorf("prod's 1.0 after staging's copy went: HTTP %d", c)
	}
	if out, stderr, code := runCLI(t, root, "fsck"); code != 0 {
		t.Errorf("fsck: exit %d\n%s%s", code, out, stderr)
	}
	if _, stderr, code := runCLI(t, root, "history", "--verify"); code != 0 {
		t.Errorf("history --verify: %s", stderr)
	}
}

func TestPruneSet(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	rec := func(name, version, arch string, age int) *PackageRecord {
		return &PackageRecord{NEVRA: formatNEVRA(name, "", version, "1", arch), Name: name, Version: version, Release: "1",
			Arch: arch, Added: now.Add(-time.Duration(age) * 24 * time.Hour)}
	}
	pkgs := []*PackageRecord{
		rec("app", "1.10", "x86_64", 30), rec("app", "1.9", "x86_64", 40), rec("app", "1.2", "x86_64", 50),
		rec("app", "1.2", "aarch64", 50), rec("kernel", "5", "x86_64", 90), rec("kernel", "6", "x86_64", 1),
		rec("kernel", "4", "x86_64", 100),
	}
	for _, tc := range []struct {
		rule Retention
		want []string
	}{
		{Retention{Keep: 2}, []string{"app-1.2-1.x86_64", "kernel-4-1.x86_64"}},
		{Retention{Keep: 1}, []string{"app-1.2-1.x86_64", "app-1.9-1.x86_64", "kernel-4-1.x86_64", "kernel-5-1.x86_64"}},
		{Retention{Keep: 1, Exclude: []string{"kern*"}}, []string{"app-1.2-1.x86_64", "app-1.9-1.x86_64"}},
		// keep_days never drops the newest of a name and arch.
		{Retention{KeepDays: 45}, []string{"app-1.2-1.x86_64", "kernel-4-1.x86_64", "kernel-5-1.x86_64"}},
		{Retention{}, nil},
	} {
		if got := pruneSet(pkgs, tc.rule, now); !slices.Equal(got, tc.want) {
			t.Errorf("%+v: prunes %v, want %v", tc.rule, got, tc.want)
		}
	}
}

func TestRetentionConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg string
		ok  bool
	}{
		{"[retention]\nkeep = 3\n[retention.channel.prod]\nkeep = 5\nexclude = [\"kernel*\"]\n", true},
		{"[retention]\nkeep = -1\n", false},
		{"[retention.channel.nope]\nkeep = 1\n", false},
		{"[retention]\nexclude = [\"[\"]\n", false},
		{"[retention]\nchannel_versions = -2\n", false},
		{"[publish]\ngrace = \"soon\"\n", false},
	} {
		root := t.TempDir()
		if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(tc.cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(root, "")
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v, want ok=%v", tc.cfg, err, tc.ok)
			continue
		}
		if tc.ok {
			if r := cfg.RetentionFor("prod"); r.Keep != 5 || !r.Excluded("kernel-core") {
				t.Errorf("prod rule %+v", r)
			}
			if r := cfg.RetentionFor("staging"); r.Keep != 3 || r.Excluded("kernel-core") {
				t.Errorf("staging rule %+v", r)
			}
		}
	}
}
