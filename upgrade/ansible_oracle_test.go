package upgrade

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// ansible-inventory (Debian's ansible-core) is the oracle for the
// inventory reader: every inventory below is read by both, and the
// groups, their hosts and children, every group's members, and the
// variables a rollout reads must be the same.

type ansibleCase struct {
	name  string
	inv   string            // the inventory file, relative to the case's dir
	files map[string]string // every file of the case
}

var ansibleCases = []ansibleCase{
	{"ini: groups, children, vars, ranges, ports", "hosts", map[string]string{"hosts": `
# the runbook's hosts
bastion ansible_host=10.0.0.1
[web] # app servers
app[1:6] ansible_user=deploy
app[01:03]-b.example.com
db-primary:2222 ansible_host=192.0.2.10 # the primary
[2001:db8::1]:2200
10.0.0.5:2022 repoctl_arch=aarch64
n[0:10:5].example.com
node-[a:c]
[web:vars]
repoctl_health_url=http://localhost:8080/health
ansible_become=yes
repoctl_flavor = "blue"
; a comment
[canary]
app1 repoctl_arch=aarch64 ansible_port=2_022
app2 ansible_user="ops team" ansible_become=False repoctl_health_url='http://127.0.0.1/h?a=1&b=2'
[proxies]
proxy1 ansible_host=127.0.0.9 ansible_ssh_user=cache\ admin
proxy2 ansible_ssh_host=127.0.0.10 ansible_ssh_port=8022
[prod:children]
web
canary # the first wave
[prod:vars]
ansible_user=ops
ansible_port=0022
[all:vars]
ansible_user=root
repoctl_arch=x86_64
repoctl_flavor=el9 # comments stay in :vars values
`}},
	{"ini: children and vars declared before their group", "inventory.ini", map[string]string{"inventory.ini": `
[prod:children]
web
db
[web:vars]
ansible_user=web-user
[web]
w1
w2 ansible_user=w2-user
[db:children]
dbs
[dbs]
d[1:2]
[dbs:vars]
repoctl_flavor=el8
[db:vars]
repoctl_flavor=el7
ansible_become=true
`}},
	{"ini: depth, priority and name order", "hosts", map[string]string{"hosts": `
[a]
h1
[b]
h1
h2
[deep:children]
b
[a:vars]
repoctl_flavor=from-a
repoctl_arch=from-a
[b:vars]
repoctl_flavor=from-b
ansible_group_priority=0
[deep:vars]
repoctl_flavor=from-deep
repoctl_arch=from-deep
ansible_user=deep
[z]
h2
[z:vars]
ansible_user=from-z
ansible_group_priority=10
[c]
h3
[d]
h3
[c:vars]
repoctl_flavor=from-c
ansible_group_priority=5
[d:vars]
repoctl_flavor=from-d
`}},
	{"ini: a host in ungrouped and in a group", "hosts", map[string]string{"hosts": `
h1 ansible_host=192.0.2.1
h2
[g]
h1
`}},
	{"ini with group_vars and host_vars", "inv/hosts", map[string]string{
		"inv/hosts": `
[web]
app[1:4]
[canary]
app1
[prod:children]
web
canary
[all:vars]
ansible_user=inv-all
[web:vars]
ansible_user=inv-web
repoctl_flavor=inv-web
ansible_port=2201
`,
		"inv/group_vars/all.yml":        "ansible_user: gv-all\nrepoctl_arch: x86_64\n",
		"inv/group_vars/web/main.yml":   "repoctl_flavor: gv-web\n",
		"inv/group_vars/web/ports.yaml": "ansible_port: 2202\n",
		"inv/group_vars/web/.hidden":    "ansible_port: 9999\n",
		"inv/group_vars/web/backup~":    "ansible_port: 9998\n",
		"inv/group_vars/web/sub/x":      "repoctl_health_url: http://gv-web-sub/\n",
		"inv/group_vars/canary":         "---\nansible_become: yes\nrepoctl_health_url: http://canary/\n",
		"inv/group_vars/prod.json":      `{"ansible_user": "gv-prod", "repoctl_flavor": "gv-prod"}`,
		"inv/host_vars/app2.yml":        "ansible_host: 198.51.100.2\nansible_port: 022\n",
		"inv/host_vars/app3.json":       `{"ansible_user": "hv-app3", "ansible_become": false}`,
		"inv/host_vars/app4.yml":        "# nothing but a comment\n",
		"inv/host_vars/app4.yaml":       "ansible_user: never-read\n",
	}},
	{"yaml: the same shape", "hosts.yml", map[string]string{"hosts.yml": `
all:
  vars:
    ansible_user: root
    repoctl_arch: x86_64
  hosts:
    bastion:
      ansible_host: 10.0.0.1
  children:
    prod:
      vars: {ansible_user: ops, ansible_port: 22}
      children:
        web:
          hosts:
            app[1:6]: {ansible_user: deploy}
            "db-primary:2222": {ansible_host: 192.0.2.10}
            "[2001:db8::1]:2200":
            app[01:03]-b.example.com:
          vars:
            repoctl_health_url: http://localhost:8080/health
            ansible_become: yes
            repoctl_flavor: "yes"
        canary:
          hosts:
            app1: {repoctl_arch: aarch64, ansible_port: 2022}
            app2:
              ansible_become: off
              ansible_user: null
              repoctl_flavor: off
    proxies:
      hosts: proxy1
      vars:
        ansible_ssh_host: 127.0.0.9
`}},
	{"yaml: groups at the top, defined twice, anchors", "inventory.yaml", map[string]string{"inventory.yaml": `
web:
  hosts:
    w1:
    w2: &base
      ansible_user: base
      ansible_port: 0x10
  vars:
    ansible_group_priority: 3
    repoctl_flavor: web
canary:
  hosts:
    w1:
      <<: *base
      ansible_host: 127.0.0.3
  vars:
    repoctl_flavor: canary
web2:
  children:
    web:
      hosts:
        w3:
empty:
`}},
	{"yaml in a file without extension", "hosts", map[string]string{"hosts": `
all:
  children:
    app:
      hosts:
        a[1:3]:
          ansible_become: "true"
`}},
	{"json inventory with host_vars", "inv.json", map[string]string{
		"inv.json":          `{"app": {"hosts": {"j1": {"ansible_port": 2222}, "j2": null}, "vars": {"ansible_user": "json"}}}`,
		"host_vars/j2.json": `{"ansible_port": 3333, "repoctl_arch": "ppc64le"}`,
	}},
}

