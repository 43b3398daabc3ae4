package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/filelock"
	"github.com/repoctl/repoctl/internal/testrpm"
	"github.com/repoctl/repoctl/metadata"
)

// What an interrupted `add` or `promote` (exit 130, README's exit codes)
// leaves behind, and that the next command to open the root finishes it.
// Each is held mid-operation by a step that cannot finish: a second
// publisher holds the lock of the directory it must publish, so SIGINT
// lands after the packages are placed and before their repodata is
// written, whatever the machine's speed.

// intRoot is a repository root with an ed25519 key and its first package
// added, so that every known directory exists.
func intRoot(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "repoctl.toml"), []byte("[signing]\nalgo = \"ed25519\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := intPkg(t, "first", "1.0")
	if o, e, code := runIn(t, root, "add", p); code != 0 {
		t.Fatalf("add: exit %d\n%s%s", code, o, e)
	}
	return root
}

func intPkg(t *testing.T, name, version string) string {
	t.Helper()
	p, err := testrpm.Write(t.TempDir(), testrpm.Spec{Name: name, Version: version, Release: "1.el9", Arch: "x86_64",
		Summary: "interrupt test", License: "MIT", Files: []testrpm.File{{Name: "/usr/share/" + name + "/v", Body: []byte(version + "\n")}}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// holdPublishLock holds the writer lock of the repository directory dir
// (ROOT/repo/…), as another publisher would, until release is called.
func holdPublishLock(t *testing.T, dir string) (release func()) {
	t.Helper()
	l, err := filelock.Acquire(context.Background(), filepath.Join(dir, metadata.LockFileName), filelock.Create(0o644))
	if err != nil {
		t.Fatal(err)
	}
	released := false
	release = func() {
		if released {
			return
		}
		released = true
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(release)
	return release
}

// listedNames is what dir's served repodata lists, as a client reads it.
func listedNames(t *testing.T, dir string) []string {
	t.Helper()
	rt, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	st, err := metadata.ReadRepodataState(context.Background(), rt)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Problems) > 0 {
		t.Fatalf("repodata of %s: %v", dir, st.Problems)
	}
	var out []string
	for _, p := range st.Packages {
		out = append(out, p.Name)
	}
	sort.Strings(out)
	return out
}

// interrupt starts repoctl args, waits until ready says the command is
// mid-operation, sends SIGINT and returns stdout, stderr and the exit
// status.
func interrupt(t *testing.T, ready func() bool, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(repoctlBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(2 * time.Minute)
	for !ready() {
		select {
		case err := <-exited:
			t.Fatalf("repoctl %v ended (%v) before it was interrupted:\n%s%s", args, err, stdout.String(), stderr.String())
		case <-deadline:
			if err := cmd.Process.Kill(); err != nil {
				t.Log(err)
			}
			<-exited
			t.Fatalf("repoctl %v never got mid-operation:\n%s%s", args, stdout.String(), stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-exited:
	case <-time.After(2 * time.Minute):
		if kerr := cmd.Process.Kill(); kerr != nil {
			t.Log(kerr)
		}
		<-exited
		t.Fatalf("repoctl %v did not stop after SIGINT:\n%s%s", args, stdout.String(), stderr.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

// checkInterruptedJSON checks the -o json error object of an interrupted
// command.
func checkInterruptedJSON(t *testing.T, out string) {
	t.Helper()
	var v struct {
		Error struct {
			Code int    `json:"code"`
			Kind string `json:"kind"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Error.Code != exitInterrupted || v.Error.Kind != "interrupted" {
		t.Errorf("-o json of an interrupted command: %v\n%s", err, out)
	}
}

type histEvent struct {
	Action  string            `json:"action"`
	NEVRA   string            `json:"nevra"`
	Path    string            `json:"path"`
	Details map[string]string `json:"details"`
}

func history(t *testing.T, root string) []histEvent {
	t.Helper()
	out, e, code := runIn(t, root, "-o", "json", "history")
	var evs []histEvent
	if code != 0 || json.Unmarshal([]byte(out), &evs) != nil {
		t.Fatalf("history: exit %d\n%s%s", code, out, e)
	}
	return evs
}

func countActions(evs []histEvent, action, nevra string) int {
	n := 0
	for _, ev := range evs {
		if ev.Action == action && (nevra == "" || ev.NEVRA == nevra) {
			n++
		}
	}
	return n
}

// TestAddInterrupted: SIGINT while `add` waits to publish exits 130. The
// caller's files are untouched; the packages are placed but clients still
// see the old repodata, and nothing is recorded yet. The next command to
// open the root (here `list`) finishes the batch from its journal: listed,
// published, recorded once, and fsck finds nothing wrong.
func TestAddInterrupted(t *testing.T) {
	root := intRoot(t)
	dir := filepath.Join(root, "repo", "main", "staging", "el", "9", "x86_64")
	names := []string{"inta", "intb", "intc"}
	var files []string
	orig := map[string][]byte{}
	for _, n := range names {
		p := intPkg(t, n, "1.0")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files, orig[p] = append(files, p), b
	}
	release := holdPublishLock(t, dir)
	placed := func() bool {
		for _, n := range names {
			if _, err := os.Stat(filepath.Join(dir, n+"-1.0-1.el9.x86_64.rpm")); err != nil {
				return false
			}
		}
		return true
	}
	out, stderr, code := interrupt(t, placed, append([]string{"--root", root, "-o", "json", "add"}, files...)...)
	if code != exitInterrupted {
		t.Fatalf("interrupted add: exit %d, want %d\n%s%s", code, exitInterrupted, out, stderr)
	}
	checkInterruptedJSON(t, out)
	for p, b := range orig {
		if now, err := os.ReadFile(p); err != nil || !bytes.Equal(now, b) {
			t.Errorf("the interrupted add changed its input %s (%v)", p, err)
		}
	}
	if got := listedNames(t, dir); strings.Join(got, " ") != "first" {
		t.Errorf("clients see %v before the next open, want the old repodata (first)", got)
	}
	release()

	// The next open finishes the journaled batch.
	lo, le, code := runIn(t, root, "list", "--channel", "staging")
	if code != 0 {
		t.Fatalf("list after the interrupt: exit %d\n%s%s", code, lo, le)
	}
	for _, n := range names {
		if !strings.Contains(lo, n+"-1.0-1.el9.x86_64") {
			t.Errorf("%s is not listed after the next open:\n%s", n, lo)
		}
	}
	if got, want := strings.Join(listedNames(t, dir), " "), "first inta intb intc"; got != want {
		t.Errorf("repodata after the next open lists %s, want %s", got, want)
	}
	evs := history(t, root)
	for _, n := range names {
		if c := countActions(evs, "add", n+"-1.0-1.el9.x86_64"); c != 1 {
			t.Errorf("%s: %d add events, want 1", n, c)
		}
	}
	resumed := false
	for _, ev := range evs {
		if ev.Action == "resume" && ev.Details["rolled_forward"] == fmt.Sprint(len(names)) {
			resumed = true
		}
	}
	if !resumed {
		t.Errorf("no resume event rolling %d items forward: %+v", len(names), evs)
	}
	if o, e, code := runIn(t, root, "fsck"); code != 0 {
		t.Errorf("fsck after the resumed add: exit %d\n%s%s", code, o, e)
	}
	checkSpoolEmpty(t, root)
	// Adding the same files again changes nothing.
	o, e, code := runIn(t, root, append([]string{"-o", "json", "add"}, files...)...)
	var again []struct {
		Action string `json:"action"`
	}
	if err := json.Unmarshal([]byte(o), &again); code != 0 || err != nil || len(again) != len(files) {
		t.Fatalf("add again: exit %d (%v)\n%s%s", code, err, o, e)
	}
	for i, r := range again {
		if r.Action != "unchanged" {
			t.Errorf("add again of %s: %s, want unchanged", files[i], r.Action)
		}
	}
}

// checkSpoolEmpty: nothing of a finished batch is left in ROOT/spool (its
// sign journal directory stays, empty, and the saved publish states,
// which are no batch's).
func checkSpoolEmpty(t *testing.T, root string) {
	t.Helper()
	for _, d := range []string{"spool", "spool/.sign-journal"} {
		ents, err := os.ReadDir(filepath.Join(root, d))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Name() != ".sign-journal" && e.Name() != ".publish-state" {
				t.Errorf("%s/%s is left over", d, e.Name())
			}
		}
	}
}

// TestPromoteInterrupted: SIGINT while `promote` waits to publish prod
// exits 130, and the promote is undone: it was recorded (with its
// directories marked dirty) before the publish, so a crash there is
// finished by the next start, but a publish that fails, interrupted
// included, takes the record back (event promote.failed). Clients keep
// seeing the old prod repodata; the next command to open the root
// republishes prod as it was and removes the file placed there, fsck is
// clean, and the promote can simply be run again.
func TestPromoteInterrupted(t *testing.T) {
	root := intRoot(t)
	p := intPkg(t, "promo", "2.0")
	if o, e, code := runIn(t, root, "add", p); code != 0 {
		t.Fatalf("add: exit %d\n%s%s", code, o, e)
	}
	prod := filepath.Join(root, "repo", "main", "prod", "el", "9", "x86_64")
	placedFile := filepath.Join(prod, "promo-2.0-1.el9.x86_64.rpm")
	before := strings.Join(listedNames(t, prod), " ")
	release := holdPublishLock(t, prod)
	placed := func() bool {
		_, err := os.Stat(placedFile)
		return err == nil
	}
	promote := []string{"promote", "promo-2.0-1.el9", "--to", "prod", "--yes"}
	out, stderr, code := interrupt(t, placed, append([]string{"--root", root, "-o", "json"}, promote...)...)
	if code != exitInterrupted {
		t.Fatalf("interrupted promote: exit %d, want %d\n%s%s", code, exitInterrupted, out, stderr)
	}
	checkInterruptedJSON(t, out)
	if got := strings.Join(listedNames(t, prod), " "); got != before {
		t.Errorf("clients see %q in prod after the interrupt, want the old %q", got, before)
	}
	release()

	lo, le, code := runIn(t, root, "list", "--channel", "prod")
	if code != 0 || strings.Contains(lo, "promo-") {
		t.Fatalf("list --channel prod after the interrupt: exit %d, want promo not in prod\n%s%s", code, lo, le)
	}
	if got := strings.Join(listedNames(t, prod), " "); got != before {
		t.Errorf("prod repodata after the next open lists %q, want %q", got, before)
	}
	if _, err := os.Stat(placedFile); !os.IsNotExist(err) {
		t.Errorf("the file the interrupted promote placed is still in prod (%v)", err)
	}
	evs := history(t, root)
	if c, f := countActions(evs, "promote", ""), countActions(evs, "promote.failed", "promo-2.0-1.el9.x86_64"); c != 1 || f != 1 {
		t.Errorf("%d promote and %d promote.failed events, want 1 and 1", c, f)
	}
	if o, e, code := runIn(t, root, "fsck"); code != 0 {
		t.Errorf("fsck after the interrupted promote: exit %d\n%s%s", code, o, e)
	}
	if o, e, code := runIn(t, root, promote...); code != 0 {
		t.Fatalf("promote again: exit %d\n%s%s", code, o, e)
	}
	if got := strings.Join(listedNames(t, prod), " "); !strings.Contains(got, "promo") {
		t.Errorf("prod repodata after promoting again lists %q, want promo", got)
	}
}

// TestAddInterruptedLargeBatch interrupts a large `add` as soon as its
// first copy is in the spool, wherever in the pipeline the signal lands
// (almost always while receiving): exit 130, not a "transient fault", the
// inputs untouched, and the next open leaves every input either fully
// added or rolled back, never half: the resume's rolled-back count plus
// the packages listed is the whole batch, fsck is clean, and the same add
// then brings in the rest.
func TestAddInterruptedLargeBatch(t *testing.T) {
	root := intRoot(t)
	const n = 400
	paths, err := testrpm.Corpus(context.Background(), t.TempDir(), n)
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string][32]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sums[p] = sha256.Sum256(b)
	}
	spooled := func() bool {
		m, err := filepath.Glob(filepath.Join(root, "spool", "*.rpm"))
		if err != nil {
			t.Fatal(err)
		}
		return len(m) > 0
	}
	out, stderr, code := interrupt(t, spooled, append([]string{"--root", root, "-o", "json", "add"}, paths...)...)
	t.Logf("interrupted: %s", strings.TrimSpace(stderr))
	if code != exitInterrupted {
		t.Fatalf("interrupted add: exit %d, want %d\n%s", code, exitInterrupted, stderr)
	}
	checkInterruptedJSON(t, out)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil || sha256.Sum256(b) != sums[p] {
			t.Fatalf("the interrupted add changed its input %s (%v)", p, err)
		}
	}
	listed := func() int {
		t.Helper()
		o, e, code := runIn(t, root, "-o", "json", "list", "--channel", "staging")
		var pkgs []struct {
			NEVRA string `json:"nevra"`
		}
		if err := json.Unmarshal([]byte(o), &pkgs); code != 0 || err != nil {
			t.Fatalf("list: exit %d (%v)\n%s%s", code, err, o, e)
		}
		return len(pkgs) - 1 // besides "first"
	}
	added := listed()
	rolledBack := 0
	for _, ev := range history(t, root) {
		if ev.Action == "resume" && ev.Details["rolled_back"] != "" {
			if _, err := fmt.Sscan(ev.Details["rolled_back"], &rolledBack); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("after the next open: %d added, %d rolled back", added, rolledBack)
	if added+rolledBack != n {
		t.Errorf("%d added and %d rolled back, want %d in all", added, rolledBack, n)
	}
	checkSpoolEmpty(t, root)
	if o, e, code := runIn(t, root, "fsck"); code != 0 {
		t.Errorf("fsck after the interrupted add: exit %d\n%s%s", code, o, e)
	}
	if o, e, code := runIn(t, root, append([]string{"-q", "add"}, paths...)...); code != 0 {
		t.Fatalf("add again: exit %d\n%s%s", code, o, e)
	}
	if got := listed(); got != n {
		t.Errorf("%d listed after adding again, want %d", got, n)
	}
}
