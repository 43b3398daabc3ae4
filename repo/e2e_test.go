package repo

// End-to-end tests of `repoctl daemon` as a real process: the binary is
// built once per test run, the daemon watches real directories with
// fsnotify, serves real HTTP, and dnf installs from it.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"github.com/repoctl/repoctl/internal/testkit"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/repoctl/repoctl/internal/testrpm"
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	// Helper processes the tests start from this binary.
	if state := os.Getenv("REPOCTL_R1_CRASH_AT"); state != "" {
		crashHelper(state)
	}
	if state := os.Getenv("REPOCTL_LC_CRASH_AT"); state != "" {
		lifecycleCrashHelper(state)
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// repoctlBinary builds cmd/repoctl once per test run.
func repoctlBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "repoctl-e2e-bin")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "repoctl")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/repoctl").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build ./cmd/repoctl: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// needTools fails (never skips) when a peer the test runs against is missing.
func needTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required (install it with .ci/install-test-deps): %v", tool, err)
		}
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// newTestRoot makes a ROOT with a config serving HTTP on a free loopback
// port. extra is appended to the config.
func newTestRoot(t testing.TB, extra string) (root string, httpURL string) {
	t.Helper()
	root = t.TempDir()
	port := freePort(t)
	cfg := fmt.Sprintf("[http]\nlisten = \"127.0.0.1:%d\"\n%s", port, extra)
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, fmt.Sprintf("http://127.0.0.1:%d/", port)
}

// daemonProc is a running `repoctl daemon`.
type daemonProc struct {
	t       testing.TB
	root    string
	cmd     *exec.Cmd
	logPath string
	done    chan error
	exited  bool
	err     error
}

// startDaemon starts the daemon on root and waits until its control socket
// answers. Its log goes to ROOT/../daemon-N.log and is shown on failure.
func startDaemon(t testing.TB, root string, args ...string) *daemonProc {
	t.Helper()
	bin := repoctlBinary(t)
	logf, err := os.CreateTemp(filepath.Dir(root), "daemon-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"daemon", "--root", root, "--log-format", "json", "--log-level", "debug"}, args...)...)
	cmd.Stderr = logf
	cmd.Stdout = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := logf.Close(); err != nil {
		t.Fatal(err)
	}
	d := &daemonProc{t: t, root: root, cmd: cmd, logPath: logf.Name(), done: make(chan error, 1)}
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if !d.exited {
			d.cmd.Process.Kill()
			d.wait(10 * time.Second)
		}
		if t.Failed() {
			b, err := os.ReadFile(d.logPath)
			if err != nil {
				t.Error(err)
			}
			if len(b) > 20000 {
				b = b[len(b)-20000:]
			}
			t.Logf("daemon log %s (tail):\n%s", d.logPath, b)
		}
	})
	sock := filepath.Join(root, "repoctl.sock")
	deadline := time.Now().Add(2 * time.Minute) // first start generates a key
	for {
		if c, err := Dial(context.Background(), sock, time.Second); err == nil {
			// Ping answers before Resume is done; Status waits for it.
			_, serr := c.Status(context.Background())
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if serr == nil {
				return d
			}
		}
		select {
		case err := <-d.done:
			d.exited, d.err = true, err
			b, rerr := os.ReadFile(d.logPath)
			if rerr != nil {
				t.Fatal(rerr)
			}
			t.Fatalf("daemon exited during start: %v\n%s", err, b)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("daemon did not answer on its socket within 2m")
		}
	}
}

func (d *daemonProc) wait(timeout time.Duration) error {
	if d.exited {
		return d.err
	}
	select {
	case err := <-d.done:
		d.exited, d.err = true, err
		return err
	case <-time.After(timeout):
		return fmt.Errorf("daemon did not exit within %v", timeout)
	}
}

// stop sends SIGTERM and expects a clean exit.
func (d *daemonProc) stop() {
	d.t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		d.t.Fatal(err)
	}
	if err := d.wait(60 * time.Second); err != nil {
		d.t.Fatalf("daemon after SIGTERM: %v", err)
	}
}

func (d *daemonProc) kill9() {
	d.t.Helper()
	d.cmd.Process.Signal(syscall.SIGKILL)
	d.wait(30 * time.Second)
}

func (d *daemonProc) log() string {
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		return fmt.Sprintf("(reading the daemon's log: %v)", err)
	}
	return string(b)
}

