package repo

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// addBuilds adds a multi-arch build (uxtool 1.1: x86_64, aarch64 and its
// SRPM), an older x86_64 uxtool 1.0 and a noarch build (uxconf 2.0 and its
// SRPM) to staging.
func addBuilds(t *testing.T, r *Repo) {
	t.Helper()
	in := t.TempDir()
	var paths []string
	for _, s := range []struct{ name, ver, arch string }{
		{"uxtool", "1.0", "x86_64"},
		{"uxtool", "1.1", "x86_64"}, {"uxtool", "1.1", "aarch64"}, {"uxtool", "1.1", "src"},
		{"uxconf", "2.0", "noarch"}, {"uxconf", "2.0", "src"},
	} {
		paths = append(paths, writeSpec(t, in, spec(s.name, s.ver, "1.el9", s.arch)))
	}
	res, err := r.Add(context.Background(), paths, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range res {
		if x.Action != ActionAdded {
			t.Fatalf("add: %+v", x)
		}
	}
}

// lastSeq is the newest event's sequence number.
func lastSeq(t *testing.T, r *Repo) uint64 {
	t.Helper()
	evs, err := r.History(context.Background(), HistoryOptions{Limit: 1})
	if err != nil || len(evs) != 1 {
		t.Fatalf("history: %v %v", evs, err)
	}
	return evs[0].Seq
}

// eventsSince returns the events after seq, by action.
func eventsSince(t *testing.T, r *Repo, seq uint64) map[string][]Event {
	t.Helper()
	evs, err := r.History(context.Background(), HistoryOptions{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]Event{}
	for _, e := range evs {
		if e.Seq > seq {
			out[e.Action] = append(out[e.Action], e)
		}
	}
	return out
}

// publishedOnce checks that every dir of want was published exactly once
// in evs, and no other dir.
func publishedOnce(t *testing.T, evs []Event, want ...string) {
	t.Helper()
	n := map[string]int{}
	for _, e := range evs {
		n[e.Path]++
	}
	for _, d := range want {
		if n[d] != 1 {
			t.Errorf("%s published %d times, want once", d, n[d])
		}
		delete(n, d)
	}
	if len(n) > 0 {
		t.Errorf("other dirs published: %v", n)
	}
}

func nevras(pps []PromotedPackage) string {
	var s []string
	for _, p := range pps {
		s = append(s, p.NEVRA)
	}
	return strings.Join(s, " ")
}

// TestPromoteBuild promotes a multi-arch build with its SRPM, and a noarch
// build, each by NAME-VERSION-RELEASE in one call: every package lands in
// prod's store and repodata, each directory is published once, one event
// names them all, and Restore takes the whole build out again.
func TestPromoteBuild(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	addBuilds(t, r)
	prod := func(arch string) string { return filepath.Join(root, "repo/main/prod/el/9", arch) }

	// An exact NEVRA is that package alone.
	p0, err := r.Promote(ctx, PromoteRequest{Package: "uxtool-1.0-1.el9.x86_64"})
	if err != nil || nevras(p0.Packages) != "uxtool-1.0-1.el9.x86_64" || p0.NEVRA != "uxtool-1.0-1.el9.x86_64" {
		t.Fatalf("exact NEVRA: %+v %v", p0, err)
	}

	// The build, by N-V-R and by bare name (newest EVR), previewed.
	const build = "uxtool-1.1-1.el9.aarch64 uxtool-1.1-1.el9.x86_64 uxtool-1.1-1.el9.src"
	for _, spec := range []string{"uxtool-1.1-1.el9", "uxtool"} {
		dry, err := r.Promote(ctx, PromoteRequest{Package: spec, DryRun: true})
		if err != nil {
			t.Fatalf("dry run %s: %v", spec, err)
		}
		if got := nevras(dry.Packages); got != build {
			t.Errorf("dry run %s: packages %s, want %s", spec, got, build)
		}
		// The single fields are the first binary package's.
		if dry.NEVRA != "uxtool-1.1-1.el9.aarch64" || dry.Arch != "aarch64" || dry.Previous != "" ||
			dry.File != "main/prod/el/9/aarch64/uxtool-1.1-1.el9.aarch64.rpm" {
			t.Errorf("dry run %s: single fields %+v", spec, dry)
		}
		if x := dry.Packages[1]; x.Previous != "uxtool-1.0-1.el9.x86_64" || strings.Join(x.Files, " ") != "main/prod/el/9/x86_64/uxtool-1.1-1.el9.x86_64.rpm" {
			t.Errorf("dry run %s: x86_64 entry %+v", spec, x)
		}
		if got := strings.Join(dry.Dirs, " "); got != "main/prod/el/9/aarch64 main/prod/el/9/x86_64 main/prod/el/9/SRPMS" {
			t.Errorf("dry run %s: dirs %s", spec, got)
		}
	}
	if got := keys(mustPkgs(t, prod("x86_64"))); strings.Join(got, " ") != "uxtool-1.0-1.el9.x86_64" {
		t.Fatalf("dry run changed prod: %v", got)
	}

	// --arch narrows; the SRPM comes only when named.
	for _, c := range []struct {
		arches []string
		want   string
	}{
		{[]string{"x86_64"}, "uxtool-1.1-1.el9.x86_64"},
		{[]string{"x86_64", "src"}, "uxtool-1.1-1.el9.x86_64 uxtool-1.1-1.el9.src"},
		{[]string{"src"}, "uxtool-1.1-1.el9.src"},
	} {
		dry, err := r.Promote(ctx, PromoteRequest{Package: "uxtool-1.1-1.el9", Arches: c.arches, DryRun: true})
		if err != nil || nevras(dry.Packages) != c.want {
			t.Errorf("--arch %v: %v %v, want %s", c.arches, dry, err, c.want)
		}
	}
	if _, err := r.Promote(ctx, PromoteRequest{Package: "uxtool-1.1-1.el9.x86_64", Arches: []string{"aarch64"}, DryRun: true}); !errors.Is(err, ErrNotFound) {
		t.Errorf("exact NEVRA outside --arch: %v", err)
	}
	if _, err := r.Promote(ctx, PromoteRequest{Package: "uxtool", Arches: []string{"ppc64le"}, DryRun: true}); !errors.Is(err, ErrNotFound) {
		t.Errorf("--arch with no package: %v", err)
	}
	if _, err := r.Promote(ctx, PromoteRequest{Package: "uxtool", Arches: []string{"../x"}, DryRun: true}); !errors.Is(err, ErrInvalidName) {
		t.Errorf("hostile --arch: %v", err)
	}

	seq := lastSeq(t, r)
	res, err := r.Promote(ctx, PromoteRequest{Package: "uxtool-1.1-1.el9"})
	if err != nil {
		t.Fatal(err)
	}
	if nevras(res.Packages) != build {
		t.Fatalf("promote: %+v", res)
	}
	evs := eventsSince(t, r, seq)
	publishedOnce(t, evs[EventPublish], "main/prod/el/9/aarch64", "main/prod/el/9/x86_64", "main/prod/el/9/SRPMS")
	if pe := evs[EventPromote]; len(pe) != 1 || pe[0].Details["nevras"] != build || pe[0].NEVRA != "uxtool-1.1-1.el9.aarch64" ||
		pe[0].Details["previous_nevras"] != "- uxtool-1.0-1.el9.x86_64 -" || len(strings.Fields(pe[0].Details["sha256s"])) != 3 {
		t.Errorf("promote events: %+v", pe)
	}
	// history --nevra finds the build's event by any of its packages.
	for _, n := range strings.Fields(build) {
		h, err := r.History(ctx, HistoryOptions{NEVRA: n, Action: EventPromote})
		if err != nil || len(h) != 1 {
			t.Errorf("history of %s: %v %v", n, h, err)
		}
	}
	list, err := r.List(ctx, ListOptions{Channel: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	var inProd []string
	for _, p := range list {
		inProd = append(inProd, p.NEVRA)
	}
	if got := strings.Join(inProd, " "); !strings.Contains(got, "uxtool-1.1-1.el9.aarch64") || !strings.Contains(got, "uxtool-1.1-1.el9.x86_64") ||
		!strings.Contains(got, "uxtool-1.1-1.el9.src") || !strings.Contains(got, "uxtool-1.0-1.el9.x86_64") || len(inProd) != 4 {
		t.Errorf("prod lists %s", got)
	}
	for arch, want := range map[string]string{
		"x86_64":  "uxtool-1.0-1.el9.x86_64 uxtool-1.1-1.el9.x86_64",
		"aarch64": "uxtool-1.1-1.el9.aarch64",
		"SRPMS":   "uxtool-1.1-1.el9.src",
	} {
		if got := strings.Join(keys(mustPkgs(t, prod(arch))), " "); got != want {
			t.Errorf("prod %s repodata lists %s, want %s", arch, got, want)
		}
	}
	for _, f := range res.Files {
		a, err1 := os.Stat(filepath.Join(root, "repo", f))
		b, err2 := os.Stat(filepath.Join(root, "repo", strings.Replace(f, "/prod/", "/staging/", 1)))
		if err1 != nil || err2 != nil || !os.SameFile(a, b) {
			t.Errorf("%s is not the staged file: %v %v", f, err1, err2)
		}
	}
	// Promoting it again changes nothing.
	seq = lastSeq(t, r)
	again, err := r.Promote(ctx, PromoteRequest{Package: "uxtool-1.1-1.el9"})
	if err != nil || !again.AlreadyPresent || len(eventsSince(t, r, seq)) != 0 {
		t.Errorf("second promote: %+v %v", again, err)
	}
	for _, p := range again.Packages {
		if !p.AlreadyPresent {
			t.Errorf("second promote: %s not already present", p.NEVRA)
		}
	}

	// A noarch build: the noarch package goes into every arch directory.
	seq = lastSeq(t, r)
	nres, err := r.Promote(ctx, PromoteRequest{Package: "uxconf-2.0-1.el9"})
	if err != nil || nevras(nres.Packages) != "uxconf-2.0-1.el9.noarch uxconf-2.0-1.el9.src" {
		t.Fatalf("noarch build: %+v %v", nres, err)
	}
	publishedOnce(t, eventsSince(t, r, seq)[EventPublish], "main/prod/el/9/aarch64", "main/prod/el/9/x86_64", "main/prod/el/9/SRPMS")
	for arch, want := range map[string]string{
		"x86_64":  "uxconf-2.0-1.el9.noarch uxtool-1.0-1.el9.x86_64 uxtool-1.1-1.el9.x86_64",
		"aarch64": "uxconf-2.0-1.el9.noarch uxtool-1.1-1.el9.aarch64",
		"SRPMS":   "uxconf-2.0-1.el9.src uxtool-1.1-1.el9.src",
	} {
		if got := strings.Join(keys(mustPkgs(t, prod(arch))), " "); got != want {
			t.Errorf("prod %s repodata after the noarch build lists %s, want %s", arch, got, want)
		}
	}

	// Restore takes the whole uxtool build out as one change; 1.0 stays.
	seq = lastSeq(t, r)
	if err := r.Restore(ctx, res); err != nil {
		t.Fatal(err)
	}
	evs = eventsSince(t, r, seq)
	publishedOnce(t, evs[EventPublish], "main/prod/el/9/aarch64", "main/prod/el/9/x86_64", "main/prod/el/9/SRPMS")
	if re := evs[EventRestore]; len(re) != 1 || re[0].Details["nevras"] != build {
		t.Errorf("restore events: %+v", re)
	}
	for arch, want := range map[string]string{
		"x86_64":  "uxconf-2.0-1.el9.noarch uxtool-1.0-1.el9.x86_64",
		"aarch64": "uxconf-2.0-1.el9.noarch",
		"SRPMS":   "uxconf-2.0-1.el9.src",
	} {
		if got := strings.Join(keys(mustPkgs(t, prod(arch))), " "); got != want {
			t.Errorf("prod %s repodata after restore lists %s, want %s", arch, got, want)
		}
	}
	// Restored-away files are held for a rollback, unlisted (held.go).
	for _, f := range res.Files {
		if _, err := os.Stat(filepath.Join(root, "repo", f)); err != nil {
			t.Errorf("restored-away %s is not held: %v", f, err)
		}
	}
	list, err = r.List(ctx, ListOptions{Channel: "staging", Name: "uxtool"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 4 {
		t.Errorf("restore touched staging: %d uxtool packages there", len(list))
	}
	seq = lastSeq(t, r)
	if err := r.Restore(ctx, res); err != nil || len(eventsSince(t, r, seq)) != 0 {
		t.Errorf("second restore: %v, events %v", err, eventsSince(t, r, seq))
	}

	// A rollout an older repoctl recorded holds a result without packages:
	// it restores its one package.
	raw, err := json.Marshal(nres)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "packages")
	raw, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var old PromoteResult
	if err := json.Unmarshal(raw, &old); err != nil || len(old.Packages) != 0 || old.NEVRA != "uxconf-2.0-1.el9.noarch" {
		t.Fatalf("old result: %+v %v", old, err)
	}
	if err := r.Restore(ctx, &old); err != nil {
		t.Fatal(err)
	}
	for arch, want := range map[string]string{
		"x86_64":  "uxtool-1.0-1.el9.x86_64",
		"aarch64": "",
		"SRPMS":   "uxconf-2.0-1.el9.src",
	} {
		if got := strings.Join(keys(mustPkgs(t, prod(arch))), " "); got != want {
			t.Errorf("prod %s after restoring an old result lists %q, want %q", arch, got, want)
		}
	}
}

// TestPromoteBuildCrash: a crash after the build's promote (or restore)
// was recorded, before its publish, is finished by the next Open: every
// package of the build is published (or unpublished) together.
func TestPromoteBuildCrash(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	addBuilds(t, r)
	prod := func(arch string) string { return filepath.Join(root, "repo/main/prod/el/9", arch) }
	crash := errors.New("crash")
	at := func(state string) {
		failpoint = func(s string) error {
			if s == state {
				return crash
			}
			return nil
		}
	}
	defer func() { failpoint = nil }()

	at("promote.recorded")
	if _, err := r.Promote(ctx, PromoteRequest{Package: "uxtool-1.1-1.el9"}); !errors.Is(err, crash) {
		t.Fatalf("promote: %v", err)
	}
	if got := keys(mustPkgs(t, prod("aarch64"))); len(got) != 0 {
		t.Fatalf("published before the crash point: %v", got)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	failpoint = nil
	r = openPL(t, root)
	if st, err := r.Status(ctx); err != nil || st.Dirty != 0 {
		t.Fatalf("status after resume: %+v %v", st, err)
	}
	for arch, want := range map[string]string{
		"x86_64":  "uxtool-1.1-1.el9.x86_64",
		"aarch64": "uxtool-1.1-1.el9.aarch64",
		"SRPMS":   "uxtool-1.1-1.el9.src",
	} {
		if got := strings.Join(keys(mustPkgs(t, prod(arch))), " "); got != want {
			t.Errorf("prod %s after the resumed promote lists %s, want %s", arch, got, want)
		}
	}
	res, err := r.Promote(ctx, PromoteRequest{Package: "uxtool-1.1-1.el9", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	// The preview of a promoted build says so; restoring needs the real
	// result, so rebuild it as the rollout would have stored it.
	for i := range res.Packages {
		if !res.Packages[i].AlreadyPresent {
			t.Errorf("%s not in prod after resume", res.Packages[i].NEVRA)
		}
		res.Packages[i].AlreadyPresent = false
	}
	res.DryRun = false

	at("restore.recorded")
	if err := r.Restore(ctx, res); !errors.Is(err, crash) {
		t.Fatalf("restore: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	failpoint = nil
	r = openPL(t, root)
	for _, arch := range []string{"x86_64", "aarch64", "SRPMS"} {
		if got := keys(mustPkgs(t, prod(arch))); len(got) != 0 {
			t.Errorf("prod %s after the resumed restore lists %v", arch, got)
		}
	}
	for _, f := range res.Files {
		if _, err := os.Stat(filepath.Join(root, "repo", f)); !os.IsNotExist(err) {
			t.Errorf("restored-away %s still in the tree: %v", f, err)
		}
	}
	if _, err := r.History(ctx, HistoryOptions{Verify: true}); err != nil {
		t.Error(err)
	}
}
