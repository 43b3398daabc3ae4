package upgrade

import (
	"bytes"
	"fmt"
	"strings"
	"text/template"
)

// Phase kinds.
const (
	KindCommand = "command" // run Task.Command on each host over SSH
	KindHealth  = "health"  // HTTP gate from here to each host
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
	NEVRA             string            `json:"nevra"`
	Previous          string            `json:"previous,omitempty"`
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
// clean metadata (all app hosts), update to the exact NEVRA, rpm -q check,
// then per group restart and health gate, then purge on the proxies. When
// Previous is known it also renders the rollback phases.
func NewPlan(inv *Inventory, req PlanRequest) (*Plan, error) {
	nv, err := ParseNEVRA(req.NEVRA)
	if err != nil {
		return nil, err
	}
	var prev NEVRA
	if req.Previous != "" {
		if prev, err = ParseNEVRA(req.Previous); err != nil {
			return nil, fmt.Errorf("previous version: %w", err)
		}
		if prev.Name != nv.Name {
			return nil, fmt.Errorf("%w: previous %q is not the same package as %q", ErrInventory, req.Previous, req.NEVRA)
		}
	}
	if req.RollbackOnFailure && req.Previous == "" {
		return nil, fmt.Errorf("rollback on failure for %q: %w", req.NEVRA, ErrNoPrevious)
	}
	switch req.Restart {
	case "":
		req.Restart = RestartGraceful
	case RestartGraceful, RestartHard:
	default:
		return nil, fmt.Errorf("%w: restart must be graceful or hard, not %q", ErrInventory, req.Restart)
	}
	p := &Plan{NEVRA: nv.String(), Restart: req.Restart, RollbackOnFailure: req.RollbackOnFailure,
		Settings: inv.Settings, Meta: req.Meta}
	if req.Previous != "" {
		p.Previous = prev.String()
	}
	data := func(h Host) tmplData {
		d := tmplData{NEVRA: ShellQuote(nv.String()), NVRA: ShellQuote(nv.NVRA()), Name: ShellQuote(nv.Name),
			Host: h.Name, Address: h.Address, Version: nv.Version + "-" + nv.Release}
		if req.Previous != "" {
			d.Previous, d.PreviousNVRA = ShellQuote(prev.String()), ShellQuote(prev.NVRA())
		}
		return d
	}
	notIdem := map[string]bool{}
	for _, st := range inv.NotIdempotent {
		notIdem[st] = true
	}
	cmdPhase := func(name, group string, hosts []Host, pick func(Commands) string) (Phase, error) {
		step := strings.Fields(strings.TrimPrefix(name, "rollback "))[0]
		ph := Phase{Name: name, Kind: KindCommand, Group: group, Idempotent: !notIdem[step]}
		for _, h := range hosts {
			text := pick(h.Commands)
			if text == "" {
				return ph, fmt.Errorf("%w: host %q has no %s command", ErrInventory, h.Name, name)
			}
			c, err := render(name, text, data(h))
			if err != nil {
				return ph, fmt.Errorf("host %q: %w", h.Name, err)
			}
			ph.Tasks = append(ph.Tasks, Task{Target: target(h), Command: wrapSudo(h, c)})
		}
		return ph, nil
	}
	healthPhase := func(group string, hosts []Host) (Phase, error) {
		ph := Phase{Name: "health " + group, Kind: KindHealth, Group: group, Idempotent: true}
		for _, h := range hosts {
			hc := h.Health
			u, err := render("health url", hc.URL, data(h))
			if err != nil {
				return ph, fmt.Errorf("host %q: %w", h.Name, err)
			}
			hc.URL = u
			if hc.ExpectBody, err = render("health body", hc.ExpectBody, data(h)); err != nil {
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
	steps := []struct {
		name string
		pick func(Commands) string
	}{
		{"clean", func(c Commands) string { return c.Clean }},
		{"update", func(c Commands) string { return c.Update }},
		{"verify", func(c Commands) string { return c.Verify }},
	}
	for _, s := range steps {
		ph, err := cmdPhase(s.name, "", all, s.pick)
		if err != nil {
			return nil, err
		}
		ph.Updates = s.name == "update"
		p.Phases = append(p.Phases, ph)
	}
	for _, g := range inv.Groups {
		ph, err := cmdPhase("restart "+g.Name, g.Name, g.Hosts, restart)
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
		ph, err := cmdPhase("purge", "proxies", inv.Proxies, func(c Commands) string { return c.Purge })
		if err != nil {
			return nil, err
		}
		p.Phases = append(p.Phases, ph)
	}
	if req.Previous != "" {
		for _, s := range []struct {
			name string
			pick func(Commands) string
		}{
			{"rollback downgrade", func(c Commands) string { return c.Downgrade }},
			{"rollback restart", restart},
			{"rollback verify", func(c Commands) string { return c.Verify }},
		} {
			ph, err := cmdPhase(s.name, "", all, s.pick)
			if err != nil {
				return nil, err
			}
			if s.name == "rollback verify" {
				// Verify the previous version, not the new one.
				for i, h := range all {
					d := data(h)
					d.NEVRA, d.NVRA = d.Previous, d.PreviousNVRA
					c, err := render(s.name, h.Commands.Verify, d)
					if err != nil {
						return nil, err
					}
					ph.Tasks[i].Command = wrapSudo(h, c)
				}
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
	fmt.Fprintf(&b, "roll out %s (previous: %s), restart %s\n", p.NEVRA, orNone(p.Previous), p.Restart)
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
	return fmt.Sprintf("   %-10s %s: %s\n", t.Target.Host, where, t.Command)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
