package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/repoctl/repoctl/internal/testrpm"
	"github.com/repoctl/repoctl/metadata"
	"github.com/repoctl/repoctl/sign"
)

// fsckCLI runs `repoctl -o json fsck ARGS` and decodes the report.
func fsckCLI(t *testing.T, root string, args ...string) (*FsckReport, string, int) {
	t.Helper()
	out, stderr, code := runCLI(t, root, append([]string{"-o", "json", "fsck"}, args...)...)
	var rep FsckReport
	if code != 0 {
		// A failed command's output is {"error": …, "result": report}.
		var e struct {
			Result json.RawMessage `json:"result"`
		}
		if json.Unmarshal([]byte(out), &e) == nil {
			out = string(e.Result)
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("fsck %v: exit %d, output is not a report: %v\n%s\n%s", args, code, err, out, stderr)
	}
	return &rep, stderr, code
}

// findingsOf indexes a report by kind and file (or directory).
func findingsOf(rep *FsckReport) map[string]FsckFinding {
	m := map[string]FsckFinding{}
	for _, f := range rep.Findings {
		where := f.File
		if where == "" {
			where = f.Dir
		}
		m[f.Kind+" "+where] = f
	}
	return m
}

// replaceFile gives name new content under a new inode, the way an editor
// or a careless cp does, so other hard links keep the old bytes.
func replaceFile(t *testing.T, name string, b []byte) {
	t.Helper()
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}

// TestFsckFindsAndRepairsFaults plants every fault fsck knows in a real
// root: a deleted package, a package replaced with other bytes, one
// modified in place (no intact copy left), a repomd.xml.asc copied from
// another directory, one signed by a foreign key, a stray package dropped
// into a repository directory, another published into repodata by
// createrepo_c --update, and a hand-edited primary. fsck finds each with
// its kind (exit 3); fsck --repair through the daemon fixes what can be
// fixed; then only the unrepairable package is left, and once it is
// removed fsck is clean and dnf installs from the repaired repositories
// with gpgcheck=1 and repo_gpgcheck=1.
func TestFsckFindsAndRepairsFaults(t *testing.T) {
	needTools(t, "dnf", "rpm", "createrepo_c")
	ctx := context.Background()
	root, _ := newTestRoot(t, "[signing]\nalgo = \"ed25519\"\n")
	in := t.TempDir()
	files := []string{
		writeSpec(t, in, helloSpec("hello")),                          // x86_64, staging
		writeSpec(t, in, spec("hello-doc", "1.0", "1.el9", "noarch")), // staging x86_64 + aarch64
		writeSpec(t, in, spec("tool", "1.0", "1.el9", "x86_64")),      // promoted to prod
		writeSpec(t, in, spec("hello", "1.0", "1.el9", "src")),        // staging SRPMS
		writeSpec(t, in, spec("broken", "1.0", "1.el8", "x86_64")),    // staging el/8, its only copy
	}
	if out, stderr, code := runCLI(t, root, append([]string{"add"}, files...)...); code != 0 {
		t.Fatalf("add: exit %d\n%s\n%s", code, out, stderr)
	}
	if out, stderr, code := runCLI(t, root, "promote", "tool-1.0-1.el9.x86_64", "--to", "prod", "--yes"); code != 0 {
		t.Fatalf("promote: exit %d\n%s\n%s", code, out, stderr)
	}

	// A clean tree: exit 0, no findings, every package file checked.
	rep, stderr, code := fsckCLI(t, root)
	if code != 0 || len(rep.Findings) != 0 || rep.Packages != 7 || !slices.Contains(rep.Dirs, "main/prod/el/9/x86_64") {
		t.Fatalf("fsck of a clean tree: exit %d, %d package files, dirs %v, findings %+v\n%s", code, rep.Packages, rep.Dirs, rep.Findings, stderr)
	}
	if out, _, code := runCLI(t, root, "fsck"); code != 0 || !strings.HasPrefix(out, "clean: ") {
		t.Fatalf("fsck text of a clean tree: exit %d\n%s", code, out)
	}

	tree := filepath.Join(root, "repo")
	st := filepath.Join(tree, "main/staging/el/9")
	prod := filepath.Join(tree, "main/prod/el/9")
	// A deleted package (its aarch64 copy; the x86_64 link stays).
	if err := os.Remove(filepath.Join(st, "aarch64/hello-doc-1.0-1.el9.noarch.rpm")); err != nil {
		t.Fatal(err)
	}
	// A package replaced with other bytes in prod; staging keeps the signed file.
	toolProd := filepath.Join(prod, "x86_64/tool-1.0-1.el9.x86_64.rpm")
	good, err := os.ReadFile(toolProd)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(good)
	bad[len(bad)-1] ^= 0xff
	replaceFile(t, toolProd, bad)
	// A package modified in place: no copy keeps the recorded bytes.
	brokenFile := filepath.Join(tree, "main/staging/el/8/x86_64/broken-1.0-1.el8.x86_64.rpm")
	f, err := os.OpenFile(brokenFile, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("trailing junk")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// A stale signature: aarch64's repomd.xml.asc copied from x86_64.
	asc, err := os.ReadFile(filepath.Join(st, "x86_64/repodata/repomd.xml.asc"))
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, filepath.Join(st, "aarch64/repodata/repomd.xml.asc"), asc)
	// A signature by a key that is not ours.
	foreign, err := sign.GenerateKey("ed25519", "Someone Else", "else@example.test")
	if err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(prod, "x86_64/repodata/repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	fasc, err := foreign.DetachSignArmored(ctx, md)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, filepath.Join(prod, "x86_64/repodata/repomd.xml.asc"), fasc)
	// A stray package dropped into a repository directory.
	strayDropped, err := testrpm.Write(filepath.Join(prod, "aarch64"), spec("dropped", "1", "1.el9", "aarch64"))
	if err != nil {
		t.Fatal(err)
	}
	// A stray package published into repodata by createrepo_c --update, as
	// in the issue (repoctl createrepo now refuses this directory).
	strayListed, err := testrpm.Write(filepath.Join(st, "x86_64"), spec("stray", "2", "1.el9", "x86_64"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("createrepo_c", "--update", filepath.Join(st, "x86_64")).CombinedOutput(); err != nil {
		t.Fatalf("createrepo_c --update: %v\n%s", err, out)
	}
	if _, ok := mustPkgs(t, filepath.Join(st, "x86_64"))["stray-2-1.el9.x86_64"]; !ok {
		t.Fatal("createrepo_c did not list the stray")
	}
	// A hand-edited primary: a summary changed, recompressed under its
	// old name.
	srpms := filepath.Join(st, "SRPMS")
	state := repodataStateOf(t, srpms)
	prim := filepath.Join(srpms, hrefOf(t, state, "primary"))
	zb, err := os.ReadFile(prim)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := zr.DecodeAll(zb, nil)
	if err != nil {
		t.Fatal(err)
	}
	edited := bytes.Replace(plain, []byte("<summary>test hello</summary>"), []byte("<summary>an edit</summary>"), 1)
	if bytes.Equal(edited, plain) {
		t.Fatalf("primary has no summary to edit:\n%s", plain)
	}
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, prim, zw.EncodeAll(edited, nil))

	rel := func(p string) string {
		r, err := filepath.Rel(tree, p)
		if err != nil {
			t.Fatal(err)
		}
		return filepath.ToSlash(r)
	}
	want := map[string]bool{ // kind + " " + file or dir → repairable
		FsckMissing + " main/staging/el/9/aarch64/hello-doc-1.0-1.el9.noarch.rpm":  true,
		FsckModified + " main/prod/el/9/x86_64/tool-1.0-1.el9.x86_64.rpm":          true,
		FsckModified + " main/staging/el/8/x86_64/broken-1.0-1.el8.x86_64.rpm":     false,
		FsckRepomdSignature + " main/staging/el/9/aarch64/repodata/repomd.xml.asc": true,
		FsckRepomdSignature + " main/prod/el/9/x86_64/repodata/repomd.xml.asc":     true,
		FsckStrayFile + " " + rel(strayDropped):                                    true,
		FsckStrayFile + " " + rel(strayListed):                                     true,
		FsckStrayListed + " " + rel(strayListed):                                   true,
		FsckRepomdSignature + " main/staging/el/9/x86_64/repodata/repomd.xml.asc":  true,
		FsckRepodata + " main/staging/el/9/SRPMS":                                  true,
	}
	rep, stderr, code = fsckCLI(t, root)
	got := findingsOf(rep)
	if code != 3 {
		t.Errorf("fsck of the damaged tree: exit %d, want 3\n%s", code, stderr)
	}
	for k, repairable := range want {
		f, ok := got[k]
		switch {
		case !ok:
			t.Errorf("fsck did not find %s", k)
		case f.Repairable != repairable || f.Repair == "" || f.Repaired:
			t.Errorf("%s: repairable %v, repaired %v, repair %q; want repairable %v", k, f.Repairable, f.Repaired, f.Repair, repairable)
		}
	}
	for k, f := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected finding %s: %s", k, f.Message)
		}
	}
	if f := got[FsckRepomdSignature+" main/prod/el/9/x86_64/repodata/repomd.xml.asc"]; !strings.Contains(f.Message, foreign.KeyID()) {
		t.Errorf("foreign signature finding does not name key %s: %s", foreign.KeyID(), f.Message)
	}
	if f := got[FsckModified+" main/staging/el/8/x86_64/broken-1.0-1.el8.x86_64.rpm"]; !strings.Contains(f.Repair, "repoctl remove broken-1.0-1.el8.x86_64") {
		t.Errorf("unrepairable package: repair hint %q", f.Repair)
	}
	// One directory at a time works too, and an unknown one is a usage error.
	one, _, code := fsckCLI(t, root, "main/prod/el/9/aarch64")
	if code != 3 || len(one.Findings) != 1 || one.Findings[0].Kind != FsckStrayFile || len(one.Dirs) != 1 {
		t.Errorf("fsck main/prod/el/9/aarch64: exit %d, dirs %v, findings %+v", code, one.Dirs, one.Findings)
	}
	if _, stderr, code := runCLI(t, root, "fsck", "main/nope"); code != 2 || !strings.Contains(stderr, "main/nope") {
		t.Errorf("fsck of an unknown directory: exit %d, want 2\n%s", code, stderr)
	}
	if _, stderr, code := runCLI(t, root, "fsck", "../outside"); code != 2 {
		t.Errorf("fsck ../outside: exit %d, want 2\n%s", code, stderr)
	}
	// Checking changed nothing.
	if _, err := os.Stat(strayDropped); err != nil {
		t.Errorf("fsck without --repair touched the tree: %v", err)
	}

	// Repair through the daemon's socket.
	d := startDaemon(t, root)
	rep, stderr, code = fsckCLI(t, root, "--repair")
	if code != 3 {
		t.Errorf("fsck --repair with an unrepairable package left: exit %d, want 3\n%s", code, stderr)
	}
	got = findingsOf(rep)
	for k, repairable := range want {
		if f := got[k]; f.Repaired != repairable {
			t.Errorf("%s after --repair: repaired %v (%q), want %v", k, f.Repaired, f.Repair, repairable)
		}
	}
	if b, err := os.ReadFile(toolProd); err != nil || !bytes.Equal(b, good) {
		t.Errorf("prod's tool was not restored to the signed bytes: %v", err)
	}
	for _, p := range []string{strayDropped, strayListed} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("stray %s still in the tree: %v", p, err)
		}
		kept := filepath.Join(root, "rejected", filepath.Base(p))
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("stray %s not kept in rejected/: %v", p, err)
		}
		if b, err := os.ReadFile(kept + ".reason"); err != nil || !strings.HasPrefix(string(b), "stray: ") {
			t.Errorf("%s.reason: %v %q", kept, err, b)
		}
	}
	if pk := keys(mustPkgs(t, filepath.Join(st, "x86_64"))); strings.Join(pk, " ") != "hello-1.0-1.el9.x86_64 hello-doc-1.0-1.el9.noarch tool-1.0-1.el9.x86_64" {
		t.Errorf("staging x86_64 lists %v after the repair", pk)
	}
	ev, _, _ := runCLI(t, root, "-o", "json", "history", "--action", EventFsckRepair)
	var events []Event
	if err := json.Unmarshal([]byte(ev), &events); err != nil || len(events) < 8 {
		t.Fatalf("fsck.repair events: %v (%d)\n%s", err, len(events), ev)
	}
	for _, e := range events {
		if e.Caller == nil || e.Caller.UID != uint32(os.Getuid()) || e.Caller.PID == int32(d.cmd.Process.Pid) {
			t.Errorf("event %d (%s %s) does not name the CLI caller: %+v", e.Seq, e.Action, e.Path, e.Caller)
		}
	}
	if _, stderr, code := runCLI(t, root, "history", "--verify"); code != 0 {
		t.Errorf("history --verify after the repair: exit %d\n%s", code, stderr)
	}

	// The unrepairable one is still found; once removed, the tree is clean.
	rep, _, code = fsckCLI(t, root)
	if code != 3 || len(rep.Findings) != 1 || rep.Findings[0].Kind != FsckModified {
		t.Fatalf("fsck after the repair: exit %d, findings %+v; want only the package with no intact copy", code, rep.Findings)
	}
	if out, stderr, code := runCLI(t, root, "remove", "--yes", "broken-1.0-1.el8.x86_64"); code != 0 {
		t.Fatalf("remove: exit %d\n%s\n%s", code, out, stderr)
	}
	if rep, stderr, code = fsckCLI(t, root); code != 0 || len(rep.Findings) != 0 {
		t.Fatalf("fsck after removing the broken package: exit %d, findings %+v\n%s", code, rep.Findings, stderr)
	}
	d.stop()

	// dnf trusts the repaired repositories again.
	keyURL := "file://" + filepath.Join(tree, PublicKeyFile)
	repofile := ""
	for _, dir := range []string{"main/staging/el/9/x86_64", "main/staging/el/9/aarch64", "main/prod/el/9/x86_64"} {
		repofile += "[" + strings.ReplaceAll(dir, "/", "-") + "]\nname=" + dir + "\nbaseurl=file://" + filepath.Join(tree, dir) +
			"/\ngpgcheck=1\nrepo_gpgcheck=1\ngpgkey=" + keyURL + "\nskip_if_unavailable=False\n\n"
	}
	dnfInstall(t, repofile, "tool")
	dnfInstall(t, repofile, "hello-doc")
}

