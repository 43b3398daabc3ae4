package upgrade

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const sampleTOML = `
# other sections belong to repo and are ignored here
repos = ["main"]
[http]
listen = "127.0.0.1:8080"

[upgrade]
known_hosts = "/etc/repoctl/known_hosts"
identity_file = "/etc/repoctl/id_ed25519"
user = "deploy"
sudo = true
flavor = "el7"
command_timeout = "3m"
concurrency = 4

[upgrade.health]
url = "http://{{.Address}}:8000/version"
expect_body = "ok"
retries = 5
interval = "1s"
soak = "10s"

[[upgrade.groups]]
name = "canary"
  [[upgrade.groups.hosts]]
  name = "app1"
  address = "10.0.0.1"

[[upgrade.groups]]
name = "rest"
  [[upgrade.groups.hosts]]
  name = "app2"
  address = "10.0.0.2"
  port = 2222
  sudo = false
  flavor = "el9"
  health_url = "http://10.0.0.2/healthz"
  [upgrade.groups.hosts.commands]
  restart = "apachectl graceful"

[[upgrade.proxies]]
name = "proxy1"
address = "10.0.1.1"
[upgrade.proxies.commands]
purge = "rm -rf /var/cache/nginx/*"
`

func TestConfigTOML(t *testing.T) {
	p := filepath.Join(t.TempDir(), "repoctl.toml")
	if err := os.WriteFile(p, []byte(sampleTOML), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfigFile(p)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := c.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Groups) != 2 || inv.Groups[0].Name != "canary" || len(inv.Proxies) != 1 {
		t.Fatalf("groups %+v", inv.Groups)
	}
	a1, a2 := inv.Groups[0].Hosts[0], inv.Groups[1].Hosts[0]
	if a1.User != "deploy" || a1.Port != 22 || !a1.Sudo || a1.Commands.Clean != "yum clean metadata" || a1.Commands.Restart != "/etc/init.d/httpd graceful" {
		t.Errorf("app1 %+v", a1)
	}
	if a2.Port != 2222 || a2.Sudo || a2.Commands.Clean != "dnf clean metadata" || a2.Commands.Restart != "apachectl graceful" || a2.Health.URL != "http://10.0.0.2/healthz" {
		t.Errorf("app2 %+v", a2)
	}
	if a1.Health.Retries != 5 || a1.Health.ExpectStatus != 200 || a1.Health.Soak.Duration != 10*time.Second {
		t.Errorf("health %+v", a1.Health)
	}
	if inv.Settings.CommandTimeout != 3*time.Minute || inv.Settings.Concurrency != 4 || inv.Settings.ConnectTimeout != 10*time.Second {
		t.Errorf("settings %+v", inv.Settings)
	}
	plan, err := NewPlan(inv, PlanRequest{NEVRA: "app-2.0-1.el7.x86_64", Previous: "app-1.0-1.el7.x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ph := range plan.Phases {
		names = append(names, ph.Name)
	}
	if got := strings.Join(names, ","); got != "clean,update,verify,restart canary,health canary,restart rest,health rest,purge" {
		t.Errorf("phases %s", got)
	}
	up := plan.Phases[1].Tasks[0].Command
	if want := `sudo -n sh -c 'if rpm -q '\''app'\'' >/dev/null 2>&1; then yum -y update-to '\''app-2.0-1.el7.x86_64'\''; else yum -y install '\''app-2.0-1.el7.x86_64'\''; fi'`; up != want {
		t.Errorf("update command\n got %s\nwant %s", up, want)
	}
	if c := plan.Phases[1].Tasks[1].Command; c != "dnf -y install 'app-2.0-1.el7.x86_64'" {
		t.Errorf("app2 update %s", c)
	}
	if u := plan.Phases[4].Tasks[0].Health.URL; u != "http://10.0.0.1:8000/version" {
		t.Errorf("health url %s", u)
	}
	if c := plan.Phases[7].Tasks[0].Command; c != `sudo -n sh -c 'rm -rf /var/cache/nginx/*'` {
		t.Errorf("purge %s", c)
	}
	if c := plan.Rollback[0].Tasks[1].Command; c != "rpm -q 'app-1.0-1.el7.x86_64' || dnf -y downgrade 'app-1.0-1.el7.x86_64'" {
		t.Errorf("downgrade %s", c)
	}
	if c := plan.Rollback[2].Tasks[1].Command; c != "rpm -q 'app-1.0-1.el7.x86_64'" {
		t.Errorf("rollback verify %s", c)
	}
	txt := plan.Text()
	for _, want := range []string{"1. clean", "8. purge", "deploy@10.0.0.2:2222", "R1. rollback downgrade"} {
		if !strings.Contains(txt, want) {
			t.Errorf("plan text lacks %q:\n%s", want, txt)
		}
	}
	hard, err := NewPlan(inv, PlanRequest{NEVRA: "app-2.0-1.el7.x86_64", Restart: RestartHard})
	if err != nil {
		t.Fatal(err)
	}
	if c := hard.Phases[3].Tasks[0].Command; !strings.Contains(c, "/etc/init.d/httpd restart") {
		t.Errorf("hard restart %s", c)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := map[string]string{
		"unknown key":  "[upgrade]\nknwon_hosts = \"x\"\n[[upgrade.groups]]\nhosts=[{name=\"a\"}]\n",
		"no groups":    "[upgrade]\nuser = \"x\"\n",
		"both lists":   "[upgrade]\nhosts=[{name=\"b\"}]\n[[upgrade.groups]]\nhosts=[{name=\"a\"}]\n",
		"empty group":  "[upgrade]\n[[upgrade.groups]]\nname = \"g\"\n",
		"bad flavor":   "[upgrade]\nflavor = \"el99\"\n[[upgrade.groups]]\nhosts=[{name=\"a\"}]\n",
		"dup host":     "[upgrade]\n[[upgrade.groups]]\nhosts=[{name=\"a\"},{name=\"a\"}]\n",
		"hostile addr": "[upgrade]\n[[upgrade.groups]]\nhosts=[{name=\"a\", address=\"x;reboot\"}]\n",
		"bad template": "[upgrade]\ncommands = {clean = \"{{.Nope}}\"}\n[[upgrade.groups]]\nhosts=[{name=\"a\"}]\n",
	}
	for name, body := range cases {
		p := filepath.Join(t.TempDir(), "repoctl.toml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfigFile(p)
		if err == nil {
			var inv *Inventory
			if inv, err = c.Resolve(""); err == nil {
				_, err = NewPlan(inv, PlanRequest{NEVRA: "a-1-1.x86_64"})
			}
		}
		if !errors.Is(err, ErrInventory) {
			t.Errorf("%s: got %v, want ErrInventory", name, err)
		}
	}
	c := &Config{Groups: []GroupConfig{{Hosts: []HostConfig{{Name: "a"}}}}}
	inv, err := c.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewPlan(inv, PlanRequest{NEVRA: "a-2-1.x86_64", RollbackOnFailure: true}); !errors.Is(err, ErrNoPrevious) {
		t.Errorf("rollback without previous: %v", err)
	}
	if _, err := NewPlan(inv, PlanRequest{NEVRA: "a-2-1.x86_64", Previous: "b-1-1.x86_64"}); err == nil {
		t.Errorf("previous of another package accepted")
	}
}

const sampleINI = `
# runbook hosts
[all:vars]
ansible_user=deploy

[web1]
app[1:2].example.com ansible_become=yes

[web2]
app[3:6].example.com
app7 ansible_host=10.0.0.7 ansible_port=2200 ansible_user="ops"

[web2:vars]
ansible_become=true
repoctl_health_url=http://localhost/health

[proxies]
proxy[01:02] ansible_host=10.9.9.9

[app:children]
web1
web2
`

const sampleYAML = `
all:
  vars:
    ansible_user: deploy
  children:
    web1:
      hosts:
        app1.example.com:
          ansible_become: true
        app2.example.com:
    web2:
      vars:
        ansible_port: 2222
      hosts:
        app[3:4].example.com:
    proxies:
      hosts:
        proxy1:
          ansible_host: 10.9.9.1
`

func TestAnsibleInventories(t *testing.T) {
	dir := t.TempDir()
	ini := filepath.Join(dir, "hosts")
	if err := os.WriteFile(ini, []byte(sampleINI), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Config{AppGroups: []string{"web1", "web2"}}
	inv, err := c.Resolve(ini)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Groups) != 2 || len(inv.Groups[0].Hosts) != 2 || len(inv.Groups[1].Hosts) != 5 || len(inv.Proxies) != 2 {
		t.Fatalf("INI groups %+v proxies %+v", inv.Groups, inv.Proxies)
	}
	a1, a7 := inv.Groups[0].Hosts[0], inv.Groups[1].Hosts[4]
	if a1.Name != "app1.example.com" || a1.Address != "app1.example.com" || a1.User != "deploy" || !a1.Sudo {
		t.Errorf("app1 %+v", a1)
	}
	if a7.Address != "10.0.0.7" || a7.Port != 2200 || a7.User != "ops" || !a7.Sudo || a7.Health.URL != "http://localhost/health" {
		t.Errorf("app7 %+v", a7)
	}
	if p := inv.Proxies[0]; p.Name != "proxy01" || p.Address != "10.9.9.9" {
		t.Errorf("proxy %+v", p)
	}
	// Default app groups: every group with hosts, in file order, but the proxies.
	inv, err = (&Config{}).Resolve(ini)
	if err != nil || len(inv.Groups) != 2 || inv.Groups[1].Name != "web2" {
		t.Fatalf("default groups: %v %+v", err, inv)
	}

	yml := filepath.Join(dir, "hosts.yml")
	if err := os.WriteFile(yml, []byte(sampleYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	inv, err = (&Config{}).Resolve(yml)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Groups) != 2 || inv.Groups[0].Name != "web1" || len(inv.Groups[1].Hosts) != 2 || len(inv.Proxies) != 1 {
		t.Fatalf("YAML groups %+v", inv.Groups)
	}
	if h := inv.Groups[1].Hosts[1]; h.Name != "app4.example.com" || h.Port != 2222 || h.User != "deploy" || h.Sudo {
		t.Errorf("app4 %+v", h)
	}
	if !inv.Groups[0].Hosts[0].Sudo || inv.Proxies[0].Address != "10.9.9.1" {
		t.Errorf("yaml vars %+v %+v", inv.Groups[0].Hosts[0], inv.Proxies[0])
	}

	for name, body := range map[string]string{
		"hosts.bad":  "[web1\napp1\n",
		"hosts2.bad": "[web1]\napp1 ansible_port=x\n",
		"hosts3.bad": "[web1]\napp1 junk\n",
		"hosts4.bad": "[web1:weird]\n",
		"bad.yml":    "all: [1, 2]\n",
		"loop.ini":   "[a:children]\nb\n[b:children]\na\n[c]\nh1\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		c := &Config{}
		if name == "loop.ini" {
			c.AppGroups = []string{"a"}
		}
		if _, err := c.Resolve(p); !errors.Is(err, ErrInventory) {
			t.Errorf("%s: %v, want ErrInventory", name, err)
		}
	}
}

// The documented example must stay true: it parses, resolves and plans.
func TestExampleConfig(t *testing.T) {
	c, err := LoadConfigFile(filepath.Join("testdata", "upgrade.example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := c.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	def, err := FlavorCommands("el9")
	if err != nil {
		t.Fatal(err)
	}
	if c.Commands != def {
		t.Errorf("example [upgrade.commands] differ from the el9 defaults:\n%+v\n%+v", c.Commands, def)
	}
	d := defaultHealth
	if h := c.Health; h.URL != d.URL || h.ExpectStatus != d.ExpectStatus || h.Retries != d.Retries || h.Interval != d.Interval || h.Timeout != d.Timeout {
		t.Errorf("example [upgrade.health] differs from the defaults: %+v", h)
	}
	if len(inv.Groups) != 2 || len(inv.AppHosts()) != 4 || len(inv.Proxies) != 1 {
		t.Fatalf("example inventory: %+v", inv)
	}
	if a4 := inv.Groups[1].Hosts[1]; a4.Arch != "x86_64" {
		t.Errorf("app4's arch %q", a4.Arch)
	}
	a3 := inv.Groups[1].Hosts[0]
	if a3.Port != 2222 || !a3.Sudo || a3.Commands.Clean != "yum clean metadata" || a3.Commands.Restart != "apachectl graceful" {
		t.Errorf("app3: %+v", a3)
	}
	if _, err := NewPlan(inv, PlanRequest{NEVRA: "app-2.0-1.el9.x86_64", Previous: "app-1.0-1.el9.x86_64", RollbackOnFailure: true}); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultGroups(t *testing.T) {
	p := filepath.Join(t.TempDir(), "repoctl.toml")
	var b strings.Builder
	b.WriteString("[upgrade]\n")
	for i := 1; i <= 6; i++ {
		fmt.Fprintf(&b, "[[upgrade.hosts]]\nname = \"app%d\"\n", i)
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfigFile(p)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := c.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Groups) != 2 || len(inv.Groups[0].Hosts) != 2 || inv.Groups[0].Hosts[1].Name != "app2" || len(inv.Groups[1].Hosts) != 4 {
		t.Fatalf("six hosts split as %+v", inv.Groups)
	}
	for n, want := range map[int][]int{1: {1}, 2: {1, 1}, 3: {1, 2}, 6: {2, 4}, 50: {16, 34}} {
		hs := make([]HostConfig, n)
		var got []int
		for _, g := range DefaultGroups(hs) {
			got = append(got, len(g.Hosts))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%d hosts: groups %v, want %v", n, got, want)
		}
	}
	ini := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(ini, []byte("[app]\napp[1:6]\n[proxies]\nproxy1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	inv, err = (&Config{}).Resolve(ini)
	if err != nil || len(inv.Groups) != 2 || len(inv.Groups[0].Hosts) != 2 || len(inv.Proxies) != 1 {
		t.Fatalf("single ansible group: %v %+v", err, inv)
	}
}
