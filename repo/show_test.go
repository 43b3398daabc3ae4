package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// showRoot is a root with packages across channels, arches and releases:
// the build app-1.0-1.el9 (x86_64, aarch64, src) promoted to prod, and in
// staging only app-doc (noarch, el/9), lib (x86_64, el/8) and tool
// (x86_64, no dist tag: common).
func showRoot(t *testing.T) (root, url string) {
	t.Helper()
	root, url = newTestRoot(t, "[signing]\nalgo = \"ed25519\"\n")
	in := t.TempDir()
	var paths []string
	for _, s := range []struct{ name, ver, rel, arch string }{
		{"app", "1.0", "1.el9", "x86_64"}, {"app", "1.0", "1.el9", "aarch64"}, {"app", "1.0", "1.el9", "src"},
		{"app-doc", "1.0", "1.el9", "noarch"},
		{"lib", "2.0", "1.el8", "x86_64"},
		{"tool", "3.0", "1", "x86_64"},
	} {
		paths = append(paths, writeSpec(t, in, spec(s.name, s.ver, s.rel, s.arch)))
	}
	if out, stderr, code := runCLI(t, root, append([]string{"add"}, paths...)...); code != 0 {
		t.Fatalf("add: exit %d\n%s%s", code, out, stderr)
	}
	if out, stderr, code := runCLI(t, root, "promote", "app-1.0-1.el9", "--to", "prod", "--yes"); code != 0 {
		t.Fatalf("promote: exit %d\n%s%s", code, out, stderr)
	}
	return root, url
}

// listNEVRAs runs `list -o json args...` and returns the NEVRAs, sorted
// and space separated.
func listNEVRAs(t *testing.T, root string, args ...string) string {
	t.Helper()
	out, stderr, code := runCLI(t, root, append([]string{"-o", "json", "list"}, args...)...)
	if code != 0 {
		t.Fatalf("list %q: exit %d\n%s%s", args, code, out, stderr)
	}
	var recs []PackageRecord
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatalf("list %q: %v\n%s", args, err, out)
	}
	if recs == nil {
		t.Errorf("list %q: null, want a list", args)
	}
	var n []string
	for _, p := range recs {
		n = append(n, p.NEVRA)
	}
	sort.Strings(n)
	return strings.Join(n, " ")
}

