package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testUser returns a non-root account for tests that need a second
// identity, creating it (as root) on first use.
func testUser(t *testing.T) (uid, gid uint32, name string) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatal("this test needs root to create and act as a second user (CI runs as root)")
	}
	name = "repoctl-test"
	u, err := user.Lookup(name)
	if err != nil {
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "already exists") {
			t.Fatalf("useradd %s: %v\n%s", name, err, out)
		}
		if u, err = user.Lookup(name); err != nil {
			t.Fatal(err)
		}
	}
	n, err := strconv.Atoi(u.Uid)
	if err != nil {
		t.Fatal(err)
	}
	g, err := strconv.Atoi(u.Gid)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n), uint32(g), name
}

// runCLIAs runs repoctl as uid:gid.
func runCLIAs(t *testing.T, uid, gid uint32, root string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(repoctlBinary(t), append([]string{"--root", root}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
	cmd.Dir = "/"
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("repoctl %v as uid %d: %v", args, uid, err)
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

// openForOthers makes every directory from dir up to / traversable, so a
// second user can reach the socket and the binary.
func openForOthers(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		for ; d != "/" && d != "."; d = filepath.Dir(d) {
			fi, err := os.Stat(d)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(d, fi.Mode().Perm()|0o005); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// The daemon runs as root and a member of the socket's group asks it to
// add files. It reads only what that user can read, and records the
// kernel's identity of the caller, whatever the client claims.
func TestSocketCallerIdentity(t *testing.T) {
	uid, gid, name := testUser(t)
	root, _ := newTestRoot(t, "")
	d := startDaemon(t, root)
	sock := filepath.Join(root, "repoctl.sock")
	if err := os.Chown(sock, 0, int(gid)); err != nil {
		t.Fatal(err)
	}
	openForOthers(t, root, filepath.Dir(repoctlBinary(t)))

	// A file the user cannot read: root's, 0600, in a 0700 directory.
	private := filepath.Join(t.TempDir(), "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	secret := writeSpec(t, private, spec("secret", "1", "1.el9", "noarch"))
	if err := os.Chmod(secret, 0o600); err != nil {
		t.Fatal(err)
	}
	openForOthers(t, filepath.Dir(private))
	out, stderr, code := runCLIAs(t, uid, gid, root, "-o", "json", "add", secret)
	if code != 3 || !strings.Contains(out, "permission denied") {
		t.Errorf("add of an unreadable file as %s: exit %d, want 3 with permission denied\n%s%s", name, code, out, stderr)
	}

	// The same kind of file, readable by the user, goes in.
	pub := t.TempDir()
	openForOthers(t, pub)
	ok := writeSpec(t, pub, spec("public", "1", "1.el9", "noarch"))
	out, stderr, code = runCLIAs(t, uid, gid, root, "add", ok)
	if code != 0 {
		t.Fatalf("add of a readable file as %s: exit %d\n%s%s", name, code, out, stderr)
	}

	// A forged who from a client (here the test, root) is a note only.
	c, err := Dial(context.Background(), sock, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	forged := writeSpec(t, pub, spec("forged", "1", "1.el9", "noarch"))
	if _, err := c.Add(context.Background(), []string{forged}, AddOptions{Who: "root-admin (forged)"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	// Clients cannot append events of their choice any more.
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := hc.Post("http://repoctl/v1/event", "application/json",
		strings.NewReader(`{"who":"alice (forged)","action":"remove","nevra":"public-1-1.el9.noarch"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /v1/event: %s, want 404", resp.Status)
	}
	// Nor have the daemon open a path for them, as an older CLI asked.
	resp, err = hc.Post("http://repoctl/v1/add", "application/json", strings.NewReader(`{"paths":["`+secret+`"]}`))
	if err != nil {
		t.Fatal(err)
	}
	var reply wireReply
	if err := json.NewDecoder(resp.Body).Decode(&reply); err != nil {
		t.Fatal(err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	if reply.Error == nil || !strings.Contains(reply.Error.Message, "no longer served") || len(reply.Result) > 0 && string(reply.Result) != "null" {
		t.Errorf("add by path: %+v, want refused", reply)
	}

	out, _, code = runCLI(t, root, "-o", "json", "history", "--verify")
	if code != 0 {
		t.Fatalf("history --verify: exit %d", code)
	}
	var evs []Event
	if err := json.Unmarshal([]byte(out), &evs); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range evs {
		switch {
		case e.NEVRA == "secret-1-1.el9.noarch":
			t.Errorf("the unreadable package reached the log: %+v", e)
		case e.Action == "remove":
			t.Errorf("a client appended a remove event: %+v", e)
		case e.Action == EventAdd && e.NEVRA == "public-1-1.el9.noarch":
			seen["public"] = true
			if e.Caller == nil || e.Caller.UID != uid || e.Who != name {
				t.Errorf("add as %s recorded as who=%q caller=%+v, want uid %d", name, e.Who, e.Caller, uid)
			}
		case e.Action == EventAdd && e.NEVRA == "forged-1-1.el9.noarch":
			seen["forged"] = true
			if e.Who != "root" || e.Caller == nil || e.Caller.UID != 0 || e.Details["claimed_who"] != "root-admin (forged)" {
				t.Errorf("forged add recorded as who=%q caller=%+v details=%v, want root with the claim as a note", e.Who, e.Caller, e.Details)
			}
		}
	}
	if !seen["public"] || !seen["forged"] {
		t.Errorf("add events missing: %v", seen)
	}
	list, _, _ := runCLI(t, root, "list")
	if strings.Contains(list, "secret") || !strings.Contains(list, "public") {
		t.Errorf("list:\n%s", list)
	}
	d.stop()
}

// A client swaps a path between a package and a FIFO while adding it over
// the socket. The daemon never opens the path, so it never blocks; every
// call returns, and SIGTERM still stops the daemon within its grace.
func TestSocketFIFORace(t *testing.T) {
	root, _ := newTestRoot(t, "")
	d := startDaemon(t, root)
	dir := t.TempDir()
	reg := writeSpec(t, dir, spec("racy", "1", "1.el9", "noarch"))
	target := filepath.Join(dir, "target.rpm")
	stop := make(chan struct{})
	swapped := make(chan int)
	go func() {
		n := 0
		defer func() { swapped <- n }()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tmp := filepath.Join(dir, "tmp")
			if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
				t.Error(err)
			}
			var err error
			if i%2 == 0 {
				err = os.Link(reg, tmp)
			} else {
				err = syscall.Mkfifo(tmp, 0o644)
			}
			if err == nil && os.Rename(tmp, target) == nil {
				n++
			}
		}
	}()
	c, err := Dial(context.Background(), filepath.Join(root, "repoctl.sock"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 5000 && time.Now().Before(deadline); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := c.Add(ctx, []string{target}, AddOptions{})
		cancel()
		if err != nil {
			close(stop)
			<-swapped
			t.Fatalf("add %d: %v (the daemon must answer every call)", i, err)
		}
		counts[res[0].Action]++
		if res[0].Action == ActionRejected && !strings.Contains(res[0].Reason, "FIFO") && !strings.Contains(res[0].Reason, "no such file") {
			t.Errorf("rejected for %q", res[0].Reason)
		}
	}
	close(stop)
	n := <-swapped
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d swaps, outcomes %v", n, counts)
	if counts[ActionAdded]+counts[ActionUnchanged] == 0 {
		t.Errorf("the package never went in: %v", counts)
	}
	if _, _, code := runCLI(t, root, "status"); code != 0 {
		t.Errorf("status after the race: exit %d", code)
	}
	start := time.Now()
	d.stop() // fails the test if the daemon does not exit on SIGTERM
	t.Logf("stopped in %v", time.Since(start))
}

// Symlinks, FIFOs and sockets dropped into incoming/ go to rejected/ with
// a reason at once; a subdirectory stays and status counts it as skipped.
func TestDropInSpecialEntries(t *testing.T) {
	root, _ := newTestRoot(t, "")
	d := startDaemon(t, root)
	inc := filepath.Join(root, "incoming")
	if err := os.Symlink("/etc/passwd", filepath.Join(inc, "link.rpm")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(inc, "fifo.rpm"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(inc, "sock.rpm"))
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(inc, "x86_64"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := writeSpec(t, t.TempDir(), spec("beside", "1", "1.el9", "noarch"))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	dropFile(t, inc, filepath.Base(p), b)
	rej := filepath.Join(root, "rejected")
	var st Status
	waitFor(t, time.Minute, "special entries moved aside and the package added", func() (bool, string) {
		out, _, code := runCLI(t, root, "-o", "json", "status")
		st = Status{}
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
			return false, out
		}
		return st.InFlight == 0 && st.Packages == 1 && st.Rejected == 3, out
	})
	// The subdirectory is watched (and empty), so nothing is skipped.
	if left := listDir(t, inc); len(left) != 1 || left[0] != "x86_64" {
		t.Errorf("left in incoming: %v, want only the subdirectory", left)
	}
	if st.Skipped != 0 || st.Incoming != 0 {
		t.Errorf("status: skipped %d incoming %d, want 0 and 0", st.Skipped, st.Incoming)
	}
	for name, kind := range map[string]string{"link.rpm": "symbolic link", "fifo.rpm": "FIFO", "sock.rpm": "socket"} {
		r, err := os.ReadFile(filepath.Join(rej, name+".reason"))
		if err != nil || !strings.HasPrefix(string(r), reasonUnreadable+": ") || !strings.Contains(string(r), kind) {
			t.Errorf("%s: reason %q %v, want unreadable: … %s", name, r, err, kind)
		}
		fi, err := os.Lstat(filepath.Join(rej, name))
		if err != nil || fi.Mode().IsRegular() {
			t.Errorf("%s kept as %v %v, want the entry itself", name, fi, err)
		}
	}
	d.stop()
}
