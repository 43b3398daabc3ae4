package upgrade

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Ansible inventories are read as a host source because teams already keep
// one. No maintained Go library reads them as Ansible does (relex/aini
// reads INI only; the others skip YAML, group_vars/host_vars, ports or
// ranges), so this reader follows ansible-core's own rules, and
// TestAnsibleInventoryMatchesAnsible holds it to `ansible-inventory --list`
// on the same files:
//
//   - INI (ansible's ini plugin) and YAML (its yaml plugin; .yml, .yaml and
//     .json files, and a file without extension that parses as a YAML
//     mapping, as the yaml plugin is tried before the ini one);
//   - groups, children (a loop is an error), the implicit groups all and
//     ungrouped;
//   - host patterns with ranges (app[1:6], app[01:10:2], db-[a:c]), ports
//     (host:2222, [2001:db8::1]:2222);
//   - group_vars/ and host_vars/ beside the inventory file (NAME, NAME.yml,
//     NAME.yaml, NAME.json or a directory NAME/ of such files);
//   - variable precedence (ansible's default): all < the host's groups by
//     depth, then ansible_group_priority, then name < group_vars/all <
//     group_vars of those groups, in the same order < the host < host_vars.
//
// Of the variables, only what a rollout needs is used: ansible_host,
// ansible_port, ansible_user and ansible_become (and their ansible_ssh_*
// forms), plus repoctl_health_url, repoctl_flavor and repoctl_arch.
//
// Where Ansible would warn and go on (a group that is not a mapping, an
// unknown key in a YAML group), or read something repoctl cannot use (a
// templated or vault-encrypted value of one of those variables, a range
// that ends before it begins), the file is refused instead: a rollout must
// not run on a host list that is missing part of what the file says.

const (
	maxAnsibleBytes = 16 << 20
	maxAnsibleHosts = 100000
)

type ansInventory struct {
	order    []string // group names in first-seen order
	groups   map[string]*ansGroup
	hosts    []string // host names in first-seen order
	hostVars map[string]map[string]string
	direct   map[string][]string // host → the groups that list it
	// Vars from group_vars/ and host_vars/ beside the inventory file.
	groupFileVars map[string]map[string]string
	hostFileVars  map[string]map[string]string
}

type ansGroup struct {
	hosts    []string
	hostSet  map[string]bool
	children []string
	parents  []string
	vars     map[string]string
	priority int
	depth    int
}

func newAnsInventory() *ansInventory {
	a := &ansInventory{groups: map[string]*ansGroup{}, hostVars: map[string]map[string]string{}, direct: map[string][]string{},
		groupFileVars: map[string]map[string]string{}, hostFileVars: map[string]map[string]string{}}
	// Ansible starts every inventory with these two, ungrouped a child of all.
	a.group("all")
	a.group("ungrouped")
	a.groups["all"].children = []string{"ungrouped"}
	a.groups["ungrouped"].parents = []string{"all"}
	return a
}

func (a *ansInventory) group(name string) *ansGroup {
	g := a.groups[name]
	if g == nil {
		g = &ansGroup{vars: map[string]string{}, hostSet: map[string]bool{}, priority: 1}
		a.groups[name] = g
		a.order = append(a.order, name)
	}
	return g
}

// addHost adds host to group. A port given with the host's first mention
// becomes its ansible_port; later vars override it, as in Ansible.
func (a *ansInventory) addHost(group, host string, port int, vars map[string]string) error {
	g := a.group(group)
	hv := a.hostVars[host]
	if hv == nil {
		if len(a.hosts) >= maxAnsibleHosts {
			return fmt.Errorf("%w: more than %d hosts", ErrInventory, maxAnsibleHosts)
		}
		hv = map[string]string{}
		a.hostVars[host] = hv
		a.hosts = append(a.hosts, host)
		if port > 0 {
			hv["ansible_port"] = strconv.Itoa(port)
		}
	}
	if !g.hostSet[host] {
		g.hostSet[host] = true
		g.hosts = append(g.hosts, host)
		a.direct[host] = append(a.direct[host], group)
	}
	for k, v := range vars {
		hv[k] = v
	}
	return nil
}