// Inventories that Ansible refuses; so must repoctl.
var ansibleBadCases = []ansibleCase{
	{"children names an undefined group", "hosts", map[string]string{"hosts": "[prod:children]\nweb\n[db]\nd1\n"}},
	{"vars of an undefined group", "hosts", map[string]string{"hosts": "[web:vars]\nx=1\n[db]\nd1\n"}},
	{"children loop", "hosts", map[string]string{"hosts": "[a:children]\nb\n[b:children]\na\n"}},
	{"unknown section type", "hosts", map[string]string{"hosts": "[web:weird]\napp1\n"}},
	{"';' after a host", "hosts", map[string]string{"hosts": "[web]\napp1 ; a comment?\n"}},
	{"space in a section", "hosts", map[string]string{"hosts": "[web servers]\napp1\n"}},
	{"host variable without =", "hosts", map[string]string{"hosts": "[web]\napp1 junk\n"}},
	{"unclosed quote", "hosts", map[string]string{"hosts": "[web]\napp1 ansible_user='x\n"}},
	{"range without end", "hosts", map[string]string{"hosts": "[web]\napp[1:]\n"}},
	{"zero-padded range of unequal width", "hosts", map[string]string{"hosts": "[web]\napp[01:100]\n"}},
	{"pattern ending in ':'", "hosts", map[string]string{"hosts": "[web]\napp1:\n"}},
	{"vars without =", "hosts", map[string]string{"hosts": "[web]\napp1\n[web:vars]\nnothing\n"}},
	{"yaml plugin config", "inv.yml", map[string]string{"inv.yml": "plugin: constructed\n"}},
	{"yaml host pattern that is a number", "inv.yml", map[string]string{"inv.yml": "web:\n  hosts:\n    1234:\n"}},
	{"yaml hosts as a list", "inv.yml", map[string]string{"inv.yml": "web:\n  hosts:\n    - a\n    - b\n"}},
	{"empty yaml", "inv.yml", map[string]string{"inv.yml": "---\n"}},
}

