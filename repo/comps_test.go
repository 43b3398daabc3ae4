package repo

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/repoctl/repoctl/metadata"
)

// testCompsXML offers app-stack: app-server (mandatory), app-agent
// (default, installed by `dnf group install` too) and app-docs (optional,
// not installed).
const testCompsXML = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE comps PUBLIC "-//Red Hat, Inc.//DTD Comps info//EN" "comps.dtd">
<comps>
  <group>
    <id>app-stack</id>
    <name>App stack</name>
    <description>The app and its agent</description>
    <default>false</default>
    <uservisible>true</uservisible>
    <packagelist>
      <packagereq type="mandatory">app-server</packagereq>
      <packagereq type="default">app-agent</packagereq>
      <packagereq type="optional">app-docs</packagereq>
    </packagelist>
  </group>
</comps>
`

// repomdRecords reads dir's repomd.xml (dir relative to ROOT/repo).
func repomdRecords(t *testing.T, r *Repo, dir string) *metadata.Repomd {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(r.Config().Paths.Repo, dir, "repodata", "repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	md, err := metadata.ParseRepomd(raw)
	if err != nil {
		t.Fatal(err)
	}
	return md
}

// checkGroups fails unless dir publishes want (nil: no group records) as
// createrepo_c -g does: group (verbatim) and group_gz (gzip) right after
// primary, filelists and other.
func checkGroups(t *testing.T, r *Repo, dir string, want []byte) {
	t.Helper()
	md := repomdRecords(t, r, dir)
	var types []string
	for _, rec := range md.Records {
		types = append(types, rec.Type)
	}
	if want == nil {
		if slices.ContainsFunc(types, func(s string) bool { return strings.HasPrefix(s, "group") }) {
			t.Errorf("%s: records %v, want no group records", dir, types)
		}
		return
	}
	if !slices.Equal(types, []string{"primary", "filelists", "other", "group", "group_gz"}) {
		t.Fatalf("%s: records %v", dir, types)
	}
	base := filepath.Join(r.Config().Paths.Repo, dir)
	g, gz := md.Record("group"), md.Record("group_gz")
	b, err := os.ReadFile(filepath.Join(base, g.Href))
	if err != nil || string(b) != string(want) || !strings.HasSuffix(g.Href, "-comps.xml") {
		t.Errorf("%s: group %s is not the comps file: %v", dir, g.Href, err)
	}
	f, err := os.Open(filepath.Join(base, gz.Href))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: group_gz %s: %v", dir, gz.Href, err)
	}
	open, err := io.ReadAll(zr)
	if err != nil || string(open) != string(want) || !strings.HasSuffix(gz.Href, "-comps.xml.gz") {
		t.Errorf("%s: group_gz %s does not hold the comps file: %v", dir, gz.Href, err)
	}
}

func eventCount(t *testing.T, r *Repo) int {
	t.Helper()
	ev, err := r.History(context.Background(), HistoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return len(ev)
}

// TestCompsSetRemove: comps set publishes group and group_gz into every
// directory of that repository (every channel and arch, zstd beside gz)
// and none of another; a refused file changes nothing; the same file again
// is no change; directories made later get the records too and fsck finds
// the tree clean; a crash after recording is finished by the next Open;
// comps remove drops the records.
func TestCompsSetRemove(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	os.MkdirAll(root, 0o755)
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte("repos = [\"main\", \"extra\"]\n"+plConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	r := openPL(t, root)
	in := t.TempDir()
	for _, repoName := range []string{"main", "extra"} {
		if _, err := r.Add(ctx, []string{writeSpec(t, in, spec("app-server", "1", "1.el9", "x86_64"))}, AddOptions{Repo: repoName}); err != nil {
			t.Fatal(err)
		}
	}
	dirs, err := r.republishTargets([]string{"main"})
	if err != nil || len(dirs) < 4 {
		t.Fatalf("directories of main: %v, %v", dirs, err)
	}
	x86 := "main/staging/el/9/x86_64"
	before, _ := os.ReadFile(filepath.Join(r.Config().Paths.Repo, x86, "repodata", "repomd.xml"))
	nEvents := eventCount(t, r)

	// Nothing set yet.
	if _, err := r.CompsShow(ctx, CompsShowRequest{}); !errors.Is(err, ErrNoComps) {
		t.Errorf("CompsShow without comps: %v", err)
	}
	if _, err := r.CompsRemove(ctx, CompsRemoveRequest{}); !errors.Is(err, ErrNoComps) {
		t.Errorf("CompsRemove without comps: %v", err)
	}
	if _, err := r.CompsSet(ctx, CompsSetRequest{Repo: "nope", XML: []byte(testCompsXML)}); !errors.Is(err, ErrBadOption) {
		t.Errorf("CompsSet of an unknown repository: %v", err)
	}
	// Refused files: the sentinel, and nothing stored, published or recorded.
	for _, tc := range []struct {
		name, xml string
		want      error
	}{
		{"entity", `<!DOCTYPE comps [ <!ENTITY x SYSTEM "file:///etc/shadow"> ]><comps><group><id>g</id><name>&x;</name></group></comps>`, metadata.ErrCompsEntity},
		{"bad id", strings.Replace(testCompsXML, "app-stack", "app stack;reboot", 1), metadata.ErrCompsID},
		{"bad package", strings.Replace(testCompsXML, ">app-docs<", ">../../app-docs<", 1), metadata.ErrCompsPackage},
		{"not comps", "<groups/>", metadata.ErrCompsStructure},
		{"not XML", "\x1f\x8b\x08", metadata.ErrCompsSyntax},
		{"no group", "<comps/>", metadata.ErrCompsEmpty},
	} {
		if _, err := r.CompsSet(ctx, CompsSetRequest{XML: []byte(tc.xml)}); !errors.Is(err, tc.want) || !errors.Is(err, metadata.ErrBadComps) {
			t.Errorf("CompsSet %s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := r.CompsShow(ctx, CompsShowRequest{}); !errors.Is(err, ErrNoComps) {
		t.Errorf("a refused file was stored: %v", err)
	}
	// A dry run says what it would republish and changes nothing.
	res, err := r.CompsSet(ctx, CompsSetRequest{XML: []byte(testCompsXML), DryRun: true})
	if err != nil || res.Action != CompsActionSet || !res.DryRun || !slices.Equal(res.Dirs, dirs) || res.Comps.Groups[0] != "app-stack" {
		t.Fatalf("CompsSet --dry-run: %+v, %v", res, err)
	}
	after, _ := os.ReadFile(filepath.Join(r.Config().Paths.Repo, x86, "repodata", "repomd.xml"))
	if string(before) != string(after) || eventCount(t, r) != nEvents {
		t.Fatal("a refused file or a dry run changed repodata or the event log")
	}

	res, err = r.CompsSet(ctx, CompsSetRequest{XML: []byte(testCompsXML), Who: "alice"})
	if err != nil || res.Action != CompsActionSet || !slices.Equal(res.Dirs, dirs) || res.PreviousSHA256 != "" {
		t.Fatalf("CompsSet: %+v, %v", res, err)
	}
	for _, d := range dirs {
		checkGroups(t, r, d, []byte(testCompsXML))
		if h := repomdRecords(t, r, d).Record("primary").Href; !strings.HasSuffix(h, ".zst") {
			t.Errorf("%s: primary %s is not zstd (the default)", d, h)
		}
	}
	checkGroups(t, r, "extra/staging/el/9/x86_64", nil)
	sum := sha256.Sum256([]byte(testCompsXML))
	info, err := r.CompsShow(ctx, CompsShowRequest{Repo: "main"})
	if err != nil || string(info.XML) != testCompsXML || info.SHA256 != hex.EncodeToString(sum[:]) || info.Size != int64(len(testCompsXML)) ||
		!slices.Equal(info.Groups, []string{"app-stack"}) || info.Who != "alice" || info.Set.IsZero() {
		t.Fatalf("CompsShow: %+v, %v", info, err)
	}
	ev, _ := r.History(ctx, HistoryOptions{Action: EventCompsSet})
	if len(ev) != 1 || ev[0].Repo != "main" || ev[0].Who != "alice" || ev[0].Details["sha256"] != info.SHA256 || ev[0].Details["groups"] != "app-stack" || ev[0].Caller == nil {
		t.Errorf("comps.set events: %+v", ev)
	}
	// The same bytes again: no change, no event.
	n := eventCount(t, r)
	if res, err := r.CompsSet(ctx, CompsSetRequest{XML: []byte(testCompsXML)}); err != nil || res.Action != CompsActionUnchanged {
		t.Errorf("CompsSet of the same file: %+v, %v", res, err)
	}
	if eventCount(t, r) != n {
		t.Error("setting the same comps file recorded events")
	}
	// A release that appears later gets the records with its first
	// repodata, and the tree matches the store.
	if _, err := r.Add(ctx, []string{writeSpec(t, in, spec("app-agent", "1", "1.el8", "x86_64"))}, AddOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"main/staging/el/8/x86_64", "main/prod/el/8/x86_64", "main/prod/el/8/aarch64"} {
		checkGroups(t, r, d, []byte(testCompsXML))
	}
	if rep, err := r.Fsck(ctx, FsckOptions{}); err != nil || rep.Err() != nil {
		t.Fatalf("fsck after comps set: %+v, %v", rep, err)
	}

	// A crash after the change is recorded: the next Open publishes it.
	second := strings.Replace(testCompsXML, "App stack", "App stack 2", 1)
	errCrash := errors.New("simulated crash")
	failpoint = func(s string) error {
		if s == "comps.recorded" {
			return errCrash
		}
		return nil
	}
	_, err = r.CompsSet(ctx, CompsSetRequest{XML: []byte(second)})
	failpoint = nil
	if !errors.Is(err, errCrash) {
		t.Fatalf("CompsSet with a crash: %v", err)
	}
	checkGroups(t, r, x86, []byte(testCompsXML)) // not yet published
	r.Close()
	r = openPL(t, root)
	dirs, _ = r.republishTargets([]string{"main"})
	for _, d := range dirs {
		checkGroups(t, r, d, []byte(second))
	}
	if rep, err := r.Fsck(ctx, FsckOptions{}); err != nil || rep.Err() != nil {
		t.Fatalf("fsck after the resumed comps set: %+v, %v", rep, err)
	}

	// Remove: no group records anywhere, the event, and nothing to show.
	res, err = r.CompsRemove(ctx, CompsRemoveRequest{DryRun: true})
	if err != nil || res.Action != CompsActionRemoved || !res.DryRun {
		t.Fatalf("CompsRemove --dry-run: %+v, %v", res, err)
	}
	checkGroups(t, r, x86, []byte(second))
	res, err = r.CompsRemove(ctx, CompsRemoveRequest{Who: "bob"})
	if err != nil || res.Action != CompsActionRemoved || !slices.Equal(res.Dirs, dirs) || res.Comps.SHA256 == "" {
		t.Fatalf("CompsRemove: %+v, %v", res, err)
	}
	for _, d := range dirs {
		checkGroups(t, r, d, nil)
	}
	if _, err := r.CompsShow(ctx, CompsShowRequest{}); !errors.Is(err, ErrNoComps) {
		t.Errorf("CompsShow after remove: %v", err)
	}
	ev, _ = r.History(ctx, HistoryOptions{Action: EventCompsRemove})
	if len(ev) != 1 || ev[0].Who != "bob" || ev[0].Repo != "main" {
		t.Errorf("comps.remove events: %+v", ev)
	}
	if rep, err := r.Fsck(ctx, FsckOptions{}); err != nil || rep.Err() != nil {
		t.Fatalf("fsck after comps remove: %+v, %v", rep, err)
	}
}
