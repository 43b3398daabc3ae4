package upgrade

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Duration is a time.Duration written as "10s", "2m" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses Go duration syntax.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText writes Go duration syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Commands are shell command templates (text/template). Every field left
// empty on a host falls back to the section's, then to the flavor's
// default; a host that sets its own flavor skips the section's commands. Templates see .NEVRA, .NVRA, .Name, .Previous, .PreviousNVRA
// (all validated and already shell-quoted; of a multi-arch build, the
// package of the host's arch) and .Host, .Address.
type Commands struct {
	Clean       string `toml:"clean" yaml:"clean" json:"clean,omitempty"`
	Update      string `toml:"update" yaml:"update" json:"update,omitempty"`
	Verify      string `toml:"verify" yaml:"verify" json:"verify,omitempty"`
	Restart     string `toml:"restart" yaml:"restart" json:"restart,omitempty"`
	HardRestart string `toml:"hard_restart" yaml:"hard_restart" json:"hard_restart,omitempty"`
	Downgrade   string `toml:"downgrade" yaml:"downgrade" json:"downgrade,omitempty"`
	Purge       string `toml:"purge" yaml:"purge" json:"purge,omitempty"`
}

func (c Commands) over(base Commands) Commands {
	pick := func(a, b string) string {
		if a != "" {
			return a
		}
		return b
	}
	return Commands{
		Clean: pick(c.Clean, base.Clean), Update: pick(c.Update, base.Update),
		Verify: pick(c.Verify, base.Verify), Restart: pick(c.Restart, base.Restart),
		HardRestart: pick(c.HardRestart, base.HardRestart), Downgrade: pick(c.Downgrade, base.Downgrade),
		Purge: pick(c.Purge, base.Purge),
	}
}

// FlavorCommands are the defaults per OS family. "el5".."el7" use yum and
// SysV init; "el8" and later use dnf and systemd. Each is idempotent, so
// that resume may re-run a step that was in flight when repoctl died:
// installing an installed NEVRA is a no-op, and downgrade first checks
// whether the previous version is already there.
func FlavorCommands(flavor string) (Commands, error) {
	purge := "rm -rf /srv/cache/mod_cache/*"
	switch strings.ToLower(flavor) {
	case "el5", "el6", "el7", "yum":
		return Commands{
			Clean:       "yum clean metadata",
			Update:      "if rpm -q {{.Name}} >/dev/null 2>&1; then yum -y update-to {{.NEVRA}}; else yum -y install {{.NEVRA}}; fi",
			Verify:      "rpm -q {{.NVRA}}",
			Restart:     "/etc/init.d/httpd graceful",
			HardRestart: "/etc/init.d/httpd restart",
			Downgrade:   "rpm -q {{.PreviousNVRA}} || yum -y downgrade {{.Previous}}",
			Purge:       purge,
		}, nil
	case "", "el8", "el9", "el10", "dnf":
		return Commands{
			Clean:       "dnf clean metadata",
			Update:      "dnf -y install {{.NEVRA}}",
			Verify:      "rpm -q {{.NVRA}}",
			Restart:     "systemctl reload httpd",
			HardRestart: "systemctl restart httpd",
			Downgrade:   "rpm -q {{.PreviousNVRA}} || dnf -y downgrade {{.Previous}}",
			Purge:       purge,
		}, nil
	}
	return Commands{}, fmt.Errorf("%w: unknown flavor %q (want el5..el10, yum or dnf)", ErrInventory, flavor)
}

// Health is an HTTP health gate. URL and ExpectBody are templates seeing
// .Host, .Address and .Version (the promoted version-release, e.g. to check
// that the new version is what is served). A host passes when one GET answers ExpectStatus (default 200)
// and, if set, the body contains ExpectBody; it gets Retries attempts
// Interval apart, and after passing must keep passing for Soak.
type Health struct {
	URL          string   `toml:"url" yaml:"url" json:"url,omitempty"`
	ExpectStatus int      `toml:"expect_status" yaml:"expect_status" json:"expect_status,omitempty"`
	ExpectBody   string   `toml:"expect_body" yaml:"expect_body" json:"expect_body,omitempty"`
	Retries      int      `toml:"retries" yaml:"retries" json:"retries,omitempty"`
	Interval     Duration `toml:"interval" yaml:"interval" json:"interval"`
	Timeout      Duration `toml:"timeout" yaml:"timeout" json:"timeout"`
	Soak         Duration `toml:"soak" yaml:"soak" json:"soak"`
}

