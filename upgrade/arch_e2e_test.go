package upgrade

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// TestE2EPromoteBuildPhased drives the repoctl binary (no daemon) through
// `promote NAME-VERSION-RELEASE --phased` of a build with x86_64 and
// aarch64 packages and its SRPM, onto two real sshd hosts of different
// arches: app1's from the inventory's `arch`, app2's asked over SSH and
// answered by this machine's rpm. Each host's update command names the
// NEVRA of its arch, the SRPM goes to prod but to no host.
func TestE2EPromoteBuildPhased(t *testing.T) {
	local := localArch(t)
	other := map[string]string{"x86_64": "aarch64", "aarch64": "x86_64"}[local]
	work := t.TempDir()
	e := &e2e{t: t, work: work, root: filepath.Join(work, "root")}
	e.repoctl = buildBinary(t, filepath.Join(work, "bin"), "github.com/repoctl/repoctl/cmd/repoctl")

	r := newRig(t, 2, 0, 22)
	c := r.lab.config(1, 1)
	r.markCommands(c)
	r.installCommands(c)
	r.serveHealth(t, c)
	c.Groups[0].Hosts[0].Arch = other
	if err := os.MkdirAll(e.root, 0o755); err != nil {
		t.Fatal(err)
	}
	var tb bytes.Buffer
	if err := toml.NewEncoder(&tb).Encode(map[string]any{
		"signing": map[string]string{"algo": "ed25519"},
		"upgrade": c,
	}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.root, "repoctl.toml"), tb.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	rpms := filepath.Join(work, "rpms")
	if err := os.MkdirAll(rpms, 0o755); err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, b := range []struct{ ver, arch string }{{"1.0", "x86_64"}, {"1.0", "aarch64"}, {"1.1", "x86_64"}, {"1.1", "aarch64"}, {"1.1", "src"}} {
		p, err := testrpm.Write(rpms, testrpm.Spec{Name: "uxtool", Version: b.ver, Release: "1.el9", Arch: b.arch,
			Summary: "multi-arch test tool", License: "MIT",
			Files: []testrpm.File{{Name: "/usr/share/uxtool/" + b.arch, Body: []byte("uxtool " + b.ver + " " + b.arch + "\n")}}})
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	e.mustRun(append([]string{"add"}, files...)...)
	e.mustRun("promote", "uxtool-1.0-1.el9", "--yes")

	dry := e.mustRun("promote", "uxtool-1.1-1.el9", "--to", "prod", "--phased", "--dry-run")
	for _, want := range []string{
		"would promote uxtool-1.1-1.el9 (3 packages) staging → prod",
		"place main/prod/el/9/SRPMS/uxtool-1.1-1.el9.src.rpm",
		"place main/prod/el/9/aarch64/uxtool-1.1-1.el9.aarch64.rpm",
		"place main/prod/el/9/x86_64/uxtool-1.1-1.el9.x86_64.rpm",
		"1. probe arch",
		"update 'uxtool-1.1-1.el9." + other + "'", // app1's command, fixed by the inventory
		"if " + local + ":",                       // app2's, chosen by its answer
	} {
		if !strings.Contains(dry, want) {
			t.Errorf("dry run lacks %q:\n%s", want, dry)
		}
	}
	if _, err := os.Stat(r.marks); err == nil {
		t.Fatalf("dry run ran commands on the hosts")
	}
	if _, _, code := e.run("promote", "uxtool-1.1-1.el9", "--phased", "--yes", "--arch", "src"); code != 2 {
		t.Errorf("--phased of the SRPM alone: exit %d, want 2", code)
	}

	// A failed gate with --rollback-on-failure: each host goes back to its
	// arch's 1.0, and the whole 1.1 build leaves prod again.
	r.mu.Lock()
	r.broken["app2"] = true
	r.mu.Unlock()
	out, stderr, code := e.run("promote", "uxtool-1.1-1.el9", "--phased", "--yes", "--rollback-on-failure")
	if code != 5 {
		t.Fatalf("promote --phased --rollback-on-failure with a failing gate: exit %d, want 5\n%s\n%s", code, out, stderr)
	}
	for h, arch := range map[string]string{"app1": other, "app2": local} {
		if got, want := r.pkgs(t, h), "update uxtool-1.1-1.el9."+arch+"\ndowngrade uxtool-1.0-1.el9."+arch; got != want {
			t.Errorf("%s was told %q, want %q", h, got, want)
		}
		if err := os.Remove(filepath.Join(r.dir, h+".pkgs")); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(r.dir, h+".restarted")); err != nil {
			t.Fatal(err)
		}
	}
	if l := e.mustRun("list", "--channel", "prod"); strings.Contains(l, "uxtool-1.1") || !strings.Contains(l, "uxtool-1.0-1.el9.aarch64") {
		t.Errorf("prod after the rollback:\n%s", l)
	}
	r.mu.Lock()
	r.broken["app2"] = false
	r.mu.Unlock()

	out, stderr, code = e.run("promote", "uxtool-1.1-1.el9", "--to", "prod", "--phased", "--yes")
	if code != 0 {
		t.Fatalf("promote --phased: exit %d\n%s\n%s", code, out, stderr)
	}
	if !strings.Contains(stderr, "promoted uxtool-1.1-1.el9 (3 packages) staging → prod") {
		t.Errorf("promote did not say what it promoted:\n%s", stderr)
	}
	if got, want := r.pkgs(t, "app1"), "update uxtool-1.1-1.el9."+other; got != want {
		t.Errorf("app1 (inventory arch %s) was told %q, want %q", other, got, want)
	}
	if got, want := r.pkgs(t, "app2"), "update uxtool-1.1-1.el9."+local; got != want {
		t.Errorf("app2 (probed) was told %q, want %q", got, want)
	}

	var list []struct {
		NEVRA      string `json:"nevra"`
		Placements []struct {
			Channel string `json:"channel"`
		} `json:"placements"`
	}
	if err := json.Unmarshal([]byte(e.mustRun("list", "--channel", "prod", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	var prod []string
	for _, p := range list {
		prod = append(prod, p.NEVRA)
	}
	if got := strings.Join(prod, " "); len(prod) != 5 || !strings.Contains(got, "uxtool-1.1-1.el9.src") {
		t.Errorf("prod holds %s", got)
	}
	var st Rollout
	if err := json.Unmarshal([]byte(e.mustRun("rollout", "status", "-o", "json")), &st); err != nil || st.State != StateDone || len(st.Plan.Rollback) == 0 {
		t.Fatalf("rollout: %v %+v", err, st)
	}
	if len(st.Plan.Builds) != 2 {
		t.Errorf("the rollout installs %+v, want the two binary packages", st.Plan.Builds)
	}
	for _, s := range st.Steps {
		if s.Phase == "update" && !strings.Contains(s.Command, fmt.Sprintf("uxtool-1.1-1.el9.%s", map[string]string{"app1": other, "app2": local}[s.Host])) {
			t.Errorf("%s's recorded update: %s", s.Host, s.Command)
		}
	}
	if text := e.mustRun("rollout", "status"); !strings.Contains(text, "uxtool-1.1-1.el9.aarch64 uxtool-1.1-1.el9.x86_64") {
		t.Errorf("rollout status does not name both packages:\n%s", text)
	}
}
