package upgrade

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// TestE2ERolloutAbortCLI drives `repoctl rollout abort` (no daemon) over a
// real sshd host: a halted rollout keeps its host until it is aborted;
// abort undoes nothing on the host, is recorded in the event log, and
// leaves nothing to resume or abort again; an abort from another process
// stops a running `promote --phased` before its next step; afterwards a
// new rollout runs on the freed host.
func TestE2ERolloutAbortCLI(t *testing.T) {
	work := t.TempDir()
	e := &e2e{t: t, work: work, root: filepath.Join(work, "root")}
	e.repoctl = buildBinary(t, filepath.Join(work, "bin"), "github.com/repoctl/repoctl/cmd/repoctl")

	r := newRig(t, 1, 0, 23)
	c := r.lab.config(1)
	r.markCommands(c)
	r.installCommands(c)
	r.serveHealth(t, c)
	// While hold exists, clean waits: that keeps a rollout running.
	hold := filepath.Join(work, "hold")
	c.Commands.Clean = `echo "{{.Host}} clean $(date +%s.%N)" >> ` + ShellQuote(r.marks) +
		` && while [ -e ` + ShellQuote(hold) + ` ]; do sleep 0.05; done`
	if err := os.MkdirAll(e.root, 0o755); err != nil {
		t.Fatal(err)
	}
	var tb bytes.Buffer
	if err := toml.NewEncoder(&tb).Encode(map[string]any{"signing": map[string]string{"algo": "ed25519"}, "upgrade": c}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.root, "repoctl.toml"), tb.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := testrpm.Write(t.TempDir(), testrpm.Spec{Name: "app", Version: "2.0", Release: "1.el9", Arch: "x86_64",
		Summary: "abort test", License: "MIT", Files: []testrpm.File{{Name: "/usr/share/app/v", Body: []byte("2.0\n")}}})
	if err != nil {
		t.Fatal(err)
	}
	e.mustRun("add", p)
	promote := []string{"promote", "app-2.0-1.el9.x86_64", "--to", "prod", "--phased", "--yes"}
	status := func(args ...string) Rollout {
		t.Helper()
		var st Rollout
		out := e.mustRun(append([]string{"-o", "json", "rollout", "status"}, args...)...)
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("rollout status -o json: %v\n%s", err, out)
		}
		return st
	}

	// A halted rollout owns its host until it is aborted.
	r.mu.Lock()
	r.broken["app1"] = true
	r.mu.Unlock()
	if o, er, code := e.run(promote...); code != 5 {
		t.Fatalf("promote --phased with a failing gate: exit %d, want 5\n%s%s", code, o, er)
	}
	halted := status()
	if halted.State != StateHalted {
		t.Fatalf("after the failed gate: state %s", halted.State)
	}
	if o, er, code := e.run(promote...); code != 4 || !strings.Contains(er, halted.ID) {
		t.Fatalf("promote --phased onto the halted rollout's host: exit %d, want 4 naming %s\n%s%s", code, halted.ID, o, er)
	}
	out := e.mustRun("rollout", "abort")
	if !strings.Contains(out, halted.ID) || !strings.Contains(out, "aborted") {
		t.Errorf("rollout abort printed:\n%s", out)
	}
	if st := status(halted.ID); st.State != StateAborted {
		t.Errorf("after abort: state %s, want aborted", st.State)
	}
	if got, want := r.pkgs(t, "app1"), "update app-2.0-1.el9.x86_64"; got != want {
		t.Errorf("abort touched the host: it was told %q, want %q", got, want)
	}
	if o, er, code := e.run("rollout", "resume", "--yes", halted.ID); code != 1 || !strings.Contains(er, "already finished") {
		t.Errorf("rollout resume of the aborted rollout: exit %d, want 1 (already finished)\n%s%s", code, o, er)
	}
	if o, er, code := e.run("rollout", "abort", halted.ID); code != 1 || !strings.Contains(er, "already finished") {
		t.Errorf("second rollout abort: exit %d, want 1 (already finished)\n%s%s", code, o, er)
	}

	// A running rollout, aborted from another process, stops before its
	// next step.
	r.mu.Lock()
	r.broken["app1"] = false
	r.mu.Unlock()
	if err := os.WriteFile(hold, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var pOut, pErr bytes.Buffer
	running := exec.Command(e.repoctl, append([]string{"--root", e.root}, promote...)...)
	running.Stdout, running.Stderr = &pOut, &pErr
	if err := running.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if running.ProcessState == nil {
			if err := running.Process.Kill(); err != nil {
				t.Log(err)
			}
			_ = running.Wait() // killed: its exit status says nothing
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for count(r.readMarks(t), "app1", "clean") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the second rollout never reached clean:\n%s%s", pOut.String(), pErr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	live := status()
	if live.ID == halted.ID || live.State != StateRunning || !live.Live {
		t.Fatalf("the second rollout: id %s state %s live %v, want a new one running", live.ID, live.State, live.Live)
	}
	// Without a daemon the running promote holds ROOT, so abort marks the
	// rollout at once and records its event once ROOT is free.
	var aOut, aErr bytes.Buffer
	abort := exec.Command(e.repoctl, "--root", e.root, "rollout", "abort", live.ID)
	abort.Stdout, abort.Stderr = &aOut, &aErr
	if err := abort.Start(); err != nil {
		t.Fatal(err)
	}
	for status(live.ID).State != StateAborted {
		if time.Now().After(deadline) {
			t.Fatalf("rollout abort never marked %s aborted:\n%s%s", live.ID, aOut.String(), aErr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.Remove(hold); err != nil {
		t.Fatal(err)
	}
	err = running.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(pErr.String(), "already finished") {
		t.Errorf("the aborted promote --phased: %v, want exit 1 (already finished)\n%s%s", err, pOut.String(), pErr.String())
	}
	if err := abort.Wait(); err != nil || !strings.Contains(aOut.String(), "aborted") {
		t.Errorf("rollout abort of the running rollout: %v\n%s%s", err, aOut.String(), aErr.String())
	}
	ms := r.readMarks(t)
	if n := count(ms, "app1", "update"); n != 1 {
		t.Errorf("app1 updated %d times, want 1: the aborted rollout went past clean", n)
	}

	// The host is free again.
	if o, er, code := e.run(promote...); code != 0 {
		t.Fatalf("promote --phased after the aborts: exit %d\n%s%s", code, o, er)
	}
	if n := count(r.readMarks(t), "app1", "update"); n != 2 {
		t.Errorf("app1 updated %d times, want 2", n)
	}
	var list []Rollout
	if err := json.Unmarshal([]byte(e.mustRun("-o", "json", "rollout", "list")), &list); err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, ro := range list {
		states = append(states, string(ro.State))
	}
	if got := strings.Join(states, " "); got != "aborted aborted done" {
		t.Errorf("rollout list: %s, want aborted aborted done", got)
	}
	var events []struct {
		Action  string            `json:"action"`
		Who     string            `json:"who"`
		Details map[string]string `json:"details"`
	}
	if err := json.Unmarshal([]byte(e.mustRun("-o", "json", "history")), &events); err != nil {
		t.Fatal(err)
	}
	aborted := map[string]bool{}
	for _, ev := range events {
		if ev.Action == "upgrade."+EventAborted && ev.Who != "" {
			aborted[ev.Details["rollout"]] = true
		}
	}
	if !aborted[halted.ID] || !aborted[live.ID] || len(aborted) != 2 {
		t.Errorf("abort events in the log: %v, want %s and %s", aborted, halted.ID, live.ID)
	}
	e.mustRun("history", "--verify")
}
