package upgrade

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var uxBuilds = []Build{
	{NEVRA: "uxtool-1.1-1.el9.x86_64", Previous: "uxtool-1.0-1.el9.x86_64"},
	{NEVRA: "uxtool-1.1-1.el9.aarch64", Previous: "uxtool-1.0-1.el9.aarch64"},
}

func planInv(t *testing.T, hosts ...HostConfig) *Inventory {
	t.Helper()
	c := &Config{Hosts: hosts, KnownHosts: "/dev/null"}
	inv, err := c.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func phaseNames(p *Plan) string {
	var n []string
	for _, ph := range p.Phases {
		n = append(n, ph.Name)
	}
	return strings.Join(n, ",")
}

func byArchKeys(t Task) string {
	var ks []string
	for k := range t.ByArch {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

// TestPlanBuilds: a multi-arch build renders each host's commands for the
// arch the inventory gives, or for every arch behind an arch probe; a
// single package plans as before.
func TestPlanBuilds(t *testing.T) {
	inv := planInv(t, HostConfig{Name: "a1", Address: "10.0.0.1", Arch: "aarch64"}, HostConfig{Name: "a2", Address: "10.0.0.2"})
	p, err := NewPlan(inv, PlanRequest{Builds: uxBuilds, RollbackOnFailure: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := phaseNames(p); got != "probe arch,clean,update,verify,restart group1,health group1,restart group2,health group2" {
		t.Fatalf("phases %s", got)
	}
	if pr := p.Phases[0]; pr.Kind != KindArch || len(pr.Tasks) != 1 || pr.Tasks[0].Target.Host != "a2" || pr.Tasks[0].Command != ArchProbe {
		t.Errorf("probe phase %+v", pr)
	}
	if p.NEVRA != "uxtool-1.1-1.el9.x86_64" || len(p.Builds) != 2 || p.Builds[1].Previous != "uxtool-1.0-1.el9.aarch64" {
		t.Errorf("plan builds %q %+v", p.NEVRA, p.Builds)
	}
	up := p.Phases[2]
	if c := up.Tasks[0].Command; c != "dnf -y install 'uxtool-1.1-1.el9.aarch64'" || len(up.Tasks[0].ByArch) != 0 {
		t.Errorf("a1 (inventory aarch64) update %q %v", c, up.Tasks[0].ByArch)
	}
	if a2 := up.Tasks[1]; a2.Command != "" || byArchKeys(a2) != "aarch64,x86_64" || a2.ByArch["x86_64"] != "dnf -y install 'uxtool-1.1-1.el9.x86_64'" {
		t.Errorf("a2 (probed) update %+v", a2)
	}
	// Commands that do not name the package stay plain.
	if c := p.Phases[1].Tasks[1]; c.Command != "dnf clean metadata" || c.ByArch != nil {
		t.Errorf("a2 clean %+v", c)
	}
	if d := p.Rollback[0].Tasks[1]; d.ByArch["aarch64"] != "rpm -q 'uxtool-1.0-1.el9.aarch64' || dnf -y downgrade 'uxtool-1.0-1.el9.aarch64'" {
		t.Errorf("a2 downgrade %+v", d)
	}
	if v := p.Rollback[2].Tasks[0]; v.Command != "rpm -q 'uxtool-1.0-1.el9.aarch64'" {
		t.Errorf("a1 rollback verify %+v", v)
	}
	txt := p.Text()
	for _, want := range []string{"uxtool-1.1-1.el9.aarch64 (previous: uxtool-1.0-1.el9.aarch64)", "1. probe arch",
		"a2         root@10.0.0.2:22: if aarch64: dnf -y install 'uxtool-1.1-1.el9.aarch64'",
		"a2         root@10.0.0.2:22: if x86_64: dnf -y install 'uxtool-1.1-1.el9.x86_64'"} {
		if !strings.Contains(txt, want) {
			t.Errorf("plan text lacks %q:\n%s", want, txt)
		}
	}

	// Every host's arch known: no probe.
	inv2 := planInv(t, HostConfig{Name: "a1", Address: "10.0.0.1", Arch: "aarch64"}, HostConfig{Name: "a2", Address: "10.0.0.2", Arch: "x86_64"})
	p2, err := NewPlan(inv2, PlanRequest{Builds: uxBuilds})
	if err != nil || strings.HasPrefix(phaseNames(p2), "probe") || p2.Phases[1].Tasks[1].Command != "dnf -y install 'uxtool-1.1-1.el9.x86_64'" {
		t.Errorf("known arches: %v %s", err, phaseNames(p2))
	}
	// A noarch package fits any host; one package needs no probe.
	p3, err := NewPlan(inv2, PlanRequest{NEVRA: "uxconf-2.0-1.el9.noarch"})
	if err != nil || p3.Builds != nil || phaseNames(p3) != "clean,update,verify,restart group1,health group1,restart group2,health group2" ||
		p3.Phases[1].Tasks[0].Command != "dnf -y install 'uxconf-2.0-1.el9.noarch'" {
		t.Errorf("noarch: %v %+v", err, p3)
	}

	for name, c := range map[string]struct {
		inv  *Inventory
		req  PlanRequest
		want error
	}{
		"inventory arch without a package": {planInv(t, HostConfig{Name: "p", Arch: "ppc64le"}), PlanRequest{Builds: uxBuilds}, ErrInventory},
		"one package of another arch":      {planInv(t, HostConfig{Name: "p", Arch: "aarch64"}), PlanRequest{NEVRA: "uxtool-1.1-1.el9.x86_64"}, ErrInventory},
		"both forms":                       {inv, PlanRequest{NEVRA: "uxtool-1.1-1.el9.x86_64", Builds: uxBuilds}, ErrInventory},
		"source package":                   {inv, PlanRequest{Builds: []Build{{NEVRA: "uxtool-1.1-1.el9.x86_64"}, {NEVRA: "uxtool-1.1-1.el9.src"}}}, ErrInventory},
		"two versions":                     {inv, PlanRequest{Builds: []Build{{NEVRA: "uxtool-1.1-1.el9.x86_64"}, {NEVRA: "uxtool-1.2-1.el9.aarch64"}}}, ErrInventory},
		"arch twice":                       {inv, PlanRequest{Builds: []Build{{NEVRA: "uxtool-1.1-1.el9.x86_64"}, {NEVRA: "uxtool-1.1-1.el9.x86_64"}}}, ErrInventory},
		"hostile NEVRA":                    {inv, PlanRequest{Builds: []Build{{NEVRA: "uxtool-1.1-1.el9.x86_64"}, {NEVRA: "uxtool-1.1-1.el9.x86_64;reboot"}}}, ErrUnsafeName},
		"hostile previous":                 {inv, PlanRequest{Builds: []Build{{NEVRA: "uxtool-1.1-1.el9.x86_64", Previous: "$(reboot)"}}}, ErrUnsafeName},
		"rollback without every previous":  {inv, PlanRequest{Builds: []Build{uxBuilds[0], {NEVRA: "uxtool-1.1-1.el9.aarch64"}}, RollbackOnFailure: true}, ErrNoPrevious},
	} {
		if _, err := NewPlan(c.inv, c.req); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	if _, err := (&Config{Hosts: []HostConfig{{Name: "h", Arch: "x86_64;reboot"}}}).Resolve(""); !errors.Is(err, ErrInventory) {
		t.Errorf("hostile inventory arch: %v", err)
	}
	ini := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(ini, []byte("[web]\napp1 ansible_host=10.0.0.1 repoctl_arch=aarch64\napp2 ansible_host=10.0.0.2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ai, err := (&Config{}).Resolve(ini)
	if err != nil || ai.AppHosts()[0].Arch != "aarch64" || ai.AppHosts()[1].Arch != "" {
		t.Errorf("ansible repoctl_arch: %v %+v", err, ai)
	}
}

func localArch(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("rpm", "--eval", "%{_arch}").Output()
	if err != nil {
		t.Fatalf("rpm --eval %%{_arch} (rpm is required): %v", err)
	}
	a := strings.TrimSpace(string(out))
	if a != "x86_64" && a != "aarch64" {
		t.Fatalf("this machine's rpm arch %q is neither build arch of the test", a)
	}
	return a
}

// installCommands make update and downgrade append the exact NEVRA to
// DIR/HOST.pkgs, so the test sees what each host was told to install.
func (r *rig) installCommands(c *Config) {
	pk := ShellQuote(r.dir) + "/{{.Host}}.pkgs"
	c.Commands.Update = `echo "{{.Host}} update $(date +%s.%N)" >> ` + ShellQuote(r.marks) + ` && echo update {{.NEVRA}} >> ` + pk
	c.Commands.Downgrade = `echo "{{.Host}} downgrade $(date +%s.%N)" >> ` + ShellQuote(r.marks) + ` && echo downgrade {{.Previous}} >> ` + pk
}

func (r *rig) pkgs(t *testing.T, host string) string {
	b, err := os.ReadFile(filepath.Join(r.dir, host+".pkgs"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestRolloutPerArch rolls a two-arch build out to two real sshd hosts:
// app1's arch comes from the inventory, app2 is asked over SSH (this
// machine's own rpm answers). Each is told to install the NEVRA of its
// arch; a resume takes the arch the probe recorded; on rollback each
// downgrades to its arch's previous version; and a host of an arch the
// build lacks halts the rollout at the probe, before anything changed.
func TestRolloutPerArch(t *testing.T) {
	local := localArch(t)
	other := map[string]string{"x86_64": "aarch64", "aarch64": "x86_64"}[local]
	r := newRig(t, 2, 0, 21)
	c := r.lab.config(1, 1)
	r.markCommands(c)
	r.installCommands(c)
	r.serveHealth(t, c)
	c.Groups[0].Hosts[0].Arch = other
	m := r.manager(t)
	ctx := context.Background()

	plan := mustPlan(t, c, PlanRequest{Builds: uxBuilds})
	ro, err := m.Start(ctx, plan)
	if err != nil || ro.State != StateDone {
		t.Fatalf("rollout: %v (%v)", err, ro)
	}
	if got, want := r.pkgs(t, "app1"), "update uxtool-1.1-1.el9."+other; got != want {
		t.Errorf("app1 (inventory %s) was told %q, want %q", other, got, want)
	}
	if got, want := r.pkgs(t, "app2"), "update uxtool-1.1-1.el9."+local; got != want {
		t.Errorf("app2 (probed) was told %q, want %q", got, want)
	}
	got, err := m.Get(ctx, ro.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range got.Steps {
		switch {
		case s.Phase == "probe arch" && (s.Host != "app2" || strings.TrimSpace(s.Stdout) != local):
			t.Errorf("probe step %+v", s)
		case s.Phase == "update" && s.Host == "app2" && (!strings.Contains(s.Command, "uxtool-1.1-1.el9."+local) || strings.Contains(s.Command, other)):
			t.Errorf("app2's recorded update command %q", s.Command)
		}
	}
	ms := r.readMarks(t)
	for _, h := range []string{"app1", "app2"} {
		if count(ms, h, "update") != 1 {
			t.Errorf("%s updated %d times", h, count(ms, h, "update"))
		}
	}

	// Interrupted after the probe: the resume installs what the recorded
	// answer says (planted here as the other arch), without asking again.
	if err := os.Remove(filepath.Join(r.dir, "app2.pkgs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(r.dir, "app1.pkgs")); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	m2 := r.manager(t, WithProgress(func(ev Event) {
		if ev.Kind == EventStepDone && ev.Phase == "probe arch" {
			cancel()
		}
	}))
	ro, err = m2.Start(cctx, plan)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want cancel after the probe, got %v", err)
	}
	if p := r.pkgs(t, "app2"); p != "" {
		t.Fatalf("app2 updated before the resume: %q", p)
	}
	full, err := m2.st.get(ctx, ro.ID)
	if err != nil {
		t.Fatal(err)
	}
	planted := false
	for _, s := range full.Steps {
		if s.Phase == "probe arch" {
			s.Stdout, planted = other+"\n", true
			if err := m2.st.putStep(ctx, ro.ID, s); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !planted {
		t.Fatal("no probe record")
	}
	ro, err = r.manager(t).Resume(ctx, ro.ID)
	if err != nil || ro.State != StateDone {
		t.Fatalf("resume: %v", err)
	}
	if got, want := r.pkgs(t, "app2"), "update uxtool-1.1-1.el9."+other; got != want {
		t.Errorf("resumed app2 was told %q, want %q (the recorded arch)", got, want)
	}

	// Rollback: each host downgrades to its own arch's previous version.
	if err := os.Remove(filepath.Join(r.dir, "app2.pkgs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(r.dir, "app1.pkgs")); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.broken["app2"] = true
	r.mu.Unlock()
	rb := mustPlan(t, c, PlanRequest{Builds: uxBuilds, RollbackOnFailure: true})
	ro, err = r.manager(t).Start(ctx, rb)
	var he *HaltError
	if !errors.As(err, &he) || !he.RolledBack {
		t.Fatalf("want a rolled-back halt, got %v", err)
	}
	if got, want := r.pkgs(t, "app2"), "update uxtool-1.1-1.el9."+local+"\ndowngrade uxtool-1.0-1.el9."+local; got != want {
		t.Errorf("app2 was told %q, want %q", got, want)
	}
	if got, want := r.pkgs(t, "app1"), "update uxtool-1.1-1.el9."+other+"\ndowngrade uxtool-1.0-1.el9."+other; got != want {
		t.Errorf("app1 was told %q, want %q", got, want)
	}
	r.mu.Lock()
	r.broken["app2"] = false
	r.mu.Unlock()

	// A build without app2's arch halts at the probe: nothing ran after it.
	if err := os.Remove(r.marks); err != nil {
		t.Fatal(err)
	}
	odd := mustPlan(t, c, PlanRequest{Builds: []Build{{NEVRA: "uxtool-1.1-1.el9." + other}, {NEVRA: "uxtool-1.1-1.el9.ppc64le"}}})
	ro, err = r.manager(t).Start(ctx, odd)
	if !errors.As(err, &he) || he.Phase != "probe arch" || len(he.Failed) != 1 || he.Failed[0].Host != "app2" ||
		!strings.Contains(he.Failed[0].Error, "host is "+local) {
		t.Fatalf("want a halt at the probe on app2, got %v %+v", err, he)
	}
	if ms := r.readMarks(t); len(ms) != 0 {
		t.Errorf("commands ran after a failed probe: %v", ms)
	}
	if _, err := r.manager(t).Abort(ctx, ro.ID); err != nil {
		t.Fatal(err)
	}
}
