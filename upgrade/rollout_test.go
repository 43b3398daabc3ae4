package upgrade

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// rig is a lab of real sshd hosts whose commands append to a marker log,
// with one HTTP health endpoint per app host that only answers 200 once
// the host's restart command ran.
type rig struct {
	lab    *sshLab
	dir    string
	marks  string
	cache  string
	mu     sync.Mutex
	broken map[string]bool
	// failFirst answers a host's first n health requests with 503; body
	// replaces its 200 answer; hits counts its health requests.
	failFirst map[string]int
	body      map[string]string
	hits      map[string]int
	events    []Event
}

func newRig(t *testing.T, apps, proxies int, base int) *rig {
	t.Helper()
	var names, addrs []string
	for i := 0; i < apps+proxies; i++ {
		n := fmt.Sprintf("app%d", i+1)
		if i >= apps {
			n = fmt.Sprintf("proxy%d", i-apps+1)
		}
		names = append(names, n)
		addrs = append(addrs, fmt.Sprintf("127.0.%d.%d", base, i+2))
	}
	r := &rig{lab: startSSHLab(t, names, addrs), dir: t.TempDir(), broken: map[string]bool{},
		failFirst: map[string]int{}, body: map[string]string{}, hits: map[string]int{}}
	r.marks = filepath.Join(r.dir, "marks.log")
	r.cache = filepath.Join(r.dir, "cache")
	if err := os.MkdirAll(r.cache, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := os.WriteFile(filepath.Join(r.cache, fmt.Sprint("obj", i)), []byte("cached"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { checkDB(t, filepath.Join(r.lab.Dir, "rollouts.db")) })
	return r
}

func checkDB(t *testing.T, path string) {
	if _, err := os.Stat(path); err != nil {
		return
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Errorf("reopening %s: %v", path, err)
		return
	}
	defer db.Close()
	if err := db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	}); err != nil {
		t.Errorf("bbolt check %s: %v", path, err)
	}
}

// serveHealth starts one HTTP endpoint per app host on the host's address.
func (r *rig) serveHealth(t *testing.T, c *Config) {
	for gi := range c.Groups {
		for hi := range c.Groups[gi].Hosts {
			h := &c.Groups[gi].Hosts[hi]
			l, err := net.Listen("tcp", h.Address+":0")
			if err != nil {
				t.Fatal(err)
			}
			name := h.Name
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				r.mu.Lock()
				broken := r.broken[name]
				r.hits[name]++
				early := r.hits[name] <= r.failFirst[name]
				body, custom := r.body[name]
				r.mu.Unlock()
				if _, err := os.Stat(filepath.Join(r.dir, name+".restarted")); err != nil || broken || early {
					http.Error(w, "not ready", http.StatusServiceUnavailable)
					return
				}
				if custom {
					fmt.Fprintln(w, body)
					return
				}
				fmt.Fprintln(w, "ok", name)
			})}
			go srv.Serve(l)
			t.Cleanup(func() { srv.Close() })
			h.HealthURL = "http://" + l.Addr().String() + "/health"
		}
	}
	c.Health = Health{ExpectStatus: 200, ExpectBody: "ok", Retries: 3, Interval: Duration{50 * time.Millisecond}, Timeout: Duration{2 * time.Second}}
}

// markCommands makes every step append "host step" to the marker log.
func (r *rig) markCommands(c *Config) {
	m := ShellQuote(r.marks)
	mark := func(step string) string {
		return fmt.Sprintf(`echo "{{.Host}} %s $(date +%%s.%%N)" >> %s`, step, m)
	}
	c.Commands = Commands{
		Clean:       mark("clean"),
		Update:      mark("update") + ` && echo updating to {{.NEVRA}}`,
		Verify:      mark("verify"),
		Restart:     mark("restart") + " && touch " + ShellQuote(r.dir) + "/{{.Host}}.restarted",
		HardRestart: mark("hard-restart") + " && touch " + ShellQuote(r.dir) + "/{{.Host}}.restarted",
		Downgrade:   mark("downgrade") + ` && echo downgrading to {{.Previous}}`,
		Purge:       mark("purge") + " && rm -rf " + ShellQuote(r.cache) + "/*",
	}
}

