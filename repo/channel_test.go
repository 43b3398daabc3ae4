package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	kv "github.com/repoctl/repoctl/repo/store"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// lcConfig is a fast test root: ed25519 key, dist-less packages in el/9.
const lcConfig = "[signing]\nalgo = \"ed25519\"\n[routing]\ndefault = \"el/9\"\n"

func lcBuild(t testing.TB, dir, name, version string) string {
	t.Helper()
	s := helloSpec(name)
	s.Version, s.Release, s.Arch = version, "1.el9", "x86_64"
	s.Files = []testrpm.File{{Name: "/usr/share/" + name + "/VERSION", Body: []byte(version + "\n")}}
	p, err := testrpm.Write(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func cliJSON(t testing.TB, root string, v any, args ...string) {
	t.Helper()
	out, stderr, code := runCLI(t, root, append([]string{"-o", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("repoctl %v: exit %d\n%s%s", args, code, out, stderr)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("repoctl %v: %v\n%s", args, err, out)
		}
	}
}

// The rollback test, over the daemon's socket with the real CLI:
// app 1.0 and then 2.0 are promoted to prod; a host installs 2.0; prod is
// rolled back to the version that held only 1.0; the host then sees only
// 1.0 and `dnf downgrade` takes it there. channel diff shows the change,
// the events and the new version name the kernel's caller, and rolling
// forward again lists 2.0 from its held file without re-signing.
func TestChannelRollbackDNF(t *testing.T) {
	needTools(t, "dnf", "rpm")
	root, url := newTestRoot(t, lcConfig)
	d := startDaemon(t, root)
	defer d.stop()
	in := t.TempDir()
	for _, v := range []string{"1.0", "2.0"} {
		p := lcBuild(t, in, "app", v)
		if out, stderr, code := runCLI(t, root, "add", p); code != 0 {
			t.Fatalf("add %s: exit %d\n%s%s", v, code, out, stderr)
		}
		if out, stderr, code := runCLI(t, root, "promote", "app-"+v+"-1.el9.x86_64", "--yes"); code != 0 {
			t.Fatalf("promote %s: exit %d\n%s%s", v, code, out, stderr)
		}
	}
	var log []ChannelVersion
	cliJSON(t, root, &log, "channel", "log", "prod")
	if len(log) != 2 || log[0].Version != 2 || log[0].Cause != EventPromote || !slices.Equal(log[0].Added, []string{"app-2.0-1.el9.x86_64"}) ||
		log[1].Version != 1 || log[0].Packages != 2 {
		t.Fatalf("prod log after two promotes: %+v", log)
	}
	repofile, stderr, code := runCLI(t, root, "repofile", "--channel", "prod")
	if code != 0 {
		t.Fatalf("repofile: %s", stderr)
	}
	if !strings.Contains(repofile, url) {
		t.Fatalf("repofile does not use %s:\n%s", url, repofile)
	}
	h := newELHost(t, repofile)
	h.mustDNF("install", "app")
	if got := h.installed("app"); got != "app-2.0-1.el9.x86_64" {
		t.Fatalf("installed %q, want 2.0", got)
	}

	// A dry run changes nothing and says what would.
	prodRepomd := filepath.Join(root, "repo/main/prod/el/9/x86_64/repodata/repomd.xml")
	before, err := os.ReadFile(prodRepomd)
	if err != nil {
		t.Fatal(err)
	}
	var plan ChannelChange
	cliJSON(t, root, &plan, "channel", "rollback", "prod", "--to", "1", "--dry-run")
	if !plan.DryRun || !slices.Equal(plan.Removed, []string{"app-2.0-1.el9.x86_64"}) || len(plan.Added) != 0 || plan.Version != 0 {
		t.Errorf("dry run: %+v", plan)
	}
	if after, _ := os.ReadFile(prodRepomd); !bytes.Equal(before, after) {
		t.Errorf("rollback --dry-run rewrote repomd.xml")
	}
	// Without a terminal, a rollback asks for --yes (exit 2).
	if _, _, code := runCLI(t, root, "channel", "rollback", "prod", "--to", "1"); code != 2 {
		t.Errorf("rollback without --yes off a terminal: exit %d, want 2", code)
	}

	var res ChannelChange
	cliJSON(t, root, &res, "channel", "rollback", "prod", "--to", "1", "--yes")
	if res.Version != 3 || res.RolledBackTo != 1 || res.From != 2 || !slices.Equal(res.Removed, []string{"app-2.0-1.el9.x86_64"}) {
		t.Fatalf("rollback: %+v", res)
	}
	if got := keys(mustPkgs(t, filepath.Join(root, "repo/main/prod/el/9/x86_64"))); !slices.Equal(got, []string{"app-1.0-1.el9.x86_64"}) {
		t.Errorf("prod repodata after rollback lists %v", got)
	}
	// The host sees only 1.0 offered, and downgrades to it.
	out := h.mustDNF("-q", "--showduplicates", "list", "--available", "app")
	if !strings.Contains(out, "1.0-1.el9") || strings.Contains(out, "2.0-1.el9") {
		t.Errorf("dnf list --available after rollback:\n%s", out)
	}
	h.mustDNF("downgrade", "app")
	if got := h.installed("app"); got != "app-1.0-1.el9.x86_64" {
		t.Errorf("after dnf downgrade: %q", got)
	}

	var diff ChannelDiff
	cliJSON(t, root, &diff, "channel", "diff", "prod", "2", "3")
	if !slices.Equal(diff.Removed, []string{"app-2.0-1.el9.x86_64"}) || len(diff.Added) != 0 || len(diff.Downgraded) != 1 ||
		diff.Downgraded[0].From != "app-2.0-1.el9.x86_64" || diff.Downgraded[0].To != "app-1.0-1.el9.x86_64" || len(diff.Upgraded) != 0 {
		t.Errorf("diff 2 3: %+v", diff)
	}
	text, _, _ := runCLI(t, root, "channel", "diff", "prod", "2", "3")
	if !strings.Contains(text, "downgraded") || !strings.Contains(text, "app-2.0-1.el9.x86_64 → app-1.0-1.el9.x86_64") {
		t.Errorf("diff text:\n%s", text)
	}

	// The events and the version name the kernel's caller.
	uid := os.Getuid()
	cliJSON(t, root, &log, "channel", "log", "prod", "--limit", "1")
	if len(log) != 1 || log[0].Cause != EventRollback || log[0].RolledBackTo != 1 || log[0].Caller == nil || int(log[0].Caller.UID) != uid {
		t.Errorf("newest prod version: %+v", log)
	}
	var evs []Event
	cliJSON(t, root, &evs, "history", "--verify")
	var rb *Event
	for i := range evs {
		if evs[i].Action == EventRollback {
			rb = &evs[i]
		}
	}
	if rb == nil || rb.Caller == nil || int(rb.Caller.UID) != uid || rb.Channel != "prod" || rb.Details["to_version"] != "1" || rb.Seq != log[0].Event {
		t.Fatalf("rollback event: %+v (version %+v)", rb, log)
	}

	// The held 2.0 file is kept (unlisted) and lists again on roll-forward.
	held := filepath.Join(root, "repo/main/prod/el/9/x86_64/app-2.0-1.el9.x86_64.rpm")
	if _, err := os.Stat(held); err != nil {
		t.Fatalf("held file: %v", err)
	}
	// fsck knows a held file is ours, though no repodata lists it.
	if out, stderr, code := runCLI(t, root, "fsck"); code != 0 {
		t.Errorf("fsck with a held file: exit %d\n%s%s", code, out, stderr)
	}
	cliJSON(t, root, &res, "channel", "rollback", "prod", "--to", "2", "--yes")
	if res.Version != 4 || !slices.Equal(res.Added, []string{"app-2.0-1.el9.x86_64"}) {
		t.Errorf("roll forward: %+v", res)
	}
	h.mustDNF("upgrade", "app")
	if got := h.installed("app"); got != "app-2.0-1.el9.x86_64" {
		t.Errorf("after roll forward and dnf upgrade: %q", got)
	}
	a, _ := os.Stat(held)
	b, _ := os.Stat(filepath.Join(root, "repo/main/staging/el/9/x86_64/app-2.0-1.el9.x86_64.rpm"))
	if a == nil || b == nil || !os.SameFile(a, b) {
		t.Errorf("rolled-forward prod file is not the exact staged file")
	}
	// Rolling to the current set is a no-op that makes no version.
	var noop ChannelChange
	cliJSON(t, root, &noop, "channel", "rollback", "prod", "--to", "4", "--yes")
	if !noop.Unchanged || noop.Version != 0 {
		t.Errorf("rollback to the current version: %+v", noop)
	}
	cliJSON(t, root, &log, "channel", "log", "prod")
	if len(log) != 4 {
		t.Errorf("%d versions after a no-op rollback, want 4", len(log))
	}
	if out, stderr, code := runCLI(t, root, "fsck"); code != 0 {
		t.Errorf("fsck after rollbacks: exit %d\n%s%s", code, out, stderr)
	}
}

// A rollback that needs a file `remove` deleted refuses before changing
// anything; one to a version that never existed is not found; bad
// arguments are usage errors.
func TestChannelRollbackRefuses(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	in := t.TempDir()
	for _, v := range []string{"1.0", "2.0"} {
		if _, err := r.Add(ctx, []string{lcBuild(t, in, "app", v)}, AddOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Promote(ctx, PromoteRequest{Package: "app-" + v + "-1.el9.x86_64"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.ChannelRollback(ctx, ChannelRollbackRequest{Channel: "prod", To: 1}); err != nil {
		t.Fatal(err)
	}
	// 2.0 is held in prod; `remove` takes it out of every channel now.
	if _, err := r.Remove(ctx, "app-2.0-1.el9.x86_64", RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"repo/main/prod/el/9/x86_64/app-2.0-1.el9.x86_64.rpm", "repo/main/staging/el/9/x86_64/app-2.0-1.el9.x86_64.rpm"} {
		if _, err := os.Stat(filepath.Join(root, f)); !os.IsNotExist(err) {
			t.Errorf("%s after remove: %v", f, err)
		}
	}
	repomd := filepath.Join(root, "repo/main/prod/el/9/x86_64/repodata/repomd.xml")
	before, _ := os.ReadFile(repomd)
	logBefore, err := r.ChannelLog(ctx, ChannelLogOptions{Channel: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ChannelRollback(ctx, ChannelRollbackRequest{Channel: "prod", To: 2}); !errors.Is(err, ErrFilesGone) {
		t.Errorf("rollback to a version naming a removed package: %v, want ErrFilesGone", err)
	}
	if _, err := r.ChannelRollback(ctx, ChannelRollbackRequest{Channel: "prod", To: 2, DryRun: true}); !errors.Is(err, ErrFilesGone) {
		t.Errorf("dry run of the same: %v, want ErrFilesGone", err)
	}
	after, _ := os.ReadFile(repomd)
	logAfter, _ := r.ChannelLog(ctx, ChannelLogOptions{Channel: "prod"})
	if !bytes.Equal(before, after) || len(logAfter) != len(logBefore) {
		t.Errorf("a refused rollback changed prod (versions %d → %d)", len(logBefore), len(logAfter))
	}
	if _, err := r.ChannelRollback(ctx, ChannelRollbackRequest{Channel: "prod", To: 99}); !errors.Is(err, ErrNoVersion) {
		t.Errorf("rollback to version 99: %v, want ErrNoVersion", err)
	}
	if _, err := r.ChannelRollback(ctx, ChannelRollbackRequest{Channel: "nope", To: 1}); !errors.Is(err, ErrBadOption) {
		t.Errorf("rollback of an unknown channel: %v, want ErrBadOption", err)
	}
	if _, err := r.ChannelDiff(ctx, ChannelDiffOptions{Channel: "prod", From: 0}); !errors.Is(err, ErrBadOption) {
		t.Errorf("diff from 0: %v", err)
	}
}

// Versions are numbered per channel from 1 and record every cause; the
// set of each version is what the repodata listed right after it.
func TestChannelVersionsFollowEveryChange(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	in := t.TempDir()
	staging := filepath.Join(root, "repo/main/staging/el/9/x86_64")
	prod := filepath.Join(root, "repo/main/prod/el/9/x86_64")
	listed := map[string][]string{} // "channel@version" → repodata right after
	snap := func(ch, dir string) {
		t.Helper()
		log, err := r.ChannelLog(ctx, ChannelLogOptions{Channel: ch, Limit: 1})
		if err != nil || len(log) != 1 {
			t.Fatalf("log %s: %v %v", ch, log, err)
		}
		listed[fmt.Sprintf("%s@%d", ch, log[0].Version)] = keys(mustPkgs(t, dir))
	}
	for _, v := range []string{"1.0", "2.0", "3.0"} {
		if _, err := r.Add(ctx, []string{lcBuild(t, in, "app", v)}, AddOptions{}); err != nil {
			t.Fatal(err)
		}
		snap("staging", staging)
	}
	if _, err := r.Add(ctx, []string{lcBuild(t, in, "lib", "1"), lcBuild(t, in, "tool", "1")}, AddOptions{}); err != nil {
		t.Fatal(err)
	}
	snap("staging", staging)
	if _, err := r.Promote(ctx, PromoteRequest{Package: "app-2.0-1.el9.x86_64"}); err != nil {
		t.Fatal(err)
	}
	snap("prod", prod)
	pr, err := r.Promote(ctx, PromoteRequest{Package: "app-3.0-1.el9.x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	snap("prod", prod)
	if err := r.Restore(ctx, pr); err != nil {
		t.Fatal(err)
	}
	snap("prod", prod)
	if _, err := r.Remove(ctx, "lib-1-1.el9.x86_64", RemoveOptions{Channel: "staging"}); err != nil {
		t.Fatal(err)
	}
	snap("staging", staging)

	causes := map[string][]string{}
	for _, ch := range []string{"staging", "prod"} {
		log, err := r.ChannelLog(ctx, ChannelLogOptions{Channel: ch})
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range log {
			if v.Version != uint64(len(log)-i) {
				t.Errorf("%s: version %d at position %d of %d", ch, v.Version, i, len(log))
			}
			causes[ch] = append([]string{v.Cause}, causes[ch]...)
			s, err := r.ChannelShow(ctx, ChannelShowOptions{Channel: ch, Version: v.Version})
			if err != nil {
				t.Fatal(err)
			}
			want := listed[fmt.Sprintf("%s@%d", ch, v.Version)]
			if !slices.Equal(s.NEVRAs, want) || s.Packages != len(want) {
				t.Errorf("%s version %d: set %v (%d), repodata listed %v", ch, v.Version, s.NEVRAs, s.Packages, want)
			}
		}
	}
	if got := strings.Join(causes["staging"], " "); got != "add add add add remove" {
		t.Errorf("staging causes: %s", got)
	}
	if got := strings.Join(causes["prod"], " "); got != "promote promote restore" {
		t.Errorf("prod causes: %s", got)
	}
	cur, err := r.ChannelShow(ctx, ChannelShowOptions{Channel: "prod"})
	if err != nil || !cur.Current || cur.Version != 3 {
		t.Errorf("current prod: %+v %v", cur, err)
	}
	d, err := r.ChannelDiff(ctx, ChannelDiffOptions{Channel: "prod", From: 1, To: 2})
	if err != nil || len(d.Upgraded) != 1 || d.Upgraded[0].To != "app-3.0-1.el9.x86_64" {
		t.Errorf("prod diff 1 2: %+v %v", d, err)
	}
}

// With channel_versions = 2 and a short grace, old versions expire, a
// rollback to an expired one is refused, and a held file that no kept
// version names is deleted only once its grace has passed.
func TestChannelVersionsExpireAndHeldFilesGo(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := plConfig + "[publish]\ngrace = \"3s\"\n[retention]\nchannel_versions = 2\n"
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r := openPL(t, root)
	in := t.TempDir()
	for _, v := range []string{"1.0", "2.0"} {
		if _, err := r.Add(ctx, []string{lcBuild(t, in, "app", v)}, AddOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Promote(ctx, PromoteRequest{Package: "app-" + v + "-1.el9.x86_64"}); err != nil {
			t.Fatal(err)
		}
	}
	// prod: 1 {1.0}, 2 {1.0 2.0}; rollback to 1 makes 3 {1.0}: 1 expires.
	if _, err := r.ChannelRollback(ctx, ChannelRollbackRequest{Channel: "prod", To: 1}); err != nil {
		t.Fatal(err)
	}
	log, err := r.ChannelLog(ctx, ChannelLogOptions{Channel: "prod"})
	if err != nil || len(log) != 2 || log[0].Version != 3 || log[1].Version != 2 {
		t.Fatalf("prod log with channel_versions = 2: %+v %v", log, err)
	}
	if _, err := r.ChannelRollback(ctx, ChannelRollbackRequest{Channel: "prod", To: 1}); !errors.Is(err, ErrNoVersion) {
		t.Errorf("rollback to expired version 1: %v, want ErrNoVersion", err)
	}
	held := filepath.Join(root, "repo/main/prod/el/9/x86_64/app-2.0-1.el9.x86_64.rpm")
	if _, err := os.Stat(held); err != nil {
		t.Fatalf("2.0 is named by kept version 2, its file must stay: %v", err)
	}
	// Remove 1.0 from staging: staging 3, 1 expires there; prod is
	// untouched, and version 2 of prod still names 2.0.
	if _, err := r.Remove(ctx, "app-1.0-1.el9.x86_64", RemoveOptions{Channel: "staging"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(held); err != nil {
		t.Fatalf("a change to staging dropped prod's held file: %v", err)
	}
	// One more prod change expires prod's version 2, the last naming 2.0
	// there: the held file is trashed, and deleted after the grace.
	if _, err := r.Add(ctx, []string{lcBuild(t, in, "other", "1")}, AddOptions{}); err != nil {
		t.Fatal(err)
	}
	// No earlier than this the file is trashed, so no earlier than 3s
	// after it may it go.
	trashedAt := time.Now()
	if _, err := r.Promote(ctx, PromoteRequest{Package: "other-1-1.el9.x86_64"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(held); err != nil {
		t.Fatalf("the held file went before its grace: %v", err)
	}
	var goneAt time.Time
	waitFor(t, time.Minute, "the held file to go after its grace", func() (bool, string) {
		n, err := r.SweepTrash(ctx)
		if err != nil {
			return false, err.Error()
		}
		if _, err := os.Stat(held); !os.IsNotExist(err) {
			return false, fmt.Sprint(err)
		}
		goneAt = time.Now()
		return n == 1, fmt.Sprintf("swept %d", n)
	})
	if d := goneAt.Sub(trashedAt); d < 3*time.Second {
		t.Errorf("held file deleted %v after it was trashed, before the 3s grace", d)
	}
	// The staging copy of 2.0 is untouched: it is listed there.
	if got := keys(mustPkgs(t, filepath.Join(root, "repo/main/staging/el/9/x86_64"))); !slices.Contains(got, "app-2.0-1.el9.x86_64") {
		t.Errorf("staging lost 2.0: %v", got)
	}
	if _, err := os.Stat(filepath.Join(root, "repo/main/staging/el/9/x86_64/app-2.0-1.el9.x86_64.rpm")); err != nil {
		t.Errorf("staging file of 2.0: %v", err)
	}
	rep, err := r.Fsck(ctx, FsckOptions{})
	if err != nil || rep.Err() != nil {
		t.Errorf("fsck: %v %v", rep, err)
	}
}

// A crash after a rollback is recorded and before it is published leaves
// the directories dirty; the next open publishes them, so every
// directory's repodata equals the channel's current version.
func TestChannelRollbackCrash(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	in := t.TempDir()
	for _, v := range []string{"1.0", "2.0"} {
		if _, err := r.Add(ctx, []string{lcBuild(t, in, "app", v)}, AddOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Promote(ctx, PromoteRequest{Package: "app-" + v + "-1.el9.x86_64"}); err != nil {
			t.Fatal(err)
		}
	}
	crash := errors.New("crash")
	failpoint = func(s string) error {
		if s == EventRollback+".recorded" {
			return crash
		}
		return nil
	}
	defer func() { failpoint = nil }()
	if _, err := r.ChannelRollback(ctx, ChannelRollbackRequest{Channel: "prod", To: 1}); !errors.Is(err, crash) {
		t.Fatalf("rollback: %v", err)
	}
	prod := filepath.Join(root, "repo/main/prod/el/9/x86_64")
	if got := keys(mustPkgs(t, prod)); len(got) != 2 {
		t.Fatalf("the crash point is before the publish, but prod lists %v", got)
	}
	r.Close()
	failpoint = nil
	r = openPL(t, root)
	cur, err := r.ChannelShow(ctx, ChannelShowOptions{Channel: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	got := keys(mustPkgs(t, prod))
	sort.Strings(got)
	if !slices.Equal(got, cur.NEVRAs) || !slices.Equal(got, []string{"app-1.0-1.el9.x86_64"}) {
		t.Errorf("after restart prod lists %v, current version %d is %v", got, cur.Version, cur.NEVRAs)
	}
	if _, err := r.History(ctx, HistoryOptions{Verify: true}); err != nil {
		t.Error(err)
	}
}

// TestChannelVersionDays: with channel_version_days = 1, versions older
// than a day expire at the next change however few there are, except the
// newest; younger ones stay.
func TestChannelVersionDays(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := plConfig + "[retention]\nchannel_version_days = 1\n"
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r := openPL(t, root)
	in := t.TempDir()
	add := func(name string) {
		t.Helper()
		if _, err := r.Add(ctx, []string{lcBuild(t, in, name, "1.0")}, AddOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"a", "b", "c"} {
		add(n)
	}
	// Versions 1 and 2 of staging are two days old; 3 is today's.
	k := chanKey{repo: "main", channel: "staging"}
	err := r.st.db.Update(func(tx kv.Tx) error {
		for _, v := range []uint64{1, 2} {
			cv, err := decodeVersion(tx, chanVerKey(k, v))
			if err != nil {
				return err
			}
			cv.Time = time.Now().Add(-48 * time.Hour)
			if err := putJSON(tx.Bucket(bucketChanVer), chanVerKey(k, v), cv); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	add("d")
	log, err := r.ChannelLog(ctx, ChannelLogOptions{Channel: "staging"})
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, v := range log {
		got = append(got, v.Version)
	}
	if !slices.Equal(got, []uint64{4, 3}) {
		t.Fatalf("staging versions after the change: %v, want [4 3] (1 and 2 older than a day)", got)
	}
	snap, err := r.ChannelShow(ctx, ChannelShowOptions{Channel: "staging", Version: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.NEVRAs) != 3 {
		t.Errorf("version 3 after its predecessors folded into the base: %v, want 3 packages", snap.NEVRAs)
	}
}
