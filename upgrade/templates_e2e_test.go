package upgrade

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The shipped command templates (FlavorCommands, no overrides) run end to
// end: over real sshd, as a non-root deploy user, through a real `sudo -n`
// whose secure_path puts stand-ins for dnf, yum, rpm, systemctl and rm
// first. The stand-ins log who ran what (uid, host address, arguments)
// and keep a per-host "installed" NEVRA so that the templates' own checks
// (`rpm -q`, el7's install-or-update branch) behave as on a host.

const deployUser = "repoctl-deploy"

// standinLab is a set of hosts whose sessions log into one file.
type standinLab struct {
	*sshLab
	dir, log string
	mu       sync.Mutex
	flaky    map[string]int // host address → health answers before it fails
	seen     map[string]int
}

func newStandinLab(t *testing.T, base, apps int) *standinLab {
	t.Helper()
	if _, err := exec.LookPath("sudo"); err != nil {
		t.Fatalf("sudo is required (.ci/install-test-deps installs it): %v", err)
	}
	if _, err := user.Lookup(deployUser); err != nil {
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/bin/sh", deployUser).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "already exists") {
			t.Fatalf("useradd %s: %v\n%s", deployUser, err, out)
		}
	}
	// sshd refuses a locked account ("!" in shadow) even for keys: "*"
	// has no password and is not locked.
	if out, err := exec.Command("usermod", "-p", "*", deployUser).CombinedOutput(); err != nil {
		t.Fatalf("usermod: %v\n%s", err, out)
	}
	var names, addrs []string
	for i := 0; i < apps; i++ {
		names, addrs = append(names, fmt.Sprintf("app%d", i+1)), append(addrs, fmt.Sprintf("127.0.%d.%d", base, i+2))
	}
	names, addrs = append(names, "proxy1"), append(addrs, fmt.Sprintf("127.0.%d.%d", base, apps+2))
	l := &standinLab{sshLab: startSSHLab(t, names, addrs), flaky: map[string]int{}, seen: map[string]int{}}
	// sshd reads authorized_keys as the user logging in.
	for d := l.Dir; d != "/"; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, fi.Mode().Perm()|0o005); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(l.Dir, "authorized_keys"), 0o644); err != nil {
		t.Fatal(err)
	}

	l.dir = filepath.Join(l.Dir, "standin")
	bin := filepath.Join(l.dir, "bin")
	state := filepath.Join(l.dir, "state")
	for _, d := range []string{bin, state} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	l.log = filepath.Join(l.dir, "commands.log")
	if err := os.WriteFile(l.log, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(l.log, 0o666); err != nil {
		t.Fatal(err)
	}
	head := `#!/bin/sh
ip=$(echo "$SSH_CONNECTION" | cut -d' ' -f3)
echo "$ip $(id -u) $(basename "$0") $*" >> ` + ShellQuote(l.log) + `
state=` + ShellQuote(state) + `/$ip
`
	scripts := map[string]string{
		// dnf/yum: install, update-to and downgrade make the last argument
		// the installed NEVRA.
		"dnf": head + `case " $* " in *" install "*|*" update-to "*|*" downgrade "*) for a; do last=$a; done; echo "$last" > "$state";; esac
exit 0
`,
		"rpm": head + `[ "$1" = "-q" ] || exit 0
cur=$(cat "$state" 2>/dev/null)
case "$cur" in "$2"|"$2"-*) echo "$cur"; exit 0;; esac
echo "package $2 is not installed"; exit 1
`,
		"systemctl": head + "exit 0\n",
		"rm":        head + "exit 0\n",
	}
	scripts["yum"] = scripts["dnf"]
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// el7's restart is /etc/init.d/httpd: a stand-in there too, only if
	// the machine has none, and only for the test.
	initd := "/etc/init.d/httpd"
	if _, err := os.Lstat(initd); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll("/etc/init.d", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(initd, []byte(head+"exit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := os.Remove(initd); err != nil {
				t.Error(err)
			}
		})
	}
	sudoers := "/etc/sudoers.d/repoctl-test"
	rule := fmt.Sprintf("Defaults:%s secure_path=\"%s:/usr/sbin:/usr/bin:/sbin:/bin\", env_keep += \"SSH_CONNECTION\", !requiretty\n%s ALL=(root) NOPASSWD: ALL\n", deployUser, bin, deployUser)
	tmp := sudoers + ".tmp"
	if err := os.WriteFile(tmp, []byte(rule), 0o440); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("visudo", "-cf", tmp).CombinedOutput(); err != nil {
		if rerr := os.Remove(tmp); rerr != nil {
			t.Error(rerr)
		}
		t.Fatalf("visudo: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, sudoers); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(sudoers); err != nil {
			t.Error(err)
		}
	})
	return l
}

