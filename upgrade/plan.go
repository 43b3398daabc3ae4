package upgrade

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"text/template"
)

// Phase kinds.
const (
	KindCommand = "command" // run Task.Command on each host over SSH
	KindHealth  = "health"  // HTTP gate from here to each host
	// KindArch runs ArchProbe on each host whose arch the inventory does
	// not give; later tasks with ByArch pick their command by its answer.
	KindArch = "arch"
)

// Restart modes.
const (
	RestartGraceful = "graceful"
	RestartHard     = "hard"
)

// Target is where a task runs.
type Target struct {
	Host    string `json:"host"`
	Address string `json:"address"`
	Port    int    `json:"port"`
	User    string `json:"user"`
}

// Addr is address:port.
func (t Target) Addr() string { return Host{Address: t.Address, Port: t.Port}.Addr() }

// Task is one host's part of a phase. Command is the exact string sent to
// the host's shell (sudo wrapping included); Health is the gate for health
// phases.
type Task struct {
	Target  Target  `json:"target"`
	Command string  `json:"command,omitempty"`
	Health  *Health `json:"health,omitempty"`
	// ByArch replaces Command when the host's arch is only learnt by the
	// plan's KindArch phase: the command for each arch of the build
	// (noarch serving any arch). The step record keeps the one that ran.
	ByArch map[string]string `json:"by_arch,omitempty"`
}

// Phase is a step over a set of hosts; all its tasks run concurrently
// (bounded) and all must succeed before the next phase starts.
type Phase struct {
	Name       string `json:"name"`
	Kind       string `json:"kind"`
	Group      string `json:"group,omitempty"`
	Idempotent bool   `json:"idempotent"`
	Tasks      []Task `json:"tasks"`
	// Updates marks the phase that changes installed packages: its hosts
	// are the ones rollback must downgrade.
	Updates bool `json:"updates,omitempty"`
}

// Plan is a whole rollout, fixed when it starts and stored with it.
type Plan struct {
	// NEVRA and Previous are the first build's; Builds lists every arch
	// when there is more than one.
	NEVRA             string            `json:"nevra"`
	Previous          string            `json:"previous,omitempty"`
	Builds            []Build           `json:"builds,omitempty"`
	Restart           string            `json:"restart"`
	RollbackOnFailure bool              `json:"rollback_on_failure"`
	Settings          Settings          `json:"settings"`
	Phases            []Phase           `json:"phases"`
	Rollback          []Phase           `json:"rollback,omitempty"`
	Meta              map[string]string `json:"meta,omitempty"`
}

// PlanRequest says what to roll out.
type PlanRequest struct {
	NEVRA    string // exact name-[epoch:]version-release.arch
	Previous string // what the target channel had before; "" if nothing
	// Builds is the alternative to NEVRA and Previous: every arch of one
	// build (no source package). Each host installs the one of its arch,
	// or the noarch one; a host without an inventory arch is asked first
	// (ArchProbe) when there is more than one.
	Builds []Build
	// Restart is RestartGraceful (default) or RestartHard.
	Restart           string
	RollbackOnFailure bool
	// Meta is carried opaquely (e.g. repository and channels) so that the
	// restore callback knows what to undo after a resume.
	Meta map[string]string
}

type tmplData struct {
	NEVRA, NVRA, Name, Previous, PreviousNVRA string
	Host, Address                             string
	// Version is version-release, unquoted: for health URL and body
	// templates, which never reach a shell.
	Version string
}

func render(name, text string, d tmplData) (string, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", fmt.Errorf("%w: %s template %q: %v", ErrInventory, name, text, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return "", fmt.Errorf("%w: %s template %q: %v", ErrInventory, name, text, err)
	}
	return strings.TrimSpace(b.String()), nil
}

func wrapSudo(h Host, cmd string) string {
	if !h.Sudo {
		return cmd
	}
	return "sudo -n sh -c " + ShellQuote(cmd)
}