// TestListFilters: name patterns (positional and --name), --channel,
// --arch and --release each select what they say, and together select
// what all of them do; a pattern path.Match cannot parse, one with a
// character no name has, and an unknown arch or release are exit 2.
func TestListFilters(t *testing.T) {
	root, _ := showRoot(t)
	const (
		appX = "app-1.0-1.el9.x86_64"
		appA = "app-1.0-1.el9.aarch64"
		appS = "app-1.0-1.el9.src"
		doc  = "app-doc-1.0-1.el9.noarch"
		lib  = "lib-2.0-1.el8.x86_64"
		tool = "tool-3.0-1.x86_64"
	)
	sorted := func(n ...string) string { sort.Strings(n); return strings.Join(n, " ") }
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, sorted(appX, appA, appS, doc, lib, tool)},
		{[]string{"app*"}, sorted(appX, appA, appS, doc)},
		{[]string{"app"}, sorted(appX, appA, appS)}, // no metacharacter: the exact name
		{[]string{"--name", "app"}, sorted(appX, appA, appS)},
		{[]string{"--name", "l?b", "--name", "t*"}, sorted(lib, tool)},
		{[]string{"[^a]*"}, sorted(lib, tool)},
		{[]string{"app-*", "lib"}, sorted(doc, lib)},
		{[]string{"x*"}, ""},
		{[]string{"--channel", "prod"}, sorted(appX, appA, appS)},
		{[]string{"--channel", "staging"}, sorted(appX, appA, appS, doc, lib, tool)},
		{[]string{"--arch", "x86_64"}, sorted(appX, lib, tool)},
		{[]string{"--arch", "noarch"}, doc},
		{[]string{"--arch", "src"}, appS},
		{[]string{"--release", "el/9"}, sorted(appX, appA, appS, doc)},
		{[]string{"--release", "el8"}, lib},
		{[]string{"--release", "common"}, tool},
		{[]string{"app*", "--channel", "prod", "--arch", "x86_64", "--release", "el/9"}, appX},
		{[]string{"app*", "--channel", "staging", "--release", "el/9", "--arch", "noarch"}, doc},
		{[]string{"--channel", "prod", "--release", "el/8"}, ""},
		{[]string{"lib", "--arch", "aarch64"}, ""},
		{[]string{"--repo", "main", "--channel", "prod", "--arch", "aarch64"}, appA},
	} {
		if got := listNEVRAs(t, root, tc.args...); got != tc.want {
			t.Errorf("list %q:\n got  %q\n want %q", tc.args, got, tc.want)
		}
	}
	// The table shows the same selection.
	out, stderr, code := runCLI(t, root, "list", "--arch", "x86_64", "--channel", "prod")
	if code != 0 || !strings.Contains(out, appX) || strings.Contains(out, lib) || strings.Contains(out, appA) {
		t.Errorf("list --arch x86_64 --channel prod: exit %d\n%s%s", code, out, stderr)
	}

	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"app["}, `bad name pattern "app["`},
		{[]string{"--name", "a\\"}, "bad name pattern"},
		{[]string{"../*"}, `contains '/'`},
		{[]string{"app*\x1b[2J"}, "contains '\\x1b'"},
		{[]string{"[!a]*"}, "negates a class with ^"},
		{[]string{"--name", "../app"}, "invalid package name"},
		{[]string{"--arch", "sparc64"}, `unknown arch "sparc64"`},
		{[]string{"--arch", "x86/64"}, "arch contains"},
		{[]string{"--release", "el/7"}, `unknown release "el/7"`},
		{[]string{"--release", "../../etc"}, "not a release directory"},
		{[]string{"--channel", "nope"}, `unknown channel "nope"`},
	} {
		out, stderr, code := runCLI(t, root, append([]string{"list"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.says) || out != "" {
			t.Errorf("list %q: exit %d, want 2 saying %q\nstdout: %s\nstderr: %s", tc.args, code, tc.says, out, stderr)
		}
		if strings.Contains(stderr, "\x1b") {
			t.Errorf("list %q: raw ESC in the error %q", tc.args, stderr)
		}
	}
	out, _, code = runCLI(t, root, "-o", "json", "list", "app[")
	var je struct {
		Error struct {
			Code int    `json:"code"`
			Kind string `json:"kind"`
		} `json:"error"`
	}
	if code != 2 || json.Unmarshal([]byte(out), &je) != nil || je.Error.Code != 2 || je.Error.Kind != "usage" {
		t.Errorf("list -o json with a bad pattern: exit %d\n%s", code, out)
	}
}

// showJSON runs `show -o json args...` on root.
func showJSON(t *testing.T, root string, args ...string) *ShowResult {
	t.Helper()
	out, stderr, code := runCLI(t, root, append([]string{"-o", "json", "show"}, args...)...)
	if code != 0 {
		t.Fatalf("show %q: exit %d\n%s%s", args, code, out, stderr)
	}
	var res ShowResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("show %q: %v\n%s", args, err, out)
	}
	return &res
}

