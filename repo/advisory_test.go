package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/repoctl/repoctl/metadata"
)

// The echo service of socket_test.go serves no advisories; advisoryEcho
// below does.
func (s *echoService) AdvisoryAdd(context.Context, AdvisoryRequest) (*AdvisoryResult, error) {
	return nil, errors.New("echoService serves no advisories")
}
func (s *echoService) AdvisoryImport(context.Context, AdvisoryRequest) (*AdvisoryResult, error) {
	return nil, errors.New("echoService serves no advisories")
}
func (s *echoService) AdvisoryList(context.Context, AdvisoryOptions) ([]Advisory, error) {
	return nil, errors.New("echoService serves no advisories")
}
func (s *echoService) AdvisoryShow(context.Context, string, AdvisoryOptions) (*Advisory, error) {
	return nil, errors.New("echoService serves no advisories")
}
func (s *echoService) AdvisoryRemove(context.Context, string, AdvisoryOptions) (*AdvisoryResult, error) {
	return nil, errors.New("echoService serves no advisories")
}

// advisoryEcho records what reaches the daemon's side of the socket.
type advisoryEcho struct {
	echoService
	got   []AdvisoryRequest
	calls int
}

func (s *advisoryEcho) AdvisoryAdd(ctx context.Context, req AdvisoryRequest) (*AdvisoryResult, error) {
	s.calls++
	s.got = append(s.got, req)
	if string(req.Data) == "conflict" {
		return nil, fmt.Errorf("adding advisory %q: %w: stored with other content", "A-1", ErrAdvisoryConflict)
	}
	return &AdvisoryResult{Repo: req.Repo, Dirs: []string{"main/prod/el/9/x86_64"},
		Advisories: []AdvisoryChange{{ID: "A-1", Type: "security", Action: ActionAdded, Packages: []string{"a-1-1.el9.x86_64"}}}}, nil
}

func (s *advisoryEcho) AdvisoryImport(ctx context.Context, req AdvisoryRequest) (*AdvisoryResult, error) {
	return s.AdvisoryAdd(ctx, req)
}

func (s *advisoryEcho) AdvisoryList(ctx context.Context, o AdvisoryOptions) ([]Advisory, error) {
	s.calls++
	return []Advisory{{ID: "A-1", Repo: o.Repo, Packages: []string{"a-1-1.el9.x86_64"}, Added: time.Unix(1700000000, 0).UTC()}}, nil
}

func (s *advisoryEcho) AdvisoryShow(ctx context.Context, id string, o AdvisoryOptions) (*Advisory, error) {
	s.calls++
	if id != "A-1" {
		return nil, fmt.Errorf("%w: %s", ErrAdvisoryNotFound, id)
	}
	return &Advisory{ID: id, Repo: o.Repo, References: []metadata.AdvisoryReference{{Type: "cve", ID: "CVE-1"}}}, nil
}

func (s *advisoryEcho) AdvisoryRemove(ctx context.Context, id string, o AdvisoryOptions) (*AdvisoryResult, error) {
	s.calls++
	return &AdvisoryResult{Repo: o.Repo, DryRun: o.DryRun, Dirs: []string{},
		Advisories: []AdvisoryChange{{ID: id, Action: ActionWouldRemove}}}, nil
}