func (h Health) over(base Health) Health {
	if h.URL == "" {
		h.URL = base.URL
	}
	if h.ExpectStatus == 0 {
		h.ExpectStatus = base.ExpectStatus
	}
	if h.ExpectBody == "" {
		h.ExpectBody = base.ExpectBody
	}
	if h.Retries == 0 {
		h.Retries = base.Retries
	}
	if h.Interval.Duration == 0 {
		h.Interval = base.Interval
	}
	if h.Timeout.Duration == 0 {
		h.Timeout = base.Timeout
	}
	if h.Soak.Duration == 0 {
		h.Soak = base.Soak
	}
	return h
}

var defaultHealth = Health{
	URL: "http://{{.Address}}/", ExpectStatus: 200, Retries: 10,
	Interval: Duration{2 * time.Second}, Timeout: Duration{5 * time.Second},
}

// HostConfig is one host as written in the config file. Zero fields take the
// section's defaults.
type HostConfig struct {
	Name      string   `toml:"name"`
	Address   string   `toml:"address"`
	Port      int      `toml:"port"`
	User      string   `toml:"user"`
	Sudo      *bool    `toml:"sudo"`
	Flavor    string   `toml:"flavor"`
	HealthURL string   `toml:"health_url"`
	Health    Health   `toml:"health"`
	Commands  Commands `toml:"commands"`
	// Arch is the host's rpm arch (x86_64, aarch64). It picks the NEVRA of
	// a multi-arch build the host installs; left empty, the rollout asks
	// the host (see ArchProbe) when the build has more than one arch.
	Arch string `toml:"arch"`
}

// GroupConfig is one ordered rollout group of app hosts.
type GroupConfig struct {
	Name  string       `toml:"name"`
	Hosts []HostConfig `toml:"hosts"`
}

// Config is the [upgrade] section of repoctl.toml.
type Config struct {
	KnownHosts     string   `toml:"known_hosts"`
	IdentityFile   string   `toml:"identity_file"`
	User           string   `toml:"user"`
	Port           int      `toml:"port"`
	Sudo           bool     `toml:"sudo"`
	Flavor         string   `toml:"flavor"`
	ConnectTimeout Duration `toml:"connect_timeout"`
	CommandTimeout Duration `toml:"command_timeout"`
	Concurrency    int      `toml:"concurrency"`
	Health         Health   `toml:"health"`
	Commands       Commands `toml:"commands"`

	Groups  []GroupConfig `toml:"groups"`
	Proxies []HostConfig  `toml:"proxies"`
	// Hosts is the alternative to Groups: a flat list of app hosts split
	// into the runbook's two groups (see DefaultGroups).
	Hosts []HostConfig `toml:"hosts"`

	// Inventory names an Ansible INI or YAML inventory used as the host
	// source instead of Groups/Proxies. AppGroups lists its groups in
	// rollout order (default: every group holding hosts, in file order,
	// except ProxyGroup); ProxyGroup defaults to "proxies".
	Inventory string `toml:"inventory"`
	// NotIdempotent names steps (clean, update, verify, restart, purge,
	// downgrade) whose custom commands must not simply be re-run when
	// repoctl died while they ran; resume then halts instead.
	NotIdempotent []string `toml:"not_idempotent"`
	AppGroups     []string `toml:"app_groups"`
	ProxyGroup    string   `toml:"proxy_group"`
}

// Host is a resolved host: defaults applied, commands merged.
type Host struct {
	Name     string   `json:"name"`
	Address  string   `json:"address"`
	Port     int      `json:"port"`
	User     string   `json:"user"`
	Sudo     bool     `json:"sudo"`
	Commands Commands `json:"commands"`
	Health   Health   `json:"health"`
	Arch     string   `json:"arch,omitempty"` // "" = unknown, probed when it matters
}