// runCLI runs repoctl with args on root; it returns stdout, stderr and the
// exit code.
func runCLI(t testing.TB, root string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(repoctlBinary(t), append([]string{"--root", root}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("repoctl %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// dropFile writes body under a partial name in dir and renames it to name,
// the way a careful uploader does.
func dropFile(t testing.TB, dir, name string, body []byte) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".part")
	if err := os.WriteFile(tmp, body, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// repoPackage is one <package> of primary.xml.
type repoPackage struct {
	Name    string `xml:"name"`
	Arch    string `xml:"arch"`
	Version struct {
		Epoch string `xml:"epoch,attr"`
		Ver   string `xml:"ver,attr"`
		Rel   string `xml:"rel,attr"`
	} `xml:"version"`
	Checksum string `xml:"checksum"`
	Location struct {
		Href string `xml:"href,attr"`
	} `xml:"location"`
}

func (p repoPackage) NVRA() string {
	return fmt.Sprintf("%s-%s-%s.%s", p.Name, p.Version.Ver, p.Version.Rel, p.Arch)
}

// repodataPackages reads dir/repodata/repomd.xml and the primary it names,
// as a client would, and returns the packages by N-V-R.A. A missing
// repomd.xml is an empty repository.
func repodataPackages(dir string) (map[string]repoPackage, error) {
	b, err := os.ReadFile(filepath.Join(dir, "repodata", "repomd.xml"))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]repoPackage{}, nil
	}
	if err != nil {
		return nil, err
	}
	return primaryFromRepomd(dir, b)
}

func primaryFromRepomd(dir string, repomd []byte) (map[string]repoPackage, error) {
	var md struct {
		Data []struct {
			Type     string `xml:"type,attr"`
			Location struct {
				Href string `xml:"href,attr"`
			} `xml:"location"`
		} `xml:"data"`
	}
	if err := xml.Unmarshal(repomd, &md); err != nil {
		return nil, fmt.Errorf("parsing repomd.xml: %w", err)
	}
	href := ""
	for _, d := range md.Data {
		if d.Type == "primary" {
			href = d.Location.Href
		}
	}
	if href == "" {
		return nil, errors.New("repomd.xml has no primary")
	}
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(href)))
	if err != nil {
		return nil, fmt.Errorf("repomd.xml names %q: %w", href, err)
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(href, ".zst"):
		zr, err := zstd.NewReader(f)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	case strings.HasSuffix(href, ".gz"):
		gr, err := gzip.NewReader(f)
		if err != nil {
			return nil, err
		}
		defer gr.Close()
		r = gr
	}
	var primary struct {
		Packages int           `xml:"packages,attr"`
		Package  []repoPackage `xml:"package"`
	}
	if err := xml.NewDecoder(r).Decode(&primary); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", href, err)
	}
	if primary.Packages != len(primary.Package) {
		return nil, fmt.Errorf("%s says packages=%d but has %d", href, primary.Packages, len(primary.Package))
	}
	out := make(map[string]repoPackage, len(primary.Package))
	for _, p := range primary.Package {
		out[p.NVRA()] = p
	}
	return out, nil
}

// waitFor polls cond until it holds (testkit.WaitFor).
var waitFor = testkit.WaitFor

// helloSpec is a package with no dependencies, installable into an empty
// installroot.
func helloSpec(name string) testrpm.Spec {
	return testrpm.Spec{
		Name: name, Version: "1.0", Release: "1.el9", Arch: "x86_64",
		Summary: "repoctl end-to-end test package", Description: "Installed by dnf from the daemon.",
		License: "MIT", BuildTime: time.Unix(1700000000, 0),
		Files: []testrpm.File{
			{Name: "/usr/share/" + name, Dir: true},
			{Name: "/usr/share/" + name + "/README", Body: []byte("hello from " + name + "\n")},
		},
	}
}

