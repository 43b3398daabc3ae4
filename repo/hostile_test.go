package repo

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kv "github.com/repoctl/repoctl/repo/store"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// hostileCase is a package whose header an attacker wrote: rpmbuild would
// refuse to build it, rpmpack does not check.
type hostileCase struct {
	what string
	spec testrpm.Spec
	want string // in the rejection reason, after "invalid-header: "
}

// hostileCases aims every traversal at outside, a directory beside the
// root that nothing may ever write to, and at the prod package rtok.
func hostileCases(outside string) []hostileCase {
	up := strings.Repeat("../", 8)
	abs := strings.TrimPrefix(outside, "/")
	mk := func(what, n, v, r, a, want string) hostileCase {
		return hostileCase{what, spec(n, v, r, a), want}
	}
	return []hostileCase{
		mk("name ../ to outside", up+abs+"/ESCAPED", "1", "1.el9", "noarch", `name contains "/"`),
		mk("name ../ to prod", "../../../../prod/el/9/x86_64/rtok", "1.0", "1.el9", "noarch", `name contains "/"`),
		mk("absolute name", "/"+abs+"/ABS", "1", "1.el9", "noarch", `name contains "/"`),
		mk("name ..", "..", "1", "1.el9", "noarch", `name contains ".."`),
		mk("name newline", "inj\nunroutable: fake reason\nfile: x", "1", "1.el9", "noarch", "name contains whitespace"),
		mk("name ESC and BEL", "esc\x1b[2J\a", "1", "1.el9", "noarch", "name contains control character"),
		mk("name space", "two words", "1", "1.el9", "noarch", "name contains whitespace"),
		mk("version ../", "vtrav", "1/"+strings.Repeat("../", 7)+"ESCAPED", "1.el9", "noarch", `version contains "/"`),
		mk("version dash", "vdash", "1-2", "1.el9", "noarch", `version contains '-'`),
		mk("version ..", "vdots", "1..2", "1.el9", "noarch", `version contains ".."`),
		mk("release ../", "rtrav", "1", "1.el9/"+strings.Repeat("../", 7)+"ESCAPED", "noarch", `release contains "/"`),
		mk("release newline", "rnl", "1", "1.el9\nfile: forged", "noarch", "release contains whitespace"),
		mk("release control", "rctl", "1", "1.el9\x01x", "noarch", "release contains control character"),
		mk("arch ../", "atrav", "1", "1.el9", strings.Repeat("../", 7)+"ESC", `arch contains '.'`),
		mk("arch slash", "aslash", "1", "1.el9", "x86_64/../../../prod", `arch contains "/"`),
		mk("arch dash", "adash", "1", "1.el9", "x86-64", `arch contains '-'`),
	}
}

// hostileSetup makes a root whose prod channel serves rtok-1.0-1.el9 and
// the hostile packages as files hostile-N.rpm beside a good one.
type hostileSetup struct {
	root, outside, in string
	cases             []hostileCase
	files             []string // one per case, then good
	prod              map[string]string
}