// setGroupVar sets an inventory variable of a group. ansible_group_priority
// is no variable: it orders the group among its peers.
func (a *ansInventory) setGroupVar(group, k, v string) error {
	g := a.group(group)
	if k != "ansible_group_priority" {
		g.vars[k] = v
		return nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("%w: group %q: bad ansible_group_priority %q", ErrInventory, group, v)
	}
	g.priority = n
	return nil
}

// addChild makes child a child group of parent, refusing loops.
func (a *ansInventory) addChild(parent, child string) error {
	if parent == child || a.ancestors(parent)[child] {
		return fmt.Errorf("%w: adding group %q as a child of %q makes a loop", ErrInventory, child, parent)
	}
	p, c := a.group(parent), a.group(child)
	if !hasString(p.children, child) {
		p.children = append(p.children, child)
	}
	if !hasString(c.parents, parent) {
		c.parents = append(c.parents, parent)
	}
	return nil
}

func (a *ansInventory) ancestors(name string) map[string]bool {
	seen := map[string]bool{}
	todo := []string{name}
	for len(todo) > 0 {
		g := a.groups[todo[0]]
		todo = todo[1:]
		if g == nil {
			continue
		}
		for _, p := range g.parents {
			if !seen[p] {
				seen[p] = true
				todo = append(todo, p)
			}
		}
	}
	return seen
}

// reconcile applies what Ansible does once a source is read: every group
// without a parent is a child of all, a host in no group but all is in
// ungrouped, and a host in another group is not; then depths are set.
func (a *ansInventory) reconcile() {
	for _, name := range a.order {
		if name != "all" && len(a.groups[name].parents) == 0 {
			a.addChild("all", name) // cannot loop: name has no parent
		}
	}
	ung := a.groups["ungrouped"]
	for _, h := range a.hosts {
		other := false
		for _, g := range a.direct[h] {
			if g != "all" && g != "ungrouped" {
				other = true
			}
		}
		switch {
		case other && ung.hostSet[h]:
			delete(ung.hostSet, h)
			a.direct[h] = without(a.direct[h], "ungrouped")
		case !other && !ung.hostSet[h]:
			ung.hostSet[h] = true
			ung.hosts = append(ung.hosts, h)
			a.direct[h] = append(a.direct[h], "ungrouped")
		}
	}
	kept := ung.hosts[:0]
	for _, h := range ung.hosts {
		if ung.hostSet[h] {
			kept = append(kept, h)
		}
	}
	ung.hosts = kept
	// Depth is the longest path from all; there are no loops.
	var depth func(string, int) int
	memo := map[string]int{}
	depth = func(name string, n int) int {
		if d, ok := memo[name]; ok {
			return d
		}
		d := 0
		if n < len(a.order) {
			for _, p := range a.groups[name].parents {
				d = max(d, depth(p, n+1)+1)
			}
		}
		memo[name] = d
		return d
	}
	for _, name := range a.order {
		a.groups[name].depth = depth(name, 0)
	}
}

// members returns the hosts of a group and of its descendants, each once:
// the group's own hosts, then its children's, level by level. (Ansible
// walks levels past the first in no fixed order.)
func (a *ansInventory) members(name string) []string {
	var out []string
	seenHost := map[string]bool{}
	seenGroup := map[string]bool{name: true}
	level := []string{name}
	for len(level) > 0 {
		var next []string
		for _, gname := range level {
			g := a.groups[gname]
			if g == nil {
				continue
			}
			for _, h := range g.hosts {
				if !seenHost[h] {
					seenHost[h] = true
					out = append(out, h)
				}
			}
			for _, c := range g.children {
				if !seenGroup[c] {
					seenGroup[c] = true
					next = append(next, c)
				}
			}
		}
		level = next
	}
	return out
}

