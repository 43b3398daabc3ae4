package repo

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"context"
)

// TestCLIWithoutDaemon drives the real binary with no daemon running: add
// (exit 3 when something is rejected), list, status, history --verify
// -o json, repofile and remove.
func TestCLIWithoutDaemon(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(plConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	in := t.TempDir()
	good := writeSpec(t, in, spec("cli", "1", "1.el9", "x86_64"))
	junk := filepath.Join(in, "junk.rpm")
	if err := os.WriteFile(junk, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}

	out, errOut, code := runCLI(t, root, "add", good, junk)
	if code != 3 || !strings.Contains(out, "added      cli-1-1.el9.x86_64  key ") ||
		!strings.Contains(out, "main/staging/el/9/x86_64/cli-1-1.el9.x86_64.rpm") || !strings.Contains(out, "rejected   "+junk) {
		t.Fatalf("add: exit %d\n%s\n%s", code, out, errOut)
	}
	out, _, code = runCLI(t, root, "-o", "json", "add", good)
	var res []AddResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || len(res) != 1 || res[0].Action != ActionUnchanged {
		t.Fatalf("re-add: exit %d %s", code, out)
	}
	out, _, code = runCLI(t, root, "list")
	if code != 0 || !strings.Contains(out, "cli-1-1.el9.x86_64") || !strings.Contains(out, "staging") {
		t.Errorf("list: %d %s", code, out)
	}
	// A rejected add is the caller's to keep: nothing is copied into
	// rejected/, and the file stays where it was.
	out, _, code = runCLI(t, root, "status")
	if code != 0 || !strings.Contains(out, "packages:  1") || !strings.Contains(out, "rejected:  0") {
		t.Errorf("status: %d %s", code, out)
	}
	if _, err := os.Stat(junk); err != nil {
		t.Errorf("the rejected input: %v", err)
	}
	out, errOut, code = runCLI(t, root, "-o", "json", "history", "--verify")
	var evs []Event
	if code != 0 || json.Unmarshal([]byte(out), &evs) != nil || len(evs) < 4 || !strings.Contains(errOut, "hash chain intact") {
		t.Fatalf("history: %d %d events, stderr %q: %.300s", code, len(evs), errOut, out)
	}
	for _, e := range evs {
		if e.Action == EventAdd && e.Who != CurrentUser() {
			t.Errorf("add recorded as %q, want %q", e.Who, CurrentUser())
		}
	}
	out, _, code = runCLI(t, root, "repofile", "--channel", "staging")
	if code != 0 || !strings.Contains(out, "repo_gpgcheck=1") || !strings.Contains(out, "baseurl=http://127.0.0.1:8080/main/staging/el/$releasever/$basearch/") {
		t.Errorf("repofile: %d %s", code, out)
	}
	out, _, code = runCLI(t, root, "remove", "--dry-run", "cli-1-1.el9.x86_64")
	if code != 0 || !strings.Contains(out, "would remove main/staging/el/9/x86_64/cli-1-1.el9.x86_64.rpm") {
		t.Errorf("remove --dry-run: %d %s", code, out)
	}
	out, _, code = runCLI(t, root, "remove", "cli-1-1.el9.x86_64")
	if code != 0 || len(mustPkgs(t, filepath.Join(root, "repo/main/staging/el/9/x86_64"))) != 0 {
		t.Errorf("remove: %d %s", code, out)
	}
	_, errOut, code = runCLI(t, root, "remove", "nosuch-1-1.el9.x86_64")
	if code != 1 || !strings.Contains(errOut, "not found") {
		t.Errorf("remove unknown: %d %s", code, errOut)
	}
}

// crashHelper is the child of TestKilledMidIngest (TestMain dispatches
// on REPOCTL_R1_CRASH_AT): it ingests the drop-in and SIGKILLs itself
// when the pipeline reaches that state.
func crashHelper(state string) {
	root, file := os.Getenv("REPOCTL_R1_ROOT"), os.Getenv("REPOCTL_R1_FILE")
	r, err := Open(context.Background(), root)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	failpoint = func(s string) error {
		if s == state {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Minute)
		}
		return nil
	}
	r.Ingest(context.Background(), []string{file}, AddOptions{Move: true, Who: "daemon"})
	fmt.Println("not killed")
	os.Exit(1)
}

// TestKilledMidIngest kills a real process with SIGKILL at each journal
// state (no deferred cleanup, lock and store left as the kernel leaves
// them) and checks that reopening finishes or rolls back with nothing lost.
func TestKilledMidIngest(t *testing.T) {
	for i, state := range []string{stateReceived, stateValidated, stateSigned, statePlaced, statePublished} {
		root := filepath.Join(t.TempDir(), "root")
		if err := os.MkdirAll(filepath.Join(root, "incoming"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(plConfig), 0o644); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("killed%d", i)
		p := writeSpec(t, filepath.Join(root, "incoming"), spec(name, "1", "1.el9", "x86_64"))
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "REPOCTL_R1_CRASH_AT="+state, "REPOCTL_R1_ROOT="+root, "REPOCTL_R1_FILE="+p)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("%s: helper was not killed: %v\n%s", state, err, out)
		}
		r := openPL(t, root)
		list, err := r.List(context.Background(), ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pk := mustPkgs(t, filepath.Join(root, "repo/main/staging/el/9/x86_64"))
		_, statErr := os.Stat(p)
		switch state {
		case stateReceived, stateValidated:
			if statErr != nil || len(list) != 0 || len(pk) != 0 {
				t.Errorf("%s: want the file back in incoming/ and nothing stored: %v %v %v", state, statErr, list, keys(pk))
			}
		default:
			if statErr == nil || len(list) != 1 || len(pk) != 1 {
				t.Errorf("%s: want it finished into the repository: %v %v %v", state, statErr, list, keys(pk))
			}
		}
		if _, err := r.History(context.Background(), HistoryOptions{Verify: true}); err != nil {
			t.Errorf("%s: %v", state, err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// Without a daemon, a CLI that finds the root busy (another CLI holds the
// lock) says so, waits, and then does its work; it never says "database
// locked".
func TestCLIWaitsForLock(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	p := writeSpec(t, t.TempDir(), spec("waiter", "1", "1.el9", "x86_64"))
	var stdout, stderr syncBuffer
	cmd := exec.Command(repoctlBinary(t), "--root", root, "add", p)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Release the lock only once the CLI said it waits for it.
	waitFor(t, time.Minute, "the CLI to say it waits", func() (bool, string) {
		return strings.Contains(stderr.String(), "waiting"), stderr.String()
	})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("add after waiting: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "waiting") || !strings.Contains(stdout.String(), "added      waiter-1-1.el9.x86_64") {
		t.Errorf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	for _, bad := range []string{"database", "timeout"} {
		if strings.Contains(stderr.String(), bad) {
			t.Errorf("stderr mentions %q: %s", bad, stderr.String())
		}
	}
}
