package upgrade

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/sync/errgroup"

	"github.com/repoctl/repoctl/internal/sshtest"
	"github.com/repoctl/repoctl/internal/testrpm"
)

// e2e is the whole product against real parts: the repoctl binary and its
// daemon (signing, repodata, HTTP), six app hosts and one proxy that are
// real sshd processes on 127.0.0.2–127.0.0.8, a dnf --installroot per app
// host installing from the daemon with gpgcheck and repo_gpgcheck, and a
// web server per app host that serves the installed version file and only
// reloads it on SIGHUP (the "graceful restart").
type e2e struct {
	t       *testing.T
	work    string
	root    string
	repoctl string
	appsrv  string
	httpURL string
	lab     *sshLab
	marks   string
	apps    []*sshHost
	web     map[string]string // host → base URL
	mu      sync.Mutex
	procs   []*exec.Cmd
}

func (e *e2e) run(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.repoctl, append([]string{"--root", e.root}, args...)...)
	var o, er bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &er
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		e.t.Fatalf("repoctl %v: %v", args, err)
	}
	return o.String(), er.String(), code
}

func (e *e2e) mustRun(args ...string) string {
	e.t.Helper()
	o, er, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("repoctl %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, o, er)
	}
	return o
}

func (e *e2e) start(name string, args ...string) *exec.Cmd {
	e.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stderr = sshtest.LogWriter(e.t, filepath.Base(name)+": ")
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("starting %s: %v", name, err)
	}
	e.mu.Lock()
	e.procs = append(e.procs, cmd)
	e.mu.Unlock()
	return cmd
}

