package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// corpusDir is createrepo_c's test packages, beside the repository (CI
// clones shared/ next to it).
func corpusDir(t testing.TB) string {
	t.Helper()
	d := filepath.Join("..", "..", "shared", "corpus", "createrepo_c-testdata")
	if _, err := os.Stat(d); err != nil {
		t.Fatalf("corpus %s is missing: %v", d, err)
	}
	return d
}

// plConfig is the test config: fast ed25519 key, and packages without a
// dist tag (createrepo_c's corpus) routed to el/9.
const plConfig = `
[signing]
algo = "ed25519"
[routing]
default = "el/9"
`

// openPL opens a fresh root and, on cleanup, closes it and runs bbolt's
// consistency check on the store.
func openPL(t testing.TB, root string, opts ...Option) *Repo {
	t.Helper()
	if _, err := os.Stat(filepath.Join(root, ConfigFileName)); err != nil {
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(plConfig), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, err := Open(context.Background(), root, append([]Option{WithLockWait(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatalf("Open(%q): %v", root, err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
		checkDB(t, filepath.Join(root, "repoctl.db"))
	})
	return r
}

func checkDB(t testing.TB, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, ReadOnly: true})
	if err != nil {
		t.Errorf("reopening %s for check: %v", path, err)
		return
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	if err != nil {
		t.Errorf("bbolt check of %s: %v", path, err)
	}
}

func writeSpec(t testing.TB, dir string, s testrpm.Spec) string {
	t.Helper()
	p, err := testrpm.Write(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func spec(name, version, release, arch string) testrpm.Spec {
	return testrpm.Spec{Name: name, Version: version, Release: release, Arch: arch,
		Summary: "test " + name, License: "MIT",
		Files: []testrpm.File{{Name: "/usr/share/" + name + "/" + version + "-" + release, Body: []byte(name + " " + version + "\n")}}}
}

func fileSHA(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func mustPkgs(t testing.TB, dir string) map[string]repoPackage {
	t.Helper()
	m, err := repodataPackages(dir)
	if err != nil {
		t.Fatalf("repodata of %s: %v", dir, err)
	}
	return m
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestAddSignPublishInstall runs the whole pipeline on real packages and
// checks it with the real tools: rpmkeys accepts every signature, the
// repodata lists every package, and dnf installs one with gpgcheck=1 and
// repo_gpgcheck=1 from a file:// baseurl.
func TestAddSignPublishInstall(t *testing.T) {
	needTools(t, "rpmkeys", "dnf")
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	in := t.TempDir()
	hello := writeSpec(t, in, spec("hello", "1.0", "1.el9", "x86_64"))
	doc := writeSpec(t, in, spec("hello-doc", "1.0", "1.el9", "noarch"))
	src := writeSpec(t, in, spec("hello", "1.0", "1.el9", "src"))
	fc := writeSpec(t, in, spec("tool", "2", "3.fc40", "aarch64"))
	paths := []string{hello, doc, src, fc}
	for _, n := range []string{"Archer-3.4.5-6.x86_64.rpm", "balicek-iso88592-1.1.1-1.x86_64.rpm", "fake_bash-1.1.1-1.x86_64.rpm"} {
		paths = append(paths, filepath.Join(corpusDir(t), n))
	}
	before := map[string]string{}
	for _, p := range paths {
		before[p] = fileSHA(t, p)
	}
	res, err := r.Add(ctx, paths, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range res {
		if x.Action != ActionAdded || x.KeyID != r.Key().KeyID() || len(x.RepoPaths) == 0 {
			t.Errorf("result %d: %+v", i, x)
		}
		if got := fileSHA(t, paths[i]); got != before[paths[i]] {
			t.Errorf("add modified the caller's file %s", paths[i])
		}
	}
	if got := res[1].RepoPaths; len(got) != 2 || got[0] != "main/staging/el/9/x86_64/hello-doc-1.0-1.el9.noarch.rpm" || got[1] != "main/staging/el/9/aarch64/hello-doc-1.0-1.el9.noarch.rpm" {
		t.Errorf("noarch placed at %v", got)
	}
	if got := res[2].RepoPaths; len(got) != 1 || got[0] != "main/staging/el/9/SRPMS/hello-1.0-1.el9.src.rpm" {
		t.Errorf("source placed at %v", got)
	}
	if got := res[3].RepoPaths; len(got) != 1 || got[0] != "main/staging/fc/40/aarch64/tool-2-3.fc40.aarch64.rpm" {
		t.Errorf("fc40 placed at %v", got)
	}

	// rpm's own verdict on every placed file.
	pub, err := os.ReadFile(filepath.Join(root, "repo", PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	dbDir := t.TempDir()
	kf := filepath.Join(t.TempDir(), "key.asc")
	if err := os.WriteFile(kf, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("rpmkeys", "--dbpath", dbDir, "--import", kf).CombinedOutput(); err != nil {
		t.Fatalf("rpmkeys --import: %v\n%s", err, out)
	}
	for _, x := range res {
		for _, rp := range x.RepoPaths {
			out, err := exec.Command("rpmkeys", "--dbpath", dbDir, "--checksig", filepath.Join(root, "repo", rp)).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "digests signatures OK") {
				t.Errorf("rpmkeys --checksig %s: %v\n%s", rp, err, out)
			}
		}
	}

	x86 := mustPkgs(t, filepath.Join(root, "repo/main/staging/el/9/x86_64"))
	want := []string{"Archer-3.4.5-6.x86_64", "balicek-iso88592-1.1.1-1.x86_64", "fake_bash-1.1.1-1.x86_64", "hello-1.0-1.el9.x86_64", "hello-doc-1.0-1.el9.noarch"}
	if got := keys(x86); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("el/9/x86_64 repodata lists %v, want %v", got, want)
	}
	for nvra, p := range x86 {
		if fi, err := os.Stat(filepath.Join(root, "repo/main/staging/el/9/x86_64", p.Location.Href)); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: served file mode %v %v, want 0644", nvra, fi.Mode(), err)
		}
		if p.Location.Href == "" || fileSHA(t, filepath.Join(root, "repo/main/staging/el/9/x86_64", p.Location.Href)) != p.Checksum {
			t.Errorf("%s: repodata checksum does not match the served file", nvra)
		}
	}
	if got := keys(mustPkgs(t, filepath.Join(root, "repo/main/staging/el/9/aarch64"))); len(got) != 1 || got[0] != "hello-doc-1.0-1.el9.noarch" {
		t.Errorf("el/9/aarch64 lists %v", got)
	}
	if _, err := os.Stat(filepath.Join(root, "repo/main/staging/el/9/x86_64/repodata/repomd.xml.asc")); err != nil {
		t.Errorf("no repomd.xml.asc: %v", err)
	}

	// dnf with both checks on, from the printed .repo (file:// baseurl).
	f, err := r.RepoFile(ctx, RepoFileOptions{Channel: "staging", Release: "el/9", BaseURL: "file://" + filepath.Join(root, "repo") + "/"})
	if err != nil {
		t.Fatal(err)
	}
	rf := f.Render()
	for _, want := range []string{"gpgcheck=1", "repo_gpgcheck=1", "gpgkey=file://", "/main/staging/el/9/$basearch/"} {
		if !strings.Contains(rf, want) {
			t.Errorf(".repo lacks %q:\n%s", want, rf)
		}
	}
	dnfInstall(t, rf, "hello")
}

// dnfInstall installs pkg into a fresh stock EL 9 host using only
// repofile.
func dnfInstall(t testing.TB, repofile, pkg string) {
	t.Helper()
	newELHost(t, repofile).install(pkg)
}

func TestRejects(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	in := t.TempDir()
	good := writeSpec(t, in, spec("pkg", "1", "1.el9", "x86_64"))
	goodBytes, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Add(ctx, []string{good}, AddOptions{}); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(in, "junk.rpm")
	if err := os.WriteFile(junk, []byte("this is not an rpm at all, just text\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	trunc := filepath.Join(in, "trunc.rpm")
	other, err := testrpm.Build(spec("other", "1", "1.el9", "x86_64"))
	if err != nil {
		t.Fatal(err)
	}
	// payload cut: only the digest check sees it
	if err := os.WriteFile(trunc, other[:len(other)-20], 0o644); err != nil {
		t.Fatal(err)
	}
	hdrOnly := filepath.Join(in, "hdrcut.rpm")
	if err := os.WriteFile(hdrOnly, goodBytes[:200], 0o644); err != nil {
		t.Fatal(err)
	}
	dupSpec := spec("pkg", "1", "1.el9", "x86_64")
	dupSpec.Summary = "a different build with the same NEVRA"
	dupDir := t.TempDir()
	dup := writeSpec(t, dupDir, dupSpec)
	noTag := writeSpec(t, in, spec("notag", "1", "1", "x86_64"))
	badArch := writeSpec(t, in, spec("weird", "1", "1.el9", "ppc64le"))
	empty := filepath.Join(in, "empty.rpm")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(in, "missing.rpm")
	ownKey := r.Config().KeyPath()

	// No routing default here: a package without a dist tag is unroutable.
	r.cfg.Routing.Default = ""
	inputs := []string{junk, trunc, hdrOnly, dup, noTag, badArch, empty, missing, ownKey, good}
	res, err := r.Add(ctx, inputs, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantCode := []string{reasonInvalid, reasonSign, reasonInvalid, reasonDuplicate, reasonUnroutable, reasonUnroutable, reasonInvalid, reasonUnreadable, reasonUnreadable}
	for i, code := range wantCode {
		x := res[i]
		if x.Action != ActionRejected || !strings.HasPrefix(x.Reason, code+": ") {
			t.Errorf("%s: %+v, want rejected with %s", filepath.Base(inputs[i]), x, code)
		}
		// The caller keeps the file and gets the reason; nothing is
		// copied into rejected/.
		if x.Rejected != "" {
			t.Errorf("%s: an add input was kept as %q", inputs[i], x.Rejected)
		}
	}
	if left := listDir(t, r.Config().Paths.Rejected); len(left) != 0 {
		t.Errorf("add left copies in rejected/: %v", left)
	}
	if b, err := os.ReadFile(junk); err != nil || !strings.HasPrefix(string(b), "this is not an rpm") {
		t.Errorf("the caller's junk.rpm: %q %v", b, err)
	}

	// The same files dropped into the drop-in directory are kept in
	// rejected/, each with its .reason, the bytes as they came.
	inc := r.Config().DropIns[0].Dir
	var drops []string
	for i, p := range inputs[:7] {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		d := filepath.Join(inc, fmt.Sprintf("drop%d-%s", i, filepath.Base(p)))
		if err := os.WriteFile(d, b, 0o644); err != nil {
			t.Fatal(err)
		}
		drops = append(drops, d)
	}
	dres, err := r.Ingest(ctx, drops, AddOptions{Move: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, code := range wantCode[:7] {
		x := dres[i]
		if x.Action != ActionRejected || !strings.HasPrefix(x.Reason, code+": ") || x.Rejected == "" {
			t.Errorf("drop-in %s: %+v, want rejected with %s and kept", filepath.Base(drops[i]), x, code)
			continue
		}
		reason, err := os.ReadFile(x.Rejected + ".reason")
		if err != nil {
			t.Errorf("%s: %v", drops[i], err)
			continue
		}
		first, _, _ := strings.Cut(string(reason), "\n")
		if !strings.HasPrefix(first, code+": ") {
			t.Errorf("%s.reason first line %q", x.Rejected, first)
		}
		kept, err := os.ReadFile(x.Rejected)
		if err != nil {
			t.Fatal(err)
		}
		orig, err := os.ReadFile(inputs[i])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(kept, orig) {
			t.Errorf("%s: rejected copy differs from the input", drops[i])
		}
	}
	res = append(res, dres...)
	for _, x := range res {
		if strings.Contains(x.Reason, "/spool/") {
			t.Errorf("reason names our private spool copy: %s", x.Reason)
		}
	}
	if !errors.Is(res[3].Err(), ErrDuplicateNEVRA) || !errors.Is(res[4].Err(), ErrUnroutable) || !errors.Is(res[0].Err(), ErrRejected) || res[9].Err() != nil {
		t.Errorf("AddResult.Err: %v / %v / %v / %v", res[3].Err(), res[4].Err(), res[0].Err(), res[9].Err())
	}
	if !strings.Contains(res[3].Reason, "pkg-1-1.el9.x86_64") {
		t.Errorf("duplicate reason does not name the NEVRA: %s", res[3].Reason)
	}
	if res[9].Action != ActionUnchanged {
		t.Errorf("re-adding identical bytes: %+v", res[9])
	}
	pk := mustPkgs(t, filepath.Join(root, "repo/main/staging/el/9/x86_64"))
	if len(pk) != 1 {
		t.Errorf("repodata lists %v after rejects", keys(pk))
	}
	served := filepath.Join(root, "repo/main/staging/el/9/x86_64/pkg-1-1.el9.x86_64.rpm")
	list, err := r.List(ctx, ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || fileSHA(t, served) != list[0].SHA256 {
		t.Errorf("the released package was changed or more were stored: %+v", list)
	}
	evs, err := r.History(ctx, HistoryOptions{Action: EventReject, Verify: true})
	if err != nil || len(evs) != len(wantCode)+7 {
		t.Errorf("reject events %d (want %d): %v", len(evs), len(wantCode)+7, err)
	}
	for _, e := range evs[:len(wantCode)] {
		if e.Details["reason"] == "" || e.Details["kept"] != "" {
			t.Errorf("reject event of an add: %+v, want its reason and nothing kept", e)
		}
	}
}

func TestConcurrentAdd(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	in := t.TempDir()
	const workers, per = 4, 15
	var paths [workers][]string
	for w := 0; w < workers; w++ {
		for i := 0; i < per; i++ {
			paths[w] = append(paths[w], writeSpec(t, in, testrpm.Small(w*per+i)))
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers*per)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, p := range paths[w] { // one call per file: maximal interleaving
				res, err := r.Add(ctx, []string{p}, AddOptions{})
				if err != nil {
					errs <- err
				} else if res[0].Action != ActionAdded {
					errs <- fmt.Errorf("%s: %+v", p, res[0])
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := len(mustPkgs(t, filepath.Join(root, "repo/main/staging/el/9/x86_64"))); got != workers*per {
		t.Errorf("repodata lists %d packages, want %d", got, workers*per)
	}
	if _, err := r.History(ctx, HistoryOptions{Verify: true}); err != nil {
		t.Error(err)
	}
}

// TestResumeAfterCrash stops the pipeline at every journal state as if the
// process had been killed there, reopens the root and checks that nothing
// is lost: before signing, a drop-in is back in incoming/; from signing on,
// the package is finished into the repository and its repodata.
func TestResumeAfterCrash(t *testing.T) {
	errCrash := errors.New("simulated crash")
	for i, state := range []string{stateReceived, stateValidated, stateSigned, statePlaced, statePublished} {
		t.Run(state, func(t *testing.T) {
			ctx := context.Background()
			root := filepath.Join(t.TempDir(), "root")
			r := openPL(t, root)
			incoming := r.Config().DropIns[0].Dir
			name := fmt.Sprintf("crash%d", i)
			p := writeSpec(t, incoming, spec(name, "1", "1.el9", "noarch"))
			failpoint = func(s string) error {
				if s == state {
					return errCrash
				}
				return nil
			}
			_, err := r.Ingest(ctx, []string{p}, AddOptions{Move: true, Who: "daemon"})
			failpoint = nil
			if !errors.Is(err, errCrash) {
				t.Fatalf("Ingest: %v, want the simulated crash", err)
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}

			r2 := openPL(t, root) // resumes
			nevra := name + "-1-1.el9.noarch"
			list, err := r2.List(ctx, ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			x86 := mustPkgs(t, filepath.Join(root, "repo/main/staging/el/9/x86_64"))
			arm := mustPkgs(t, filepath.Join(root, "repo/main/staging/el/9/aarch64"))
			_, inIncoming := os.Stat(p)
			switch state {
			case stateReceived, stateValidated:
				if inIncoming != nil {
					t.Errorf("unsigned drop-in not returned to incoming/: %v", inIncoming)
				}
				if len(list) != 0 || len(x86) != 0 {
					t.Errorf("rolled-back item is in the repository: %v %v", list, keys(x86))
				}
				// The daemon would now take it again.
				res, err := r2.Ingest(ctx, []string{p}, AddOptions{Move: true})
				if err != nil || res[0].Action != ActionAdded {
					t.Fatalf("re-ingest: %+v %v", res, err)
				}
				x86 = mustPkgs(t, filepath.Join(root, "repo/main/staging/el/9/x86_64"))
			default:
				if inIncoming == nil {
					t.Errorf("file is both in incoming/ and resumed")
				}
				if len(list) != 1 || list[0].NEVRA != nevra {
					t.Errorf("store after resume: %+v", list)
				}
				if _, ok := arm[name+"-1-1.el9.noarch"]; !ok {
					t.Errorf("aarch64 repodata after resume: %v", keys(arm))
				}
			}
			if _, ok := x86[name+"-1-1.el9.noarch"]; !ok {
				t.Errorf("x86_64 repodata: %v", keys(x86))
			}
			st, err := r2.Status(ctx)
			if err != nil || st.InFlight != 0 {
				t.Errorf("in flight after resume: %+v %v", st, err)
			}
			spool, err := os.ReadDir(r2.Config().Paths.Spool)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range spool {
				if e.Type().IsRegular() {
					t.Errorf("spool still holds %s", e.Name())
				}
			}
			if _, err := r2.History(ctx, HistoryOptions{Verify: true}); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestEventLogTamper(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	p := writeSpec(t, t.TempDir(), spec("audit", "1", "1.el9", "x86_64"))
	if _, err := r.Add(ctx, []string{p}, AddOptions{Who: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := r.RecordRollout(ctx, RolloutEvent{Kind: "step", Rollout: "r1", NEVRA: "audit-1-1.el9.x86_64", Phase: "clean"}); err != nil {
		t.Fatal(err)
	}
	evs, err := r.History(ctx, HistoryOptions{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) < 4 || evs[len(evs)-1].Action != "upgrade.step" {
		t.Fatalf("history: %+v", evs)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	// Rewrite who added the package, as someone with the DB file could.
	db, err := bolt.Open(filepath.Join(root, "repoctl.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	var target uint64
	var targetKey, origVal []byte
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		return b.ForEach(func(k, v []byte) error {
			if target == 0 && bytes.Contains(v, []byte(`"who":"alice"`)) {
				target = seqFromKey(k)
				targetKey, origVal = append([]byte(nil), k...), append([]byte(nil), v...)
				return b.Put(k, bytes.Replace(v, []byte(`"who":"alice"`), []byte(`"who":"mallory"`), 1))
			}
			return nil
		})
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil || target == 0 {
		t.Fatalf("tampering: %v (target %d)", err, target)
	}
	r2 := openPL(t, root)
	_, err = r2.History(ctx, HistoryOptions{Verify: true})
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), fmt.Sprintf("event %d ", target)) {
		t.Fatalf("History(Verify) after tampering with event %d: %v", target, err)
	}
	if _, err := r2.History(ctx, HistoryOptions{}); err != nil {
		t.Errorf("plain History should still read: %v", err)
	}
	if err := r2.Close(); err != nil {
		t.Fatal(err)
	}

	// The same edit with the event's hash recomputed, as anyone who read
	// this code could: the event is consistent in itself, but the next
	// one no longer links to it.
	db, err = bolt.Open(filepath.Join(root, "repoctl.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		var e Event
		if err := json.Unmarshal(origVal, &e); err != nil {
			return err
		}
		e.Who = "mallory"
		h, err := eventHash(e)
		if err != nil {
			return err
		}
		e.Hash = h
		raw, err := json.Marshal(e)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketEvents).Put(targetKey, raw)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	r2 = openPL(t, root)
	_, err = r2.History(ctx, HistoryOptions{Verify: true})
	if want := fmt.Sprintf("event %d does not link to event %d", target+1, target); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), want) {
		t.Fatalf("History(Verify) after rewriting event %d with its hash: %v, want %q", target, err, want)
	}
	if err := r2.Close(); err != nil {
		t.Fatal(err)
	}

	// Dropping the newest events leaves a valid shorter chain; the head
	// record notices.
	db, err = bolt.Open(filepath.Join(root, "repoctl.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		// First undo the edit, so only the truncation remains.
		if err := b.Put(targetKey, origVal); err != nil {
			return err
		}
		k, _ := b.Cursor().Last()
		return b.Delete(k)
	})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	r3 := openPL(t, root)
	if _, err := r3.History(ctx, HistoryOptions{Verify: true}); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "removed") {
		t.Fatalf("History(Verify) after dropping the last event: %v", err)
	}
	// New events do not hide it.
	if err := r3.RecordRollout(ctx, RolloutEvent{Kind: "step", Rollout: "r1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r3.History(ctx, HistoryOptions{Verify: true}); !errors.Is(err, ErrTampered) {
		t.Fatalf("History(Verify) after a new event on a truncated log: %v", err)
	}
}

func seqFromKey(k []byte) uint64 {
	var n uint64
	for _, b := range k {
		n = n<<8 | uint64(b)
	}
	return n
}

func TestPromoteRestoreRemove(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	in := t.TempDir()
	v1 := writeSpec(t, in, spec("app", "1.0", "1.el9", "x86_64"))
	v2 := writeSpec(t, in, spec("app", "1.1", "1.el9", "x86_64"))
	if _, err := r.Add(ctx, []string{v1}, AddOptions{}); err != nil {
		t.Fatal(err)
	}
	p1, err := r.Promote(ctx, PromoteRequest{Package: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if p1.NEVRA != "app-1.0-1.el9.x86_64" || p1.Previous != "" || p1.To != "prod" || p1.File != "main/prod/el/9/x86_64/app-1.0-1.el9.x86_64.rpm" {
		t.Errorf("first promote: %+v", p1)
	}
	if _, err := r.Add(ctx, []string{v2}, AddOptions{}); err != nil {
		t.Fatal(err)
	}
	dry, err := r.Promote(ctx, PromoteRequest{Package: "app", DryRun: true})
	if err != nil || !dry.DryRun || dry.NEVRA != "app-1.1-1.el9.x86_64" || dry.Previous != "app-1.0-1.el9.x86_64" {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	prodDir := filepath.Join(root, "repo/main/prod/el/9/x86_64")
	if got := keys(mustPkgs(t, prodDir)); len(got) != 1 {
		t.Fatalf("dry run changed prod: %v", got)
	}
	p2, err := r.Promote(ctx, PromoteRequest{Package: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if p2.Previous != "app-1.0-1.el9.x86_64" {
		t.Errorf("previous: %+v", p2)
	}
	if got := keys(mustPkgs(t, prodDir)); strings.Join(got, " ") != "app-1.0-1.el9.x86_64 app-1.1-1.el9.x86_64" {
		t.Errorf("prod after second promote: %v", got)
	}
	a, err := os.Stat(filepath.Join(root, "repo", p2.File))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.Stat(filepath.Join(root, "repo/main/staging/el/9/x86_64/app-1.1-1.el9.x86_64.rpm"))
	if err != nil {
		t.Fatal(err)
	}
	if a == nil || b == nil || !os.SameFile(a, b) {
		t.Errorf("promote did not place the exact staged file")
	}
	if err := r.Restore(ctx, p2); err != nil {
		t.Fatal(err)
	}
	if got := keys(mustPkgs(t, prodDir)); strings.Join(got, " ") != "app-1.0-1.el9.x86_64" {
		t.Errorf("prod after restore: %v", got)
	}
	if err := r.Restore(ctx, p2); err != nil {
		t.Errorf("second Restore of the same promote: %v", err)
	}
	// The restored-away file is held (unlisted) while a kept version of
	// prod names it, so that a rollback can list it again.
	if _, err := os.Stat(filepath.Join(root, "repo", p2.File)); err != nil {
		t.Errorf("restored-away file is not held: %v", err)
	}
	if _, err := r.Promote(ctx, PromoteRequest{Package: "nosuch"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("promote unknown: %v", err)
	}
	// remove from every channel
	if _, err := r.Remove(ctx, "app", RemoveOptions{}); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("remove by bare name: %v", err)
	}
	rr, err := r.Remove(ctx, "app-1.0-1.el9.x86_64", RemoveOptions{})
	if err != nil || !rr.Removed || len(rr.Files) != 2 {
		t.Fatalf("remove: %+v %v", rr, err)
	}
	if got := keys(mustPkgs(t, prodDir)); len(got) != 0 {
		t.Errorf("prod after remove: %v", got)
	}
	if got := keys(mustPkgs(t, filepath.Join(root, "repo/main/staging/el/9/x86_64"))); strings.Join(got, " ") != "app-1.1-1.el9.x86_64" {
		t.Errorf("staging after remove: %v", got)
	}
	evs, err := r.History(ctx, HistoryOptions{NEVRA: "app-1.1-1.el9.x86_64", Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	var acts []string
	for _, e := range evs {
		acts = append(acts, e.Action)
	}
	if strings.Join(acts, " ") != "sign add promote restore" {
		t.Errorf("events of app-1.1: %v", acts)
	}
}

func TestLockHeld(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	openPL(t, root)
	_, err := Open(context.Background(), root, WithLockWait(0))
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second Open: %v", err)
	}
	var msgs []string
	_, err = Open(context.Background(), root, WithLockWait(300*time.Millisecond), WithNotify(func(m string) { msgs = append(msgs, m) }))
	if !errors.Is(err, ErrLocked) || len(msgs) != 1 || !strings.Contains(msgs[0], "waiting for pid") {
		t.Fatalf("waiting Open: %v, notices %q", err, msgs)
	}
	for _, bad := range []string{"database locked", "timeout"} {
		if strings.Contains(err.Error(), bad) {
			t.Errorf("error leaks %q: %v", bad, err)
		}
	}
}

// Two NEVRAs that differ only in epoch would share one file name and href;
// the second is rejected instead of breaking the directory's repodata.
func TestEpochFileConflict(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	a := spec("ep", "1", "1.el9", "x86_64")
	b := a
	b.Epoch = 2
	pa := writeSpec(t, t.TempDir(), a)
	pb := writeSpec(t, t.TempDir(), b)
	res, err := r.Add(ctx, []string{pa, pb}, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Action != ActionAdded || res[1].Action != ActionRejected || !strings.HasPrefix(res[1].Reason, reasonConflict+": ep-2:1-1.el9.x86_64") {
		t.Fatalf("%+v", res)
	}
	res, err = r.Add(ctx, []string{pb}, AddOptions{})
	if err != nil || res[0].Action != ActionRejected {
		t.Fatalf("second batch: %+v %v", res, err)
	}
	if got := keys(mustPkgs(t, filepath.Join(root, "repo/main/staging/el/9/x86_64"))); len(got) != 1 {
		t.Errorf("repodata: %v", got)
	}
}

// Readers (list, status, history, repofile) answer while a batch runs; a
// long ingest must not freeze the CLI talking to the daemon.
func TestReadsDuringBatch(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	p := writeSpec(t, t.TempDir(), spec("slow", "1", "1.el9", "x86_64"))
	inside, release := make(chan struct{}), make(chan struct{})
	failpoint = func(s string) error {
		if s == stateSigned {
			close(inside)
			<-release
		}
		return nil
	}
	defer func() { failpoint = nil }()
	done := make(chan error, 1)
	go func() {
		_, err := r.Add(ctx, []string{p}, AddOptions{})
		done <- err
	}()
	<-inside
	got := make(chan error, 1)
	go func() {
		if _, err := r.List(ctx, ListOptions{}); err != nil {
			got <- err
			return
		}
		st, err := r.Status(ctx)
		if err == nil && st.InFlight != 1 {
			err = fmt.Errorf("status during batch: in flight %d, want 1", st.InFlight)
		}
		if err == nil {
			_, err = r.History(ctx, HistoryOptions{Verify: true})
		}
		if err == nil {
			_, err = r.RepoFile(ctx, RepoFileOptions{})
		}
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(10 * time.Second):
		t.Error("readers blocked by a running batch")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The same build signed by other keys is the same package: unchanged, in
// one batch and across batches, and the served file stays ours.
func TestSameBuildOtherSignatures(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	c := corpusDir(t)
	res, err := r.Add(ctx, []string{filepath.Join(c, "empty-0-0.x86_64.rpm"), filepath.Join(c, "empty-signed-rsa-0-0.x86_64.rpm")}, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Action != ActionAdded || res[1].Action != ActionUnchanged || res[1].KeyID != r.Key().KeyID() || len(res[1].RepoPaths) != 1 {
		t.Fatalf("%+v", res)
	}
	res, err = r.Add(ctx, []string{filepath.Join(c, "empty-signed-eddsa-0-0.x86_64.rpm")}, AddOptions{})
	if err != nil || res[0].Action != ActionUnchanged {
		t.Fatalf("%+v %v", res, err)
	}
	list, err := r.List(ctx, ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || fileSHA(t, filepath.Join(root, "repo", list[0].Placements[0].File)) != list[0].SHA256 {
		t.Errorf("store: %+v", list)
	}
}

// A crash after promote or remove recorded their change but before the
// publish: reopening republishes, so repodata matches the store again, and
// removed files are deleted.
func TestPromoteRemoveCrash(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	p := writeSpec(t, t.TempDir(), spec("pc", "1", "1.el9", "x86_64"))
	if _, err := r.Add(ctx, []string{p}, AddOptions{}); err != nil {
		t.Fatal(err)
	}
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
	prod := filepath.Join(root, "repo/main/prod/el/9/x86_64")
	staging := filepath.Join(root, "repo/main/staging/el/9/x86_64")

	at("promote.recorded")
	if _, err := r.Promote(ctx, PromoteRequest{Package: "pc"}); !errors.Is(err, crash) {
		t.Fatalf("promote: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	failpoint = nil
	r = openPL(t, root)
	if got := keys(mustPkgs(t, prod)); len(got) != 1 {
		t.Fatalf("prod after resumed promote: %v", got)
	}

	at("remove.recorded")
	if _, err := r.Remove(ctx, "pc-1-1.el9.x86_64", RemoveOptions{}); !errors.Is(err, crash) {
		t.Fatalf("remove: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	failpoint = nil
	r = openPL(t, root)
	for _, d := range []string{prod, staging} {
		if got := keys(mustPkgs(t, d)); len(got) != 0 {
			t.Errorf("%s after resumed remove: %v", d, got)
		}
		if _, err := os.Stat(filepath.Join(d, "pc-1-1.el9.x86_64.rpm")); !os.IsNotExist(err) {
			t.Errorf("removed file still in %s: %v", d, err)
		}
	}
	if _, err := r.History(ctx, HistoryOptions{Verify: true}); err != nil {
		t.Error(err)
	}
}

// A drop-in that is not a regular file (here a symlink to the private key)
// is not followed, and leaves the drop-in directory for rejected/.
func TestDropInSymlinkRejected(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	link := filepath.Join(r.Config().DropIns[0].Dir, "key.rpm")
	if err := os.Symlink(r.Config().KeyPath(), link); err != nil {
		t.Fatal(err)
	}
	res, err := r.Ingest(ctx, []string{link}, AddOptions{Move: true})
	if err != nil || res[0].Action != ActionRejected || !strings.HasPrefix(res[0].Reason, reasonUnreadable) {
		t.Fatalf("%+v %v", res, err)
	}
	if _, err := os.Lstat(link); !os.IsNotExist(err) {
		t.Errorf("symlink still in the drop-in directory: %v", err)
	}
	fi, err := os.Lstat(res[0].Rejected)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("rejected entry %q: %v %v (want the link itself, not a copy of its target)", res[0].Rejected, fi, err)
	}
	if _, err := os.Stat(res[0].Rejected + ".reason"); err != nil {
		t.Error(err)
	}
}

type stageRecorder struct{ stages []string }

func (s *stageRecorder) Stage(stage string, n int) {
	s.stages = append(s.stages, fmt.Sprintf("%s %d", stage, n))
}

func TestProgressStages(t *testing.T) {
	rec := &stageRecorder{}
	r := openPL(t, filepath.Join(t.TempDir(), "root"), WithProgress(rec))
	in := t.TempDir()
	a := writeSpec(t, in, spec("pa", "1", "1.el9", "noarch"))
	b := writeSpec(t, in, spec("pb", "1", "1.el9", "x86_64"))
	if _, err := r.Add(context.Background(), []string{a, b}, AddOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rec.stages, ", "); got != "validating 2, signing 2, placing 2, publishing 2" {
		t.Errorf("stages: %s", got)
	}
}

// RepoFile describes what is published even before the batch that
// published it has recorded it.
func TestRepoFileSeesPublishedDirs(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	p := writeSpec(t, t.TempDir(), spec("rf", "1", "1.fc40", "x86_64"))
	inside, release := make(chan struct{}), make(chan struct{})
	failpoint = func(s string) error {
		if s == statePublished {
			close(inside)
			<-release
		}
		return nil
	}
	defer func() { failpoint = nil }()
	done := make(chan error, 1)
	go func() { _, err := r.Add(ctx, []string{p}, AddOptions{}); done <- err }()
	<-inside
	f, err := r.RepoFile(ctx, RepoFileOptions{Channel: "staging", Dist: "fc"})
	close(release)
	if err != nil || !strings.Contains(f.Render(), "/main/staging/fc/$releasever/$basearch/") || strings.Join(f.Releases, " ") != "fc/40" {
		t.Errorf("repofile while the batch records: %v\n%+v", err, f)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestAddDryRun(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	in := t.TempDir()
	first := writeSpec(t, in, spec("dr", "1", "1.el9", "x86_64"))
	if _, err := r.Add(ctx, []string{first}, AddOptions{}); err != nil {
		t.Fatal(err)
	}
	evs, err := r.History(ctx, HistoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d2 := spec("dr", "1", "1.el9", "x86_64")
	d2.Summary = "other build"
	dup := writeSpec(t, t.TempDir(), d2)
	newer := writeSpec(t, r.Config().DropIns[0].Dir, spec("dr", "2", "1.el9", "noarch"))
	junk := filepath.Join(in, "junk.rpm")
	if err := os.WriteFile(junk, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := r.Ingest(ctx, []string{newer, dup, junk, first}, AddOptions{DryRun: true, Move: true})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Action != ActionWouldAdd || len(res[0].RepoPaths) != 2 || res[0].RepoPaths[0] != "main/staging/el/9/x86_64/dr-2-1.el9.noarch.rpm" ||
		!errors.Is(res[1].Err(), ErrDuplicateNEVRA) || res[2].Action != ActionRejected || res[3].Action != ActionUnchanged {
		t.Fatalf("%+v", res)
	}
	if _, err := os.Stat(newer); err != nil {
		t.Errorf("dry run took the drop-in: %v", err)
	}
	after, err := r.History(ctx, HistoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(evs) {
		t.Errorf("dry run recorded %d events", len(after)-len(evs))
	}
	for _, d := range []string{r.Config().Paths.Rejected, r.Config().Paths.Spool} {
		if n := countFiles(d, func(string) bool { return true }); n != 0 {
			t.Errorf("dry run left %d files in %s", n, d)
		}
	}
	if got := keys(mustPkgs(t, filepath.Join(root, "repo/main/staging/el/9/x86_64"))); len(got) != 1 {
		t.Errorf("repodata after dry run: %v", got)
	}
}

// A crash between writing NAME.reason and moving the file leaves an orphan
// .reason; when the same input is rejected again after resume it must take
// that slot, so rejected/ never holds a .reason without its file.
func TestRejectReusesOrphanReason(t *testing.T) {
	root := t.TempDir()
	r := openPL(t, root)
	ctx := context.Background()
	junk := filepath.Join(r.Config().DropIns[0].Dir, "junk.rpm")
	if err := os.WriteFile(junk, []byte("not an rpm\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rej := r.Config().Paths.Rejected
	orphan := filepath.Join(rej, "junk.rpm.reason")
	if err := os.WriteFile(orphan, []byte("invalid: earlier try\nfile: "+junk+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Someone else's orphan for a different input keeps its slot.
	if err := os.WriteFile(filepath.Join(rej, "other.rpm.reason"), []byte("invalid: x\nfile: /elsewhere/other.rpm\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := r.Ingest(ctx, []string{junk}, AddOptions{Move: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res[0].Rejected, filepath.Join(rej, "junk.rpm"); got != want {
		t.Fatalf("rejected into %q, want the orphan's slot %q", got, want)
	}
	entries, err := os.ReadDir(rej)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if base, ok := strings.CutSuffix(name, ".reason"); ok && base != "other.rpm" {
			if _, err := os.Stat(filepath.Join(rej, base)); err != nil {
				t.Errorf("%s has no file beside it: %v", name, err)
			}
		}
	}
	b, err := os.ReadFile(orphan)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), reasonInvalid+": ") || strings.Contains(string(b), "earlier try") {
		t.Errorf("reason not rewritten for the new rejection: %q", b)
	}
}

// Copies of one NEVRA in one batch: a copy that fails to sign is that
// copy's rejection only; the valid copy beside it still goes in, and an
// identical copy shares the outcome of the first.
func TestSameNEVRAInOneBatch(t *testing.T) {
	ctx := context.Background()
	r := openPL(t, filepath.Join(t.TempDir(), "root"))
	in := t.TempDir()
	s := spec("twice", "1", "1.el9", "x86_64")
	full, err := testrpm.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(in, "a-broken.rpm")
	// payload cut: only signing sees it
	if err := os.WriteFile(broken, full[:len(full)-20], 0o644); err != nil {
		t.Fatal(err)
	}
	s.Summary = "another build, same NEVRA"
	other, err := testrpm.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	valid := filepath.Join(in, "b-valid.rpm")
	if err := os.WriteFile(valid, other, 0o644); err != nil {
		t.Fatal(err)
	}
	copyOf := filepath.Join(in, "c-copy.rpm")
	if err := os.WriteFile(copyOf, other, 0o644); err != nil {
		t.Fatal(err)
	}
	brokenCopy := filepath.Join(in, "d-broken-copy.rpm")
	if err := os.WriteFile(brokenCopy, full[:len(full)-20], 0o644); err != nil {
		t.Fatal(err)
	}

	res, err := r.Add(ctx, []string{broken, valid, copyOf, brokenCopy}, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Action != ActionRejected || !strings.HasPrefix(res[0].Reason, reasonSign+": ") {
		t.Errorf("broken copy: %+v, want sign-failed", res[0])
	}
	if res[1].Action != ActionAdded {
		t.Errorf("valid copy beside a broken one: %+v, want added", res[1])
	}
	if res[2].Action != ActionUnchanged || res[2].SHA256 != res[1].SHA256 || len(res[2].RepoPaths) != 1 {
		t.Errorf("identical copy: %+v, want unchanged with the first copy's result", res[2])
	}
	if res[3].Action != ActionRejected || !strings.HasPrefix(res[3].Reason, reasonSign+": ") || res[3].Rejected != "" {
		t.Errorf("identical copy of the broken one: %+v, want the same rejection (an add keeps nothing)", res[3])
	}
	list, err := r.List(ctx, ListOptions{Name: "twice"})
	if err != nil || len(list) != 1 || list[0].OrigSHA256 != fileSHA(t, valid) {
		t.Errorf("store: %+v %v, want the valid copy", list, err)
	}
	st, err := r.Status(ctx)
	if err != nil || st.InFlight != 0 {
		t.Errorf("journal left %+v %v", st, err)
	}
}