// NewPlan renders every command for every host, in the order it will run:
// for a multi-arch build, ask the hosts of unknown arch for it; clean
// metadata (all app hosts), update to the exact NEVRA, rpm -q check, then
// per group restart and health gate, then purge on the proxies. When
// Previous is known (for every build) it also renders the rollback phases.
func NewPlan(inv *Inventory, req PlanRequest) (*Plan, error) {
	bs := req.Builds
	if len(bs) == 0 {
		bs = []Build{{NEVRA: req.NEVRA, Previous: req.Previous}}
	} else if req.NEVRA != "" || req.Previous != "" {
		return nil, fmt.Errorf("%w: a plan takes NEVRA and Previous or Builds, not both", ErrInventory)
	}
	builds, err := checkBuilds(bs)
	if err != nil {
		return nil, err
	}
	first := builds[0]
	rollback := true
	for _, b := range builds {
		if !b.hasPrev {
			rollback = false
			if req.RollbackOnFailure {
				return nil, fmt.Errorf("rollback on failure for %q: %w", b.nv.String(), ErrNoPrevious)
			}
		}
	}
	switch req.Restart {
	case "":
		req.Restart = RestartGraceful
	case RestartGraceful, RestartHard:
	default:
		return nil, fmt.Errorf("%w: restart must be graceful or hard, not %q", ErrInventory, req.Restart)
	}
	p := &Plan{NEVRA: first.nv.String(), Restart: req.Restart, RollbackOnFailure: req.RollbackOnFailure,
		Settings: inv.Settings, Meta: req.Meta}
	if first.hasPrev {
		p.Previous = first.prev.String()
	}
	if len(builds) > 1 {
		for _, b := range builds {
			nb := Build{NEVRA: b.nv.String()}
			if b.hasPrev {
				nb.Previous = b.prev.String()
			}
			p.Builds = append(p.Builds, nb)
		}
	}
	data := func(h Host, b archBuild) tmplData {
		d := tmplData{NEVRA: ShellQuote(b.nv.String()), NVRA: ShellQuote(b.nv.NVRA()), Name: ShellQuote(b.nv.Name),
			Host: h.Name, Address: h.Address, Version: b.nv.Version + "-" + b.nv.Release}
		if b.hasPrev {
			d.Previous, d.PreviousNVRA = ShellQuote(b.prev.String()), ShellQuote(b.prev.NVRA())
		}
		return d
	}
	// hostBuilds are the builds a host's commands are rendered for: the
	// one of its arch when that is known before the rollout (from the
	// inventory, or because the build has one arch), else all of them.
	hostBuilds := func(h Host) ([]archBuild, error) {
		if h.Arch != "" {
			b, ok := forArch(builds, h.Arch)
			if !ok {
				return nil, fmt.Errorf("%w: host %q is %s; the build has %s", ErrInventory, h.Name, h.Arch, buildArches(builds))
			}
			return []archBuild{b}, nil
		}
		return builds, nil
	}
	notIdem := map[string]bool{}
	for _, st := range inv.NotIdempotent {
		notIdem[st] = true
	}
	// task renders text for h once per build it may install; renderings
	// that all agree (clean, restart) make a plain Command.
	task := func(name string, h Host, text string, mod func(*tmplData)) (Task, error) {
		t := Task{Target: target(h)}
		bs, err := hostBuilds(h)
		if err != nil {
			return t, err
		}
		byArch := map[string]string{}
		for _, b := range bs {
			d := data(h, b)
			if mod != nil {
				mod(&d)
			}
			c, err := render(name, text, d)
			if err != nil {
				return t, fmt.Errorf("host %q: %w", h.Name, err)
			}
			byArch[b.nv.Arch] = wrapSudo(h, c)
		}
		t.Command = byArch[bs[0].nv.Arch]
		for _, c := range byArch {
			if c != t.Command {
				t.Command, t.ByArch = "", byArch
				break
			}
		}
		return t, nil
	}
	cmdPhase := func(name, group string, hosts []Host, pick func(Commands) string, mod func(*tmplData)) (Phase, error) {
		step := strings.Fields(strings.TrimPrefix(name, "rollback "))[0]
		ph := Phase{Name: name, Kind: KindCommand, Group: group, Idempotent: !notIdem[step]}
		for _, h := range hosts {
			text := pick(h.Commands)
			if text == "" {
				return ph, fmt.Errorf("%w: host %q has no %s command", ErrInventory, h.Name, name)
			}
			t, err := task(name, h, text, mod)
			if err != nil {
				return ph, err
			}
			ph.Tasks = append(ph.Tasks, t)
		}
		return ph, nil
	}
	healthPhase := func(group string, hosts []Host) (Phase, error) {
		ph := Phase{Name: "health " + group, Kind: KindHealth, Group: group, Idempotent: true}
		for _, h := range hosts {
			// Health templates see the version-release only, which all
			// arches of a build share.
			hc := h.Health
			u, err := render("health url", hc.URL, data(h, first))
			if err != nil {
				return ph, fmt.Errorf("host %q: %w", h.Name, err)
			}
			hc.URL = u
			if hc.ExpectBody, err = render("health body", hc.ExpectBody, data(h, first)); err != nil {
				return ph, fmt.Errorf("host %q: %w", h.Name, err)
			}
			ph.Tasks = append(ph.Tasks, Task{Target: target(h), Health: &hc})
		}
		return ph, nil
	}
	restart := func(c Commands) string { return c.Restart }
	if req.Restart == RestartHard {
		restart = func(c Commands) string { return c.HardRestart }
	}
	all := inv.AppHosts()
	if len(builds) > 1 {
		probe := Phase{Name: "probe arch", Kind: KindArch, Idempotent: true}
		for _, h := range all {
			if h.Arch == "" {
				probe.Tasks = append(probe.Tasks, Task{Target: target(h), Command: ArchProbe})
			}
		}
		if len(probe.Tasks) > 0 {
			p.Phases = append(p.Phases, probe)
		}
	}
	steps := []struct {
		name string
		pick func(Commands) string
	}{
		{"clean", func(c Commands) string { return c.Clean }},
		{"update", func(c Commands) string { return c.Update }},
		{"verify", func(c Commands) string { return c.Verify }},
	}
	for _, s := range steps {
		ph, err := cmdPhase(s.name, "", all, s.pick, nil)
		if err != nil {
			return nil, err
		}
		ph.Updates = s.name == "update"
		p.Phases = append(p.Phases, ph)
	}
	for _, g := range inv.Groups {
		ph, err := cmdPhase("restart "+g.Name, g.Name, g.Hosts, restart, nil)
		if err != nil {
			return nil, err
		}
		p.Phases = append(p.Phases, ph)
		if ph, err = healthPhase(g.Name, g.Hosts); err != nil {
			return nil, err
		}
		p.Phases = append(p.Phases, ph)
	}
	if len(inv.Proxies) > 0 {
		// Proxies install nothing: their commands see the first build.
		ph := Phase{Name: "purge", Kind: KindCommand, Group: "proxies", Idempotent: !notIdem["purge"]}
		for _, h := range inv.Proxies {
			if h.Commands.Purge == "" {
				return nil, fmt.Errorf("%w: host %q has no purge command", ErrInventory, h.Name)
			}
			c, err := render("purge", h.Commands.Purge, data(h, first))
			if err != nil {
				return nil, fmt.Errorf("host %q: %w", h.Name, err)
			}
			ph.Tasks = append(ph.Tasks, Task{Target: target(h), Command: wrapSudo(h, c)})
		}
		p.Phases = append(p.Phases, ph)
	}
	if rollback {
		// Verify the previous version, not the new one.
		verifyPrev := func(d *tmplData) { d.NEVRA, d.NVRA = d.Previous, d.PreviousNVRA }
		for _, s := range []struct {
			name string
			pick func(Commands) string
			mod  func(*tmplData)
		}{
			{"rollback downgrade", func(c Commands) string { return c.Downgrade }, nil},
			{"rollback restart", restart, nil},
			{"rollback verify", func(c Commands) string { return c.Verify }, verifyPrev},
		} {
			ph, err := cmdPhase(s.name, "", all, s.pick, s.mod)
			if err != nil {
				return nil, err
			}
			p.Rollback = append(p.Rollback, ph)
		}
	}
	return p, nil
}