func buildBinary(t *testing.T, out, pkg string) string {
	t.Helper()
	p := filepath.Join(out, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", p, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return p
}

func httpGet(url string) (int, string, error) {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

func (e *e2e) served(host string) string {
	_, body, err := httpGet(e.web[host] + "/version")
	if err != nil {
		e.t.Fatalf("%s: %v", host, err)
	}
	return strings.TrimSpace(body)
}

func (e *e2e) installed(host string) string {
	out, err := exec.Command("rpm", "--root", filepath.Join(e.work, host), "-q", "app").CombinedOutput()
	if err != nil {
		e.t.Fatalf("rpm -q app on %s: %v %s", host, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (e *e2e) readMarks() []markLine {
	r := &rig{marks: e.marks}
	return r.readMarks(e.t)
}

func TestE2EPromotePhased(t *testing.T) {
	for _, tool := range []string{"dnf", "rpm", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required for the end-to-end test: %v", tool, err)
		}
	}
	work := t.TempDir()
	e := &e2e{t: t, work: work, root: filepath.Join(work, "root"), marks: filepath.Join(work, "marks.log"), web: map[string]string{}}
	bin := filepath.Join(work, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	e.repoctl = buildBinary(t, bin, "github.com/repoctl/repoctl/cmd/repoctl")
	e.appsrv = buildBinary(t, bin, "github.com/repoctl/repoctl/testdata/app")
	t.Cleanup(func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		for i := len(e.procs) - 1; i >= 0; i-- {
			p := e.procs[i]
			_ = p.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				p.Process.Kill()
				<-done
			}
		}
	})

	// The test package, version 1.0 and 2.0, shipping the version file.
	rpms := filepath.Join(work, "rpms")
	if err := os.MkdirAll(rpms, 0o755); err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, v := range []string{"1.0", "2.0"} {
		p, err := testrpm.Write(rpms, testrpm.Spec{Name: "app", Version: v, Release: "1.el9", Arch: "x86_64",
			Summary: "rollout test app", Description: "serves its version", License: "MIT",
			Files: []testrpm.File{{Name: "/var/www/app", Dir: true, Mode: 040755},
				{Name: "/var/www/app/version", Body: []byte("app " + v + "-1.el9\n")}}})
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}

	// Hosts.
	var names, addrs []string
	for i := 1; i <= 6; i++ {
		names, addrs = append(names, fmt.Sprintf("app%d", i)), append(addrs, fmt.Sprintf("127.0.0.%d", i+1))
	}
	names, addrs = append(names, "proxy1"), append(addrs, "127.0.0.8")
	e.lab = startSSHLab(t, names, addrs)
	e.apps = e.lab.Hosts[:6]
	cache := filepath.Join(work, "proxy1", "cache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	fillCache := func() {
		for i := 0; i < 5; i++ {
			if err := os.WriteFile(filepath.Join(cache, fmt.Sprintf("obj%d", i)), []byte("cached page"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	fillCache()

	// Config: the daemon's HTTP address and the [upgrade] inventory whose
	// command templates drive each host's own installroot.
	httpPort := freePort(t, "127.0.0.1")
	e.httpURL = fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	q := ShellQuote
	w := q(work) + "/{{.Host}}"
	dnf := "dnf --installroot=" + w + " --setopt=reposdir=" + w + "/etc/yum.repos.d --releasever=9 --setopt=install_weak_deps=False -y -q"
	mark := func(step string) string {
		return `echo "{{.Host}} ` + step + ` $(date +%s.%N)" >> ` + q(e.marks) + " && "
	}
	release := filepath.Join(work, "release-app4")
	cfg := Config{
		KnownHosts: e.lab.KnownHosts, IdentityFile: e.lab.Identity, User: "root", Flavor: "el9",
		ConnectTimeout: Duration{10 * time.Second}, CommandTimeout: Duration{3 * time.Minute}, Concurrency: 6,
		Commands: Commands{
			Clean:       mark("clean") + dnf + " clean metadata",
			Update:      mark("update") + dnf + " install {{.NEVRA}}",
			Verify:      mark("verify") + "rpm --root=" + w + " -q {{.NVRA}}",
			Restart:     mark("restart") + "kill -HUP $(cat " + w + "/app.pid)",
			HardRestart: mark("restart") + "kill -HUP $(cat " + w + "/app.pid)",
			Downgrade:   mark("downgrade") + dnf + " downgrade {{.Previous}}",
			Purge:       mark("purge") + "rm -rf " + q(cache) + "/*",
		},
		Health: Health{ExpectStatus: 200, ExpectBody: "ok app {{.Version}}", Retries: 40,
			Interval: Duration{200 * time.Millisecond}, Timeout: Duration{2 * time.Second}, Soak: Duration{400 * time.Millisecond}},
		Groups:  []GroupConfig{{Name: "group1"}, {Name: "group2"}},
		Proxies: []HostConfig{{Name: "proxy1", Address: "127.0.0.8", Port: e.lab.Hosts[6].Port}},
	}
	for i, h := range e.apps {
		webPort := freePort(t, h.Address)
		e.web[h.Name] = fmt.Sprintf("http://%s:%d", h.Address, webPort)
		hc := HostConfig{Name: h.Name, Address: h.Address, Port: h.Port, HealthURL: e.web[h.Name] + "/health"}
		if h.Name == "app4" {
			// A per-host template: app4's restart waits for a file, which
			// holds the rollout mid-group for the kill -9.
			hc.Commands.Restart = mark("restart") + "while [ ! -e " + q(release) + " ]; do sleep 0.1; done; kill -HUP $(cat " + w + "/app.pid)"
		}
		g := &cfg.Groups[0]
		if i >= 2 {
			g = &cfg.Groups[1]
		}
		g.Hosts = append(g.Hosts, hc)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(e.root, 0o755); err != nil {
		t.Fatal(err)
	}
	var tb bytes.Buffer
	if err := toml.NewEncoder(&tb).Encode(map[string]any{
		"http":    map[string]string{"listen": fmt.Sprintf("127.0.0.1:%d", httpPort)},
		"upgrade": cfg,
	}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.root, "repoctl.toml"), tb.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	// The daemon: signs, publishes, serves over HTTP.
	e.start(e.repoctl, "daemon", "--root", e.root, "--log-level", "warn")
	deadline := time.Now().Add(60 * time.Second)
	for {
		if code, _, err := httpGet(e.httpURL + "/RPM-GPG-KEY-repoctl"); err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon never served %s", e.httpURL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.mustRun("add", files[0], files[1])
	e.mustRun("promote", "app-1.0-1.el9", "--to", "prod", "--yes")
	repoFile := e.mustRun("repofile", "--channel", "prod")
	if !strings.Contains(repoFile, "gpgcheck=1") || !strings.Contains(repoFile, "repo_gpgcheck=1") {
		t.Fatalf("repofile without gpg checks:\n%s", repoFile)
	}

	// Each app host: its installroot with version 1.0, its web server.
	var g errgroup.Group
	for _, h := range e.apps {
		g.Go(func() error {
			r := filepath.Join(work, h.Name)
			if err := os.MkdirAll(filepath.Join(r, "etc/yum.repos.d"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(r, "etc/yum.repos.d/repoctl.repo"), []byte(repoFile), 0o644); err != nil {
				return err
			}
			c := strings.ReplaceAll(dnf, "{{.Host}}", h.Name) + " install app-1.0-1.el9.x86_64"
			if out, err := exec.Command("sh", "-c", c).CombinedOutput(); err != nil {
				return fmt.Errorf("%s: %v\n%s", c, err, out)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, h := range e.apps {
		r := filepath.Join(work, h.Name)
		e.start(e.appsrv, "-listen", strings.TrimPrefix(e.web[h.Name], "http://"), "-file", filepath.Join(r, "var/www/app/version"),
			"-pidfile", filepath.Join(r, "app.pid"), "-fail", filepath.Join(r, "fail"), "-log", filepath.Join(r, "served.log"))
	}
	for _, h := range e.apps {
		for i := 0; ; i++ {
			if code, body, err := httpGet(e.web[h.Name] + "/version"); err == nil && code == 200 {
				if strings.TrimSpace(body) != "app 1.0-1.el9" {
					t.Fatalf("%s serves %q before any rollout", h.Name, body)
				}
				break
			}
			if i > 100 {
				t.Fatalf("%s's web server never answered", h.Name)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	prodRepomd := filepath.Join(e.root, "repo/main/prod/el/9/x86_64/repodata/repomd.xml")
	repomdBefore, err := os.ReadFile(prodRepomd)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("dry-run changes nothing", func(t *testing.T) {
		e.t = t
		out := e.mustRun("promote", "app", "--to", "prod", "--phased", "--dry-run")
		last := -1
		for _, want := range []string{"would promote app-2.0-1.el9.x86_64 staging → prod (previous: app-1.0-1.el9.x86_64)",
			"1. clean", "2. update", "3. verify", "4. restart group1", "5. health group1", "6. restart group2", "7. health group2", "8. purge"} {
			i := strings.Index(out, want)
			if i < 0 || i < last {
				t.Fatalf("plan lacks %q in order:\n%s", want, out)
			}
			last = i
		}
		for _, h := range e.apps {
			if strings.Count(out, " "+h.Name+" ") < 5 {
				t.Errorf("plan does not show %s in every step:\n%s", h.Name, out)
			}
		}
		if !strings.Contains(out, "install 'app-2.0-1.el9.x86_64'") || !strings.Contains(out, "rm -rf") {
			t.Errorf("plan lacks the exact commands:\n%s", out)
		}
		js := e.mustRun("promote", "app", "--to", "prod", "--phased", "--dry-run", "-o", "json")
		var doc struct {
			Plan Plan `json:"plan"`
		}
		if err := json.Unmarshal([]byte(js), &doc); err != nil || len(doc.Plan.Phases) != 8 || doc.Plan.NEVRA != "app-2.0-1.el9.x86_64" {
			t.Fatalf("json plan: %v\n%s", err, js)
		}
		// The same from an Ansible inventory: a canary group of one.
		var ini strings.Builder
		ini.WriteString("[all:vars]\nansible_user=root\n[canary]\n")
		for i, h := range e.apps {
			if i == 1 {
				ini.WriteString("[rest]\n")
			}
			fmt.Fprintf(&ini, "%s ansible_host=%s ansible_port=%d\n", h.Name, h.Address, h.Port)
		}
		fmt.Fprintf(&ini, "[proxies]\nproxy1 ansible_host=127.0.0.8 ansible_port=%d\n", e.lab.Hosts[6].Port)
		invFile := filepath.Join(work, "hosts.ini")
		if err := os.WriteFile(invFile, []byte(ini.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		js = e.mustRun("promote", "app", "--to", "prod", "--phased", "--dry-run", "-o", "json", "--inventory", invFile)
		doc.Plan = Plan{}
		if err := json.Unmarshal([]byte(js), &doc); err != nil {
			t.Fatal(err)
		}
		if ph := doc.Plan.Phases; len(ph) != 8 || ph[3].Name != "restart canary" || len(ph[3].Tasks) != 1 || len(ph[5].Tasks) != 5 ||
			ph[7].Tasks[0].Target.Port != e.lab.Hosts[6].Port {
			t.Errorf("plan from the ansible inventory: %s", js)
		}
		after, err := os.ReadFile(prodRepomd)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(after, repomdBefore) {
			t.Errorf("dry run changed prod repodata")
		}
		if _, err := os.Stat(e.marks); err == nil {
			t.Errorf("dry run ran commands on hosts")
		}
		if out := e.mustRun("rollout", "list", "-o", "json"); strings.TrimSpace(out) != "null" && strings.TrimSpace(out) != "[]" {
			t.Errorf("dry run recorded a rollout: %s", out)
		}
		if _, _, code := e.run("promote", "app", "--to", "prod", "--phased"); code != 2 {
			t.Errorf("promote without --yes and without a terminal: exit %d, want 2 (usage)", code)
		}
		for _, h := range e.apps {
			if v := e.served(h.Name); v != "app 1.0-1.el9" {
				t.Errorf("%s serves %q after a dry run", h.Name, v)
			}
		}
	})

	t.Run("failed gate halts before group 2 and rolls back", func(t *testing.T) {
		e.t = t
		if err := os.WriteFile(filepath.Join(work, "app2", "fail"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(filepath.Join(work, "app2", "fail"))
		out, stderr, code := e.run("promote", "app", "--to", "prod", "--phased", "--yes", "--rollback-on-failure")
		if code != 5 {
			t.Fatalf("exit %d, want 5 (halted)\n%s\n%s", code, out, stderr)
		}
		t.Logf("halt report:\n%s", out)
		if !strings.Contains(out, "health group1") || !strings.Contains(out, "app2") || !strings.Contains(out, "500") {
			t.Errorf("halt report does not say which host failed and what it saw:\n%s", out)
		}
		ms := e.readMarks()
		firstDowngrade := 1e18
		for _, m := range ms {
			if m.step == "downgrade" {
				firstDowngrade = min(firstDowngrade, m.at)
			}
		}
		for _, m := range ms {
			if m.step == "restart" && m.at < firstDowngrade && m.host != "app1" && m.host != "app2" {
				t.Errorf("%s restarted before the rollback although group 1 failed its gate", m.host)
			}
			if m.step == "purge" {
				t.Errorf("proxy purged on a failed rollout")
			}
		}
		for _, h := range e.apps {
			if count(ms, h.Name, "downgrade") != 1 {
				t.Errorf("%s downgraded %d times, want 1", h.Name, count(ms, h.Name, "downgrade"))
			}
			if v := e.installed(h.Name); v != "app-1.0-1.el9.x86_64" {
				t.Errorf("%s has %s installed after rollback", h.Name, v)
			}
			if v := e.served(h.Name); v != "app 1.0-1.el9" {
				t.Errorf("%s serves %q after rollback", h.Name, v)
			}
		}
		// Group 1 really ran the new version before going back.
		b, err := os.ReadFile(filepath.Join(work, "app1", "served.log"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "app 2.0-1.el9") {
			t.Errorf("app1 never served 2.0:\n%s", b)
		}
		var st Rollout
		if err := json.Unmarshal([]byte(e.mustRun("rollout", "status", "-o", "json")), &st); err != nil || st.State != StateRolledBack {
			t.Errorf("rollout state %q (%v), want rolled-back", st.State, err)
		}
		var list []struct {
			NEVRA      string `json:"nevra"`
			Placements []struct {
				Channel string `json:"channel"`
			} `json:"placements"`
		}
		if err := json.Unmarshal([]byte(e.mustRun("list", "-o", "json")), &list); err != nil {
			t.Fatal(err)
		}
		for _, p := range list {
			for _, pl := range p.Placements {
				if p.NEVRA == "app-2.0-1.el9.x86_64" && pl.Channel == "prod" {
					t.Errorf("channel not restored: 2.0 still in prod")
				}
			}
		}
		ents, err := os.ReadDir(cache)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 5 {
			t.Errorf("proxy cache touched: %d entries", len(ents))
		}
		var hist []struct {
			Action  string            `json:"action"`
			Details map[string]string `json:"details"`
		}
		if err := json.Unmarshal([]byte(e.mustRun("history", "-o", "json")), &hist); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, ev := range hist {
			if ev.Details["rollout"] == st.ID || ev.Action == "restore" {
				seen[ev.Action] = true
			}
		}
		for _, a := range []string{"upgrade." + EventStarted, "upgrade." + EventStepFailed, "upgrade." + EventRollback,
			"restore", "upgrade." + EventRestored, "upgrade." + EventRolledBack} {
			if !seen[a] {
				t.Errorf("event log lacks %s: %v", a, seen)
			}
		}
	})

	t.Run("kill -9 mid-rollout then resume", func(t *testing.T) {
		e.t = t
		if err := os.Remove(e.marks); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(release); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(e.repoctl, "--root", e.root, "promote", "app", "--to", "prod", "--phased", "--yes")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for count(e.readMarks(), "app4", "restart") == 0 {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("rollout never reached app4's restart:\n%s", out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		// Kill once the other group 2 hosts' restarts are recorded done, so
		// that the resume has finished steps to not repeat in that phase.
		for {
			var st Rollout
			if err := json.Unmarshal([]byte(e.mustRun("rollout", "status", "-o", "json")), &st); err != nil {
				t.Fatal(err)
			}
			if stepState(st, "restart group2", "app3") == StepDone && stepState(st, "restart group2", "app5") == StepDone &&
				stepState(st, "restart group2", "app6") == StepDone {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("group 2's other restarts never finished: %+v", st.Steps)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		var st Rollout
		if err := json.Unmarshal([]byte(e.mustRun("rollout", "status", "-o", "json")), &st); err != nil {
			t.Fatal(err)
		}
		if st.State != StateRunning || st.Live {
			t.Fatalf("after kill -9: state %s live %v", st.State, st.Live)
		}
		if s := stepState(st, "restart group2", "app4"); s != StepRunning {
			t.Fatalf("app4's restart recorded as %q, want running (in flight)", s)
		}
		if s := stepState(st, "health group1", "app1"); s != StepDone {
			t.Fatalf("group 1 gate recorded as %q", s)
		}
		text := e.mustRun("rollout", "status")
		t.Logf("rollout status after kill -9:\n%s", text)
		if !strings.Contains(text, "interrupted") {
			t.Errorf("status does not say the rollout was interrupted:\n%s", text)
		}
		// Another rollout may not take these hosts meanwhile.
		if _, _, code := e.run("promote", "app", "--to", "prod", "--phased", "--yes"); code != 4 {
			t.Errorf("second rollout on locked hosts: exit %d, want 4", code)
		}
		if err := os.WriteFile(release, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		o, er, code := e.run("rollout", "resume", "--yes")
		if code != 0 {
			t.Fatalf("resume: exit %d\n%s\n%s", code, o, er)
		}
		ms := e.readMarks()
		for _, h := range e.apps {
			for _, s := range []string{"clean", "update", "verify"} {
				if n := count(ms, h.Name, s); n != 1 {
					t.Errorf("%s ran %s %d times, want 1", h.Name, s, n)
				}
			}
			want := 1
			if h.Name == "app4" {
				want = 2 // in flight at the kill: re-run, it is idempotent
			}
			if n := count(ms, h.Name, "restart"); n != want {
				t.Errorf("%s restarted %d times, want %d", h.Name, n, want)
			}
			if v := e.served(h.Name); v != "app 2.0-1.el9" {
				t.Errorf("%s serves %q after the rollout", h.Name, v)
			}
			if v := e.installed(h.Name); v != "app-2.0-1.el9.x86_64" {
				t.Errorf("%s has %s installed", h.Name, v)
			}
		}
		if n := count(ms, "proxy1", "purge"); n != 1 {
			t.Errorf("purged %d times", n)
		}
		var purgeAt, lastRestart float64
		var g2Restart []float64
		for _, m := range ms {
			switch {
			case m.step == "purge":
				purgeAt = m.at
			case m.step == "restart":
				lastRestart = max(lastRestart, m.at)
				if m.host != "app1" && m.host != "app2" {
					g2Restart = append(g2Restart, m.at)
				}
			}
		}
		if purgeAt <= lastRestart {
			t.Errorf("proxy purged at %.3f, before the last restart at %.3f", purgeAt, lastRestart)
		}
		ents, err := os.ReadDir(cache)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 0 {
			t.Errorf("proxy cache still has %d entries", len(ents))
		}
		// Group 2 restarted only after group 1's gate passed, as the
		// audit log records it.
		var hist []struct {
			Time    time.Time         `json:"time"`
			Action  string            `json:"action"`
			Details map[string]string `json:"details"`
		}
		// --verify: the rollout's events sit in the hash chain unbroken.
		if err := json.Unmarshal([]byte(e.mustRun("history", "--verify", "-o", "json")), &hist); err != nil {
			t.Fatal(err)
		}
		var g1Healthy time.Time
		kinds := map[string]int{}
		for _, ev := range hist {
			if ev.Details["rollout"] != st.ID {
				continue
			}
			kinds[ev.Action]++
			if ev.Action == "upgrade."+EventPhaseDone && ev.Details["phase"] == "health group1" && g1Healthy.IsZero() {
				g1Healthy = ev.Time
			}
		}
		sort.Float64s(g2Restart)
		if kinds["upgrade."+EventPhaseDone] != 8 {
			t.Errorf("%d phase-done events, want 8 (each phase once, across the kill)", kinds["upgrade."+EventPhaseDone])
		}
		if g1Healthy.IsZero() || len(g2Restart) != 5 || float64(g1Healthy.UnixNano())/1e9 >= g2Restart[0] {
			t.Errorf("group 1 healthy at %v, group 2 restarts at %v", g1Healthy, g2Restart)
		}
		// 6×(clean, update, verify, restart, health) + purge, each once done;
		// app4's restart was interrupted, so it is done once, too.
		if kinds["upgrade."+EventStepDone] != 6*5+1 || kinds["upgrade."+EventResumed] != 1 || kinds["upgrade."+EventDone] != 1 {
			t.Errorf("event log kinds: %v", kinds)
		}
		if err := json.Unmarshal([]byte(e.mustRun("rollout", "status", "-o", "json")), &st); err != nil || st.State != StateDone {
			t.Errorf("final state %s (%v)", st.State, err)
		}
	})
	checkDB(t, filepath.Join(e.root, "rollouts.db"))
}

func stepState(r Rollout, phase, host string) string {
	for _, s := range r.Steps {
		if s.Phase == phase && s.Host == host {
			return s.State
		}
	}
	return ""
}