// hostGroups returns the groups host is in, directly or through a child,
// but all, in the order Ansible merges their variables.
func (a *ansInventory) hostGroups(host string) []string {
	set := map[string]bool{}
	for _, name := range a.direct[host] {
		set[name] = true
		for p := range a.ancestors(name) {
			set[p] = true
		}
	}
	delete(set, "all")
	var out []string
	for g := range set {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool {
		gi, gj := a.groups[out[i]], a.groups[out[j]]
		if gi.depth != gj.depth {
			return gi.depth < gj.depth
		}
		if gi.priority != gj.priority {
			return gi.priority < gj.priority
		}
		return out[i] < out[j]
	})
	return out
}

// varsFor merges a host's variables in Ansible's order of precedence.
func (a *ansInventory) varsFor(host string) map[string]string {
	v := map[string]string{}
	merge := func(m map[string]string) {
		for k, x := range m {
			v[k] = x
		}
	}
	gs := a.hostGroups(host)
	merge(a.groups["all"].vars)
	for _, g := range gs {
		merge(a.groups[g].vars)
	}
	merge(a.groupFileVars["all"])
	for _, g := range gs {
		merge(a.groupFileVars[g])
	}
	merge(a.hostVars[host])
	merge(a.hostFileVars[host])
	return v
}

// loadAnsible reads an inventory file and the group_vars/ and host_vars/
// beside it.
func loadAnsible(path string) (*ansInventory, error) {
	b, err := readCapped(path, maxAnsibleBytes)
	if err != nil {
		return nil, fmt.Errorf("reading ansible inventory %q: %w", path, err)
	}
	var inv *ansInventory
	switch ext := filepath.Ext(path); {
	case ext == ".yml" || ext == ".yaml" || ext == ".json":
		inv, err = parseAnsibleYAML(b)
	case ext == "" && looksLikeYAMLInventory(b):
		inv, err = parseAnsibleYAML(b)
	default:
		inv, err = parseAnsibleINI(b)
	}
	if err != nil {
		return nil, fmt.Errorf("reading ansible inventory %q: %w", path, err)
	}
	inv.reconcile()
	if err := inv.loadVarsFiles(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("reading ansible inventory %q: %w", path, err)
	}
	return inv, nil
}

func readCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: larger than %d MiB", ErrInventory, limit>>20)
	}
	return b, nil
}

// loadVarsFiles reads group_vars/NAME and host_vars/NAME for every group
// and host, as Ansible's host_group_vars plugin does. The directories are
// opened as roots, and a name with a slash is refused: a host named
// ../../etc/x must not read outside them.
func (a *ansInventory) loadVarsFiles(dir string) error {
	budget := int64(maxAnsibleBytes)
	for _, kind := range []struct {
		sub   string
		names []string
		into  map[string]map[string]string
	}{{"group_vars", a.order, a.groupFileVars}, {"host_vars", a.hosts, a.hostFileVars}} {
		for _, name := range kind.names {
			if strings.Contains(name, "/") || name == "." || name == ".." {
				return fmt.Errorf("%w: %q is not a host or group name", ErrInventory, name)
			}
		}
		root, err := os.OpenRoot(filepath.Join(dir, kind.sub))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			continue // Ansible skips a group_vars that is not a directory, too
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInventory, err)
		}
		err = a.loadVarsRoot(root, kind.sub, kind.names, kind.into, &budget)
		root.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (a *ansInventory) loadVarsRoot(root *os.Root, sub string, names []string, into map[string]map[string]string, budget *int64) error {
	for _, name := range names {
		files, err := findVarsFiles(root, name)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInventory, rootPathName(root, name), err)
		}
		for _, f := range files {
			v, err := readVarsFile(root, f, budget)
			if err != nil {
				return fmt.Errorf("%s: %w", rootPathName(root, f), err)
			}
			if into[name] == nil {
				into[name] = map[string]string{}
			}
			for k, x := range v {
				into[name][k] = x
			}
		}
	}
	return nil
}

func rootPathName(root *os.Root, name string) string {
	return filepath.Join(root.Name(), filepath.FromSlash(name))
}

var varsExts = []string{".yml", ".yaml", ".json"}

