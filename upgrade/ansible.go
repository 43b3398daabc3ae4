package upgrade

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Ansible inventories are read as a host source because teams already keep
// one. Only what a rollout needs is understood: groups (and their children),
// host ranges like app[1:6], and the connection variables ansible_host,
// ansible_port, ansible_user and ansible_become (plus repoctl_health_url,
// repoctl_flavor and repoctl_arch). Variables are applied host > group > all.

type ansInventory struct {
	order    []string // group names in first-seen order
	groups   map[string]*ansGroup
	hostVars map[string]map[string]string
}

type ansGroup struct {
	hosts    []string
	children []string
	vars     map[string]string
}

func newAnsInventory() *ansInventory {
	return &ansInventory{groups: map[string]*ansGroup{}, hostVars: map[string]map[string]string{}}
}

func (a *ansInventory) group(name string) *ansGroup {
	g := a.groups[name]
	if g == nil {
		g = &ansGroup{vars: map[string]string{}}
		a.groups[name] = g
		a.order = append(a.order, name)
	}
	return g
}

func (a *ansInventory) addHost(group, host string, vars map[string]string) {
	g := a.group(group)
	g.hosts = append(g.hosts, host)
	hv := a.hostVars[host]
	if hv == nil {
		hv = map[string]string{}
		a.hostVars[host] = hv
	}
	for k, v := range vars {
		hv[k] = v
	}
}

// members returns the hosts of a group including its children's, in order.
func (a *ansInventory) members(name string, depth int) ([]string, error) {
	if depth > 32 {
		return nil, fmt.Errorf("%w: ansible group %q: children nest too deep or loop", ErrInventory, name)
	}
	g := a.groups[name]
	if g == nil {
		return nil, nil
	}
	out := append([]string(nil), g.hosts...)
	for _, c := range g.children {
		m, err := a.members(c, depth+1)
		if err != nil {
			return nil, err
		}
		out = append(out, m...)
	}
	return out, nil
}

// varsFor merges all > ancestor groups > host, the way Ansible ranks them.
func (a *ansInventory) varsFor(host string) map[string]string {
	v := map[string]string{}
	if g := a.groups["all"]; g != nil {
		for k, x := range g.vars {
			v[k] = x
		}
	}
	for _, name := range a.order {
		if name == "all" {
			continue
		}
		m, _ := a.members(name, 0)
		for _, h := range m {
			if h == host {
				for k, x := range a.groups[name].vars {
					v[k] = x
				}
				break
			}
		}
	}
	for k, x := range a.hostVars[host] {
		v[k] = x
	}
	return v
}

func readAnsible(path string, appGroups []string, proxyGroup string) ([]GroupConfig, []HostConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading ansible inventory %q: %w", path, err)
	}
	if len(b) > 16<<20 {
		return nil, nil, fmt.Errorf("%w: ansible inventory %q is larger than 16 MiB", ErrInventory, path)
	}
	var inv *ansInventory
	if strings.HasSuffix(path, ".yml") || strings.HasSuffix(path, ".yaml") {
		inv, err = parseAnsibleYAML(b)
	} else {
		inv, err = parseAnsibleINI(b)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading ansible inventory %q: %w", path, err)
	}
	if proxyGroup == "" {
		proxyGroup = "proxies"
	}
	explicit := len(appGroups) > 0
	if !explicit {
		for _, name := range inv.order {
			if name == "all" || name == "ungrouped" || name == proxyGroup || len(inv.groups[name].hosts) == 0 {
				continue
			}
			appGroups = append(appGroups, name)
		}
	}
	hostCfg := func(name string) (HostConfig, error) {
		v := inv.varsFor(name)
		hc := HostConfig{Name: name, Address: first(v["ansible_host"], v["ansible_ssh_host"]),
			User: first(v["ansible_user"], v["ansible_ssh_user"]), HealthURL: v["repoctl_health_url"],
			Flavor: v["repoctl_flavor"], Arch: v["repoctl_arch"]}
		if p := first(v["ansible_port"], v["ansible_ssh_port"]); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n <= 0 || n > 65535 {
				return hc, fmt.Errorf("%w: host %q: bad ansible_port %q", ErrInventory, name, p)
			}
			hc.Port = n
		}
		if b, ok := v["ansible_become"]; ok {
			t := ansibleBool(b)
			hc.Sudo = &t
		}
		return hc, nil
	}
	var groups []GroupConfig
	for _, name := range appGroups {
		if inv.groups[name] == nil {
			return nil, nil, fmt.Errorf("%w: ansible inventory %q has no group %q", ErrInventory, path, name)
		}
		m, err := inv.members(name, 0)
		if err != nil {
			return nil, nil, err
		}
		g := GroupConfig{Name: name}
		for _, h := range m {
			hc, err := hostCfg(h)
			if err != nil {
				return nil, nil, err
			}
			g.Hosts = append(g.Hosts, hc)
		}
		groups = append(groups, g)
	}
	if len(groups) == 1 && !explicit {
		// One app group and no order given: the runbook's two groups.
		groups = DefaultGroups(groups[0].Hosts)
	}
	var proxies []HostConfig
	pm, err := inv.members(proxyGroup, 0)
	if err != nil {
		return nil, nil, err
	}
	for _, h := range pm {
		hc, err := hostCfg(h)
		if err != nil {
			return nil, nil, err
		}
		proxies = append(proxies, hc)
	}
	return groups, proxies, nil
}

