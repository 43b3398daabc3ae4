package repo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// TestCompsDNFGroupInstall is the comps test, end to end: a
// daemon (zstd repodata, its default) gets app packages promoted to prod
// and a comps file through `repoctl comps set` over its socket; a dnf
// --installroot host (gpgcheck=1, repo_gpgcheck=1,
// skip_if_unavailable=False) with the unmodified `repoctl repofile` sees
// the group in `dnf group list` and `dnf group install app-stack` installs
// its mandatory and default packages, not the optional one. The event
// names the caller; `comps show` gives the file back; after `comps remove`
// the host, refreshed, no longer sees the group.
func TestCompsDNFGroupInstall(t *testing.T) {
	needTools(t, "dnf", "rpm")
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte("[signing]\nalgo = \"ed25519\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := startDaemon(t, root, "--listen", listen)
	defer d.stop()

	in := t.TempDir()
	for _, name := range []string{"app-server", "app-agent", "app-docs"} {
		s := helloSpec(name)
		s.Arch = "noarch"
		p, err := testrpm.Write(in, s)
		if err != nil {
			t.Fatal(err)
		}
		if out, stderr, code := runCLI(t, root, "add", p); code != 0 {
			t.Fatalf("add %s: exit %d\n%s%s", name, code, out, stderr)
		}
		if out, stderr, code := runCLI(t, root, "promote", name+"-1.0-1.el9", "--to", "prod", "--yes"); code != 0 {
			t.Fatalf("promote %s: exit %d\n%s%s", name, code, out, stderr)
		}
	}
	comps := filepath.Join(t.TempDir(), "comps.xml")
	if err := os.WriteFile(comps, []byte(testCompsXML), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runCLI(t, root, "-o", "json", "comps", "set", comps)
	var res CompsResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Action != CompsActionSet || !slices.Contains(res.Dirs, "main/prod/el/9/x86_64") {
		t.Fatalf("comps set: exit %d\n%s%s", code, out, stderr)
	}
	if !strings.Contains(d.log(), `"method":"comps-set"`) {
		t.Error("daemon log shows no comps-set request: the CLI did not use the socket")
	}
	// Through the daemon too: show gives the file back, -o json what is
	// known about it; the event names the caller.
	if out, stderr, code := runCLI(t, root, "comps", "show"); code != 0 || out != testCompsXML {
		t.Errorf("comps show: exit %d\n%q\n%s", code, out, stderr)
	}
	out, _, code = runCLI(t, root, "-o", "json", "comps", "show")
	var info CompsInfo
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || !slices.Equal(info.Groups, []string{"app-stack"}) ||
		info.Who != CurrentUser() || info.Size != int64(len(testCompsXML)) || len(info.XML) != 0 || strings.Contains(out, "<comps") {
		t.Errorf("comps show -o json: exit %d\n%s", code, out)
	}
	out, _, _ = runCLI(t, root, "-o", "json", "history", "--action", EventCompsSet)
	var events []Event
	if json.Unmarshal([]byte(out), &events) != nil || len(events) != 1 || events[0].Caller == nil || events[0].Caller.UID != uint32(os.Getuid()) ||
		events[0].Who != CurrentUser() {
		t.Errorf("comps.set events: %s", out)
	}
	prodX86 := filepath.Join(root, "repo/main/prod/el/9/x86_64")
	md, err := os.ReadFile(filepath.Join(prodX86, "repodata", "repomd.xml"))
	if err != nil || !bytes.Contains(md, []byte(`<data type="group_gz">`)) || !bytes.Contains(md, []byte(`primary.xml.zst"`)) {
		t.Fatalf("prod repomd.xml: %v\n%s", err, md)
	}

	repofile, stderr, code := runCLI(t, root, "repofile")
	if code != 0 {
		t.Fatalf("repofile: exit %d: %s", code, stderr)
	}
	h := newELHost(t, repofile)
	dnf, ir := h.mustDNF, h.ir
	list := dnf("group", "list", "--ids")
	if !strings.Contains(list, "App stack (app-stack)") {
		t.Fatalf("dnf group list does not show the group:\n%s", list)
	}
	dnf("group", "install", "app-stack")
	// What dnf 4 read is group_gz (libdnf asks for it first), not group.
	if !regexp.MustCompile(`"path":"/main/prod/el/9/x86_64/repodata/[0-9a-f]{64}-comps\.xml\.gz","status":200`).MatchString(d.log()) {
		t.Error("dnf did not fetch the group_gz file of main/prod/el/9/x86_64")
	}
	q, err := exec.Command("rpm", "--root", ir, "-qa", "--qf", "%{NAME}\n").CombinedOutput()
	if err != nil {
		t.Fatalf("rpm -qa: %v\n%s", err, q)
	}
	var installed []string
	for _, n := range strings.Fields(string(q)) {
		if !strings.HasPrefix(n, "gpg-pubkey") {
			installed = append(installed, n)
		}
	}
	sort.Strings(installed)
	if !slices.Equal(installed, []string{"app-agent", "app-server"}) {
		t.Errorf("dnf group install app-stack installed %v, want the mandatory and default packages [app-agent app-server]", installed)
	}
	if list := dnf("group", "list", "--installed"); !strings.Contains(list, "App stack") {
		t.Errorf("dnf group list --installed does not show the group:\n%s", list)
	}

	// comps remove: the records go, and a refreshed host sees no group.
	if out, stderr, code := runCLI(t, root, "comps", "remove"); code != 0 || !strings.Contains(out, "removed") {
		t.Fatalf("comps remove: exit %d\n%s%s", code, out, stderr)
	}
	md, _ = os.ReadFile(filepath.Join(prodX86, "repodata", "repomd.xml"))
	if bytes.Contains(md, []byte(`type="group`)) {
		t.Errorf("group records after comps remove:\n%s", md)
	}
	if out, stderr, code := runCLI(t, root, "-o", "json", "comps", "show"); code != 2 || !strings.Contains(stderr, "no comps file") {
		t.Errorf("comps show after remove: exit %d\n%s%s", code, out, stderr)
	}
	// The repositories themselves still load (no error but this one).
	if stdout, stderr, err := h.run("group", "list", "--available"); err == nil || strings.Contains(stdout, "App stack") ||
		!strings.Contains(stderr, "No group data available") || strings.Contains(stderr, "Failed") {
		t.Errorf("dnf group list after comps remove: %v\n%s%s", err, stdout, stderr)
	}
	if out, stderr, code := runCLI(t, root, "fsck"); code != 0 {
		t.Errorf("fsck after comps remove: exit %d\n%s%s", code, out, stderr)
	}
}