// servedSHA is the sha256 of the package file at url, fetched over HTTP.
func servedSHA(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestShowCLI: show gives the whole store record, each placement with
// its URL and whether the served repodata lists it (checked against the
// repodata a client reads), and the package's events, the build's
// promote included; a directory whose repodata someone replaced shows
// the package as not listed; hostile and unknown NEVRAs are refused.
func TestShowCLI(t *testing.T) {
	needTools(t, "createrepo_c")
	root, url := showRoot(t)
	const nevra = "app-1.0-1.el9.x86_64"
	res := showJSON(t, root, nevra)

	// The record is the one list has, field for field.
	out, _, _ := runCLI(t, root, "-o", "json", "list", "app", "--arch", "x86_64")
	var recs []PackageRecord
	if err := json.Unmarshal([]byte(out), &recs); err != nil || len(recs) != 1 {
		t.Fatalf("list: %v\n%s", err, out)
	}
	rec := recs[0]
	if rec.NEVRA != nevra || res.NEVRA != rec.NEVRA || res.Name != "app" || res.Version != "1.0" || res.Release != "1.el9" || res.Arch != "x86_64" ||
		res.FileName != nevra+".rpm" || res.SHA256 != rec.SHA256 || res.Size != rec.Size || res.OrigSHA256 != rec.OrigSHA256 || res.OrigSize != rec.OrigSize ||
		res.ContentSHA256 != rec.ContentSHA256 || res.KeyID != rec.KeyID || res.Dist != "el/9" || !res.Added.Equal(rec.Added) || res.AddedBy != rec.AddedBy ||
		res.Repo != "main" || len(res.Placements) != 2 || res.Entry != nil {
		t.Errorf("show record:\n got  %+v\n list %+v", res.PackageRecord, rec)
	}
	if res.SHA256 == "" || res.OrigSHA256 == "" || res.ContentSHA256 == "" || res.Size == 0 || res.KeyID == "" || res.AddedBy == "" {
		t.Errorf("show leaves record fields empty: %+v", res.PackageRecord)
	}
	if res.Advisories == nil || len(res.Advisories) != 0 {
		t.Errorf("advisories %#v, want []", res.Advisories)
	}

	// Both placements, each listed by the repodata a client reads, at
	// a URL that serves these bytes.
	byChannel := map[string]Publication{}
	for _, p := range res.Published {
		byChannel[p.Channel] = p
	}
	for _, ch := range []string{"staging", "prod"} {
		p, ok := byChannel[ch]
		dir := "main/" + ch + "/el/9/x86_64"
		if !ok || p.Dir != dir || p.File != dir+"/"+nevra+".rpm" || p.Release != "el/9" || p.Arch != "x86_64" {
			t.Errorf("placement in %s: %+v", ch, p)
			continue
		}
		if p.URL != url+dir+"/" || p.PackageURL != url+p.File {
			t.Errorf("placement in %s: url %q, package_url %q, want under %s", ch, p.URL, p.PackageURL, url+dir+"/")
		}
		served := mustPkgs(t, filepath.Join(root, "repo", dir))
		if lp, ok := served[nevra]; !ok || lp.Checksum != res.SHA256 || !p.Listed || p.Pending || p.Problem != "" {
			t.Errorf("placement in %s: listed %v (problem %q), the repodata lists it: %v", ch, p.Listed, p.Problem, ok)
		}
	}

	// Its own events and the build's promote, oldest first.
	var actions []string
	var promote *Event
	for i, e := range res.Events {
		actions = append(actions, e.Action)
		if e.NEVRA != nevra && !slices.Contains(strings.Fields(e.Details["nevras"]), nevra) {
			t.Errorf("event %d (%s) does not name %s: %+v", e.Seq, e.Action, nevra, e)
		}
		if i > 0 && e.Seq <= res.Events[i-1].Seq {
			t.Errorf("events out of order: %d after %d", e.Seq, res.Events[i-1].Seq)
		}
		if e.Action == EventPromote {
			promote = &res.Events[i]
		}
	}
	if !slices.Contains(actions, EventAdd) || !slices.Contains(actions, EventSign) || promote == nil {
		t.Fatalf("events %v: want add, sign and promote", actions)
	}
	if promote.Channel != "prod" || !strings.Contains(promote.Details["nevras"], "app-1.0-1.el9.src") {
		t.Errorf("promote event %+v: want the build's event into prod", promote)
	}
	if evs := showJSON(t, root, "app-doc-1.0-1.el9.noarch").Events; slices.ContainsFunc(evs, func(e Event) bool { return e.Action == EventPromote }) {
		t.Errorf("app-doc, never promoted, shows a promote event: %+v", evs)
	}

	// The text form: the block, both placements and the promote event.
	txt, stderr, code := runCLI(t, root, "show", nevra)
	for _, want := range []string{"nevra:", nevra, "sha256:", res.SHA256, "orig sha256:", "content sha256:", "key:", res.KeyID,
		"channels:", "staging, prod", "advisories:", url + "main/prod/el/9/x86_64/", url + "main/staging/el/9/x86_64/", "  promote  "} {
		if !strings.Contains(txt, want) {
			t.Errorf("show (text) lacks %q: exit %d\n%s%s", want, code, txt, stderr)
		}
	}

	// Someone ran createrepo_c and put its repodata of an empty
	// directory in place: placed, not listed, and why.
	empty := t.TempDir()
	if out, err := exec.Command("createrepo_c", "--no-database", empty).CombinedOutput(); err != nil {
		t.Fatalf("createrepo_c: %v\n%s", err, out)
	}
	libRepodata := filepath.Join(root, "repo/main/staging/el/8/x86_64/repodata")
	if err := os.RemoveAll(libRepodata); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(empty, "repodata"), libRepodata); err != nil {
		t.Fatal(err)
	}
	lib := showJSON(t, root, "lib-2.0-1.el8.x86_64")
	if len(lib.Published) != 1 || lib.Published[0].Listed || !strings.Contains(lib.Published[0].Problem, "does not list lib-2.0-1.el8.x86_64.rpm") {
		t.Errorf("lib after its repodata was replaced: %+v", lib.Published)
	}
	if txt, _, _ := runCLI(t, root, "show", "lib-2.0-1.el8.x86_64"); !strings.Contains(txt, "does not list") || !strings.Contains(txt, "  no  ") {
		t.Errorf("show (text) of an unlisted package:\n%s", txt)
	}

	// Removed from staging: only prod is left, and the removal is an event.
	if out, stderr, code := runCLI(t, root, "remove", "--channel", "staging", nevra); code != 0 {
		t.Fatalf("remove: exit %d\n%s%s", code, out, stderr)
	}
	res = showJSON(t, root, nevra)
	if len(res.Published) != 1 || res.Published[0].Channel != "prod" || !res.Published[0].Listed {
		t.Errorf("after removal from staging: %+v", res.Published)
	}
	if last := res.Events[len(res.Events)-1]; last.Action != EventRemove || last.Channel != "staging" {
		t.Errorf("last event %+v, want the removal from staging", last)
	}

	// Other spellings of one package; a name of several is ambiguous.
	if r := showJSON(t, root, nevra+".rpm"); r.NEVRA != nevra {
		t.Errorf("show %s.rpm: %s", nevra, r.NEVRA)
	}
	for _, tc := range []struct {
		arg  string
		code int
		says string
	}{
		{"app", 2, "name the NEVRA"},
		{"nope-1.0-1.el9.x86_64", 1, "package not found"},
		{"../../prod/el/9/x86_64/" + nevra, 2, "invalid package name"},
		{nevra + "\x1b[2J", 2, "invalid package name"},
		{"app 1.0", 2, "invalid package name"},
	} {
		out, stderr, code := runCLI(t, root, "show", tc.arg)
		if code != tc.code || !strings.Contains(stderr, tc.says) || out != "" {
			t.Errorf("show %q: exit %d, want %d saying %q\n%s%s", tc.arg, code, tc.code, tc.says, out, stderr)
		}
		if strings.Contains(stderr, "\x1b") {
			t.Errorf("show %q: raw ESC in the error %q", tc.arg, stderr)
		}
	}
	out, _, code = runCLI(t, root, "-o", "json", "show", "nope-1.0-1.el9.x86_64")
	var je struct {
		Error struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if code != 1 || json.Unmarshal([]byte(out), &je) != nil || je.Error.Code != 1 {
		t.Errorf("show -o json of an unknown NEVRA: exit %d\n%s", code, out)
	}
}

// TestShowListDaemon: show and list go through a running daemon's socket
// and give what the root gives without one; the URLs show names are
// served by the daemon with the recorded bytes.
func TestShowListDaemon(t *testing.T) {
	root, url := showRoot(t)
	const nevra = "app-1.0-1.el9.aarch64"
	local := showJSON(t, root, nevra)
	localList := listNEVRAs(t, root, "app*", "--channel", "prod", "--arch", "aarch64", "--release", "el9")

	d := startDaemon(t, root)
	remote := showJSON(t, root, nevra)
	if got := listNEVRAs(t, root, "app*", "--channel", "prod", "--arch", "aarch64", "--release", "el9"); got != localList || got != nevra {
		t.Errorf("list through the daemon: %q, without it %q, want %q", got, localList, nevra)
	}
	for _, m := range []string{`"method":"show"`, `"method":"list"`} {
		if !strings.Contains(d.log(), m) {
			t.Errorf("daemon log has no %s request: the CLI did not use the socket", m)
		}
	}
	if remote.SHA256 != local.SHA256 || len(remote.Published) != len(local.Published) || len(remote.Events) != len(local.Events) {
		t.Errorf("show through the daemon differs:\n daemon %+v\n local  %+v", remote, local)
	}
	for _, p := range remote.Published {
		if !p.Listed || !strings.HasPrefix(p.URL, url) {
			t.Errorf("published %+v: want listed under %s", p, url)
			continue
		}
		if got := servedSHA(t, p.PackageURL); got != remote.SHA256 {
			t.Errorf("%s serves sha256 %s, the store recorded %s", p.PackageURL, got, remote.SHA256)
		}
	}
	// Errors keep their exit codes through the socket.
	if _, stderr, code := runCLI(t, root, "show", "nope-1-1.el9.x86_64"); code != 1 || !strings.Contains(stderr, "package not found") {
		t.Errorf("show of an unknown NEVRA through the daemon: exit %d\n%s", code, stderr)
	}
	if _, stderr, code := runCLI(t, root, "show", "../x"); code != 2 {
		t.Errorf("show of a hostile NEVRA through the daemon: exit %d\n%s", code, stderr)
	}
	if _, stderr, code := runCLI(t, root, "list", "app["); code != 2 || !strings.Contains(stderr, "bad name pattern") {
		t.Errorf("list with a bad pattern through the daemon: exit %d\n%s", code, stderr)
	}
	d.stop()
}

// TestShowPublishPending: a promote recorded but not yet published (it
// failed right after recording, as a crash there would leave it) shows
// the new placement as pending and not listed, while the old one stays
// listed; the publish that finishes it makes both listed.
func TestShowPublishPending(t *testing.T) {
	ctx := context.Background()
	r := openPL(t, filepath.Join(t.TempDir(), "root"))
	p := writeSpec(t, t.TempDir(), spec("pend", "1.0", "1.el9", "x86_64"))
	if res, err := r.Add(ctx, []string{p}, AddOptions{}); err != nil || res[0].Action != ActionAdded {
		t.Fatalf("add: %+v, %v", res, err)
	}
	failpoint = func(s string) error {
		if s == "promote.recorded" {
			return errors.New("injected failure before the publish")
		}
		return nil
	}
	_, err := r.Promote(ctx, PromoteRequest{Package: "pend-1.0-1.el9.x86_64", To: "prod"})
	failpoint = nil
	if err == nil {
		t.Fatal("promote with the injected failure succeeded")
	}
	byChannel := func() map[string]Publication {
		t.Helper()
		sh, err := r.Show(ctx, "pend-1.0-1.el9.x86_64", ShowOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]Publication{}
		for _, pub := range sh.Published {
			m[pub.Channel] = pub
		}
		return m
	}
	pubs := byChannel()
	if s, ok := pubs["staging"]; !ok || !s.Listed || s.Pending {
		t.Errorf("staging: %+v, want listed", s)
	}
	if p, ok := pubs["prod"]; !ok || p.Listed || !p.Pending {
		t.Errorf("prod before the publish: %+v, want pending and not listed", p)
	}
	if _, err := r.Republish(ctx, RepublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if p := byChannel()["prod"]; !p.Listed {
		t.Errorf("prod after the publish: %+v, want listed", p)
	}
}