// Addr is address:port for dialing.
func (h Host) Addr() string {
	a := h.Address
	if strings.Contains(a, ":") && !strings.HasPrefix(a, "[") {
		a = "[" + a + "]"
	}
	return fmt.Sprintf("%s:%d", a, h.Port)
}

// Group is an ordered rollout group.
type Group struct {
	Name  string `json:"name"`
	Hosts []Host `json:"hosts"`
}

// Settings are how the transport connects; they are stored with each
// rollout so resume needs no config file.
type Settings struct {
	KnownHosts     string        `json:"known_hosts"`
	IdentityFile   string        `json:"identity_file,omitempty"`
	ConnectTimeout time.Duration `json:"connect_timeout"`
	CommandTimeout time.Duration `json:"command_timeout"`
	Concurrency    int           `json:"concurrency"`
}

// Inventory is the resolved host list.
type Inventory struct {
	Groups        []Group  `json:"groups"`
	Proxies       []Host   `json:"proxies"`
	Settings      Settings `json:"settings"`
	NotIdempotent []string `json:"not_idempotent,omitempty"`
}

// LoadConfigFile reads the [upgrade] section of a repoctl.toml. Other
// sections are ignored: they belong to other packages.
func LoadConfigFile(path string) (*Config, error) {
	var doc struct {
		Upgrade Config `toml:"upgrade"`
	}
	md, err := toml.DecodeFile(path, &doc)
	if err != nil {
		return nil, fmt.Errorf("reading inventory from %q: %w", path, err)
	}
	for _, k := range md.Undecoded() {
		if len(k) > 0 && k[0] == "upgrade" {
			return nil, fmt.Errorf("%w: %q: unknown key %q", ErrInventory, path, k.String())
		}
	}
	c := &doc.Upgrade
	if c.Inventory != "" && !filepath.IsAbs(c.Inventory) {
		c.Inventory = filepath.Join(filepath.Dir(path), c.Inventory)
	}
	return c, nil
}

// Resolve applies defaults and returns the inventory. If inventoryFile is
// set (or c.Inventory is), hosts come from that Ansible inventory and the
// config's Groups/Proxies are ignored.
func (c *Config) Resolve(inventoryFile string) (*Inventory, error) {
	if inventoryFile == "" {
		inventoryFile = c.Inventory
	}
	cfg := *c
	if inventoryFile != "" {
		groups, proxies, err := readAnsible(inventoryFile, c.AppGroups, c.ProxyGroup)
		if err != nil {
			return nil, err
		}
		cfg.Groups, cfg.Proxies = groups, proxies
	}
	return cfg.resolve()
}