func listDir(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// A package dropped into incoming/ while the daemon runs is installed by
// dnf with gpgcheck=1 and repo_gpgcheck=1 from the daemon's HTTP server.
func TestDaemonDropInstallDNF(t *testing.T) {
	needTools(t, "dnf", "rpm")
	root, url := newTestRoot(t, "")
	d := startDaemon(t, root)

	b, err := testrpm.Build(helloSpec("repoctl-hello"))
	if err != nil {
		t.Fatal(err)
	}
	dropFile(t, filepath.Join(root, "incoming"), "repoctl-hello-1.0-1.el9.x86_64.rpm", b)
	repoDir := filepath.Join(root, "repo", "main", "staging", "el", "9", "x86_64")
	waitFor(t, time.Minute, "the package in repodata", func() (bool, string) {
		pk, err := repodataPackages(repoDir)
		if err != nil {
			return false, err.Error()
		}
		_, ok := pk["repoctl-hello-1.0-1.el9.x86_64"]
		return ok, fmt.Sprintf("%d packages, incoming %v", len(pk), listDir(t, filepath.Join(root, "incoming")))
	})
	if names := listDir(t, filepath.Join(root, "incoming")); len(names) != 0 {
		t.Errorf("incoming/ not empty after ingest: %v", names)
	}

	repofile, stderr, code := runCLI(t, root, "repofile", "--channel", "staging")
	if code != 0 {
		t.Fatalf("repoctl repofile: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"gpgcheck=1", "repo_gpgcheck=1", "gpgkey=" + url + PublicKeyFile, "baseurl=" + url + "main/staging/el/$releasever/$basearch/"} {
		if !strings.Contains(repofile, want) {
			t.Errorf(".repo lacks %q:\n%s", want, repofile)
		}
	}
	installroot := t.TempDir()
	reposd := t.TempDir()
	if err := os.WriteFile(filepath.Join(reposd, "repoctl.repo"), []byte(repofile), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "dnf.conf")
	if err := os.WriteFile(conf, []byte("[main]\ngpgcheck=1\nrepo_gpgcheck=1\nreposdir="+reposd+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dnf", "-y", "--config", conf, "--installroot", installroot,
		"--releasever", "9", "--forcearch", "x86_64", "--setopt=cachedir="+filepath.Join(installroot, "var/cache/dnf"),
		"--repo", "main-staging-el", "install", "repoctl-hello")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dnf install: %v\n%s", err, out)
	}
	q, err := exec.Command("rpm", "--root", installroot, "-q", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH} %{RSAHEADER:pgpsig}\n", "repoctl-hello").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(q), "repoctl-hello-1.0-1.el9.x86_64") {
		t.Fatalf("rpm -q in the installroot: %v\n%q\ndnf said:\n%s", err, q, out)
	}
	if _, err := os.Stat(filepath.Join(installroot, "usr/share/repoctl-hello/README")); err != nil {
		t.Errorf("installed file missing: %v", err)
	}
	t.Logf("installed: %s", bytes.TrimSpace(q))
	stOut, stderr, code := runCLI(t, root, "-o", "json", "status")
	var st Status
	if code != 0 || json.Unmarshal([]byte(stOut), &st) != nil || st.KeyID == "" {
		t.Fatalf("status: exit %d: %s\n%s", code, stderr, stOut)
	}
	if !strings.Contains(string(q), "Key ID "+st.KeyID) {
		t.Errorf("installed package is not signed by the daemon's key %s: %s", st.KeyID, q)
	}
	d.stop()
	if _, err := os.Stat(filepath.Join(root, "repoctl.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after SIGTERM: %v", err)
	}
}

// The CLI goes through the daemon's socket while it runs (no lock error),
// and does the work itself when it does not.
func TestDaemonSocketCLI(t *testing.T) {
	root, _ := newTestRoot(t, "")
	dir := t.TempDir()
	p, err := testrpm.Write(dir, helloSpec("repoctl-sock"))
	if err != nil {
		t.Fatal(err)
	}
	// No daemon: local, under the lock.
	out, stderr, code := runCLI(t, root, "-o", "json", "status")
	if code != 0 {
		t.Fatalf("status without daemon: exit %d: %s", code, stderr)
	}
	var st Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status json: %v\n%s", err, out)
	}
	if st.Daemon {
		t.Error("status says daemon without one running")
	}

	d := startDaemon(t, root)
	out, stderr, code = runCLI(t, root, "-o", "json", "status")
	if code != 0 || strings.Contains(stderr, "lock") {
		t.Fatalf("status with daemon: exit %d: %s", code, stderr)
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status json: %v\n%s", err, out)
	}
	if !st.Daemon {
		t.Error("status with the daemon running did not go through its socket")
	}
	// Several CLIs at once, all through the socket.
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := [][]string{{"add", p}, {"list"}, {"history"}, {"status"}}[i]
			_, stderr, code := runCLI(t, root, args...)
			if code != 0 || strings.Contains(strings.ToLower(stderr), "locked") {
				errs <- fmt.Sprintf("%v: exit %d: %s", args, code, stderr)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	out, stderr, code = runCLI(t, root, "-o", "json", "list")
	if code != 0 {
		t.Fatalf("list: exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "repoctl-sock-1.0-1.el9.x86_64") {
		t.Errorf("list through the daemon lacks the added package:\n%s", out)
	}
	if !strings.Contains(d.log(), `"method":"add"`) {
		t.Error("daemon log shows no add request: the CLI did not use the socket")
	}
	if _, err := os.Stat(p); err != nil {
		t.Errorf("add through the socket touched the caller's file: %v", err)
	}
	d.stop()

	// After the daemon: local again, and the package is still there.
	out, stderr, code = runCLI(t, root, "-o", "json", "list")
	if code != 0 || !strings.Contains(out, "repoctl-sock-1.0-1.el9.x86_64") {
		t.Fatalf("list after the daemon stopped: exit %d: %s\n%s", code, stderr, out)
	}
}

// A second daemon on the same root refuses at once instead of waiting for
// the lock.
func TestDaemonSecondInstance(t *testing.T) {
	root, _ := newTestRoot(t, "")
	d := startDaemon(t, root)
	cmd := exec.Command(repoctlBinary(t), "daemon", "--root", root, "--listen", "off")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 4 {
		t.Fatalf("second daemon: %v (want exit 4, busy)\n%s", err, out)
	}
	if !strings.Contains(string(out), "already serves") {
		t.Errorf("second daemon's message: %s", out)
	}
	t.Logf("second daemon refused after %v: %s", time.Since(start).Round(time.Millisecond), bytes.TrimSpace(out))
	d.stop()
}