// TestSocketAdvisories: the client reads the advisory file with its own
// rights and sends the content; the daemon side refuses a request that
// names a path without content (it opens no path for a client), and the
// file is named by its absolute path; a file
// the client cannot read never reaches the daemon; the sentinels survive
// the socket.
func TestSocketAdvisories(t *testing.T) {
	svc := &advisoryEcho{}
	ready := make(chan struct{})
	close(ready)
	c, err := Dial(context.Background(), startSocket(t, svc, ready), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	f := filepath.Join(t.TempDir(), "adv.toml")
	if err := os.WriteFile(f, []byte("id = \"A-1\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Dir(f))
	res, err := c.AdvisoryAdd(ctx, AdvisoryRequest{Repo: "main", File: "adv.toml", DryRun: true})
	if err != nil || res.Repo != "main" || len(res.Advisories) != 1 || res.Advisories[0].Action != ActionAdded || len(res.Dirs) != 1 {
		t.Fatalf("AdvisoryAdd = %+v, %v", res, err)
	}
	if g := svc.got[0]; string(g.Data) != "id = \"A-1\"\n" || g.File != f || !g.DryRun {
		t.Errorf("daemon got %+v, want the file's content and absolute name", g)
	}
	if err := os.WriteFile(f, []byte("conflict"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AdvisoryImport(ctx, AdvisoryRequest{File: f}); !errors.Is(err, ErrAdvisoryConflict) || !errors.Is(err, ErrInvalidAdvisory) {
		t.Errorf("AdvisoryImport of a conflict: %v, want ErrAdvisoryConflict and ErrInvalidAdvisory", err)
	}
	calls := svc.calls
	if _, err := c.AdvisoryAdd(ctx, AdvisoryRequest{File: filepath.Join(t.TempDir(), "missing.toml")}); !errors.Is(err, ErrInvalidAdvisory) {
		t.Errorf("AdvisoryAdd of a missing file: %v, want ErrInvalidAdvisory", err)
	}
	var raw AdvisoryResult
	if err := c.call(ctx, apiAdvisoryAdd, AdvisoryRequest{File: "/etc/shadow"}, &raw); !errors.Is(err, ErrBadRequest) {
		t.Errorf("advisory-add naming a path only: %v, want ErrBadRequest", err)
	}
	if svc.calls != calls {
		t.Errorf("the daemon side was called %d times for requests it must not serve", svc.calls-calls)
	}
	list, err := c.AdvisoryList(ctx, AdvisoryOptions{Repo: "r"})
	if err != nil || len(list) != 1 || list[0].Repo != "r" || !list[0].Added.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("AdvisoryList = %+v, %v", list, err)
	}
	a, err := c.AdvisoryShow(ctx, "A-1", AdvisoryOptions{Repo: "r"})
	if err != nil || a.Repo != "r" || len(a.References) != 1 || a.References[0].ID != "CVE-1" {
		t.Errorf("AdvisoryShow = %+v, %v", a, err)
	}
	if _, err := c.AdvisoryShow(ctx, "B-2", AdvisoryOptions{}); !errors.Is(err, ErrAdvisoryNotFound) {
		t.Errorf("AdvisoryShow of a missing id: %v, want ErrAdvisoryNotFound", err)
	}
	rr, err := c.AdvisoryRemove(ctx, "A-1", AdvisoryOptions{Repo: "r", DryRun: true})
	if err != nil || !rr.DryRun || rr.Advisories[0].ID != "A-1" {
		t.Errorf("AdvisoryRemove = %+v, %v", rr, err)
	}
}

// advFixture is a root with the app build in staging and prod: app 1.0
// (staging only), app 2.0 with its source package, and the noarch
// app-doc 2.0, which lands in every arch directory of el/9.
type advFixture struct {
	r    *Repo
	root string
}

var advDirs = []string{
	"main/prod/el/9/SRPMS", "main/prod/el/9/aarch64", "main/prod/el/9/x86_64",
	"main/staging/el/9/SRPMS", "main/staging/el/9/aarch64", "main/staging/el/9/x86_64",
}

func newAdvFixture(t *testing.T) *advFixture {
	t.Helper()
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	// gz, as modifyrepo_c compresses by default.
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(plConfig+"[publish]\ncompression = \"gz\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := openPL(t, root)
	in := t.TempDir()
	files := []string{
		writeSpec(t, in, spec("app", "1.0", "1.el9", "x86_64")),
		writeSpec(t, in, spec("app", "2.0", "1.el9", "x86_64")),
		writeSpec(t, in, spec("app", "2.0", "1.el9", "src")),
		writeSpec(t, in, spec("app-doc", "2.0", "1.el9", "noarch")),
	}
	if _, err := r.Add(ctx, files, AddOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"app-2.0-1.el9", "app-doc-2.0-1.el9.noarch"} {
		if _, err := r.Promote(ctx, PromoteRequest{Package: p}); err != nil {
			t.Fatal(err)
		}
	}
	return &advFixture{r: r, root: root}
}

const advTOML = `id = "APP-2026-0001"
type = "security"
severity = "Important"
title = "app: fixes a remote code execution"
description = "Upgrade app to 2.0.\nThe <parser> & \"loader\" are fixed: é ☃"
issued = 2026-12-01
updated = "2026-12-02 10:00:00"
packages = ["app-2.0-1.el9.x86_64", "app-2.0-1.el9.src", "app-doc-2.0-1.el9.noarch"]
reboot_suggested = true
status = "final"
from = "security@example.com"

[[references]]
type = "cve"
id = "CVE-2026-0001"
href = "https://cve.example.com/?id=CVE-2026-0001&x=1"
title = "CVE-2026-0001"
`

// repomdSnapshot is every repomd.xml of the served tree.
func repomdSnapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(filepath.Join(root, "repo"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() == "repomd.xml" {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[p] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// updateinfoOf is dir's published updateinfo.xml, uncompressed, and its
// repomd record; nil when repomd.xml has none.
func updateinfoOf(t *testing.T, dir string) ([]byte, *repomdRecord) {
	t.Helper()
	for _, rec := range readRepomd(t, dir) {
		if rec.Type == "updateinfo" {
			if !strings.HasSuffix(rec.Location.Href, "-updateinfo.xml.gz") {
				t.Errorf("%s: updateinfo href %q", dir, rec.Location.Href)
			}
			return gunzipFile(t, filepath.Join(dir, rec.Location.Href)), &rec
		}
	}
	return nil, nil
}

func countEvents(t *testing.T, r *Repo) int {
	t.Helper()
	ev, err := r.History(context.Background(), HistoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return len(ev)
}

// TestAdvisoryPublished: an advisory written in TOML is published in
// exactly the directories that serve one of its packages, each listing
// the packages it serves (file name and checksum of the served file, the
// source package), and nowhere else; the record is what modifyrepo_c
// --mdtype updateinfo makes of the same XML added to createrepo_c's
// repodata of the same files (types and their order, open checksums and
// sizes); the event names the caller; adding it again changes nothing.
func TestAdvisoryPublished(t *testing.T) {
	needTools(t, "createrepo_c", "modifyrepo_c")
	fx := newAdvFixture(t)
	ctx := context.Background()
	before := repomdSnapshot(t, fx.root)
	res, err := fx.r.AdvisoryAdd(ctx, AdvisoryRequest{File: "app.toml", Data: []byte(advTOML), Who: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Dirs, advDirs) || len(res.Advisories) != 1 || res.Advisories[0].Action != ActionAdded {
		t.Fatalf("AdvisoryAdd = %+v, want added and dirs %v", res, advDirs)
	}
	after := repomdSnapshot(t, fx.root)
	for p := range after {
		rel, _ := filepath.Rel(filepath.Join(fx.root, "repo"), filepath.Dir(filepath.Dir(p)))
		changed := after[p] != before[p]
		if changed != slices.Contains(advDirs, rel) {
			t.Errorf("%s: repomd.xml changed %v, want %v", rel, changed, !changed)
		}
	}
	want := map[string][]string{
		"x86_64":  {"app-2.0-1.el9.x86_64.rpm", "app-doc-2.0-1.el9.noarch.rpm"},
		"aarch64": {"app-doc-2.0-1.el9.noarch.rpm"},
		"SRPMS":   {"app-2.0-1.el9.src.rpm"},
	}
	for _, rel := range advDirs {
		dir := filepath.Join(fx.root, "repo", rel)
		data, _ := updateinfoOf(t, dir)
		ups, err := metadata.ParseUpdateInfo(data)
		if err != nil || len(ups) != 1 || len(ups[0].Collections) != 1 {
			t.Fatalf("%s: updateinfo %v\n%s", rel, err, data)
		}
		u := ups[0]
		if u.ID != "APP-2026-0001" || u.Type != "security" || u.Issued != "2026-12-01 00:00:00" || u.Updated != "2026-12-02 10:00:00" ||
			u.Severity != "Important" || !u.RebootSuggested || u.Status != "final" || !strings.Contains(u.Description, "<parser> & \"loader\"") ||
			len(u.References) != 1 || u.References[0].Href != "https://cve.example.com/?id=CVE-2026-0001&x=1" {
			t.Errorf("%s: advisory %+v", rel, u)
		}
		var names []string
		for _, p := range u.Collections[0].Packages {
			names = append(names, p.Filename)
			if p.Sum != fileSHA(t, filepath.Join(dir, p.Filename)) || p.SumType != "sha256" {
				t.Errorf("%s: %s sum %s %q is not the served file's", rel, p.Filename, p.SumType, p.Sum)
			}
			if p.Name == "app" && p.Arch == "x86_64" && p.Src != "app-2.0-1.el9.src.rpm" {
				t.Errorf("%s: src %q", rel, p.Src)
			}
		}
		if w := want[filepath.Base(rel)]; !slices.Equal(names, w) {
			t.Errorf("%s: pkglist %v, want %v", rel, names, w)
		}
	}
	for p := range after {
		dir := filepath.Dir(filepath.Dir(p))
		rel, _ := filepath.Rel(filepath.Join(fx.root, "repo"), dir)
		if !slices.Contains(advDirs, rel) {
			if data, _ := updateinfoOf(t, dir); data != nil {
				t.Errorf("%s serves none of the packages but publishes updateinfo:\n%s", rel, data)
			}
		}
	}

	// modifyrepo_c adds the same XML to createrepo_c's repodata of the
	// same files.
	ours := filepath.Join(fx.root, "repo", "main/prod/el/9/x86_64")
	theirs := t.TempDir()
	ents, err := os.ReadDir(ours)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".rpm") {
			if out, err := exec.Command("cp", "-p", filepath.Join(ours, e.Name()), theirs).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v\n%s", err, out)
			}
		}
	}
	if out, err := exec.Command("createrepo_c", "--no-database", "--general-compress-type", "gz", theirs).CombinedOutput(); err != nil {
		t.Fatalf("createrepo_c: %v\n%s", err, out)
	}
	ui, _ := updateinfoOf(t, ours)
	uiFile := filepath.Join(t.TempDir(), "updateinfo.xml")
	if err := os.WriteFile(uiFile, ui, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("modifyrepo_c", "--mdtype", "updateinfo", uiFile, filepath.Join(theirs, "repodata")).CombinedOutput(); err != nil {
		t.Fatalf("modifyrepo_c: %v\n%s", err, out)
	}
	a, b := readRepomd(t, ours), readRepomd(t, theirs)
	if len(a) != len(b) {
		t.Fatalf("repomd.xml: %d records, createrepo_c + modifyrepo_c %d", len(a), len(b))
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Type != y.Type || x.OpenChecksum != y.OpenChecksum || x.OpenSize != y.OpenSize || filepath.Ext(x.Location.Href) != filepath.Ext(y.Location.Href) {
			t.Errorf("record %d: ours %s open %s/%d %s, modifyrepo_c %s open %s/%d %s", i, x.Type, x.OpenChecksum, x.OpenSize, x.Location.Href,
				y.Type, y.OpenChecksum, y.OpenSize, y.Location.Href)
		}
	}
	if got := gunzipFile(t, filepath.Join(theirs, b[len(b)-1].Location.Href)); !bytes.Equal(got, ui) {
		t.Errorf("modifyrepo_c's updateinfo differs from the XML it was given")
	}

	ev, err := fx.r.History(ctx, HistoryOptions{Action: "advisory"})
	if err != nil || len(ev) != 1 || ev[0].Action != EventAdvisoryAdd || ev[0].Who != "alice" || ev[0].Caller == nil ||
		ev[0].Details["id"] != "APP-2026-0001" || ev[0].Repo != "main" {
		t.Errorf("advisory events %+v, %v", ev, err)
	}
	if ev, err := fx.r.History(ctx, HistoryOptions{NEVRA: "app-doc-2.0-1.el9.noarch", Action: "advisory"}); err != nil || len(ev) != 1 {
		t.Errorf("history --nevra of a package of the advisory: %d events, %v", len(ev), err)
	}

	// The same advisory again (as JSON, packages in another order, one
	// with its zero epoch written out) is a
	// no-op: nothing recorded, nothing published.
	n := countEvents(t, fx.r)
	json := `{"id": "APP-2026-0001", "type": "security", "severity": "Important", "title": "app: fixes a remote code execution",
	  "description": "Upgrade app to 2.0.\nThe <parser> & \"loader\" are fixed: é ☃", "issued": "2026-12-01T00:00:00Z",
	  "updated": "2026-12-02 10:00:00", "packages": ["app-doc-2.0-1.el9.noarch", "app-0:2.0-1.el9.src", "app-2.0-1.el9.x86_64"],
	  "reboot_suggested": true, "status": "final", "from": "security@example.com",
	  "references": [{"type": "cve", "id": "CVE-2026-0001", "href": "https://cve.example.com/?id=CVE-2026-0001&x=1", "title": "CVE-2026-0001"}]}`
	res, err = fx.r.AdvisoryAdd(ctx, AdvisoryRequest{File: "app.json", Data: []byte(json)})
	if err != nil || res.Advisories[0].Action != ActionUnchanged || len(res.Dirs) != 0 {
		t.Errorf("adding the same advisory again: %+v, %v", res, err)
	}
	if m := countEvents(t, fx.r); m != n {
		t.Errorf("a no-op add recorded %d events", m-n)
	}
	if again := repomdSnapshot(t, fx.root); !reflect.DeepEqual(again, after) {
		t.Error("a no-op add republished")
	}
	list, err := fx.r.AdvisoryList(ctx, AdvisoryOptions{})
	if err != nil || len(list) != 1 || !slices.Equal(list[0].Published, advDirs) || list[0].AddedBy != "alice" {
		t.Errorf("AdvisoryList = %+v, %v", list, err)
	}
}

// TestAdvisoryValidation: each invalid advisory fails with its sentinel,
// and nothing is stored, recorded or published (every repomd.xml is
// unchanged); a dry run of a valid one changes nothing either.
func TestAdvisoryValidation(t *testing.T) {
	fx := newAdvFixture(t)
	ctx := context.Background()
	const good = "id = \"APP-1\"\ntype = \"bugfix\"\ntitle = \"t\"\nissued = \"2026-01-01\"\npackages = [\"app-2.0-1.el9.x86_64\"]\n"
	if _, err := fx.r.AdvisoryAdd(ctx, AdvisoryRequest{File: "good.toml", Data: []byte(good)}); err != nil {
		t.Fatal(err)
	}
	before := repomdSnapshot(t, fx.root)
	events := countEvents(t, fx.r)
	with := func(old, new string) string {
		if !strings.Contains(good, old) {
			t.Fatalf("%q is not in the good advisory", old)
		}
		return strings.Replace(good, old, new, 1)
	}
	imp := func(body string) string {
		return `<?xml version="1.0" encoding="UTF-8"?><updates>` + body + `</updates>`
	}
	const pkg = `<pkglist><collection><package name="app" version="2.0" release="1.el9" epoch="0" arch="x86_64"/></collection></pkglist>`
	for _, tc := range []struct {
		name     string
		file     string
		data     string
		isImport bool
		want     error
	}{
		{"unknown package", "a.toml", with("app-2.0-1.el9.x86_64", "app-9.9-1.el9.x86_64"), false, ErrAdvisoryPackage},
		{"package of another arch", "a.toml", with("app-2.0-1.el9.x86_64", "app-2.0-1.el9.aarch64"), false, ErrAdvisoryPackage},
		{"package not a NEVRA", "a.toml", with("app-2.0-1.el9.x86_64", "../../etc/passwd"), false, ErrInvalidName},
		{"no packages", "a.toml", with(`["app-2.0-1.el9.x86_64"]`, "[]"), false, ErrInvalidAdvisory},
		{"bad type", "a.toml", with("bugfix", "exploit"), false, ErrInvalidAdvisory},
		{"duplicate id, other content", "a.toml", with(`title = "t"`, `title = "other"`), false, ErrAdvisoryConflict},
		{"missing id", "a.toml", with(`id = "APP-1"`, ""), false, ErrInvalidAdvisory},
		{"id with a slash", "a.toml", with("APP-1", "APP/../1"), false, ErrInvalidAdvisory},
		{"id with a newline", "a.toml", with(`"APP-1"`, `"APP-1\nforged: yes"`), false, ErrInvalidAdvisory},
		{"id too long", "a.toml", with("APP-1", strings.Repeat("A", 129)), false, ErrInvalidAdvisory},
		{"bad date", "a.toml", with("2026-01-01", "yesterday"), false, ErrInvalidAdvisory},
		{"impossible date", "a.toml", with("2026-01-01", "2026-02-30"), false, ErrInvalidAdvisory},
		{"date before 1970", "a.toml", with(`"2026-01-01"`, `1969-12-31`), false, ErrInvalidAdvisory},
		{"updated before issued", "a.toml", with("issued", "updated = \"2025-01-01\"\nissued"), false, ErrInvalidAdvisory},
		{"no issued date", "a.toml", with(`issued = "2026-01-01"`, ""), false, ErrInvalidAdvisory},
		{"no title", "a.toml", with(`title = "t"`, ""), false, ErrInvalidAdvisory},
		{"control character in title", "a.toml", with(`title = "t"`, `title = "t\u001b[2J"`), false, ErrInvalidAdvisory},
		{"unknown key", "a.toml", good + "severty = \"High\"\n", false, ErrInvalidAdvisory},
		{"not TOML", "a.toml", "id = ", false, ErrInvalidAdvisory},
		{"bad reference href", "a.toml", good + "[[references]]\ntype = \"cve\"\nhref = \"javascript:alert(1)\"\n", false, ErrInvalidAdvisory},
		{"reference without type", "a.toml", good + "[[references]]\nid = \"x\"\n", false, ErrInvalidAdvisory},
		{"JSON unknown field", "a.json", `{"id": "APP-2", "type": "bugfix", "title": "t", "issued": "2026-01-01", "packages": ["app-2.0-1.el9.x86_64"], "x": 1}`, false, ErrInvalidAdvisory},
		{"JSON two values", "a.json", `{"id": "APP-2"} {}`, false, ErrInvalidAdvisory},
		{"XML given to add", "a", imp(""), false, ErrInvalidAdvisory},
		{"too large", "a.toml", good + "#" + strings.Repeat("x", maxAdvisoryFile), false, ErrInvalidAdvisory},
		{"import: malformed", "u.xml", "<updates>", true, ErrInvalidAdvisory},
		{"import: empty", "u.xml", imp(""), true, ErrInvalidAdvisory},
		{"import: unknown package among known ones", "u.xml", imp(`<update type="bugfix"><id>APP-3</id><title>t</title><issued date="2026-01-01 00:00:00"/>` + pkg + `</update>` +
			`<update type="bugfix"><id>APP-4</id><title>t</title><issued date="2026-01-01 00:00:00"/><pkglist><collection><package name="nope" version="1" release="1" arch="x86_64"/></collection></pkglist></update>`), true, ErrAdvisoryPackage},
		{"import: bad type", "u.xml", imp(`<update type="hotfix"><id>APP-3</id><title>t</title><issued date="2026-01-01 00:00:00"/>` + pkg + `</update>`), true, ErrInvalidAdvisory},
		{"import: same id twice, different content", "u.xml", imp(`<update type="bugfix"><id>APP-3</id><title>t</title><issued date="2026-01-01 00:00:00"/>` + pkg + `</update>` +
			`<update type="security"><id>APP-3</id><title>t</title><issued date="2026-01-01 00:00:00"/>` + pkg + `</update>`), true, ErrAdvisoryConflict},
		{"import: conflicts with the store", "u.xml", imp(`<update type="bugfix"><id>APP-1</id><title>other</title><issued date="2026-01-01 00:00:00"/>` + pkg + `</update>`), true, ErrAdvisoryConflict},
		{"import: bad date", "u.xml", imp(`<update type="bugfix"><id>APP-3</id><title>t</title><issued date="soon"/>` + pkg + `</update>`), true, ErrInvalidAdvisory},
		{"import: package without a version", "u.xml", imp(`<update type="bugfix"><id>APP-3</id><title>t</title><issued date="2026-01-01 00:00:00"/><pkglist><collection><package name="app" arch="x86_64"/></collection></pkglist></update>`), true, ErrInvalidName},
	} {
		req := AdvisoryRequest{File: tc.file, Data: []byte(tc.data)}
		var err error
		if tc.isImport {
			_, err = fx.r.AdvisoryImport(ctx, req)
		} else {
			_, err = fx.r.AdvisoryAdd(ctx, req)
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}
	for _, bad := range []string{"", "../x", "a b", strings.Repeat("x", 200)} {
		if _, err := fx.r.AdvisoryShow(ctx, bad, AdvisoryOptions{}); !errors.Is(err, ErrInvalidAdvisory) {
			t.Errorf("AdvisoryShow(%q): %v, want ErrInvalidAdvisory", bad, err)
		}
	}
	if _, err := fx.r.AdvisoryRemove(ctx, "APP-404", AdvisoryOptions{}); !errors.Is(err, ErrAdvisoryNotFound) {
		t.Errorf("AdvisoryRemove of a missing id: %v, want ErrAdvisoryNotFound", err)
	}
	if _, err := fx.r.AdvisoryAdd(ctx, AdvisoryRequest{File: "a.toml", Data: []byte(good), Repo: "nope"}); !errors.Is(err, ErrBadOption) {
		t.Errorf("AdvisoryAdd --repo nope: %v, want ErrBadOption", err)
	}
	// A valid one as a dry run, an add and a remove: said, not done.
	res, err := fx.r.AdvisoryAdd(ctx, AdvisoryRequest{File: "b.toml", Data: []byte(with("APP-1", "APP-2")), DryRun: true})
	if err != nil || !res.DryRun || res.Advisories[0].Action != ActionWouldAdd || !slices.Equal(res.Dirs, []string{"main/prod/el/9/x86_64", "main/staging/el/9/x86_64"}) {
		t.Errorf("dry-run add: %+v, %v", res, err)
	}
	res, err = fx.r.AdvisoryRemove(ctx, "APP-1", AdvisoryOptions{DryRun: true})
	if err != nil || res.Advisories[0].Action != ActionWouldRemove || len(res.Dirs) != 2 {
		t.Errorf("dry-run remove: %+v, %v", res, err)
	}
	if after := repomdSnapshot(t, fx.root); !reflect.DeepEqual(after, before) {
		t.Error("a refused advisory or a dry run republished repodata")
	}
	if n := countEvents(t, fx.r); n != events {
		t.Errorf("refused advisories and dry runs recorded %d events", n-events)
	}
	if list, err := fx.r.AdvisoryList(ctx, AdvisoryOptions{}); err != nil || len(list) != 1 || list[0].ID != "APP-1" || list[0].Title != "t" {
		t.Errorf("store after the refusals: %+v, %v", list, err)
	}
}

// TestAdvisoryImportAndRemove: an updateinfo.xml written by
// python3-createrepo-c is imported (all its advisories, each where its
// packages are served); removing one drops it from updateinfo.xml and
// leaves the other; removing the last drops the updateinfo record, and
// every step records an event. A republish from the store writes the
// same updateinfo again.
func TestAdvisoryImportAndRemove(t *testing.T) {
	fx := newAdvFixture(t)
	ctx := context.Background()
	py := crPythonRepo(t)
	script := `
import createrepo_c as cr, datetime, sys
ui = cr.UpdateInfo()
for id, typ, pkgs in [("APP-SEC-1", "security", [("app", "2.0", "x86_64")]), ("APP-DOC-1", "enhancement", [("app-doc", "2.0", "noarch")])]:
    r = cr.UpdateRecord()
    r.id, r.type, r.title, r.status, r.severity = id, typ, id + " title", "final", "Moderate"
    r.issued_date = datetime.datetime(2026, 11, 30, 8, 0, 0)
    ref = cr.UpdateReference()
    ref.type, ref.id, ref.href = "bugzilla", "42", "https://bugs.example.com/42"
    r.append_reference(ref)
    c = cr.UpdateCollection()
    c.shortname, c.name = "el9", "EL 9"
    for name, ver, arch in pkgs:
        p = cr.UpdateCollectionPackage()
        p.name, p.version, p.release, p.epoch, p.arch = name, ver, "1.el9", "0", arch
        p.filename = "%s-%s-1.el9.%s.rpm" % (name, ver, arch)
        c.append(p)
    r.append_collection(c)
    ui.append(r)
sys.stdout.write(ui.xml_dump())
`
	out, err := exec.Command(py, "-c", script).Output()
	if err != nil {
		t.Fatalf("python3-createrepo-c: %v", err)
	}
	f := filepath.Join(t.TempDir(), "updateinfo.xml")
	if err := os.WriteFile(f, out, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := fx.r.AdvisoryImport(ctx, AdvisoryRequest{File: f, Who: "bob"})
	if err != nil || len(res.Advisories) != 2 || !slices.Equal(res.Dirs, []string{"main/prod/el/9/aarch64", "main/prod/el/9/x86_64",
		"main/staging/el/9/aarch64", "main/staging/el/9/x86_64"}) {
		t.Fatalf("AdvisoryImport = %+v, %v", res, err)
	}
	ids := func(rel string) []string {
		t.Helper()
		data, _ := updateinfoOf(t, filepath.Join(fx.root, "repo", rel))
		if data == nil {
			return nil
		}
		ups, err := metadata.ParseUpdateInfo(data)
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		var out []string
		for _, u := range ups {
			out = append(out, u.ID+"/"+u.Type)
		}
		return out
	}
	if got := ids("main/prod/el/9/x86_64"); !slices.Equal(got, []string{"APP-DOC-1/enhancement", "APP-SEC-1/security"}) {
		t.Errorf("prod x86_64 lists %v", got)
	}
	if got := ids("main/prod/el/9/aarch64"); !slices.Equal(got, []string{"APP-DOC-1/enhancement"}) {
		t.Errorf("prod aarch64 lists %v", got)
	}
	a, err := fx.r.AdvisoryShow(ctx, "APP-SEC-1", AdvisoryOptions{})
	if err != nil || a.Issued != "2026-11-30 08:00:00" || a.Severity != "Moderate" || !slices.Equal(a.Packages, []string{"app-2.0-1.el9.x86_64"}) ||
		len(a.References) != 1 || a.References[0].Href != "https://bugs.example.com/42" || a.AddedBy != "bob" {
		t.Errorf("AdvisoryShow = %+v, %v", a, err)
	}
	// A republish from the store writes the same updateinfo.
	ui1, _ := updateinfoOf(t, filepath.Join(fx.root, "repo", "main/prod/el/9/x86_64"))
	if _, err := fx.r.Republish(ctx, RepublishOptions{Dirs: []string{"main/prod/el/9/x86_64"}}); err != nil {
		t.Fatal(err)
	}
	if ui2, _ := updateinfoOf(t, filepath.Join(fx.root, "repo", "main/prod/el/9/x86_64")); !bytes.Equal(ui1, ui2) {
		t.Errorf("republish changed updateinfo.xml:\n%s\n%s", ui1, ui2)
	}
	rep, err := fx.r.Fsck(ctx, FsckOptions{})
	if err != nil || rep.Err() != nil {
		t.Errorf("fsck after the import: %+v, %v", rep, err)
	}

	res, err = fx.r.AdvisoryRemove(ctx, "APP-SEC-1", AdvisoryOptions{Who: "carol"})
	if err != nil || res.Advisories[0].Action != ActionRemoved || !slices.Equal(res.Dirs, []string{"main/prod/el/9/x86_64", "main/staging/el/9/x86_64"}) {
		t.Fatalf("AdvisoryRemove = %+v, %v", res, err)
	}
	if got := ids("main/prod/el/9/x86_64"); !slices.Equal(got, []string{"APP-DOC-1/enhancement"}) {
		t.Errorf("after removing APP-SEC-1, prod x86_64 lists %v", got)
	}
	if _, err := fx.r.AdvisoryShow(ctx, "APP-SEC-1", AdvisoryOptions{}); !errors.Is(err, ErrAdvisoryNotFound) {
		t.Errorf("show of a removed advisory: %v", err)
	}
	if _, err := fx.r.AdvisoryRemove(ctx, "APP-DOC-1", AdvisoryOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, rel := range advDirs {
		if data, rec := updateinfoOf(t, filepath.Join(fx.root, "repo", rel)); rec != nil {
			t.Errorf("%s still has an updateinfo record after the last advisory went:\n%s", rel, data)
		}
	}
	ev, err := fx.r.History(ctx, HistoryOptions{Action: "advisory"})
	var got []string
	for _, e := range ev {
		got = append(got, e.Action+" "+e.Details["id"]+" "+e.Who)
	}
	want := []string{"advisory.import APP-SEC-1 bob", "advisory.import APP-DOC-1 bob", "advisory.remove APP-SEC-1 carol", "advisory.remove APP-DOC-1 " + currentUser()}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("advisory events %q, want %q (%v)", got, want, err)
	}
}

// crPythonRepo is the system python3 with python3-createrepo-c.
func crPythonRepo(t testing.TB) string {
	t.Helper()
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		if py, err = exec.LookPath("python3"); err != nil {
			t.Fatalf("python3 is required (install python3-createrepo-c with .ci/install-test-deps): %v", err)
		}
	}
	if out, err := exec.Command(py, "-c", "import createrepo_c").CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import createrepo_c (install python3-createrepo-c with .ci/install-test-deps): %v\n%s", py, err, out)
	}
	return py
}

// TestAdvisoryFollowsPackages: an advisory naming a package that only
// staging has is published in staging alone; promoting the package brings
// the advisory to prod, and removing the package from a channel takes it
// out of that channel's updateinfo.xml.
func TestAdvisoryFollowsPackages(t *testing.T) {
	fx := newAdvFixture(t)
	ctx := context.Background()
	adv := "id = \"APP-OLD\"\ntype = \"bugfix\"\ntitle = \"t\"\nissued = \"2026-01-01\"\npackages = [\"app-1.0-1.el9.x86_64\"]\n"
	res, err := fx.r.AdvisoryAdd(ctx, AdvisoryRequest{File: "old.toml", Data: []byte(adv)})
	if err != nil || !slices.Equal(res.Dirs, []string{"main/staging/el/9/x86_64"}) {
		t.Fatalf("AdvisoryAdd = %+v, %v", res, err)
	}
	prod := filepath.Join(fx.root, "repo", "main/prod/el/9/x86_64")
	if data, _ := updateinfoOf(t, prod); data != nil {
		t.Fatalf("prod publishes an advisory for a package it does not serve:\n%s", data)
	}
	if _, err := fx.r.Promote(ctx, PromoteRequest{Package: "app-1.0-1.el9.x86_64"}); err != nil {
		t.Fatal(err)
	}
	data, _ := updateinfoOf(t, prod)
	if !bytes.Contains(data, []byte("<id>APP-OLD</id>")) || !bytes.Contains(data, []byte("<filename>app-1.0-1.el9.x86_64.rpm</filename>")) {
		t.Fatalf("after the promote, prod's updateinfo:\n%s", data)
	}
	if _, err := fx.r.Remove(ctx, "app-1.0-1.el9.x86_64", RemoveOptions{Channel: "staging"}); err != nil {
		t.Fatal(err)
	}
	if data, _ := updateinfoOf(t, filepath.Join(fx.root, "repo", "main/staging/el/9/x86_64")); data != nil {
		t.Errorf("staging no longer serves the package but still publishes its advisory:\n%s", data)
	}
	if data, _ := updateinfoOf(t, prod); !bytes.Contains(data, []byte("<id>APP-OLD</id>")) {
		t.Errorf("prod lost the advisory of a package it still serves:\n%s", data)
	}
	if a, err := fx.r.AdvisoryShow(ctx, "APP-OLD", AdvisoryOptions{}); err != nil || !slices.Equal(a.Published, []string{"main/prod/el/9/x86_64"}) {
		t.Errorf("AdvisoryShow = %+v, %v", a, err)
	}
	// show NEVRA names the advisory; a package it does not list has none.
	if sr, err := fx.r.Show(ctx, "app-1.0-1.el9.x86_64", ShowOptions{}); err != nil || !slices.Equal(sr.Advisories, []string{"APP-OLD"}) {
		t.Errorf("Show(app-1.0).Advisories = %+v, %v", sr, err)
	}
	if _, err := fx.r.AdvisoryRemove(ctx, "APP-OLD", AdvisoryOptions{}); err != nil {
		t.Fatal(err)
	}
	if sr, err := fx.r.Show(ctx, "app-1.0-1.el9.x86_64", ShowOptions{}); err != nil || len(sr.Advisories) != 0 {
		t.Errorf("Show after the advisory's removal: %+v, %v", sr.Advisories, err)
	}
}

// TestAdvisoryExamples: the README's minimal advisory and
// testdata/advisory.example.toml are valid advisories.
func TestAdvisoryExamples(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(readme), "## Advisories\n")
	_, block, ok2 := strings.Cut(sec, "```toml\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README.md has no TOML example under ## Advisories")
	}
	example, err := os.ReadFile("../testdata/advisory.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"README.md": block, "advisory.example.toml": string(example)} {
		a, err := ParseAdvisory(name+".toml", []byte(data))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if a.ID != "APP-2026-0001" || a.Type != "security" || a.Issued != "2026-12-01 00:00:00" || !slices.Equal(a.Packages, []string{"app-3.0-1.el9.noarch"}) {
			t.Errorf("%s: %+v", name, a)
		}
	}
}
