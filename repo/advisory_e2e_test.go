package repo

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// TestAdvisoryDNFSecurityUpgrade is the advisory test, through a
// running daemon (every repoctl command goes over its socket): an EL9
// host has app 1.0 and other 1.0 installed from prod; prod gets app 2.0
// and other 1.1, and a security advisory for app 2.0 written in TOML. On
// the host, with gpgcheck, repo_gpgcheck and skip_if_unavailable=False,
// `dnf updateinfo list --security` shows the advisory, and `dnf upgrade
// --security` upgrades app to 2.0 and leaves other at 1.0 (its update has
// no advisory). Once the advisory is removed, the host no longer sees it.
func TestAdvisoryDNFSecurityUpgrade(t *testing.T) {
	needTools(t, "dnf", "rpm")
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte("[signing]\nalgo = \"ed25519\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := startDaemon(t, root, "--listen", listen)
	defer d.stop()

	cli := func(args ...string) string {
		t.Helper()
		out, stderr, code := runCLI(t, root, args...)
		if code != 0 {
			t.Fatalf("repoctl %q: exit %d\n%s%s", args, code, out, stderr)
		}
		return out
	}
	in := t.TempDir()
	for _, b := range [][2]string{{"app", "1.0"}, {"app", "2.0"}, {"other", "1.0"}, {"other", "1.1"}} {
		s := helloSpec(b[0])
		s.Version = b[1]
		s.Files = []testrpm.File{{Name: "/usr/share/" + b[0] + "/VERSION", Body: []byte(b[1] + "\n")}}
		p, err := testrpm.Write(in, s)
		if err != nil {
			t.Fatal(err)
		}
		cli("add", p)
	}
	cli("promote", "app-1.0-1.el9", "--to", "prod", "--yes")
	cli("promote", "other-1.0-1.el9", "--to", "prod", "--yes")
	repofile := cli("repofile", "--channel", "prod")

	h := newELHost(t, repofile)
	dnf, ir := h.mustDNF, h.ir
	installed := func() string {
		t.Helper()
		q, err := exec.Command("rpm", "--root", ir, "-q", "--qf", "%{NAME}-%{VERSION}\n", "app", "other").CombinedOutput()
		if err != nil {
			t.Fatalf("rpm -q: %v\n%s", err, q)
		}
		return strings.Join(strings.Fields(string(q)), " ")
	}
	dnf("install", "app", "other")
	if got := installed(); got != "app-1.0 other-1.0" {
		t.Fatalf("installed %q, want app-1.0 other-1.0", got)
	}
	if out := dnf("-q", "updateinfo", "list", "--all"); strings.TrimSpace(out) != "" {
		t.Errorf("updateinfo before any advisory:\n%s", out)
	}

	cli("promote", "app-2.0-1.el9", "--to", "prod", "--yes")
	cli("promote", "other-1.1-1.el9", "--to", "prod", "--yes")
	adv := filepath.Join(t.TempDir(), "APP-2026-0001.toml")
	if err := os.WriteFile(adv, []byte(`id = "APP-2026-0001"
type = "security"
severity = "Important"
title = "app: fixes a remote code execution"
description = "Upgrade app to 2.0."
issued = "2026-12-01"
packages = ["app-2.0-1.el9.x86_64"]

[[references]]
type = "cve"
id = "CVE-2026-0001"
href = "https://cve.example.com/CVE-2026-0001"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var res AdvisoryResult
	if err := json.Unmarshal([]byte(cli("-o", "json", "advisory", "add", adv)), &res); err != nil ||
		len(res.Advisories) != 1 || res.Advisories[0].Action != ActionAdded ||
		strings.Join(res.Dirs, " ") != "main/prod/el/9/x86_64 main/staging/el/9/x86_64" {
		t.Fatalf("advisory add: %+v, %v", res, err)
	}
	if !strings.Contains(d.log(), `"method":"advisory-add"`) {
		t.Error("the daemon's log shows no advisory-add: the CLI did not go through its socket")
	}
	if out := cli("advisory", "list"); !strings.Contains(out, "APP-2026-0001") || !strings.Contains(out, "security") {
		t.Errorf("advisory list:\n%s", out)
	}

	out := dnf("updateinfo", "list", "--security")
	t.Logf("dnf updateinfo list --security:\n%s", out)
	if !strings.Contains(out, "APP-2026-0001") || !strings.Contains(out, "app-2.0-1.el9.x86_64") || strings.Contains(out, "other") {
		t.Errorf("dnf updateinfo list --security:\n%s", out)
	}
	if out := dnf("updateinfo", "info", "APP-2026-0001"); !strings.Contains(out, "CVE-2026-0001") || !strings.Contains(out, "Important") {
		t.Errorf("dnf updateinfo info:\n%s", out)
	}
	dnf("upgrade", "--security")
	if got := installed(); got != "app-2.0 other-1.0" {
		t.Errorf("after dnf upgrade --security: %q, want app-2.0 other-1.0", got)
	}

	cli("advisory", "remove", "APP-2026-0001")
	if out := dnf("-q", "updateinfo", "list", "--all"); strings.Contains(out, "APP-2026-0001") {
		t.Errorf("the removed advisory is still listed:\n%s", out)
	}
	if out, _, code := runCLI(t, root, "advisory", "show", "APP-2026-0001"); code != 2 {
		t.Errorf("advisory show of the removed advisory: exit %d, want 2\n%s", code, out)
	}
}