func newHostileSetup(t *testing.T) *hostileSetup {
	t.Helper()
	var tok [6]byte
	if _, err := rand.Read(tok[:]); err != nil {
		t.Fatal(err)
	}
	h := &hostileSetup{outside: filepath.Join(os.TempDir(), "repoctl-escape-"+hex.EncodeToString(tok[:]))}
	t.Cleanup(func() {
		if err := os.RemoveAll(h.outside); err != nil {
			t.Error(err)
		}
	})
	h.root, _ = newTestRoot(t, "")
	h.in = t.TempDir()
	ctx := context.Background()
	r, err := Open(ctx, h.root, WithLockWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	good := writeSpec(t, h.in, spec("rtok", "1.0", "1.el9", "noarch"))
	if res, err := r.Add(ctx, []string{good}, AddOptions{}); err != nil || res[0].Action != ActionAdded {
		t.Fatalf("add rtok: %+v %v", res, err)
	}
	if _, err := r.Promote(ctx, PromoteRequest{Package: "rtok-1.0-1.el9.noarch"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	h.prod = treeFiles(t, filepath.Join(h.root, "repo", "main", "prod"))
	if len(h.prod) == 0 {
		t.Fatal("nothing published in prod")
	}
	h.cases = hostileCases(h.outside)
	for i, c := range h.cases {
		b, err := testrpm.Build(c.spec)
		if err != nil {
			t.Fatalf("%s: building: %v", c.what, err)
		}
		p := filepath.Join(h.in, fmt.Sprintf("hostile-%02d.rpm", i))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		h.files = append(h.files, p)
	}
	h.files = append(h.files, writeSpec(t, h.in, spec("fine", "2", "1.el9", "x86_64")))
	return h
}

// treeFiles maps every regular file below dir to its sha256.
func treeFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			out[p] = fileSHA(t, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// check asserts what must hold after any ingest path saw the hostile
// packages: each rejected for its header, the good one added, nothing
// outside ROOT/repo, prod unchanged, no href with "..". kept is how many
// entries rejected/ must hold: one per hostile file for drop-ins, none
// for add (the caller keeps the file and gets the reason).
func (h *hostileSetup) check(t *testing.T, results []AddResult, kept int) {
	t.Helper()
	h.checkTree(t)
	h.checkResults(t, results)
	h.checkRejected(t, kept)
}

// checkTree: nothing outside ROOT/repo, prod unchanged, no href with "..".
func (h *hostileSetup) checkTree(t *testing.T) {
	t.Helper()
	if _, err := os.Lstat(h.outside); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("something was written outside the root: %s exists (%v)", h.outside, err)
	}
	m, err := filepath.Glob(filepath.Join(filepath.Dir(h.root), "ESC*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(m) > 0 {
		t.Errorf("written beside the root: %v", m)
	}
	for p, sum := range h.prod {
		if got, err := os.ReadFile(p); err != nil || shaHex(got) != sum {
			t.Errorf("published prod file %s changed or vanished (%v)", p, err)
		}
	}
	if got := treeFiles(t, filepath.Join(h.root, "repo", "main", "prod")); len(got) != len(h.prod) {
		t.Errorf("prod had %d files, now %d: %v", len(h.prod), len(got), keys(got))
	}
	// Nothing outside the expected top-level entries of ROOT.
	allowed := map[string]bool{"repo": true, "incoming": true, "spool": true, "rejected": true, "keys": true,
		"repoctl.db": true, "repoctl.lock": true, "repoctl.toml": true, "repoctl.sock": true, "rollouts.db": true}
	ents, err := os.ReadDir(h.root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !allowed[e.Name()] {
			t.Errorf("unexpected entry %q in ROOT", e.Name())
		}
	}
	// Every package file in the served tree sits in a repository
	// directory repo/channel/dist/ver/arch, and every href is plain.
	if err := filepath.WalkDir(filepath.Join(h.root, "repo"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(p, ".rpm") {
			return err
		}
		rel, err := filepath.Rel(filepath.Join(h.root, "repo"), p)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(strings.Split(rel, "/")); n != 6 {
			t.Errorf("package file %q is not inside a repository directory", rel)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := filepath.WalkDir(filepath.Join(h.root, "repo"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() != "repodata" {
			return err
		}
		pkgs, err := repodataPackages(filepath.Dir(p))
		if err != nil {
			t.Errorf("repodata of %s: %v", p, err)
			return filepath.SkipDir
		}
		for _, pk := range pkgs {
			if strings.Contains(pk.Location.Href, "..") || strings.Contains(pk.Location.Href, "/") {
				t.Errorf("%s: href %q", p, pk.Location.Href)
			}
		}
		return filepath.SkipDir
	}); err != nil {
		t.Fatal(err)
	}
}

// checkResults: each hostile package rejected for its header, never
// signed or placed; the good one added; every .reason well-formed.
func (h *hostileSetup) checkResults(t *testing.T, results []AddResult) {
	t.Helper()
	if len(results) != len(h.files) {
		t.Fatalf("%d results for %d files: %+v", len(results), len(h.files), results)
	}
	for i, c := range h.cases {
		res := results[i]
		if res.Action != ActionRejected || !strings.HasPrefix(res.Reason, reasonHeader+": "+c.want) {
			t.Errorf("%s: %s %q, want rejected with %q", c.what, res.Action, res.Reason, reasonHeader+": "+c.want)
		}
		if strings.ContainsAny(res.Reason, "\n\x1b\a\x00") {
			t.Errorf("%s: reason %q carries a raw control character", c.what, res.Reason)
		}
		if res.KeyID != "" || len(res.RepoPaths) != 0 {
			t.Errorf("%s: signed or placed: %+v", c.what, res)
		}
	}
	if g := results[len(results)-1]; g.Action != ActionAdded {
		t.Errorf("the good package beside the hostile ones: %+v", g)
	}
}

// checkRejected: rejected/ holds kept files, each with a well-formed
// .reason: the code line first, then the known keys, one per line;
// nothing a name could forge.
func (h *hostileSetup) checkRejected(t *testing.T, kept int) {
	t.Helper()
	rej := filepath.Join(h.root, "rejected")
	ents, err := os.ReadDir(rej)
	if err != nil {
		t.Fatal(err)
	}
	files, reasons := 0, 0
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".reason") {
			files++
			continue
		}
		reasons++
		b, err := os.ReadFile(filepath.Join(rej, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		if !strings.HasPrefix(lines[0], reasonHeader+": ") {
			t.Errorf("%s: first line %q", e.Name(), lines[0])
		}
		for _, l := range lines[1:] {
			k, _, _ := strings.Cut(l, ": ")
			switch k {
			case "file", "repo", "channel", "release", "time", "by":
			default:
				t.Errorf("%s: forged or unknown line %q", e.Name(), l)
			}
		}
	}
	if files != kept || reasons != kept {
		t.Errorf("rejected/ holds %d files and %d .reason files, want %d of each", files, reasons, kept)
	}
}

func shaHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// addCLI runs `repoctl -o json add` on every file and checks the outcome.
func (h *hostileSetup) addCLI(t *testing.T) {
	t.Helper()
	out, stderr, code := runCLI(t, h.root, append([]string{"-o", "json", "add"}, h.files...)...)
	if code != 3 {
		t.Fatalf("exit %d, want 3 (some rejected)\n%s\n%s", code, out, stderr)
	}
	// Exit 3: the results are the error object's "result".
	var wrapped struct {
		Result []AddResult `json:"result"`
	}
	if err := json.Unmarshal([]byte(out), &wrapped); err != nil {
		t.Fatalf("decoding %q: %v", out, err)
	}
	res := wrapped.Result
	h.check(t, res, 0)
	for i, f := range h.files[:len(h.cases)] {
		if res[i].Rejected != "" {
			t.Errorf("%s: kept as %q, want nothing kept for add", f, res[i].Rejected)
		}
		if _, err := os.Stat(f); err != nil {
			t.Errorf("the caller's file: %v", err)
		}
	}
}

// TestHostileHeadersAdd drives `repoctl add` without a daemon.
func TestHostileHeadersAdd(t *testing.T) {
	newHostileSetup(t).addCLI(t)
}

// TestHostileHeadersSocket drives `repoctl add` through the daemon's socket.
func TestHostileHeadersSocket(t *testing.T) {
	h := newHostileSetup(t)
	d := startDaemon(t, h.root)
	h.addCLI(t)
	d.stop()
}

// TestHostileHeadersDropIn drops them into incoming/ of a running daemon.
func TestHostileHeadersDropIn(t *testing.T) {
	h := newHostileSetup(t)
	d := startDaemon(t, h.root)
	inc := filepath.Join(h.root, "incoming")
	for _, f := range h.files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dropFile(t, inc, filepath.Base(f), b)
	}
	waitFor(t, 2*time.Minute, "every drop-in taken", func() (bool, string) {
		n := len(listDir(t, inc))
		return n == 0, fmt.Sprintf("%d left in incoming", n)
	})
	d.stop()
	// The daemon's results are in its event log: one reject event per
	// hostile file, with the reason, and the good package added.
	r, err := Open(context.Background(), h.root, WithLockWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	evs, err := r.History(context.Background(), HistoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res := make([]AddResult, len(h.files))
	for i, f := range h.files {
		res[i] = AddResult{Path: f, Action: "missing"}
	}
	for _, e := range evs {
		for i, f := range h.files {
			if filepath.Base(e.Path) != filepath.Base(f) {
				continue
			}
			switch e.Action {
			case EventReject:
				res[i].Action, res[i].Reason = ActionRejected, e.Details["reason"]
			case EventAdd:
				res[i].Action = ActionAdded
			}
		}
	}
	h.check(t, res, len(h.cases))
}

// TestHostileNEVRAArguments: remove, promote, show, list and history refuse a
// typed name that no valid package has, with exit 2, and change nothing.
func TestHostileNEVRAArguments(t *testing.T) {
	h := newHostileSetup(t)
	bad := []string{
		"../../../../prod/el/9/x86_64/rtok-1.0-1.el9.noarch",
		"/etc/passwd",
		"rtok-1.0-1.el9.noarch/../../x",
		"rtok\n-1.0-1.el9.noarch",
		"rtok-1.0-1.el9.noarch\x1b[2J",
		"..",
		"rtok 1.0",
		"",
	}
	for _, arg := range bad {
		for _, args := range [][]string{
			{"remove", arg},
			{"remove", "--channel", "prod", arg},
			{"promote", arg, "--to", "prod", "--yes"},
			{"history", "--nevra", arg},
			{"show", arg},
			{"list", "--name", arg},
			{"list", arg},
		} {
			if arg == "" && args[0] != "remove" && args[0] != "promote" && args[0] != "show" {
				continue // an empty filter means "all"
			}
			out, stderr, code := runCLI(t, h.root, args...)
			if code != 2 {
				t.Errorf("repoctl %q: exit %d, want 2\n%s%s", args, code, out, stderr)
			}
			if strings.ContainsAny(stderr, "\x1b") {
				t.Errorf("repoctl %q: raw ESC in the error %q", args, stderr)
			}
		}
	}
	h.checkTree(t)
}

// TestConfinedOldRecord is the second wall: a record that an older
// repoctl stored before header checks existed, whose placement climbs
// from staging into prod, is refused by remove and promote; the prod file
// it aims at stays.
func TestConfinedOldRecord(t *testing.T) {
	h := newHostileSetup(t)
	ctx := context.Background()
	r, err := Open(ctx, h.root, WithLockWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var prodFile string
	for p := range h.prod {
		if strings.HasSuffix(p, ".rpm") {
			prodFile = p
		}
	}
	name := "old"
	dir := "main/staging/el/9/x86_64"
	evil := dir + "/../../../../prod/el/9/x86_64/rtok-1.0-1.el9.noarch.rpm"
	rec := &PackageRecord{Repo: "main", NEVRA: "old-1-1.el9.noarch", Name: name, Version: "1", Release: "1.el9", Arch: "noarch",
		FileName:   "../../../../prod/el/9/x86_64/rtok-1.0-1.el9.noarch.rpm",
		Placements: []Placement{{Channel: "staging", Release: "el/9", Arch: "x86_64", Dir: dir, File: evil}}}
	if err := r.st.db.Update(func(tx kv.Tx) error { return putPackage(tx, rec) }); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Remove(ctx, "old-1-1.el9.noarch", RemoveOptions{}); !errors.Is(err, ErrEscape) {
		t.Errorf("Remove of a record that climbs into prod: %v, want ErrEscape", err)
	}
	if _, err := r.Promote(ctx, PromoteRequest{Package: "old-1-1.el9.noarch"}); !errors.Is(err, ErrEscape) {
		t.Errorf("Promote of a record that climbs into prod: %v, want ErrEscape", err)
	}
	if _, err := os.Stat(prodFile); err != nil {
		t.Errorf("prod file %s: %v", prodFile, err)
	}
	// Show reports the record and refuses the placement, without looking
	// at prod's repodata for it.
	sh, err := r.Show(ctx, "old-1-1.el9.noarch", ShowOptions{})
	if err != nil || len(sh.Published) != 1 || sh.Published[0].Listed || sh.Published[0].URL != "" ||
		!strings.Contains(sh.Published[0].Problem, ErrEscape.Error()) {
		t.Errorf("Show of a record that climbs into prod: %+v, %v", sh, err)
	}
	// The tree itself refuses to leave ROOT/repo, whatever a placement says.
	for _, f := range []string{"../repoctl.db", "main/../../keys/signing.asc", "/etc/passwd"} {
		if err := r.tree.remove(f); err == nil {
			t.Errorf("tree.remove(%q) succeeded", f)
		}
	}
	if _, err := os.Stat(filepath.Join(h.root, "repoctl.db")); err != nil {
		t.Error(err)
	}
}
