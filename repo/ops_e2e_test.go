package repo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runCLIEnv is runCLI with extra environment variables.
func runCLIEnv(t testing.TB, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(repoctlBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("repoctl %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

// runRefused runs a command that must refuse to run (a daemon that should
// not start): one that still runs after a minute is killed, and its exit
// code is then -1, so that a broken refusal fails the test rather than
// hanging it.
func runRefused(t testing.TB, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, repoctlBinary(t), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("repoctl %v: %v", args, err)
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

// startDaemonCmd starts cmd (a `repoctl daemon`, perhaps through sh or as
// another user) and waits until the socket sock answers Status.
func startDaemonCmd(t testing.TB, root, sock string, cmd *exec.Cmd) *daemonProc {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), "daemon-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
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
			t.Logf("daemon log %s:\n%s", d.logPath, d.log())
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if c, err := Dial(context.Background(), sock, time.Second); err == nil {
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
			t.Fatalf("daemon exited during start: %v\n%s", err, d.log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("daemon did not answer on its socket within 2m")
		}
	}
}

// logEntries are the daemon's JSON log lines whose msg is msg.
func logEntries(d *daemonProc, msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(d.log()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e map[string]any
		if json.Unmarshal(sc.Bytes(), &e) == nil && e["msg"] == msg {
			out = append(out, e)
		}
	}
	return out
}

func strList(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func writeFile(t testing.TB, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// listed reports whether list -o json shows nevra.
func listed(t testing.TB, root, nevra string) (bool, string) {
	out, _, code := runCLI(t, root, "-o", "json", "list")
	var recs []PackageRecord
	if code != 0 || json.Unmarshal([]byte(out), &recs) != nil {
		return false, out
	}
	for _, r := range recs {
		if r.NEVRA == nevra {
			return true, out
		}
	}
	return false, out
}

// Every bad config file makes `config check` exit 2 naming FILE:LINE, every
// other command refuse it the same way (found through ROOT/repoctl.toml or
// REPOCTL_CONFIG), and the daemon refuse to start, creating nothing.
func TestConfigCheckCLI(t *testing.T) {
	dir := t.TempDir()
	for i, tc := range badConfigs {
		file := filepath.Join(dir, fmt.Sprintf("bad%d.toml", i))
		writeFile(t, file, tc.body)
		want := fmt.Sprintf("%s:%d: ", file, tc.line)
		root := filepath.Join(t.TempDir(), "root")
		_, stderr, code := runCLI(t, root, "config", "check", file)
		if code != 2 || !strings.Contains(stderr, want) {
			t.Errorf("%s: config check exit %d, want 2 naming %q:\n%s", tc.name, code, want, stderr)
		}
		stderr, code = runRefused(t, "--root", root, "--config", file, "daemon", "--listen", "off")
		if code == -1 {
			t.Fatalf("%s: the daemon started on a bad config:\n%s", tc.name, stderr)
		}
		if code != 2 || !strings.Contains(stderr, want) {
			t.Errorf("%s: daemon exit %d, want 2 naming %q:\n%s", tc.name, code, want, stderr)
		}
		if _, err := os.Stat(root); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: the refused daemon created %s (%v)", tc.name, root, err)
		}
	}

	// -o json gives every problem as data.
	file := filepath.Join(dir, "two.toml")
	writeFile(t, file, "[publish]\ncompresion = \"gz\"\n[daemon]\nsettle = \"soon\"\n")
	out, _, code := runCLI(t, t.TempDir(), "-o", "json", "config", "check", file)
	var res struct {
		Error struct {
			Code int `json:"code"`
		} `json:"error"`
		Result struct {
			Problems []struct {
				File string `json:"file"`
				Line int    `json:"line"`
				Key  string `json:"key"`
			} `json:"problems"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 2 || res.Error.Code != 2 ||
		len(res.Result.Problems) != 2 || res.Result.Problems[0].Line != 2 || res.Result.Problems[0].Key != "publish.compresion" ||
		res.Result.Problems[1].Line != 4 || res.Result.Problems[1].File != file {
		t.Errorf("config check -o json: exit %d %v\n%s", code, err, out)
	}

	// Good files pass.
	for _, good := range []string{"../testdata/repoctl.example.toml", "../upgrade/testdata/upgrade.example.toml"} {
		out, stderr, code := runCLI(t, t.TempDir(), "config", "check", good)
		if code != 0 || !strings.Contains(out, "valid") {
			t.Errorf("config check %s: exit %d\n%s%s", good, code, out, stderr)
		}
	}

	// Lookup order: ROOT/repoctl.toml, overridden by REPOCTL_CONFIG,
	// overridden by --config.
	root := t.TempDir()
	bad := filepath.Join(dir, "bad0.toml")
	writeFile(t, filepath.Join(root, ConfigFileName), badConfigs[0].body)
	if _, stderr, code := runCLI(t, root, "list"); code != 2 || !strings.Contains(stderr, filepath.Join(root, ConfigFileName)+":2:") {
		t.Errorf("list with a bad ROOT/repoctl.toml: exit %d\n%s", code, stderr)
	}
	good := filepath.Join(dir, "good.toml")
	writeFile(t, good, "[signing]\nalgo = \"ed25519\"\n[http]\nlisten = \"off\"\n")
	if out, stderr, code := runCLIEnv(t, []string{"REPOCTL_CONFIG=" + good}, "--root", root, "config", "check"); code != 0 || !strings.Contains(out, good+": valid") {
		t.Errorf("REPOCTL_CONFIG over ROOT/repoctl.toml: exit %d\n%s%s", code, out, stderr)
	}
	if _, stderr, code := runCLIEnv(t, []string{"REPOCTL_CONFIG=" + bad}, "--root", root, "--config", good, "config", "check"); code != 0 {
		t.Errorf("--config over REPOCTL_CONFIG: exit %d\n%s", code, stderr)
	}
	if _, stderr, code := runCLIEnv(t, []string{"REPOCTL_CONFIG=" + bad}, "--root", t.TempDir(), "status"); code != 2 || !strings.Contains(stderr, bad+":2:") {
		t.Errorf("status with a bad REPOCTL_CONFIG: exit %d\n%s", code, stderr)
	}

	// config show: the defaults filled in, as TOML or JSON.
	out, stderr, code := runCLIEnv(t, []string{"REPOCTL_CONFIG=" + good}, "--root", root, "-o", "json", "config", "show")
	var ec EffectiveConfig
	if err := json.Unmarshal([]byte(out), &ec); err != nil || code != 0 || ec.File != good {
		t.Fatalf("config show -o json: exit %d %v\n%s%s", code, err, out, stderr)
	}
	if s, _ := ec.Config["signing"].(map[string]any); s["algo"] != "ed25519" || s["name"] != "repoctl" {
		t.Errorf("config show: signing = %v", ec.Config["signing"])
	}
	out, _, code = runCLI(t, root, "--config", good, "config", "show")
	shown := filepath.Join(dir, "shown.toml")
	writeFile(t, shown, out)
	if _, stderr, c2 := runCLI(t, root, "config", "check", shown); code != 0 || c2 != 0 || !strings.Contains(out, `dir_mode = "0755"`) {
		t.Errorf("config show's TOML does not check: exit %d/%d\n%s%s", code, c2, out, stderr)
	}
}

// SIGHUP: the daemon re-reads its config (here found through
// REPOCTL_CONFIG), applies a new drop-in directory and settle interval and
// new HTTP settings at once, logs what changed and what needs a restart,
// ignores a config that does not load, and keeps serving throughout.
func TestDaemonReloadSIGHUP(t *testing.T) {
	root := t.TempDir()
	cfgFile := filepath.Join(t.TempDir(), "repoctl.toml")
	port := freePort(t)
	base := fmt.Sprintf("[http]\nlisten = \"127.0.0.1:%d\"\n%%s[signing]\nalgo = \"ed25519\"\n", port)
	writeFile(t, cfgFile, fmt.Sprintf(base, "")+"[daemon]\nsettle = \"1h\"\n[[dropin]]\ndir = \"incoming\"\n")
	cmd := exec.Command(repoctlBinary(t), "daemon", "--root", root, "--log-format", "json", "--log-level", "debug")
	cmd.Env = append(os.Environ(), "REPOCTL_CONFIG="+cfgFile)
	d := startDaemonCmd(t, root, filepath.Join(root, "repoctl.sock"), cmd)
	env := []string{"REPOCTL_CONFIG=" + cfgFile}
	cli := func(args ...string) (string, string, int) {
		return runCLIEnv(t, env, append([]string{"--root", root}, args...)...)
	}
	listedEnv := func(nevra string) (bool, string) {
		out, _, code := cli("-o", "json", "list")
		var recs []PackageRecord
		if code != 0 || json.Unmarshal([]byte(out), &recs) != nil {
			return false, out
		}
		for _, r := range recs {
			if r.NEVRA == nevra {
				return true, out
			}
		}
		return false, out
	}
	hup := func() {
		t.Helper()
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	// A new drop-in directory going to prod, a short settle, a new HTTP
	// rate, and a change that needs a restart.
	writeFile(t, cfgFile, fmt.Sprintf(base, "min_rate = 8192\n")+
		"[publish]\ncompression = \"gz\"\n[daemon]\nsettle = \"300ms\"\n[[dropin]]\ndir = \"incoming2\"\nchannel = \"prod\"\n")
	hup()
	var reloaded map[string]any
	waitFor(t, time.Minute, "the reload to be logged", func() (bool, string) {
		e := logEntries(d, "config reloaded")
		if len(e) == 0 {
			return false, d.log()
		}
		reloaded = e[0]
		return true, ""
	})
	if got, want := strList(reloaded["changed"]), []string{"daemon.settle", "dropin", "http.min_rate"}; !slices.Equal(got, want) {
		t.Errorf("changed %v, want %v", got, want)
	}
	if got := strList(reloaded["needs_restart"]); !slices.Equal(got, []string{"publish.compression"}) {
		t.Errorf("needs_restart %v, want [publish.compression]", got)
	}
	if w := logEntries(d, "config key changed but cannot change while the daemon runs; restart it to apply"); len(w) != 1 || w[0]["key"] != "publish.compression" {
		t.Errorf("restart warnings %v, want one for publish.compression", w)
	}

	// The new directory is watched, into its channel, with the new settle.
	inc2 := filepath.Join(root, "incoming2")
	waitFor(t, time.Minute, "the new watcher", func() (bool, string) {
		for _, e := range logEntries(d, "watching drop-in directories") {
			if slices.Equal(strList(e["dirs"]), []string{inc2}) {
				return e["settle"] == float64(300*time.Millisecond), fmt.Sprint(e)
			}
		}
		return false, d.log()
	})
	a := writeSpec(t, t.TempDir(), spec("reload-a", "1", "1.el9", "noarch"))
	b, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	dropFile(t, inc2, "reload-a.rpm", b)
	waitFor(t, time.Minute, "reload-a from the new drop-in directory", func() (bool, string) { return listedEnv("reload-a-1-1.el9.noarch") })
	if _, err := os.Stat(filepath.Join(root, "repo", "main", "prod", "el", "9", "x86_64", "reload-a-1-1.el9.noarch.rpm")); err != nil {
		t.Errorf("reload-a not in prod, the new drop-in's channel: %v", err)
	}
	// The new settle interval: a fresh file that appears without a
	// close-write or a rename (a hard link of one written elsewhere; a file
	// still open for writing is never taken) is taken once it has been
	// quiet for 300ms; with the old 1h it would wait an hour.
	pb := writeSpec(t, t.TempDir(), spec("reload-b", "1", "1.el9", "noarch"))
	now := time.Now()
	if err := os.Chtimes(pb, now, now); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(pb, filepath.Join(inc2, "reload-b.rpm")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "reload-b, linked in, after the new settle", func() (bool, string) { return listedEnv("reload-b-1-1.el9.noarch") })
	// status counts the directories in effect: not the old one.
	writeFile(t, filepath.Join(root, "incoming", "stray.rpm"), "x")
	out, _, code := cli("-o", "json", "status")
	var st Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 || st.Incoming != 0 {
		t.Errorf("status after reload: exit %d incoming %d (%v), want 0: the old directory is not a drop-in any more\n%s", code, st.Incoming, err, out)
	}
	// The replaced HTTP server: a new connection is served.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/%s", port, PublicKeyFile))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTP after reload: %v %v", resp, err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}

	// A config that does not load: logged, and the running one stays.
	writeFile(t, cfgFile, fmt.Sprintf(base, "")+"[daemon]\nsetle = \"1s\"\n[[dropin]]\ndir = \"incoming2\"\nchannel = \"prod\"\n")
	hup()
	waitFor(t, time.Minute, "the failed reload to be logged", func() (bool, string) {
		e := logEntries(d, "config reload failed; the running config stays")
		return len(e) == 1 && strings.Contains(fmt.Sprint(e[0]["err"]), cfgFile+":6: unknown key \"daemon.setle\""), d.log()
	})
	pc, err := os.ReadFile(writeSpec(t, t.TempDir(), spec("reload-c", "1", "1.el9", "noarch")))
	if err != nil {
		t.Fatal(err)
	}
	dropFile(t, inc2, "reload-c.rpm", pc)
	// (The CLI would refuse the bad file too: it asks with the defaults,
	// which name the same socket.)
	waitFor(t, time.Minute, "reload-c after the failed reload", func() (bool, string) { return listed(t, root, "reload-c-1-1.el9.noarch") })
	if n := len(logEntries(d, "config reloaded")); n != 1 {
		t.Errorf("%d successful reloads logged, want 1", n)
	}

	// SIGTERM still stops it cleanly, socket removed.
	d.stop()
	if _, err := os.Stat(filepath.Join(root, "repoctl.sock")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left after SIGTERM: %v", err)
	}
}

// checkTreeModes fails for any directory below dir that is not dirMode and
// any regular file (dot entries aside) that is not fileMode; it returns how
// many files it checked.
func checkTreeModes(t *testing.T, dir string, fileMode, dirMode fs.FileMode) int {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir && strings.HasPrefix(e.Name(), ".") {
			if e.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir() && fi.Mode().Perm() != dirMode:
			t.Errorf("%s: %v, want %v", p, fi.Mode().Perm(), dirMode)
		case fi.Mode().IsRegular():
			files++
			if fi.Mode().Perm() != fileMode {
				t.Errorf("%s: %v, want %v", p, fi.Mode().Perm(), fileMode)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// Under umask 0077 (a root shell's, say) the CLI and the daemon still
// leave a served tree every user can read (0644 files, 0755 directories),
// the daemon fixes modes it finds wrong at start, and a web server user
// reads the tree while the store, keys and spool stay closed to it.
func TestServedTreeModesUnderUmask(t *testing.T) {
	uid, gid, name := testUser(t)
	parent := t.TempDir()
	openForOthers(t, parent)
	root := filepath.Join(parent, "root") // created by repoctl
	cfgFile := filepath.Join(t.TempDir(), "repoctl.toml")
	port := freePort(t)
	writeFile(t, cfgFile, fmt.Sprintf("[http]\nlisten = \"127.0.0.1:%d\"\n[signing]\nalgo = \"ed25519\"\n", port))
	bin := repoctlBinary(t)
	umask := func(args ...string) *exec.Cmd {
		q := make([]string, len(args))
		for i, a := range args {
			q[i] = "'" + a + "'"
		}
		return exec.Command("/bin/sh", "-c", "umask 077; exec "+strings.Join(q, " "))
	}
	pkgs := t.TempDir()
	a := writeSpec(t, pkgs, spec("umask-a", "1", "1.el9", "noarch"))
	if out, err := umask(bin, "--root", root, "--config", cfgFile, "add", a).CombinedOutput(); err != nil {
		t.Fatalf("add without a daemon under umask 077: %v\n%s", err, out)
	}
	// A mode an older repoctl or a hand left behind.
	stray := filepath.Join(root, "repo", "main", "staging", "el", "9", "x86_64", "umask-a-1-1.el9.noarch.rpm")
	if err := os.Chmod(stray, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(stray), 0o700); err != nil {
		t.Fatal(err)
	}

	d := startDaemonCmd(t, root, filepath.Join(root, "repoctl.sock"),
		umask(bin, "daemon", "--root", root, "--config", cfgFile, "--log-format", "json"))
	// A release the tree has no directory for yet: the daemon makes them.
	bb, err := os.ReadFile(writeSpec(t, pkgs, spec("umask-b", "1", "1.el8", "x86_64")))
	if err != nil {
		t.Fatal(err)
	}
	dropFile(t, filepath.Join(root, "incoming"), "umask-b.rpm", bb)
	waitFor(t, time.Minute, "umask-b published", func() (bool, string) {
		out, _, _ := runCLI(t, root, "--config", cfgFile, "-o", "json", "list")
		return strings.Contains(out, "umask-b-1-1.el8.x86_64"), out
	})
	if out, _, code := runCLI(t, root, "--config", cfgFile, "promote", "umask-a", "--to", "prod", "--yes"); code != 0 {
		t.Fatalf("promote: exit %d\n%s", code, out)
	}

	fi, err := os.Stat(root)
	if err != nil || fi.Mode().Perm() != rootDirMode {
		t.Errorf("ROOT %v %v, want %v: a web server must pass through to the tree", fi.Mode(), err, rootDirMode)
	}
	tree := filepath.Join(root, "repo")
	if n := checkTreeModes(t, tree, 0o644, 0o755); n < 10 {
		t.Errorf("only %d files in the served tree", n)
	}
	for p, want := range map[string]fs.FileMode{
		filepath.Join(root, "keys"): 0o700, filepath.Join(root, "keys", "signing.asc"): 0o600,
		filepath.Join(root, "repoctl.db"): 0o600, filepath.Join(root, "spool"): 0o700, filepath.Join(root, "rejected"): 0o700,
	} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want %v", p, fi.Mode().Perm(), err, want)
		}
	}
	// The web server's view, as another user.
	readAs := func(p string) error {
		tool := "/bin/cat"
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			tool = "/bin/ls" // listing is reading a directory
		}
		cmd := exec.Command(tool, p)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	for _, p := range []string{
		filepath.Join(tree, PublicKeyFile),
		filepath.Join(tree, "main", "prod", "el", "9", "x86_64", "repodata", "repomd.xml"),
		filepath.Join(tree, "main", "prod", "el", "9", "x86_64", "repodata", "repomd.xml.asc"),
		filepath.Join(tree, "main", "prod", "el", "9", "x86_64", "umask-a-1-1.el9.noarch.rpm"),
		stray,
		filepath.Join(tree, "main", "staging", "el", "8", "x86_64", "umask-b-1-1.el8.x86_64.rpm"),
		filepath.Join(tree, "main", "prod", "el", "8", "aarch64", "repodata", "repomd.xml"),
	} {
		if err := readAs(p); err != nil {
			t.Errorf("%s cannot read %s: %v", name, p, err)
		}
	}
	for _, p := range []string{filepath.Join(root, "repoctl.db"), filepath.Join(root, "keys", "signing.asc"), root} {
		if err := readAs(p); err == nil {
			t.Errorf("%s can read %s", name, p)
		}
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/main/prod/el/9/x86_64/repodata/repomd.xml", port))
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("built-in HTTP: %v %v", resp, err)
	} else {
		if err := resp.Body.Close(); err != nil {
			t.Fatal(err)
		}
	}
	d.stop()
}

// A CLI run by another user than ROOT's owner (root here) refuses to work
// on ROOT without a daemon, naming the owner and sudo -u, and leaves
// nothing behind; the owner's daemon then starts as if nothing happened,
// and the same root CLI works through its socket.
func TestRootOwnerCLIRefused(t *testing.T) {
	uid, gid, name := testUser(t)
	parent := t.TempDir()
	openForOthers(t, parent, filepath.Dir(repoctlBinary(t)))
	root := filepath.Join(parent, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	writeFile(t, filepath.Join(root, ConfigFileName), fmt.Sprintf("[http]\nlisten = \"127.0.0.1:%d\"\n[signing]\nalgo = \"ed25519\"\n", port))
	if err := os.Chown(root, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(root, ConfigFileName), int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	pkgs := t.TempDir()
	openForOthers(t, pkgs)
	a := writeSpec(t, pkgs, spec("owner-a", "1", "1.el9", "noarch"))
	if err := os.Chmod(a, 0o644); err != nil {
		t.Fatal(err)
	}

	notRootOwned := func(when string) {
		t.Helper()
		if err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				t.Errorf("%s: %v", when, err)
				return nil
			}
			fi, err := os.Lstat(p)
			if err != nil {
				return nil
			}
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid {
				t.Errorf("%s: %s is owned by uid %d, not %s (%d)", when, p, st.Uid, name, uid)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"add", a}, {"status"}, {"list"}, {"key", "generate", "--name", "x", "--email", "x@example.com"}} {
		_, stderr, code := runCLI(t, root, args...)
		if code == 0 || !strings.Contains(stderr, "belongs to "+name) || !strings.Contains(stderr, "sudo -u "+name+" repoctl") {
			t.Errorf("%v as root on %s's root without a daemon: exit %d, want a refusal naming the owner and sudo -u\n%s", args, name, code, stderr)
		}
	}
	// Nor does root run the daemon on it.
	if stderr, code := runRefused(t, "--root", root, "daemon", "--listen", "off"); code == 0 || !strings.Contains(stderr, "belongs to "+name) {
		t.Errorf("daemon as root: exit %d\n%s", code, stderr)
	}
	notRootOwned("after the refused commands")
	if ents := listDir(t, root); !slices.Equal(ents, []string{ConfigFileName}) {
		t.Errorf("the refused commands left %v in ROOT", ents)
	}

	// The owner's daemon starts and serves; root talks to it.
	cmd := exec.Command(repoctlBinary(t), "daemon", "--root", root, "--log-format", "json")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
	cmd.Dir = "/"
	d := startDaemonCmd(t, root, filepath.Join(root, "repoctl.sock"), cmd)
	if out, stderr, code := runCLI(t, root, "status"); code != 0 {
		t.Errorf("status as root through the owner's daemon: exit %d\n%s%s", code, out, stderr)
	}
	if out, stderr, code := runCLI(t, root, "add", a); code != 0 {
		t.Errorf("add as root through the owner's daemon: exit %d\n%s%s", code, out, stderr)
	}
	if ok, out := listed(t, root, "owner-a-1-1.el9.noarch"); !ok {
		t.Errorf("owner-a not listed:\n%s", out)
	}
	// The owner itself works without a daemon, once it is stopped.
	d.stop()
	if out, stderr, code := runCLIAs(t, uid, gid, root, "status"); code != 0 {
		t.Errorf("status as %s without a daemon: exit %d\n%s%s", name, code, out, stderr)
	}
	notRootOwned("after the owner's daemon and CLI")
}