func target(h Host) Target {
	return Target{Host: h.Name, Address: h.Address, Port: h.Port, User: h.User}
}

// Text is the human-readable plan: every phase, every host, every command.
func (p *Plan) Text() string {
	var b strings.Builder
	if len(p.Builds) > 1 {
		fmt.Fprintf(&b, "roll out, each host the package of its arch, restart %s:\n", p.Restart)
		for _, bd := range p.Builds {
			fmt.Fprintf(&b, "   %s (previous: %s)\n", bd.NEVRA, orNone(bd.Previous))
		}
	} else {
		fmt.Fprintf(&b, "roll out %s (previous: %s), restart %s\n", p.NEVRA, orNone(p.Previous), p.Restart)
	}
	for i, ph := range p.Phases {
		fmt.Fprintf(&b, "%d. %s\n", i+1, ph.Name)
		for _, t := range ph.Tasks {
			b.WriteString(taskLine(t))
		}
	}
	if len(p.Rollback) > 0 {
		if p.RollbackOnFailure {
			b.WriteString("on failure, roll back the hosts that were updated:\n")
		} else {
			b.WriteString("rollback (only with --rollback-on-failure):\n")
		}
		for i, ph := range p.Rollback {
			fmt.Fprintf(&b, "R%d. %s\n", i+1, ph.Name)
			for _, t := range ph.Tasks {
				b.WriteString(taskLine(t))
			}
		}
		if p.RollbackOnFailure {
			b.WriteString("R. restore the channel\n")
		}
	}
	return b.String()
}

func taskLine(t Task) string {
	where := fmt.Sprintf("%s@%s", t.Target.User, t.Target.Addr())
	if t.Health != nil {
		h := t.Health
		s := fmt.Sprintf("   %-10s GET %s expect %d", t.Target.Host, h.URL, h.ExpectStatus)
		if h.ExpectBody != "" {
			s += fmt.Sprintf(" body~%q", h.ExpectBody)
		}
		return s + fmt.Sprintf(", %d tries every %s, soak %s\n", h.Retries, h.Interval.Duration, h.Soak.Duration)
	}
	if len(t.ByArch) > 0 {
		arches := make([]string, 0, len(t.ByArch))
		for a := range t.ByArch {
			arches = append(arches, a)
		}
		sort.Strings(arches)
		var s strings.Builder
		for _, a := range arches {
			fmt.Fprintf(&s, "   %-10s %s: if %s: %s\n", t.Target.Host, where, a, t.ByArch[a])
		}
		return s.String()
	}
	return fmt.Sprintf("   %-10s %s: %s\n", t.Target.Host, where, t.Command)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