// findVarsFiles returns the vars files of name: the first of NAME,
// NAME.yml, NAME.yaml, NAME.json that exists; a directory stands for every
// file below it (sorted, hidden files and backups~ skipped, files with a
// vars extension or none).
func findVarsFiles(root *os.Root, name string) ([]string, error) {
	for _, ext := range append([]string{""}, varsExts...) {
		p := name + ext
		fi, err := root.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			return []string{p}, nil
		}
		return dirVarsFiles(root, p, 0)
	}
	return nil, nil
}

func dirVarsFiles(root *os.Root, dir string, depth int) ([]string, error) {
	if depth > 16 {
		return nil, fmt.Errorf("%q: directories nest too deep", dir)
	}
	f, err := root.Open(dir)
	if err != nil {
		return nil, err
	}
	ents, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return nil, err
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	var out []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") || strings.HasSuffix(n, "~") {
			continue
		}
		p := dir + "/" + n
		ext := filepath.Ext(n)
		fi, err := root.Stat(p)
		if err != nil {
			return nil, err
		}
		switch {
		case fi.IsDir() && ext == "":
			sub, err := dirVarsFiles(root, p, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		case fi.Mode().IsRegular() && (ext == "" || hasString(varsExts, ext)):
			out = append(out, p)
		}
	}
	return out, nil
}

func readVarsFile(root *os.Root, name string, budget *int64) (map[string]string, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, *budget+1))
	if err != nil {
		return nil, err
	}
	if *budget -= int64(len(b)); *budget < 0 {
		return nil, fmt.Errorf("%w: vars files are larger than %d MiB", ErrInventory, maxAnsibleBytes>>20)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	return parseVarsYAML(b)
}

func readAnsible(path string, appGroups []string, proxyGroup string) ([]GroupConfig, []HostConfig, error) {
	groups, proxies, err := readAnsibleHosts(path, appGroups, proxyGroup)
	if err != nil && !strings.Contains(err.Error(), strconv.Quote(path)) {
		err = fmt.Errorf("reading ansible inventory %q: %w", path, err)
	}
	return groups, proxies, err
}

func readAnsibleHosts(path string, appGroups []string, proxyGroup string) ([]GroupConfig, []HostConfig, error) {
	inv, err := loadAnsible(path)
	if err != nil {
		return nil, nil, err
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
	var groups []GroupConfig
	for _, name := range appGroups {
		if inv.groups[name] == nil {
			return nil, nil, fmt.Errorf("%w: ansible inventory %q has no group %q", ErrInventory, path, name)
		}
		g := GroupConfig{Name: name}
		for _, h := range inv.members(name) {
			hc, err := ansibleHostConfig(h, inv.varsFor(h))
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
	for _, h := range inv.members(proxyGroup) {
		hc, err := ansibleHostConfig(h, inv.varsFor(h))
		if err != nil {
			return nil, nil, err
		}
		proxies = append(proxies, hc)
	}
	return groups, proxies, nil
}

// ansibleVars are the variables a rollout reads.
var ansibleVars = []string{"ansible_host", "ansible_ssh_host", "ansible_port", "ansible_ssh_port",
	"ansible_user", "ansible_ssh_user", "ansible_become", "repoctl_health_url", "repoctl_flavor", "repoctl_arch"}

func ansibleHostConfig(name string, v map[string]string) (HostConfig, error) {
	for _, k := range ansibleVars {
		x := v[k]
		switch {
		case strings.Contains(x, "{{") || strings.Contains(x, "{%"):
			return HostConfig{}, fmt.Errorf("%w: host %q: %s is a template (%q); repoctl does not evaluate Jinja", ErrInventory, name, k, x)
		case strings.HasPrefix(x, "$ANSIBLE_VAULT;"):
			return HostConfig{}, fmt.Errorf("%w: host %q: %s is vault-encrypted; repoctl cannot decrypt it", ErrInventory, name, k)
		}
	}
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

func first(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// ansibleBool is Ansible's boolean(): these spellings are true, any other
// value false.
func ansibleBool(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "1.0", "true", "yes", "on", "y", "t":
		return true
	}
	return false
}

func hasString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func without(list []string, s string) []string {
	out := list[:0]
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}