func (c *Config) resolve() (*Inventory, error) {
	inv := &Inventory{Settings: Settings{
		KnownHosts: c.KnownHosts, IdentityFile: c.IdentityFile,
		ConnectTimeout: c.ConnectTimeout.Duration, CommandTimeout: c.CommandTimeout.Duration,
		Concurrency: c.Concurrency,
	}}
	for _, st := range c.NotIdempotent {
		switch st {
		case "clean", "update", "verify", "restart", "purge", "downgrade":
		default:
			return nil, fmt.Errorf("%w: not_idempotent: unknown step %q", ErrInventory, st)
		}
	}
	inv.NotIdempotent = c.NotIdempotent
	s := &inv.Settings
	if s.KnownHosts == "" {
		home, _ := os.UserHomeDir()
		s.KnownHosts = filepath.Join(home, ".ssh", "known_hosts")
	}
	if s.ConnectTimeout <= 0 {
		s.ConnectTimeout = 10 * time.Second
	}
	if s.CommandTimeout <= 0 {
		s.CommandTimeout = 10 * time.Minute
	}
	if s.Concurrency <= 0 {
		s.Concurrency = 10
	}
	if len(c.Groups) > 0 && len(c.Hosts) > 0 {
		return nil, fmt.Errorf("%w: give either [[upgrade.groups]] or [[upgrade.hosts]], not both", ErrInventory)
	}
	if len(c.Groups) == 0 {
		c.Groups = DefaultGroups(c.Hosts)
	}
	if len(c.Groups) == 0 {
		return nil, fmt.Errorf("%w: no app hosts", ErrInventory)
	}
	seen := map[string]bool{}
	resolveHost := func(hc HostConfig) (Host, error) {
		h := Host{Name: hc.Name, Address: hc.Address, Port: hc.Port, User: hc.User, Sudo: c.Sudo}
		if h.Address == "" {
			h.Address = h.Name
		}
		if h.Name == "" {
			h.Name = h.Address
		}
		if h.Name == "" {
			return h, fmt.Errorf("%w: a host has neither name nor address", ErrInventory)
		}
		if strings.ContainsAny(h.Address, " \t\n'\"`$;&|<>\\") {
			return h, fmt.Errorf("%w: host %q: bad address %q", ErrInventory, h.Name, h.Address)
		}
		if seen[h.Name] {
			return h, fmt.Errorf("%w: host %q listed twice", ErrInventory, h.Name)
		}
		seen[h.Name] = true
		if h.Port == 0 {
			h.Port = c.Port
		}
		if h.Port == 0 {
			h.Port = 22
		}
		if h.User == "" {
			h.User = c.User
		}
		if h.User == "" {
			h.User = "root"
		}
		if hc.Sudo != nil {
			h.Sudo = *hc.Sudo
		}
		if hc.Arch != "" {
			if !archRE().MatchString(hc.Arch) {
				return h, fmt.Errorf("%w: host %q: bad arch %q", ErrInventory, h.Name, hc.Arch)
			}
			h.Arch = hc.Arch
		}
		flavor := hc.Flavor
		if flavor == "" {
			flavor = c.Flavor
		}
		def, err := FlavorCommands(flavor)
		if err != nil {
			return h, fmt.Errorf("host %q: %w", h.Name, err)
		}
		// A host that names its own flavor (an EL5 box among EL9 ones)
		// takes that flavor's defaults, not the section's commands.
		if hc.Flavor != "" {
			h.Commands = hc.Commands.over(def)
		} else {
			h.Commands = hc.Commands.over(c.Commands.over(def))
		}
		h.Health = hc.Health.over(c.Health.over(defaultHealth))
		if hc.HealthURL != "" {
			h.Health.URL = hc.HealthURL
		}
		return h, nil
	}
	for i, gc := range c.Groups {
		g := Group{Name: gc.Name}
		if g.Name == "" {
			g.Name = fmt.Sprintf("group%d", i+1)
		}
		if len(gc.Hosts) == 0 {
			return nil, fmt.Errorf("%w: group %q has no hosts", ErrInventory, g.Name)
		}
		for _, hc := range gc.Hosts {
			h, err := resolveHost(hc)
			if err != nil {
				return nil, err
			}
			g.Hosts = append(g.Hosts, h)
		}
		inv.Groups = append(inv.Groups, g)
	}
	for _, hc := range c.Proxies {
		h, err := resolveHost(hc)
		if err != nil {
			return nil, err
		}
		inv.Proxies = append(inv.Proxies, h)
	}
	return inv, nil
}

// DefaultGroups splits a flat host list into two rollout groups the way
// the runbook does (app1-2, then app3-6): the first third of the hosts
// (at least one) goes first, the rest follows once it is healthy. A single
// host makes a single group.
func DefaultGroups(hosts []HostConfig) []GroupConfig {
	switch len(hosts) {
	case 0:
		return nil
	case 1:
		return []GroupConfig{{Name: "group1", Hosts: hosts}}
	}
	n := max(1, len(hosts)/3)
	return []GroupConfig{{Name: "group1", Hosts: hosts[:n]}, {Name: "group2", Hosts: hosts[n:]}}
}

// AppHosts returns every app host in group order.
func (inv *Inventory) AppHosts() []Host {
	var hs []Host
	for _, g := range inv.Groups {
		hs = append(hs, g.Hosts...)
	}
	return hs
}