func repodataStateOf(t *testing.T, dir string) *metadata.RepodataState {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	st, err := metadata.ReadRepodataState(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func hrefOf(t *testing.T, st *metadata.RepodataState, typ string) string {
	t.Helper()
	for _, r := range st.Records {
		if r.Type == typ {
			return r.Href
		}
	}
	t.Fatalf("repomd.xml has no %s", typ)
	return ""
}

// Republish rebuilds repodata createrepo_c wrote over, with a fresh
// signature, and a dry run changes nothing.
func TestRepublishCLI(t *testing.T) {
	needTools(t, "createrepo_c")
	root, _ := newTestRoot(t, "[signing]\nalgo = \"ed25519\"\n")
	in := t.TempDir()
	if out, stderr, code := runCLI(t, root, "add", writeSpec(t, in, spec("pkg", "1", "1.el9", "x86_64"))); code != 0 {
		t.Fatalf("add: exit %d\n%s\n%s", code, out, stderr)
	}
	dir := filepath.Join(root, "repo/main/staging/el/9/x86_64")
	if out, err := exec.Command("createrepo_c", "--update", dir).CombinedOutput(); err != nil {
		t.Fatalf("createrepo_c: %v\n%s", err, out)
	}
	before, err := os.ReadFile(filepath.Join(dir, "repodata/repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runCLI(t, root, "-o", "json", "republish", "--dry-run", "main/staging")
	var res RepublishResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || !res.DryRun {
		t.Fatalf("republish --dry-run: exit %d\n%s\n%s", code, out, stderr)
	}
	changed := map[string]bool{}
	for _, d := range res.Dirs {
		changed[d.Dir] = d.Changed
	}
	if !changed["main/staging/el/9/x86_64"] || changed["main/staging/el/9/aarch64"] || len(res.Dirs) < 3 {
		t.Errorf("republish --dry-run main/staging: %+v", res.Dirs)
	}
	after, err := os.ReadFile(filepath.Join(dir, "repodata/repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, before) {
		t.Error("republish --dry-run rewrote repomd.xml")
	}
	if _, _, code := fsckCLI(t, root, "main/staging/el/9/x86_64"); code != 3 {
		t.Errorf("fsck before republish: exit %d, want 3", code)
	}
	out, stderr, code = runCLI(t, root, "republish", "main/staging/el/9/x86_64")
	if code != 0 || !strings.Contains(out, "republished main/staging/el/9/x86_64: 1 packages") {
		t.Fatalf("republish: exit %d\n%s\n%s", code, out, stderr)
	}
	if rep, stderr, code := fsckCLI(t, root); code != 0 {
		t.Errorf("fsck after republish: exit %d, findings %+v\n%s", code, rep.Findings, stderr)
	}
	// An unchanged repository still gets a new revision and signature.
	md1, err := os.ReadFile(filepath.Join(dir, "repodata/repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runCLI(t, root, "republish"); code != 0 {
		t.Fatalf("republish all: exit %d\n%s", code, stderr)
	}
	md2, err := os.ReadFile(filepath.Join(dir, "repodata/repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	m1, err1 := metadata.ParseRepomd(md1)
	m2, err2 := metadata.ParseRepomd(md2)
	if err1 != nil || err2 != nil || m1.Revision == m2.Revision {
		t.Errorf("republish of an unchanged directory kept revision %v/%v (%v %v)", m1, m2, err1, err2)
	}
	ev, _, _ := runCLI(t, root, "-o", "json", "history", "--action", EventRepublish)
	var events []Event
	if err := json.Unmarshal([]byte(ev), &events); err != nil || len(events) < 2 || events[0].Path != "main/staging/el/9/x86_64" || events[0].Details["changed"] != "true" {
		t.Errorf("republish events: %v\n%s", err, ev)
	}
	if _, stderr, code := runCLI(t, root, "republish", "main/nope"); code != 2 {
		t.Errorf("republish of an unknown directory: exit %d, want 2\n%s", code, stderr)
	}
}

// The library calls a key rotation makes: Fsck, and fsckHeld under the
// change lock it already holds; both see a deleted package, and Fsck's
// repair restores it from its other placement.
func TestFsckLibrary(t *testing.T) {
	ctx := context.Background()
	r := openPL(t, filepath.Join(t.TempDir(), "root"))
	in := t.TempDir()
	if _, err := r.Add(ctx, []string{writeSpec(t, in, spec("lib", "1", "1.el9", "noarch"))}, AddOptions{}); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Fsck(ctx, FsckOptions{})
	if err != nil || rep.Err() != nil || rep.Packages != 2 {
		t.Fatalf("Fsck of a clean root: %+v, %v", rep, err)
	}
	gone := "main/staging/el/9/aarch64/lib-1-1.el9.noarch.rpm"
	if err := os.Remove(filepath.Join(r.Config().Paths.Repo, gone)); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	held, err := r.fsckHeld(ctx)
	r.mu.Unlock()
	if err != nil || len(held.Findings) != 1 || held.Findings[0].File != gone || !held.Findings[0].Repairable || !errors.Is(held.Err(), ErrFsck) {
		t.Fatalf("fsckHeld: %+v, %v", held, err)
	}
	rep, err = r.Fsck(ctx, FsckOptions{Dirs: []string{"main/staging/el/9/aarch64"}, Repair: true, Who: "tester"})
	if err != nil || len(rep.Findings) != 1 || !rep.Findings[0].Repaired || rep.Err() != nil || len(rep.Dirs) != 1 {
		t.Fatalf("Fsck --repair of one directory: %+v, %v", rep, err)
	}
	if rep, err := r.Fsck(ctx, FsckOptions{}); err != nil || rep.Err() != nil {
		t.Fatalf("Fsck after the repair: %+v, %v", rep, err)
	}
	if _, err := r.Fsck(ctx, FsckOptions{Dirs: []string{"main/../.."}}); !errors.Is(err, ErrBadOption) {
		t.Errorf("Fsck of main/../..: %v, want ErrBadOption", err)
	}

	// A repository directory replaced by a symbolic link out of the tree
	// is a finding, never followed: neither checking nor repairing reads
	// or writes what it points at.
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(outside, "repodata"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "repodata", "repomd.xml"), []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "lib-1-1.el9.noarch.rpm"), []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	x86 := filepath.Join(r.Config().Paths.Repo, "main/staging/el/9/x86_64")
	if err := os.RemoveAll(x86); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, x86); err != nil {
		t.Fatal(err)
	}
	rep, err = r.Fsck(ctx, FsckOptions{Repair: true})
	if err != nil {
		t.Fatalf("Fsck --repair with a symlinked directory: %v", err)
	}
	kinds := map[string]bool{}
	for _, f := range rep.Findings {
		kinds[f.Kind] = true
		if f.Repaired {
			t.Errorf("repaired through a symbolic link: %+v", f)
		}
	}
	if !kinds[FsckMissing] || !kinds[FsckRepodata] || !errors.Is(rep.Err(), ErrFsck) {
		t.Errorf("findings with a symlinked directory: %+v", rep.Findings)
	}
	if got := treeFiles(t, outside); len(got) != 2 || got[filepath.Join(outside, "repodata", "repomd.xml")] != shaHex([]byte("outside")) {
		t.Errorf("the directory outside the tree changed: %v", got)
	}
}
