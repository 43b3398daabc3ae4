package repo

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/repoctl/repoctl/repo/serve"
)

func TestParseRelease(t *testing.T) {
	for in, want := range map[string]string{
		"el/9": "el/9", "el9": "el/9", "fc40": "fc/40", "el/9/extras": "el/9/extras", "common": "common",
		"el": "el", "sles15": "sles/15",
		"": "", "../x": "", "el/../9": "", "/el/9": "", "el 9": "", "el/9/": "", "el\n9": "", ".el9": "",
	} {
		got, err := ParseRelease(in)
		if want == "" {
			if !errors.Is(err, ErrBadOption) {
				t.Errorf("ParseRelease(%q) = %q, %v; want ErrBadOption", in, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("ParseRelease(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// Packages without a dist tag: the embedded default sends them to the
// shared release; routing.default and routing.noarch move them or, "off",
// reject them; an explicit release (add --release, a drop-in's release)
// wins over every rule.
func TestRouteDistless(t *testing.T) {
	type route struct {
		to, release, arch string
		rel               string
		dirs              []string
		err               error
	}
	all := []string{"x86_64", "aarch64"}
	for name, tc := range map[string]struct {
		config string
		routes []route
	}{
		"embedded default": {"", []route{
			{"", "1", "x86_64", CommonRelease, []string{"x86_64"}, nil},
			{"", "1", "noarch", CommonRelease, all, nil},
			{"", "1", "src", CommonRelease, []string{"SRPMS"}, nil},
			{"", "1.el9", "noarch", "el/9", all, nil},
			{"el/8", "1.el9", "x86_64", "el/8", []string{"x86_64"}, nil},
			{"el/8", "1", "noarch", "el/8", all, nil},
			{"el/8", "1", "ppc64le", "", nil, ErrUnroutable},
		}},
		"default el/9": {"[routing]\ndefault = \"el/9\"\n", []route{
			{"", "1", "x86_64", "el/9", []string{"x86_64"}, nil},
			{"", "1", "src", "el/9", []string{"SRPMS"}, nil},
			{"", "1", "noarch", CommonRelease, all, nil},
			{"fc/40", "1", "x86_64", "fc/40", []string{"x86_64"}, nil},
		}},
		"off": {"[routing]\ndefault = \"off\"\nnoarch = \"off\"\n", []route{
			{"", "1", "x86_64", "", nil, ErrUnroutable},
			{"", "1", "noarch", "", nil, ErrUnroutable},
			{"", "1.el9", "x86_64", "el/9", []string{"x86_64"}, nil},
			{"el/9", "1", "x86_64", "el/9", []string{"x86_64"}, nil},
		}},
		// The shared release offers every arch some release has.
		"more arches": {"[releases.\"el/9\"]\narches = [\"x86_64\", \"ppc64le\"]\n", []route{
			{"", "1", "noarch", CommonRelease, []string{"x86_64", "aarch64", "ppc64le"}, nil},
			{"", "1", "ppc64le", CommonRelease, []string{"ppc64le"}, nil},
			{"", "1.el9", "aarch64", "", nil, ErrUnroutable},
		}},
	} {
		root := t.TempDir()
		if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(tc.config), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(root, "")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, r := range tc.routes {
			rel, dirs, err := c.RouteTo(r.to, r.release, r.arch, r.arch == "src")
			if !errors.Is(err, r.err) || rel != r.rel || !reflect.DeepEqual(dirs, r.dirs) {
				t.Errorf("%s: RouteTo(%q, %q, %q) = %q %v %v; want %q %v %v", name, r.to, r.release, r.arch, rel, dirs, err, r.rel, r.dirs, r.err)
			}
		}
	}
	for _, bad := range []string{"[routing]\nnoarch = \"../x\"\n", "[[dropin]]\ndir = \"in8\"\nrelease = \"el/../8\"\n"} {
		root := t.TempDir()
		if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConfig(root, ""); !errors.Is(err, ErrBadConfig) {
			t.Errorf("config %q: %v, want ErrBadConfig", bad, err)
		}
	}
}

// repodataDirs lists the directories below ROOT/repo with a signed
// repomd.xml, relative to it.
func repodataDirs(t *testing.T, repoRoot string) []string {
	t.Helper()
	var out []string
	if err := filepath.WalkDir(repoRoot, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "repomd.xml" {
			if _, err := os.Stat(p + ".asc"); err != nil {
				t.Errorf("%s has no signature: %v", p, err)
			}
			rel, err := filepath.Rel(repoRoot, filepath.Dir(filepath.Dir(p)))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func expandDirs(repos, channels, rels, arches []string) []string {
	var out []string
	for _, r := range repos {
		for _, ch := range channels {
			for _, rel := range rels {
				for _, a := range arches {
					out = append(out, RepoDir(r, ch, rel, a))
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// Every known release has repodata in every repository, channel and arch
// (SRPMS included) from the moment it is known: configured ones at Open,
// new ones with the batch that brings them; nothing else is created.
func TestFillReleases(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte("repos = [\"main\", \"extra\"]\n[signing]\nalgo = \"ed25519\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := openPL(t, root)
	repos, chans, arches := []string{"main", "extra"}, []string{"staging", "prod"}, []string{"x86_64", "aarch64", "SRPMS"}
	tree := filepath.Join(root, "repo")
	if got, want := repodataDirs(t, tree), expandDirs(repos, chans, []string{CommonRelease}, arches); !slices.Equal(got, want) {
		t.Errorf("after Open: %v\nwant %v", got, want)
	}
	p := writeSpec(t, t.TempDir(), spec("fill", "1", "1.el9", "x86_64"))
	if res, err := r.Add(ctx, []string{p}, AddOptions{}); err != nil || res[0].Action != ActionAdded {
		t.Fatalf("add: %+v %v", res, err)
	}
	want := expandDirs(repos, chans, []string{CommonRelease, "el/9"}, arches)
	if got := repodataDirs(t, tree); !slices.Equal(got, want) {
		t.Errorf("after an el9 add: %v\nwant %v", got, want)
	}
	if pk := mustPkgs(t, filepath.Join(tree, "main/prod/el/9/x86_64")); len(pk) != 0 {
		t.Errorf("prod lists %v before a promote", keys(pk))
	}
	if pk := mustPkgs(t, filepath.Join(tree, "main/staging/el/9/x86_64")); len(pk) != 1 {
		t.Errorf("staging lists %v", keys(pk))
	}
	evs, err := r.History(ctx, HistoryOptions{Action: EventPublish})
	if err != nil || len(evs) == 0 {
		t.Fatalf("publish events: %v %v", len(evs), err)
	}
	// Someone deletes the repodata of a directory with a package: the next
	// Resume republishes it with the package, not empty.
	if err := os.RemoveAll(filepath.Join(tree, "main/staging/el/9/x86_64/repodata")); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte("repos = [\"main\", \"extra\"]\n[signing]\nalgo = \"ed25519\"\n[releases.\"el/8\"]\narches = [\"x86_64\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = openPL(t, root)
	want = append(want, expandDirs(repos, chans, []string{"el/8"}, []string{"x86_64", "SRPMS"})...)
	slices.Sort(want)
	if got := repodataDirs(t, tree); !slices.Equal(got, want) {
		t.Errorf("after configuring el/8: %v\nwant %v", got, want)
	}
	if pk := mustPkgs(t, filepath.Join(tree, "main/staging/el/9/x86_64")); len(pk) != 1 {
		t.Errorf("repodata restored with %v, want fill-1-1.el9.x86_64", keys(pk))
	}
}

// RepoFile's choices and refusals, as data.
func TestRepoFileOptions(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte("[signing]\nalgo = \"ed25519\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := openPL(t, root)
	if f, err := r.RepoFile(ctx, RepoFileOptions{}); !errors.Is(err, ErrBadConfig) || f != nil {
		t.Errorf("repofile of an empty root: %+v %v, want ErrBadConfig", f, err)
	}
	in := t.TempDir()
	var paths []string
	for _, rel := range []string{"1.el8", "1.el9", "1.el10", "1.fc40"} {
		paths = append(paths, writeSpec(t, in, spec("rfo", "1", rel, "x86_64")))
	}
	if _, err := r.Add(ctx, paths, AddOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, o := range []RepoFileOptions{
		{}, // el and fc: which?
		{Dist: "sles"}, {Channel: "qa"}, {Repo: "other"}, {Release: "el/7"}, {Release: "el/../9"},
		{Release: "common"}, {Release: "el/9", Dist: "fc"},
	} {
		if f, err := r.RepoFile(ctx, o); !errors.Is(err, ErrBadOption) || f != nil {
			t.Errorf("RepoFile(%+v) = %+v, %v; want ErrBadOption", o, f, err)
		}
	}
	base := "http://repo.example/"
	f, err := r.RepoFile(ctx, RepoFileOptions{Dist: "el", BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	if f.Channel != "prod" || f.Dist != "el" || f.Release != "" || !f.Common ||
		!slices.Equal(f.Releases, []string{"el/8", "el/9", "el/10"}) || !slices.Equal(f.Arches, []string{"aarch64", "x86_64"}) {
		t.Errorf("file: %+v", f)
	}
	ids := []string{}
	for _, s := range f.Sections {
		ids = append(ids, s.ID)
		if !s.GPGCheck || !s.RepoGPGCheck || s.GPGKey != base+PublicKeyFile || s.Enabled != (s.Arch != "SRPMS") || s.Channel != "prod" {
			t.Errorf("section %+v", s)
		}
	}
	if !slices.Equal(ids, []string{"main-prod-el", "main-prod-el-source", "main-prod-common", "main-prod-common-source"}) ||
		f.Sections[0].BaseURL != base+"main/prod/el/$releasever/$basearch/" || f.Sections[1].BaseURL != base+"main/prod/el/$releasever/SRPMS/" ||
		f.Sections[2].BaseURL != base+"main/prod/common/$basearch/" {
		t.Errorf("sections %v: %+v", ids, f.Sections)
	}
	text := f.Render()
	for _, want := range []string{"$releasever in 8, 9, 10", "[main-prod-el]\nname=main prod el $releasever $basearch\nbaseurl=http://repo.example/main/prod/el/$releasever/$basearch/\nenabled=1\ngpgcheck=1\nrepo_gpgcheck=1\ngpgkey=http://repo.example/RPM-GPG-KEY-repoctl\nmetadata_expire=60\n",
		"[main-prod-el-source]\nname=main prod el $releasever SRPMS\nbaseurl=http://repo.example/main/prod/el/$releasever/SRPMS/\nenabled=0\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered file lacks %q:\n%s", want, text)
		}
	}
	var back RepoFileResult
	if b, err := json.Marshal(f); err != nil || json.Unmarshal(b, &back) != nil || !reflect.DeepEqual(&back, f) {
		t.Errorf("JSON round trip: %v\n%s", err, b)
	}
	pinned, err := r.RepoFile(ctx, RepoFileOptions{Release: "el9", Channel: "staging"})
	if err != nil || pinned.Release != "el/9" || pinned.Sections[0].ID != "main-staging-el9" ||
		pinned.Sections[0].BaseURL != r.cfg.HTTP.PublicURL+"main/staging/el/9/$basearch/" {
		t.Errorf("pinned: %+v %v", pinned, err)
	}
	if fc, err := r.RepoFile(ctx, RepoFileOptions{Dist: "fc"}); err != nil || !slices.Equal(fc.Releases, []string{"fc/40"}) {
		t.Errorf("fc: %+v %v", fc, err)
	}
}

// A request for a minor release that does not exist is served from its
// major release; nothing else is rewritten.
func TestMajorFallback(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"main/prod/el/9/x86_64/repodata/repomd.xml", "main/prod/el/9.4x/x86_64/repodata/repomd.xml"} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h, closeRoot, err := serve.NewFileHandler(dir, slog.New(slog.DiscardHandler), majorFallback)
	if err != nil {
		t.Fatal(err)
	}
	defer closeRoot()
	srv := httptest.NewServer(h)
	defer srv.Close()
	for path, want := range map[string]string{
		"/main/prod/el/9.4/x86_64/repodata/repomd.xml":  "main/prod/el/9/x86_64/repodata/repomd.xml",
		"/main/prod/el/9.10/x86_64/repodata/repomd.xml": "main/prod/el/9/x86_64/repodata/repomd.xml",
		"/main/prod/el/9.4x/x86_64/repodata/repomd.xml": "main/prod/el/9.4x/x86_64/repodata/repomd.xml",
		"/main/prod/el/9/x86_64/repodata/repomd.xml":    "main/prod/el/9/x86_64/repodata/repomd.xml",
		"/main/prod/el/8.4/x86_64/repodata/repomd.xml":  "404",
		"/main/prod/el/x.4/x86_64/repodata/repomd.xml":  "404",
		"/main/prod/el/9.4/../../../../etc/passwd":      "404",
		"/main/prod/el/9.4/.x/repomd.xml":               "404",
	} {
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if err := resp.Body.Close(); err != nil {
			t.Fatal(err)
		}
		got := string(b)
		if resp.StatusCode == http.StatusNotFound {
			got = "404"
		}
		if got != want {
			t.Errorf("GET %s: %d %q, want %q", path, resp.StatusCode, got, want)
		}
	}
}

// A drop-in directory with a release puts every file there, whatever its
// dist tag says; the same option over Add does the same.
func TestDropInRelease(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(`
[signing]
algo = "ed25519"
[[dropin]]
dir = "incoming"
[[dropin]]
dir = "incoming-el8"
release = "el8"
`), 0o644); err != nil {
		t.Fatal(err)
	}
	r := openPL(t, root)
	if got := r.cfg.DropIns[1].Release; got != "el/8" {
		t.Fatalf("dropin release %q, want el/8", got)
	}
	drop := filepath.Join(root, "incoming-el8")
	p := writeSpec(t, drop, spec("dropped", "1", "1.el9", "x86_64"))
	byDir := map[string]DropIn{}
	for _, d := range r.cfg.DropIns {
		byDir[filepath.Clean(d.Dir)] = d
	}
	if !ingestBatch(ctx, r, slog.New(slog.DiscardHandler), byDir, []string{p}) {
		t.Fatal("ingest batch failed")
	}
	pk := mustPkgs(t, filepath.Join(root, "repo/main/staging/el/8/x86_64"))
	if _, ok := pk["dropped-1-1.el9.x86_64"]; !ok || len(pk) != 1 {
		t.Errorf("el/8 lists %v", keys(pk))
	}
	if pk := mustPkgs(t, filepath.Join(root, "repo/main/staging/el/9/x86_64")); len(pk) != 0 {
		t.Errorf("el/9 lists %v", keys(pk))
	}
	q := writeSpec(t, t.TempDir(), spec("pinned", "1", "1", "noarch"))
	res, err := r.Add(ctx, []string{q}, AddOptions{Release: "el/8"})
	if err != nil || len(res[0].RepoPaths) != 2 || res[0].RepoPaths[0] != "main/staging/el/8/x86_64/pinned-1-1.noarch.rpm" {
		t.Errorf("add --release el/8: %+v %v", res, err)
	}
	if _, err := r.Add(ctx, []string{q}, AddOptions{Release: "el/../8"}); !errors.Is(err, ErrBadOption) {
		t.Errorf("add --release el/../8: %v, want ErrBadOption", err)
	}
}