// Inventories that Ansible reads (with a warning, or into something a
// rollout cannot use) and repoctl refuses on purpose.
var ansibleRefusedCases = []ansibleCase{
	{"yaml group that is a list", "inv.yml", map[string]string{"inv.yml": "web: [a, b]\ndb:\n  hosts:\n    d1:\n"}},
	{"yaml group key that is a typo", "inv.yml", map[string]string{"inv.yml": "web:\n  host:\n    a1:\n"}},
	{"range that ends before it begins", "hosts", map[string]string{"hosts": "[web]\napp[6:1]\n[db]\nd1\n"}},
	{"templated ansible_host", "hosts", map[string]string{"hosts": "[web]\napp1 ansible_host='{{ inventory_hostname }}.example.com'\n"}},
	{"host name that is a path", "hosts", map[string]string{"hosts": "[web]\n../../etc/passwd\n", "host_vars/x": "a: 1\n"}},
}

func writeCase(t *testing.T, c ansibleCase) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range c.files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, filepath.FromSlash(c.inv))
}

type ansibleListing struct {
	groups   map[string]ansibleGroupListing
	hostvars map[string]map[string]any
}

type ansibleGroupListing struct {
	Hosts    []string `json:"hosts"`
	Children []string `json:"children"`
}

// ansibleInventoryList runs `ansible-inventory -i path --list` with
// nothing of this machine's Ansible setup: its own HOME, an empty working
// directory (so no ansible.cfg and no play-adjacent group_vars), and a
// parse failure an error rather than a warning.
func ansibleInventoryList(t *testing.T, path string) (*ansibleListing, string, error) {
	t.Helper()
	bin, err := exec.LookPath("ansible-inventory")
	if err != nil {
		t.Fatalf("ansible-inventory is not installed (Debian's ansible-core; .ci/install-test-deps installs it): %v", err)
	}
	home, cwd := t.TempDir(), t.TempDir()
	cmd := exec.Command(bin, "-i", path, "--list")
	cmd.Dir = cwd
	cmd.Env = append(os.Environ(), "HOME="+home, "ANSIBLE_HOME="+home, "ANSIBLE_LOCAL_TEMP="+home,
		"ANSIBLE_CONFIG="+filepath.Join(cwd, "none.cfg"), "ANSIBLE_NOCOLOR=1",
		"ANSIBLE_INVENTORY_UNPARSED_FAILED=true", "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED=true",
		"ANSIBLE_INVENTORY_ENABLED=host_list,yaml,ini")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, stderr.String(), err
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(&stdout)
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		t.Fatalf("ansible-inventory output: %v", err)
	}
	l := &ansibleListing{groups: map[string]ansibleGroupListing{}}
	for k, v := range raw {
		if k == "_meta" {
			var meta struct {
				Hostvars map[string]map[string]any `json:"hostvars"`
			}
			d := json.NewDecoder(bytes.NewReader(v))
			d.UseNumber()
			if err := d.Decode(&meta); err != nil {
				t.Fatal(err)
			}
			l.hostvars = meta.Hostvars
			continue
		}
		var g ansibleGroupListing
		if err := json.Unmarshal(v, &g); err != nil {
			t.Fatalf("group %s: %v", k, err)
		}
		l.groups[k] = g
	}
	return l, stderr.String(), nil
}