type ranCmd struct{ addr, uid, cmd string }

func (l *standinLab) ran(t *testing.T) []ranCmd {
	t.Helper()
	b, err := os.ReadFile(l.log)
	if err != nil {
		t.Fatal(err)
	}
	var out []ranCmd
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.SplitN(line, " ", 3); len(f) == 3 {
			out = append(out, ranCmd{f[0], f[1], f[2]})
		}
	}
	return out
}

// config is the lab as an inventory that uses the shipped templates.
func (l *standinLab) config(t *testing.T, flavor string, groups ...int) *Config {
	c := l.sshLab.config(groups...)
	c.User, c.Sudo, c.Flavor = deployUser, true, flavor
	c.Commands = Commands{}
	// A host is healthy once its restart ran as root; a flaky one fails
	// after a few good answers, in the middle of the soak.
	for gi := range c.Groups {
		for hi := range c.Groups[gi].Hosts {
			h := &c.Groups[gi].Hosts[hi]
			addr := h.Address
			ln, err := net.Listen("tcp", addr+":0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				restarted := false
				for _, c := range l.ran(t) {
					if c.addr == addr && c.uid == "0" && (strings.HasPrefix(c.cmd, "systemctl ") || strings.HasPrefix(c.cmd, "httpd ")) {
						restarted = true
					}
				}
				l.mu.Lock()
				l.seen[addr]++
				n, flaky := l.flaky[addr]
				bad := flaky && l.seen[addr] > n
				l.mu.Unlock()
				if !restarted || bad {
					http.Error(w, "not ready", http.StatusServiceUnavailable)
					return
				}
				fmt.Fprintln(w, "ok")
			})}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })
			h.HealthURL = "http://" + ln.Addr().String() + "/health"
		}
	}
	c.Health = Health{ExpectStatus: 200, ExpectBody: "ok", Retries: 100, Interval: Duration{50 * time.Millisecond},
		Timeout: Duration{2 * time.Second}, Soak: Duration{500 * time.Millisecond}}
	return c
}

// commandsOf lists what one host ran, as root through sudo, in order.
func commandsOf(t *testing.T, cmds []ranCmd, addr string) []string {
	var out []string
	for _, c := range cmds {
		if c.addr != addr {
			continue
		}
		if c.uid != "0" {
			t.Errorf("%s ran %q as uid %s, not through sudo", addr, c.cmd, c.uid)
		}
		out = append(out, c.cmd)
	}
	return out
}