func first(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func ansibleBool(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true", "yes", "on", "y", "t":
		return true
	}
	return false
}

var rangeRE = regexp.MustCompile(`\[([0-9]+):([0-9]+)\]`)

// expandRange turns app[01:03] into app01 app02 app03.
func expandRange(pattern string) ([]string, error) {
	m := rangeRE.FindStringSubmatchIndex(pattern)
	if m == nil {
		return []string{pattern}, nil
	}
	lo, hi := pattern[m[2]:m[3]], pattern[m[4]:m[5]]
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil || b < a || b-a > 10000 {
		return nil, fmt.Errorf("%w: bad host range %q", ErrInventory, pattern)
	}
	width := 0
	if len(lo) > 1 && lo[0] == '0' {
		width = len(lo)
	}
	var out []string
	for i := a; i <= b; i++ {
		rest, err := expandRange(pattern[m[1]:])
		if err != nil {
			return nil, err
		}
		for _, r := range rest {
			out = append(out, fmt.Sprintf("%s%0*d%s", pattern[:m[0]], width, i, r))
		}
	}
	return out, nil
}

// splitINIFields splits on blanks, honouring simple single/double quotes.
func splitINIFields(s string) []string {
	var out []string
	var cur strings.Builder
	var quote rune
	has := false
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, has = r, true
		case r == ' ' || r == '\t':
			if has {
				out = append(out, cur.String())
				cur.Reset()
				has = false
			}
		default:
			cur.WriteRune(r)
			has = true
		}
	}
	if has {
		out = append(out, cur.String())
	}
	return out
}

func parseAnsibleINI(b []byte) (*ansInventory, error) {
	inv := newAnsInventory()
	section, kind := "ungrouped", ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	ln := 0
	for sc.Scan() {
		ln++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("%w: line %d: bad section %q", ErrInventory, ln, line)
			}
			section, kind, _ = strings.Cut(line[1:len(line)-1], ":")
			if kind != "" && kind != "vars" && kind != "children" {
				return nil, fmt.Errorf("%w: line %d: unknown section kind %q", ErrInventory, ln, kind)
			}
			inv.group(section)
			continue
		}
		switch kind {
		case "vars":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return nil, fmt.Errorf("%w: line %d: want key=value in [%s:vars]", ErrInventory, ln, section)
			}
			f := splitINIFields(strings.TrimSpace(v))
			inv.group(section).vars[strings.TrimSpace(k)] = strings.Join(f, " ")
		case "children":
			inv.group(line)
			g := inv.group(section)
			g.children = append(g.children, line)
		default:
			f := splitINIFields(line)
			vars := map[string]string{}
			for _, kv := range f[1:] {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return nil, fmt.Errorf("%w: line %d: want key=value, got %q", ErrInventory, ln, kv)
				}
				vars[k] = v
			}
			hosts, err := expandRange(f[0])
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", ln, err)
			}
			for _, h := range hosts {
				inv.addHost(section, h, vars)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInventory, err)
	}
	return inv, nil
}

func parseAnsibleYAML(b []byte) (*ansInventory, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInventory, err)
	}
	inv := newAnsInventory()
	if len(root.Content) == 0 {
		return inv, nil
	}
	top := root.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%w: top level must be a mapping of groups", ErrInventory)
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		if err := walkYAMLGroup(inv, top.Content[i].Value, top.Content[i+1], 0); err != nil {
			return nil, err
		}
	}
	return inv, nil
}

func yamlVars(n *yaml.Node) (map[string]string, error) {
	out := map[string]string{}
	if n == nil || n.Kind == 0 || n.Tag == "!!null" {
		return out, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%w: line %d: vars must be a mapping", ErrInventory, n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		v := n.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			continue // structured vars mean nothing to a rollout
		}
		out[n.Content[i].Value] = v.Value
	}
	return out, nil
}

func walkYAMLGroup(inv *ansInventory, name string, n *yaml.Node, depth int) error {
	if depth > 32 {
		return fmt.Errorf("%w: groups nest too deep", ErrInventory)
	}
	g := inv.group(name)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("%w: line %d: group %q must be a mapping", ErrInventory, n.Line, name)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i].Value, n.Content[i+1]
		switch key {
		case "vars":
			v, err := yamlVars(val)
			if err != nil {
				return err
			}
			for k, x := range v {
				g.vars[k] = x
			}
		case "hosts":
			if val.Kind != yaml.MappingNode {
				if val.Tag == "!!null" {
					continue
				}
				return fmt.Errorf("%w: line %d: hosts of %q must be a mapping", ErrInventory, val.Line, name)
			}
			for j := 0; j+1 < len(val.Content); j += 2 {
				hv, err := yamlVars(val.Content[j+1])
				if err != nil {
					return err
				}
				hosts, err := expandRange(val.Content[j].Value)
				if err != nil {
					return err
				}
				for _, h := range hosts {
					inv.addHost(name, h, hv)
				}
			}
		case "children":
			if val.Kind != yaml.MappingNode {
				if val.Tag == "!!null" {
					continue
				}
				return fmt.Errorf("%w: line %d: children of %q must be a mapping", ErrInventory, val.Line, name)
			}
			for j := 0; j+1 < len(val.Content); j += 2 {
				child := val.Content[j].Value
				g.children = append(g.children, child)
				if err := walkYAMLGroup(inv, child, val.Content[j+1], depth+1); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