// ansibleText is the text repoctl keeps for a value Ansible printed.
func ansibleText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		return fmt.Sprint(x)
	case json.Number:
		return x.String()
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("(unmarshalable %T: %v)", v, err)
	}
	return string(b)
}

// closure is a group's members per Ansible's graph: its hosts and its
// descendants'.
func (l *ansibleListing) closure(name string) []string {
	set := map[string]bool{}
	seen := map[string]bool{}
	var walk func(string)
	walk = func(g string) {
		if seen[g] {
			return
		}
		seen[g] = true
		for _, h := range l.groups[g].Hosts {
			set[h] = true
		}
		for _, c := range l.groups[g].Children {
			walk(c)
		}
	}
	walk(name)
	return sortedKeys(set)
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestAnsibleInventoryMatchesAnsible(t *testing.T) {
	for _, c := range ansibleCases {
		t.Run(c.name, func(t *testing.T) {
			path := writeCase(t, c)
			want, stderr, err := ansibleInventoryList(t, path)
			if err != nil {
				t.Fatalf("ansible-inventory refused the case: %v\n%s", err, stderr)
			}
			if stderr != "" {
				t.Logf("ansible-inventory says: %s", stderr)
			}
			got, err := loadAnsible(path)
			if err != nil {
				t.Fatalf("repoctl refused what ansible reads: %v", err)
			}
			compareWithAnsible(t, got, want)
		})
	}
}

func compareWithAnsible(t *testing.T, got *ansInventory, want *ansibleListing) {
	t.Helper()
	// Groups: Ansible lists those with hosts or children, and names every
	// child, empty or not.
	for _, name := range got.order {
		g := got.groups[name]
		hosts := g.hosts
		if name == "all" {
			hosts = nil // Ansible lists all's hosts under ungrouped
		}
		w, listed := want.groups[name]
		if len(hosts) == 0 && len(g.children) == 0 {
			if listed && (len(w.Hosts) > 0 || len(w.Children) > 0) {
				t.Errorf("group %s: repoctl has it empty, ansible has %+v", name, w)
			}
			continue
		}
		if !listed {
			t.Errorf("group %s (hosts %v, children %v) is not in ansible's listing", name, hosts, g.children)
			continue
		}
		if !slices.Equal(hosts, w.Hosts) {
			t.Errorf("group %s: hosts\n repoctl %q\n ansible %q", name, hosts, w.Hosts)
		}
		if !slices.Equal(g.children, w.Children) {
			t.Errorf("group %s: children\n repoctl %q\n ansible %q", name, g.children, w.Children)
		}
		members := slices.Clone(got.members(name))
		sort.Strings(members)
		if wm := want.closure(name); !slices.Equal(members, wm) {
			t.Errorf("group %s: members\n repoctl %q\n ansible %q", name, members, wm)
		}
	}
	for name := range want.groups {
		if got.groups[name] == nil {
			t.Errorf("ansible has group %s, repoctl does not", name)
		}
	}
	// Hosts and the variables a rollout reads.
	wantHosts := map[string]bool{}
	for _, g := range want.groups {
		for _, h := range g.Hosts {
			wantHosts[h] = true
		}
	}
	for h := range want.hostvars {
		wantHosts[h] = true
	}
	gotHosts := map[string]bool{}
	for _, h := range got.hosts {
		gotHosts[h] = true
	}
	if g, w := sortedKeys(gotHosts), sortedKeys(wantHosts); !slices.Equal(g, w) {
		t.Errorf("hosts\n repoctl %q\n ansible %q", g, w)
	}
	for _, h := range got.hosts {
		gv, wv := got.varsFor(h), want.hostvars[h]
		for _, k := range ansibleVars {
			g, gok := gv[k]
			w, wok := wv[k]
			ws := ansibleText(w)
			if k == "ansible_become" && gok && wok {
				g, ws = fmt.Sprint(ansibleBool(g)), fmt.Sprint(ansibleBool(ws))
			}
			if gok != wok || g != ws {
				t.Errorf("host %s: %s: repoctl %q (set %v), ansible %q (set %v)", h, k, g, gok, ws, wok)
			}
		}
	}
}

func TestAnsibleInventoryRefusedLikeAnsible(t *testing.T) {
	for _, c := range ansibleBadCases {
		t.Run(c.name, func(t *testing.T) {
			path := writeCase(t, c)
			if l, _, err := ansibleInventoryList(t, path); err == nil {
				t.Fatalf("ansible-inventory read it: %+v", l.groups)
			}
			if inv, err := loadAnsible(path); !errors.Is(err, ErrInventory) {
				t.Fatalf("repoctl read what ansible refuses: %v %+v", err, inv)
			}
		})
	}
	for _, c := range ansibleRefusedCases {
		t.Run("on purpose: "+c.name, func(t *testing.T) {
			path := writeCase(t, c)
			if _, stderr, err := ansibleInventoryList(t, path); err != nil {
				t.Fatalf("ansible-inventory refuses it too, so this is no deliberate difference: %v\n%s", err, stderr)
			}
			_, _, err := readAnsible(path, nil, "")
			if !errors.Is(err, ErrInventory) {
				t.Fatalf("repoctl read it: %v", err)
			}
			if strings.Contains(c.name, "templated") && !strings.Contains(err.Error(), "Jinja") {
				t.Errorf("error does not say why: %v", err)
			}
		})
	}
}

// FuzzAnsibleInventory feeds hostile bytes to both readers: no panic, no
// more hosts than the cap, and every host a rollout would get has a name.
func FuzzAnsibleInventory(f *testing.F) {
	for _, c := range append(append(ansibleCases, ansibleBadCases...), ansibleRefusedCases...) {
		f.Add([]byte(c.files[c.inv]))
	}
	f.Add([]byte("[w]\na[0:9999][0:9999]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, parse := range []func([]byte) (*ansInventory, error){parseAnsibleINI, parseAnsibleYAML} {
			inv, err := parse(b)
			if err != nil {
				continue
			}
			inv.reconcile()
			if len(inv.hosts) > 64*maxRangeHosts {
				t.Fatalf("%d hosts", len(inv.hosts))
			}
			for _, name := range inv.order {
				m := inv.members(name)
				for _, h := range m[:min(len(m), 100)] { // enough to check, few enough to fuzz fast
					if h == "" && !strings.Contains(string(b), `""`) && !strings.Contains(string(b), "''") {
						t.Fatalf("empty host name in group %q", name)
					}
					// A host it cannot use is refused as an invalid inventory,
					// never with another kind of error.
					if _, err := ansibleHostConfig(h, inv.varsFor(h)); err != nil && !errors.Is(err, ErrInventory) {
						t.Fatalf("host %q: %v, want ErrInventory", h, err)
					}
				}
			}
		}
	})
}

// A few hundred bytes of YAML merge keys name one mapping 10^8 times;
// the reader gives up instead of walking them (ansible-inventory does not
// finish on it).
func TestAnsibleYAMLAliasBombRefused(t *testing.T) {
	var b strings.Builder
	b.WriteString("web:\n  hosts:\n    h0: &a0 {ansible_user: x, ansible_port: 22}\n")
	for i := 1; i <= 8; i++ {
		refs := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", ")
		fmt.Fprintf(&b, "    h%d: &a%d {<<: [%s]}\n", i, i, refs)
	}
	p := filepath.Join(t.TempDir(), "bomb.yml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadAnsible(p); !errors.Is(err, errYAMLBudget) {
		t.Fatalf("alias bomb: %v", err)
	}
}