type markLine struct {
	host, step string
	at         float64
}

func (r *rig) readMarks(t *testing.T) []markLine {
	b, err := os.ReadFile(r.marks)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []markLine
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		var m markLine
		if _, err := fmt.Sscanf(l, "%s %s %f", &m.host, &m.step, &m.at); err != nil {
			t.Fatalf("bad marker line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func count(ms []markLine, host, step string) int {
	n := 0
	for _, m := range ms {
		if m.host == host && m.step == step {
			n++
		}
	}
	return n
}

func (r *rig) manager(t *testing.T, opts ...Option) *Manager {
	rec := WithRecorder(func(ctx context.Context, ev Event) error {
		r.mu.Lock()
		r.events = append(r.events, ev)
		r.mu.Unlock()
		return nil
	})
	m, err := NewManager(r.lab.Dir, append([]Option{rec}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustPlan(t *testing.T, c *Config, req PlanRequest) *Plan {
	t.Helper()
	inv, err := c.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(inv, req)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRolloutOverSSH(t *testing.T) {
	r := newRig(t, 4, 1, 10)
	c := r.lab.config(2, 2)
	r.markCommands(c)
	r.serveHealth(t, c)
	m := r.manager(t)
	plan := mustPlan(t, c, PlanRequest{NEVRA: "app-2.0-1.el9.x86_64", Previous: "app-1.0-1.el9.x86_64"})
	ro, err := m.Start(context.Background(), plan)
	if err != nil {
		t.Fatalf("rollout: %v", err)
	}
	if ro.State != StateDone {
		t.Fatalf("state %s, want done", ro.State)
	}
	ms := r.readMarks(t)
	last := map[string]float64{}
	first := map[string]float64{}
	for _, mk := range ms {
		k := mk.step
		if strings.HasPrefix(mk.host, "app") && mk.step == "restart" {
			k = "restart" + map[bool]string{true: "1", false: "2"}[mk.host == "app1" || mk.host == "app2"]
		}
		if _, ok := first[k]; !ok || mk.at < first[k] {
			first[k] = mk.at
		}
		last[k] = max(last[k], mk.at)
	}
	order := []string{"clean", "update", "verify", "restart1", "restart2", "purge"}
	for i := 1; i < len(order); i++ {
		if !(last[order[i-1]] < first[order[i]]) {
			t.Errorf("%s (last %.6f) did not finish before %s (first %.6f)", order[i-1], last[order[i-1]], order[i], first[order[i]])
		}
	}
	for _, h := range []string{"app1", "app2", "app3", "app4"} {
		for _, s := range []string{"clean", "update", "verify", "restart"} {
			if n := count(ms, h, s); n != 1 {
				t.Errorf("%s ran %s %d times, want 1", h, s, n)
			}
		}
	}
	if n := count(ms, "proxy1", "purge"); n != 1 {
		t.Errorf("purge ran %d times", n)
	}
	ents, err := os.ReadDir(r.cache)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("proxy cache not emptied: %d entries", len(ents))
	}
	// Group 2 restarts only after group 1's health gate passed: the
	// recorded events say so.
	var g1healthy, g2restart time.Time
	for _, ev := range r.events {
		if ev.Kind == EventPhaseDone && ev.Phase == "health group1" {
			g1healthy = ev.Time
		}
		if ev.Kind == EventStepDone && ev.Phase == "restart group2" && g2restart.IsZero() {
			g2restart = ev.Time
		}
	}
	if g1healthy.IsZero() || g2restart.IsZero() || !g1healthy.Before(g2restart) {
		t.Errorf("group 1 healthy at %v, group 2 restarted at %v", g1healthy, g2restart)
	}
	got, err := m.Get(context.Background(), ro.ID)
	if err != nil {
		t.Fatal(err)
	}
	// clean, update, verify × 4, restart+health × 4, purge × 1
	if want := 4*3 + 4*2 + 1; len(got.Steps) != want {
		t.Errorf("%d step records, want %d", len(got.Steps), want)
	}
	for _, s := range got.Steps {
		if s.Phase == "update" && !strings.Contains(s.Stdout, "updating to app-2.0-1.el9.x86_64") {
			t.Errorf("%s update printed %q", s.Host, s.Stdout)
		}
	}
	// Finished rollouts free their hosts: a second one may start.
	if _, err := m.Start(context.Background(), plan); err != nil {
		t.Errorf("second rollout after a finished one: %v", err)
	}
}

func TestRolloutHaltResumeAndLock(t *testing.T) {
	r := newRig(t, 4, 1, 11)
	c := r.lab.config(2, 2)
	r.markCommands(c)
	r.serveHealth(t, c)
	r.broken["app2"] = true
	m := r.manager(t)
	plan := mustPlan(t, c, PlanRequest{NEVRA: "app-2.0-1.el9.x86_64"})
	ro, err := m.Start(context.Background(), plan)
	var he *HaltError
	if !errors.Is(err, ErrHalted) || !errors.As(err, &he) {
		t.Fatalf("want halt, got %v", err)
	}
	if he.Phase != "health group1" || len(he.Failed) != 1 || he.Failed[0].Host != "app2" || !strings.Contains(he.Failed[0].Stdout, "503") {
		t.Fatalf("halt report: %+v", he)
	}
	if ro.State != StateHalted {
		t.Fatalf("state %s", ro.State)
	}
	ms := r.readMarks(t)
	if n := count(ms, "app3", "restart") + count(ms, "app4", "restart") + count(ms, "proxy1", "purge"); n != 0 {
		t.Fatalf("group 2 or proxies touched after a failed gate: %v", ms)
	}
	// The halted rollout still owns its hosts.
	if _, err := m.Start(context.Background(), plan); !errors.Is(err, ErrLocked) {
		t.Fatalf("second rollout on locked hosts: %v", err)
	}
	r.mu.Lock()
	r.broken["app2"] = false
	r.mu.Unlock()
	// A resume whose first event cannot be recorded (a standby's daemon
	// refuses it) runs nothing and leaves the rollout as it was.
	errRefused := errors.New("refused")
	refusing := r.manager(t, WithRecorder(func(context.Context, Event) error { return errRefused }))
	before := len(r.readMarks(t))
	if got, err := refusing.Resume(context.Background(), ro.ID); !errors.Is(err, errRefused) || errors.Is(err, ErrHalted) {
		t.Fatalf("resume with a refusing recorder: %v (%+v)", err, got)
	}
	if got, err := m.Get(context.Background(), ro.ID); err != nil || got.State != StateHalted || got.Error != ro.Error {
		t.Fatalf("after the refused resume: %+v %v; want it halted as before (%q)", got, err, ro.Error)
	}
	if n := len(r.readMarks(t)); n != before {
		t.Fatalf("the refused resume ran %d steps", n-before)
	}
	ro, err = m.Resume(context.Background(), "")
	if err != nil || ro.State != StateDone {
		t.Fatalf("resume: %v (%v)", err, ro.State)
	}
	ms = r.readMarks(t)
	for _, h := range []string{"app1", "app2", "app3", "app4"} {
		for _, s := range []string{"clean", "update", "verify", "restart"} {
			if n := count(ms, h, s); n != 1 {
				t.Errorf("after resume %s ran %s %d times, want 1", h, s, n)
			}
		}
	}
	got, err := m.Get(context.Background(), ro.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range got.Steps {
		want := 1
		if s.Host == "app2" && s.Phase == "health group1" {
			want = 2
		}
		if s.Runs != want {
			t.Errorf("%s %s ran %d times, want %d", s.Host, s.Phase, s.Runs, want)
		}
	}
	if _, err := m.Resume(context.Background(), ro.ID); !errors.Is(err, ErrFinished) {
		t.Errorf("resume of a done rollout: %v", err)
	}
}

func TestRollbackOnFailure(t *testing.T) {
	r := newRig(t, 3, 1, 12)
	c := r.lab.config(1, 2)
	r.markCommands(c)
	r.serveHealth(t, c)
	r.broken["app1"] = true
	var restored []string
	m := r.manager(t, WithRestore(func(ctx context.Context, ro *Rollout) error {
		restored = append(restored, ro.Plan.Meta["channel"])
		return nil
	}))
	plan := mustPlan(t, c, PlanRequest{NEVRA: "app-2.0-1.el9.x86_64", Previous: "app-1.0-1.el9.x86_64",
		RollbackOnFailure: true, Meta: map[string]string{"channel": "prod"}})
	ro, err := m.Start(context.Background(), plan)
	var he *HaltError
	if !errors.As(err, &he) || !he.RolledBack {
		t.Fatalf("want rolled-back halt, got %v", err)
	}
	if ro.State != StateRolledBack {
		t.Fatalf("state %s", ro.State)
	}
	ms := r.readMarks(t)
	for _, h := range []string{"app1", "app2", "app3"} {
		if count(ms, h, "downgrade") != 1 {
			t.Errorf("%s not downgraded once: %v", h, ms)
		}
	}
	if count(ms, "app1", "restart") != 2 || count(ms, "app2", "restart") != 1 {
		t.Errorf("restarts: app1 %d (want 2), app2 %d (want 1: rollback only)", count(ms, "app1", "restart"), count(ms, "app2", "restart"))
	}
	if count(ms, "proxy1", "purge") != 0 {
		t.Errorf("proxies purged on a failed rollout")
	}
	if len(restored) != 1 || restored[0] != "prod" {
		t.Errorf("restore called %v", restored)
	}
	got, err := m.Get(context.Background(), ro.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range got.Steps {
		if s.Phase == "rollback downgrade" && !strings.Contains(s.Stdout, "downgrading to app-1.0-1.el9.x86_64") {
			t.Errorf("downgrade printed %q", s.Stdout)
		}
	}
}

func TestResumeAfterInterrupt(t *testing.T) {
	r := newRig(t, 3, 0, 13)
	c := r.lab.config(1, 2)
	r.markCommands(c)
	r.serveHealth(t, c)
	// app3's update is slow: the others finish while it is in flight.
	c.Groups[1].Hosts[1].Commands.Update = `echo "{{.Host}} update $(date +%s.%N)" >> ` + ShellQuote(r.marks) + ` && sleep 30`
	ctx, cancel := context.WithCancel(context.Background())
	var doneMu sync.Mutex
	updated := 0
	m := r.manager(t, WithProgress(func(ev Event) {
		doneMu.Lock()
		defer doneMu.Unlock()
		if ev.Kind == EventStepDone && ev.Phase == "update" && (ev.Host == "app1" || ev.Host == "app2") {
			if updated++; updated == 2 {
				cancel()
			}
		}
	}))
	plan := mustPlan(t, c, PlanRequest{NEVRA: "app-2.0-1.el9.x86_64"})
	ro, err := m.Start(ctx, plan)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want cancel, got %v", err)
	}
	got, err := m.Get(context.Background(), ro.ID)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, s := range got.Steps {
		states[s.Key] = s.State
	}
	if states["p001/app3"] != StepRunning || states["p001/app1"] != StepDone {
		t.Fatalf("records after interrupt: %v", states)
	}
	// Resume with a fast update: app3's in-flight update re-runs, nothing
	// finished runs again.
	got.Plan.Phases[1].Tasks[2].Command = strings.Replace(got.Plan.Phases[1].Tasks[2].Command, "sleep 30", "true", 1)
	if err := m.st.st.Update(context.Background(), func(tx StoreTx) error { return writeRollout(tx, got) }); err != nil {
		t.Fatal(err)
	}
	m2 := r.manager(t)
	ro, err = m2.Resume(context.Background(), ro.ID)
	if err != nil || ro.State != StateDone {
		t.Fatalf("resume: %v", err)
	}
	ms := r.readMarks(t)
	for _, h := range []string{"app1", "app2"} {
		for _, s := range []string{"clean", "update", "verify", "restart"} {
			if n := count(ms, h, s); n != 1 {
				t.Errorf("%s ran %s %d times, want 1", h, s, n)
			}
		}
	}
	if n := count(ms, "app3", "update"); n != 2 {
		t.Errorf("app3's interrupted update ran %d times, want 2", n)
	}
}

func TestHostKeysChecked(t *testing.T) {
	r := newRig(t, 2, 0, 14)
	c := r.lab.config(1, 1)
	r.markCommands(c)
	// Drop app2 from known_hosts: unknown host, clear error.
	b, err := os.ReadFile(r.lab.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if err := os.WriteFile(r.lab.KnownHosts, []byte(lines[0]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tr, err := newSSHTransport(mustPlan(t, c, PlanRequest{NEVRA: "a-1-1.x86_64"}).Settings)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	h := r.lab.Hosts
	res, err := tr.Run(context.Background(), Target{Host: "app1", Address: h[0].Address, Port: h[0].Port, User: "root"}, "echo out; echo err >&2; exit 3")
	if err != nil || res.ExitStatus != 3 || res.Stdout != "out\n" || res.Stderr != "err\n" {
		t.Fatalf("known host: %+v %v", res, err)
	}
	_, err = tr.Run(context.Background(), Target{Host: "app2", Address: h[1].Address, Port: h[1].Port, User: "root"}, "true")
	if !errors.Is(err, ErrUnknownHost) {
		t.Fatalf("unknown host: %v", err)
	}
	// Give app2's address app1's key: mismatch.
	f := strings.Fields(lines[0])
	mis := fmt.Sprintf("[%s]:%d %s %s\n", h[1].Address, h[1].Port, f[1], f[2])
	if err := os.WriteFile(r.lab.KnownHosts, []byte(lines[0]+"\n"+mis), 0o600); err != nil {
		t.Fatal(err)
	}
	tr2, err := newSSHTransport(tr.settings)
	if err != nil {
		t.Fatal(err)
	}
	defer tr2.Close()
	if _, err = tr2.Run(context.Background(), Target{Host: "app2", Address: h[1].Address, Port: h[1].Port, User: "root"}, "true"); !errors.Is(err, ErrHostKeyMismatch) {
		t.Fatalf("mismatched key: %v", err)
	}
	// Timeouts and bounded output.
	s := tr.settings
	s.CommandTimeout = 2 * time.Second
	tr3, err := newSSHTransport(s)
	if err != nil {
		t.Fatal(err)
	}
	defer tr3.Close()
	tg := Target{Host: "app1", Address: h[0].Address, Port: h[0].Port, User: "root"}
	if _, err := tr3.Run(context.Background(), tg, "sleep 20"); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("timeout: %v", err)
	}
	res, err = tr.Run(context.Background(), tg, "head -c 300000 /dev/zero")
	if err != nil || len(res.Stdout) > maxOutput+100 || !strings.Contains(res.Stdout, "dropped") {
		t.Fatalf("bounded output: len %d, %v", len(res.Stdout), err)
	}
}

// Keys can come from a real ssh-agent instead of a key file.
func TestSSHAgentAuth(t *testing.T) {
	lab := startSSHLab(t, []string{"app1"}, []string{"127.0.15.2"})
	sock := filepath.Join(t.TempDir(), "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatalf("ssh-agent is required: %v", err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i > 200 {
			t.Fatal("ssh-agent never created its socket")
		}
		time.Sleep(10 * time.Millisecond)
	}
	add := exec.Command("ssh-add", lab.Identity)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v %s", err, out)
	}
	s := Settings{KnownHosts: lab.KnownHosts, ConnectTimeout: 5 * time.Second, CommandTimeout: 10 * time.Second}
	t.Setenv("SSH_AUTH_SOCK", "")
	if _, err := newSSHTransport(s); !errors.Is(err, ErrInventory) {
		t.Fatalf("no key and no agent: %v", err)
	}
	t.Setenv("SSH_AUTH_SOCK", sock)
	tr, err := newSSHTransport(s)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	h := lab.Hosts[0]
	res, err := tr.Run(context.Background(), Target{Host: h.Name, Address: h.Address, Port: h.Port, User: "root"}, "echo via agent")
	if err != nil || res.Stdout != "via agent\n" {
		t.Fatalf("agent auth: %+v %v", res, err)
	}
}

func TestAbortFreesHosts(t *testing.T) {
	r := newRig(t, 2, 0, 16)
	c := r.lab.config(1, 1)
	r.markCommands(c)
	r.serveHealth(t, c)
	r.broken["app1"] = true
	m := r.manager(t)
	plan := mustPlan(t, c, PlanRequest{NEVRA: "app-2.0-1.el9.x86_64"})
	ro, err := m.Start(context.Background(), plan)
	if !errors.Is(err, ErrHalted) {
		t.Fatalf("want halt: %v", err)
	}
	if err := m.Preflight(context.Background(), plan); !errors.Is(err, ErrLocked) {
		t.Fatalf("preflight on a halted rollout's hosts: %v", err)
	}
	ab, err := m.Abort(context.Background(), "")
	if err != nil || ab.ID != ro.ID || ab.State != StateAborted {
		t.Fatalf("abort: %v %+v", err, ab)
	}
	if _, err := m.Resume(context.Background(), ro.ID); !errors.Is(err, ErrFinished) {
		t.Fatalf("resume of an aborted rollout: %v", err)
	}
	if _, err := m.Abort(context.Background(), ro.ID); !errors.Is(err, ErrFinished) {
		t.Fatalf("second abort: %v", err)
	}
	if _, err := m.Resume(context.Background(), ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("resume with nothing unfinished: %v", err)
	}
	r.broken["app1"] = false
	if err := m.Preflight(context.Background(), plan); err != nil {
		t.Fatalf("preflight after abort: %v", err)
	}
	if _, err := m.Start(context.Background(), plan); err != nil {
		t.Fatalf("new rollout after abort: %v", err)
	}
	all, err := m.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].State != StateAborted || all[1].State != StateDone {
		t.Fatalf("list: %d rollouts", len(all))
	}
	var kinds []string
	for _, ev := range r.events {
		kinds = append(kinds, ev.Kind)
	}
	if !strings.Contains(strings.Join(kinds, ","), EventAborted) {
		t.Errorf("abort not recorded: %v", kinds)
	}
}

// The health gate tries each host Retries times, and a 200 whose body
// lacks expect_body is a failed gate.
func TestHealthGateRetriesAndBody(t *testing.T) {
	r := newRig(t, 2, 0, 19)
	c := r.lab.config(2)
	r.markCommands(c)
	r.serveHealth(t, c)
	m := r.manager(t)
	plan := mustPlan(t, c, PlanRequest{NEVRA: "app-2.0-1.el9.x86_64"})
	// app1 turns healthy at its last allowed try.
	r.mu.Lock()
	r.failFirst["app1"] = c.Health.Retries - 1
	r.mu.Unlock()
	ro, err := m.Start(context.Background(), plan)
	if err != nil || ro.State != StateDone {
		t.Fatalf("rollout with app1 healthy at try %d of %d: %v", c.Health.Retries, c.Health.Retries, err)
	}
	r.mu.Lock()
	hits := r.hits["app1"]
	r.mu.Unlock()
	if hits != c.Health.Retries {
		t.Errorf("app1's gate asked %d times, want %d", hits, c.Health.Retries)
	}
	// app2 answers 200, but not what the gate expects.
	r.mu.Lock()
	r.body["app2"] = "degraded app2"
	r.mu.Unlock()
	_, err = m.Start(context.Background(), plan)
	var he *HaltError
	if !errors.As(err, &he) {
		t.Fatalf("rollout with a wrong health body: %v, want a halt", err)
	}
	if he.Phase != "health group1" || len(he.Failed) != 1 || he.Failed[0].Host != "app2" ||
		!strings.Contains(he.Failed[0].Error, `body does not contain "ok"`) || !strings.Contains(he.Failed[0].Stdout, `200 "degraded app2"`) {
		t.Fatalf("halt report: %+v", he)
	}
}

// A host command that exits non-zero (1, as `rpm -q` of a missing package
// does) fails its step: the rollout halts there and restarts nothing.
func TestCommandExitStatusHalts(t *testing.T) {
	r := newRig(t, 2, 0, 24)
	c := r.lab.config(2)
	r.markCommands(c)
	r.serveHealth(t, c)
	c.Groups[0].Hosts[1].Commands.Verify = `echo "{{.Host}} verify $(date +%s.%N)" >> ` + ShellQuote(r.marks) + ` && echo not installed >&2 && false`
	_, err := r.manager(t).Start(context.Background(), mustPlan(t, c, PlanRequest{NEVRA: "app-2.0-1.el9.x86_64"}))
	var he *HaltError
	if !errors.As(err, &he) {
		t.Fatalf("rollout with a failing verify: %v, want a halt", err)
	}
	if he.Phase != "verify" || len(he.Failed) != 1 || he.Failed[0].Host != "app2" || he.Failed[0].ExitStatus != 1 ||
		!strings.Contains(he.Failed[0].Error, "exit status 1") || !strings.Contains(he.Failed[0].Stderr, "not installed") {
		t.Fatalf("halt report: %+v", he)
	}
	ms := r.readMarks(t)
	if n := count(ms, "app2", "verify"); n != 1 {
		t.Errorf("app2 verified %d times, want 1", n)
	}
	if n := count(ms, "app1", "restart") + count(ms, "app2", "restart"); n != 0 {
		t.Errorf("%d restarts after a failed verify", n)
	}
}

// waitMark waits, with a generous deadline, until host has logged step.
func (r *rig) waitMark(t *testing.T, host, step string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for count(r.readMarks(t), host, step) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s never logged %s: %v", host, step, r.readMarks(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An abort from another process stops a running rollout before its next
// phase: the step in flight finishes, nothing after it runs on any host,
// and the hosts are free for the next rollout.
func TestAbortStopsLiveRollout(t *testing.T) {
	r := newRig(t, 2, 0, 20)
	c := r.lab.config(1, 1)
	r.markCommands(c)
	r.serveHealth(t, c)
	gate := filepath.Join(r.dir, "gate")
	c.Commands.Clean = `echo "{{.Host}} clean $(date +%s.%N)" >> ` + ShellQuote(r.marks) +
		` && while [ ! -e ` + ShellQuote(gate) + ` ]; do sleep 0.05; done`
	m := r.manager(t)
	plan := mustPlan(t, c, PlanRequest{NEVRA: "app-2.0-1.el9.x86_64"})
	type result struct {
		ro  *Rollout
		err error
	}
	done := make(chan result, 1)
	go func() {
		ro, err := m.Start(context.Background(), plan)
		done <- result{ro, err}
	}()
	r.waitMark(t, "app1", "clean")
	r.waitMark(t, "app2", "clean")
	other, err := NewManager(r.lab.Dir)
	if err != nil {
		t.Fatal(err)
	}
	ab, err := other.Abort(context.Background(), "")
	if err != nil || ab.State != StateAborted || !ab.Live {
		t.Fatalf("abort of the running rollout: %v, state %v, live %v; want aborted while live", err, ab.State, ab.Live)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if !errors.Is(res.err, ErrFinished) || res.ro == nil || res.ro.ID != ab.ID {
		t.Fatalf("the aborted rollout's Start: %v, want ErrFinished", res.err)
	}
	ms := r.readMarks(t)
	for _, h := range []string{"app1", "app2"} {
		for _, s := range []string{"update", "verify", "restart"} {
			if n := count(ms, h, s); n != 0 {
				t.Errorf("%s ran %s %d times after the abort", h, s, n)
			}
		}
	}
	got, err := other.Get(context.Background(), ab.ID)
	if err != nil || got.State != StateAborted {
		t.Fatalf("after the abort: %v, state %v", err, got.State)
	}
	ro, err := m.Start(context.Background(), plan)
	if err != nil || ro.State != StateDone {
		t.Fatalf("a rollout on the freed hosts: %v", err)
	}
}

// Within a step at most Concurrency hosts work at once, and a rollout that
// a live process runs cannot be resumed by another.
func TestConcurrencyBoundAndBusy(t *testing.T) {
	r := newRig(t, 4, 0, 17)
	c := r.lab.config(4)
	r.markCommands(c)
	r.serveHealth(t, c)
	c.Concurrency = 2
	m := ShellQuote(r.marks)
	c.Commands.Clean = `echo "{{.Host}} start $(date +%s.%N)" >> ` + m + ` && sleep 1.5 && echo "{{.Host}} end $(date +%s.%N)" >> ` + m
	started := make(chan string, 16)
	mgr := r.manager(t, WithProgress(func(ev Event) {
		if ev.Kind == EventStepStart && ev.Phase == "clean" {
			started <- ev.Rollout
		}
	}))
	plan := mustPlan(t, c, PlanRequest{NEVRA: "app-2.0-1.el9.x86_64"})
	done := make(chan error, 1)
	go func() { _, err := mgr.Start(context.Background(), plan); done <- err }()
	id := <-started
	other, err := NewManager(r.lab.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Resume(context.Background(), id); !errors.Is(err, ErrBusy) {
		t.Errorf("resume while a live process runs it: %v", err)
	}
	if got, err := other.Get(context.Background(), id); err != nil || !got.Live || got.State != StateRunning {
		t.Errorf("status while running: live %v state %v (%v)", got.Live, got.State, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	type ev struct {
		at    float64
		delta int
	}
	var evs []ev
	for _, mk := range r.readMarks(t) {
		switch mk.step {
		case "start":
			evs = append(evs, ev{mk.at, 1})
		case "end":
			evs = append(evs, ev{mk.at, -1})
		}
	}
	sort.Slice(evs, func(i, j int) bool {
		return evs[i].at < evs[j].at || evs[i].at == evs[j].at && evs[i].delta < evs[j].delta
	})
	cur, peak := 0, 0
	for _, e := range evs {
		cur += e.delta
		peak = max(peak, cur)
	}
	// The limit is what is asserted; how much overlap a loaded machine
	// gives is a performance figure (make bench), not a test.
	if len(evs) != 8 || peak < 1 || peak > 2 {
		t.Errorf("%d start/end marks, peak concurrency %d, want 8 and at most 2", len(evs), peak)
	}
}

// A step marked not idempotent that was in flight when repoctl stopped is
// not re-run by a plain resume; --rerun-in-flight does it.
func TestNotIdempotentInFlight(t *testing.T) {
	r := newRig(t, 1, 1, 18)
	c := r.lab.config(1)
	r.markCommands(c)
	r.serveHealth(t, c)
	c.NotIdempotent = []string{"purge"}
	gate := filepath.Join(r.dir, "gate")
	c.Proxies[0].Commands.Purge = `echo "{{.Host}} purge $(date +%s.%N)" >> ` + ShellQuote(r.marks) + ` && while [ ! -e ` + ShellQuote(gate) + ` ]; do sleep 0.05; done`
	ctx, cancel := context.WithCancel(context.Background())
	m := r.manager(t, WithProgress(func(ev Event) {
		if ev.Kind == EventStepStart && ev.Phase == "purge" {
			go func() {
				// Cancel once the command is surely running on the host.
				for i := 0; i < 600; i++ {
					b, err := os.ReadFile(r.marks)
					if err != nil {
						t.Error(err)
					}
					if strings.Contains(string(b), "proxy1 purge") {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				cancel()
			}()
		}
	}))
	plan := mustPlan(t, c, PlanRequest{NEVRA: "app-2.0-1.el9.x86_64"})
	if plan.Phases[len(plan.Phases)-1].Idempotent || !plan.Phases[0].Idempotent {
		t.Fatalf("idempotence flags wrong: %+v", plan.Phases)
	}
	ro, err := m.Start(ctx, plan)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want cancel, got %v", err)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = r.manager(t).Resume(context.Background(), ro.ID)
	if !errors.Is(err, ErrHalted) || !errors.Is(err, ErrNotIdempotent) {
		t.Fatalf("plain resume over an in-flight non-idempotent step: %v", err)
	}
	if n := count(r.readMarks(t), "proxy1", "purge"); n != 1 {
		t.Fatalf("purge ran %d times before --rerun-in-flight", n)
	}
	got, err := r.manager(t, WithRerunInFlight(true)).Resume(context.Background(), ro.ID)
	if err != nil || got.State != StateDone {
		t.Fatalf("resume with rerun: %v", err)
	}
	if n := count(r.readMarks(t), "proxy1", "purge"); n != 2 {
		t.Fatalf("purge ran %d times, want 2", n)
	}
}