func TestShippedTemplatesEL9(t *testing.T) {
	l := newStandinLab(t, 40, 2)
	c := l.config(t, "el9", 1, 1)
	m, err := NewManager(l.Dir)
	if err != nil {
		t.Fatal(err)
	}
	plan := mustPlan(t, c, PlanRequest{NEVRA: "app-2.0-1.el9.x86_64", Previous: "app-1.0-1.el9.x86_64"})
	ro, err := m.Start(context.Background(), plan)
	if err != nil || ro.State != StateDone {
		h := l.Hosts[0]
		out, sshErr := exec.Command("ssh", "-v", "-i", l.Identity, "-o", "UserKnownHostsFile="+l.KnownHosts, "-o", "BatchMode=yes", "-p", fmt.Sprint(h.Port), deployUser+"@"+h.Address, "sudo -n sh -c 'dnf clean metadata'").CombinedOutput()
		t.Fatalf("rollout: %v\nssh by hand (%v):\n%s", err, sshErr, out)
	}
	cmds := l.ran(t)
	want := []string{"dnf clean metadata", "dnf -y install app-2.0-1.el9.x86_64", "rpm -q app-2.0-1.el9.x86_64", "systemctl reload httpd"}
	for _, h := range l.Hosts[:2] {
		if got := commandsOf(t, cmds, h.Address); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s ran %q, want %q", h.Name, got, want)
		}
	}
	if got := commandsOf(t, cmds, l.Hosts[2].Address); len(got) != 1 || got[0] != "rm -rf /srv/cache/mod_cache/*" {
		t.Errorf("proxy ran %q", got)
	}

	// --restart=hard runs the hard restart, and a rollback the shipped
	// downgrade, which first checks whether the previous version is there.
	if err := os.WriteFile(l.log, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	plan = mustPlan(t, c, PlanRequest{NEVRA: "app-3.0-1.el9.x86_64", Previous: "app-2.0-1.el9.x86_64", Restart: RestartHard, RollbackOnFailure: true})
	l.mu.Lock()
	l.flaky[l.Hosts[1].Address] = 3 // app2 passes its gate, then fails during the soak
	l.seen = map[string]int{}
	l.mu.Unlock()
	ro, err = m.Start(context.Background(), plan)
	if !errors.Is(err, ErrHalted) {
		t.Fatalf("a gate failing during its soak: %v (state %v), want ErrHalted", err, ro.State)
	}
	cmds = l.ran(t)
	app2 := commandsOf(t, cmds, l.Hosts[1].Address)
	if !contains(app2, "systemctl restart httpd") || contains(app2, "systemctl reload httpd") {
		t.Errorf("app2 with --restart=hard ran %q", app2)
	}
	if !contains(app2, "rpm -q app-2.0-1.el9.x86_64") || !contains(app2, "dnf -y downgrade app-2.0-1.el9.x86_64") {
		t.Errorf("app2 was not rolled back with the shipped downgrade: %q", app2)
	}
	l.mu.Lock()
	soaked := l.seen[l.Hosts[1].Address]
	l.mu.Unlock()
	if soaked <= 3 {
		t.Errorf("app2's gate was asked %d times: it never passed before failing", soaked)
	}
}

func TestShippedTemplatesEL7(t *testing.T) {
	l := newStandinLab(t, 41, 1)
	c := l.config(t, "el7", 1)
	m, err := NewManager(l.Dir)
	if err != nil {
		t.Fatal(err)
	}
	plan := mustPlan(t, c, PlanRequest{NEVRA: "app-2.0-1.el7.x86_64", Previous: "app-1.0-1.el7.x86_64"})
	if ro, err := m.Start(context.Background(), plan); err != nil || ro.State != StateDone {
		t.Fatalf("rollout: %v", err)
	}
	// Not installed yet: el7's template takes the install branch of its
	// `if rpm -q`, then verifies and restarts through init.d.
	want := []string{"yum clean metadata", "rpm -q app", "yum -y install app-2.0-1.el7.x86_64", "rpm -q app-2.0-1.el7.x86_64", "httpd graceful"}
	if got := commandsOf(t, l.ran(t), l.Hosts[0].Address); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("el7 host ran %q, want %q", got, want)
	}
	// Installed now: the update-to branch.
	if err := os.WriteFile(l.log, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	plan = mustPlan(t, c, PlanRequest{NEVRA: "app-2.1-1.el7.x86_64", Previous: "app-2.0-1.el7.x86_64"})
	if ro, err := m.Start(context.Background(), plan); err != nil || ro.State != StateDone {
		t.Fatalf("second rollout: %v", err)
	}
	if got := commandsOf(t, l.ran(t), l.Hosts[0].Address); !contains(got, "yum -y update-to app-2.1-1.el7.x86_64") || contains(got, "yum -y install app-2.1-1.el7.x86_64") {
		t.Errorf("el7 update of an installed package ran %q", got)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
