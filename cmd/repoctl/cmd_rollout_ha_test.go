package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/etcdtest"
	"github.com/repoctl/repoctl/internal/sshtest"
	"github.com/repoctl/repoctl/internal/testrpm"
)

// TestRolloutSharedAcrossNodes: two roots on one etcd prefix are two
// nodes of an HA pair. A rollout that node A runs against real sshd hosts
// is visible from node B; B can neither resume it nor start one on the
// same hosts while A runs it; once A is killed (SIGKILL) and its run
// lock's lease lapses, B resumes it to the end.
func TestRolloutSharedAcrossNodes(t *testing.T) {
	srv := etcdtest.Start(t)
	lab := sshtest.Start(t, []string{"app1", "app2"}, []string{"127.0.0.61", "127.0.0.62"})
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	hosts := ""
	for _, h := range lab.Hosts {
		hosts += fmt.Sprintf("  [[upgrade.groups.hosts]]\n  name = %q\n  address = %q\n  port = %d\n", h.Name, h.Address, h.Port)
	}
	// The hosts' health endpoint: one for both, always healthy.
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go hs.Serve(hl)
	t.Cleanup(func() { hs.Close() })
	// The update waits for the gate, so that A is mid-step when killed;
	// the other steps change nothing on this machine.
	config := func(node string) string {
		return fmt.Sprintf(`[signing]
algo = "ed25519"

[store]
backend = "etcd"
endpoints = [%q]
prefix = "/rollout-ha/"
node = %q
lease_ttl = "2s"
max_txn_ops = %d
max_request_bytes = %d

[upgrade]
known_hosts = %q
identity_file = %q
connect_timeout = "5s"
command_timeout = "120s"

[upgrade.health]
url = "http://%s/{{.Host}}"
retries = 1

[upgrade.commands]
clean = "true"
update = "while [ ! -e %s ]; do sleep 0.1; done; echo updated {{.NEVRA}}"
verify = "true"
restart = "true"
hard_restart = "true"
downgrade = "true"
purge = "true"

[[upgrade.groups]]
name = "g1"
%s`, srv.Endpoint, node, etcdtest.MaxTxnOps, etcdtest.MaxRequestBytes, lab.KnownHosts, lab.Identity, hl.Addr(), gate, hosts)
	}
	rootA, rootB := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for root, node := range map[string]string{rootA: "a", rootB: "b"} {
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "repoctl.toml"), []byte(config(node)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in := filepath.Join(dir, "in")
	if err := os.MkdirAll(in, 0o755); err != nil {
		t.Fatal(err)
	}
	var pkgs []string
	for _, name := range []string{"web", "worker"} {
		p, err := testrpm.Write(in, testrpm.Spec{Name: name, Version: "1.1", Release: "1.el9", Arch: "noarch", Summary: "t", License: "MIT",
			Files: []testrpm.File{{Name: "/usr/share/" + name + "/a", Body: []byte("b")}}})
		if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if o, e, code := runIn(t, rootA, append([]string{"add"}, pkgs...)...); code != 0 {
		t.Fatalf("add on A: exit %d\n%s%s", code, o, e)
	}
	// Every ROOT of a pair holds the pair's key (README): B's commands
	// would otherwise generate one, which is a write.
	if out, err := exec.Command("cp", "-a", filepath.Join(rootA, "keys"), rootB).CombinedOutput(); err != nil {
		t.Fatalf("copying the key: %v\n%s", err, out)
	}

	// Node A starts the rollout and is held in the update step.
	a := exec.Command(repoctlBin, "--root", rootA, "promote", "web-1.1-1.el9.noarch", "--to", "prod", "--phased", "--yes")
	var aOut bytes.Buffer
	a.Stdout, a.Stderr = &aOut, &aOut
	a.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	killA := func() {
		if !killed {
			killed = true
			syscall.Kill(-a.Process.Pid, syscall.SIGKILL)
			a.Wait()
		}
	}
	t.Cleanup(func() {
		os.WriteFile(gate, nil, 0o644) // lets the hosts' waiting steps end
		killA()
	})

	type status struct {
		ID    string `json:"id"`
		State string `json:"state"`
		Live  bool   `json:"live"`
		Steps []struct {
			Phase string `json:"phase"`
			Host  string `json:"host"`
			State string `json:"state"`
		} `json:"steps"`
	}
	statusOn := func(root string) (status, string) {
		t.Helper()
		out, e, code := runIn(t, root, "-o", "json", "rollout", "status")
		var st status
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
			return status{}, fmt.Sprintf("exit %d\n%s%s", code, out, e)
		}
		return st, out
	}
	updating := func(st status) bool {
		for _, s := range st.Steps {
			if strings.HasPrefix(s.Phase, "update") && s.State == "running" {
				return true
			}
		}
		return false
	}
	var st status
	for deadline := time.Now().Add(60 * time.Second); ; {
		var why string
		st, why = statusOn(rootB)
		if st.State == "running" && st.Live && updating(st) {
			break
		}
		if time.Now().After(deadline) || a.ProcessState != nil {
			t.Fatalf("node B never saw A's rollout updating a host: %+v %s\nA: %s", st, why, aOut.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	id := st.ID

	// B sees it as running (not interrupted), and may not take it or its hosts.
	if out, e, code := runIn(t, rootB, "rollout", "status", id); code != 0 || !strings.Contains(out, "state     running\n") {
		t.Errorf("rollout status %s on B: exit %d, want state running\n%s%s", id, code, out, e)
	}
	if out, e, code := runIn(t, rootB, "rollout", "list"); code != 0 || !strings.Contains(out, id) {
		t.Errorf("rollout list on B: exit %d, want %s\n%s%s", code, id, out, e)
	}
	if out, e, code := runIn(t, rootB, "rollout", "resume", id, "--yes"); code != exitBusy || !strings.Contains(e, "node a") {
		t.Errorf("resume on B while A runs it: exit %d, want %d naming A's node\n%s%s", code, exitBusy, out, e)
	}
	if out, e, code := runIn(t, rootB, "promote", "worker-1.1-1.el9.noarch", "--to", "prod", "--phased", "--yes"); code != exitBusy || !strings.Contains(e, id) {
		t.Errorf("a rollout on the same hosts from B: exit %d, want %d naming %s\n%s%s", code, exitBusy, id, out, e)
	}

	// A dies mid-step; its lease lapses and B sees the rollout interrupted.
	killA()
	for deadline := time.Now().Add(30 * time.Second); ; {
		st, _ = statusOn(rootB)
		if st.ID == id && st.State == "running" && !st.Live {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("A's run lock never lapsed: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, e, code := runIn(t, rootB, "rollout", "status", id); code != 0 || !strings.Contains(out, "running (interrupted)") {
		t.Errorf("rollout status on B after A died: exit %d, want interrupted\n%s%s", code, out, e)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A's command also held the pair's term (it recorded events); its
	// election lease lapses about when its run lock's does. Until then B's
	// resume is refused as any write beside a leader is.
	for deadline := time.Now().Add(30 * time.Second); ; {
		out, e, code := runIn(t, rootB, "rollout", "resume", id, "--yes")
		if code == exitBusy && strings.Contains(e, "not the leader (leader: a (command") && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if code != 0 || !strings.Contains(out, "done") {
			t.Fatalf("resume on B after A died: exit %d\n%s%s", code, out, e)
		}
		break
	}
	// Both nodes see the end.
	for name, root := range map[string]string{"A": rootA, "B": rootB} {
		st, why := statusOn(root)
		if st.ID != id || st.State != "done" || st.Live {
			t.Errorf("status on %s after the resume: %+v %s", name, st, why)
		}
		for _, s := range st.Steps {
			if s.State != "done" {
				t.Errorf("status on %s: step %s on %s is %s", name, s.Phase, s.Host, s.State)
			}
		}
	}
	// Nothing of it is on either node's disk.
	for _, root := range []string{rootA, rootB} {
		for _, f := range []string{"rollouts.db", "rollouts.d"} {
			if _, err := os.Stat(filepath.Join(root, f)); err == nil {
				t.Errorf("%s exists: the rollout went to the node's disk", filepath.Join(root, f))
			}
		}
	}
}
