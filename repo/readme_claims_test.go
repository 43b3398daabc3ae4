package repo

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// README claims about configuration, driven through the real daemon and
// CLI: gz repodata for EL7 clients, several repositories with their own
// drop-in directories, `add --repo --channel`, [http] public_url, and
// REPOCTL_ROOT.
func TestReadmeConfigClaims(t *testing.T) {
	needTools(t, "dnf")
	root, _ := newTestRoot(t, "")
	// Top-level keys first, then newTestRoot's [http] with public_url.
	cfgPath := filepath.Join(root, ConfigFileName)
	httpCfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	httpCfg = bytes.Replace(httpCfg, []byte("[http]\n"), []byte("[http]\npublic_url = \"https://repo.example.test/rpm\"\n"), 1)
	cfg := `repos = ["main", "extras"]
[publish]
compression = "gz"
[[dropin]]
dir = "incoming"
[[dropin]]
dir = "incoming-extras"
repo = "extras"
channel = "prod"
` + string(httpCfg)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, root)
	in := t.TempDir()
	a := writeSpec(t, in, spec("gzmain", "1", "1.el9", "x86_64"))
	if out, errOut, code := runCLI(t, root, "add", a); code != 0 {
		t.Fatalf("add: exit %d\n%s%s", code, out, errOut)
	}
	b := writeSpec(t, in, spec("tostaging", "1", "1.el9", "x86_64"))
	if out, errOut, code := runCLI(t, root, "add", "--repo", "extras", "--channel", "staging", b); code != 0 {
		t.Fatalf("add --repo extras --channel staging: exit %d\n%s%s", code, out, errOut)
	}
	c := writeSpec(t, t.TempDir(), spec("dropped", "1", "1.el9", "x86_64"))
	body, err := os.ReadFile(c)
	if err != nil {
		t.Fatal(err)
	}
	dropFile(t, filepath.Join(root, "incoming-extras"), filepath.Base(c), body)

	mainDir := filepath.Join(root, "repo", "main", "staging", "el", "9", "x86_64")
	extrasStaging := filepath.Join(root, "repo", "extras", "staging", "el", "9", "x86_64")
	extrasProd := filepath.Join(root, "repo", "extras", "prod", "el", "9", "x86_64")
	waitFor(t, time.Minute, "the drop-in in extras/prod", func() (bool, string) {
		m, err := repodataPackages(extrasProd)
		_, ok := m["dropped-1-1.el9.x86_64"]
		return err == nil && ok, ""
	})
	for dir, want := range map[string]string{mainDir: "gzmain-1-1.el9.x86_64", extrasStaging: "tostaging-1-1.el9.x86_64", extrasProd: "dropped-1-1.el9.x86_64"} {
		m := mustPkgs(t, dir)
		if _, ok := m[want]; !ok || len(m) != 1 {
			t.Errorf("%s: %v, want only %s", dir, keys(m), want)
		}
		md, err := os.ReadFile(filepath.Join(dir, "repodata", "repomd.xml"))
		if err != nil || !strings.Contains(string(md), "-primary.xml.gz\"") || strings.Contains(string(md), ".zst\"") {
			t.Errorf("%s: repomd.xml does not name gz files (EL7 yum reads only gz): %v\n%s", dir, err, md)
		}
	}
	// EL7-style client: dnf reads the gz repodata with both checks on.
	rf, _, code := runCLI(t, root, "repofile", "--channel", "staging", "--repo", "main", "--base-url", "file://"+filepath.Join(root, "repo")+"/")
	if code != 0 {
		t.Fatalf("repofile: exit %d", code)
	}
	dnfInstall(t, rf, "gzmain")

	// public_url is what the .repo names.
	rf, _, code = runCLI(t, root, "repofile")
	if code != 0 || !strings.Contains(rf, "baseurl=https://repo.example.test/rpm/main/prod/el/$releasever/$basearch/") ||
		!strings.Contains(rf, "gpgkey=https://repo.example.test/rpm/RPM-GPG-KEY-repoctl") {
		t.Errorf("repofile with public_url: exit %d\n%s", code, rf)
	}
	d.stop()

	// REPOCTL_ROOT stands in for --root.
	cmd := exec.Command(repoctlBinary(t), "-o", "json", "status")
	cmd.Env = append(os.Environ(), "REPOCTL_ROOT="+root)
	cmd.Dir = t.TempDir()
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), `"root": "`+root+`"`) || !strings.Contains(string(out), `"packages": 3`) {
		t.Errorf("status with REPOCTL_ROOT: %v\n%s", err, out)
	}
}
