package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// maxUnitExposure is `systemd-analyze security`'s overall exposure level
// of repoctl.service when the check was added; hardening may only improve.
const maxUnitExposure = 1.6

// installedUnit is repoctl.service with ExecStart pointing at the binary
// under test: verify checks that the program exists.
func installedUnit(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("repoctl.service")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "ExecStart=/usr/local/bin/repoctl ") {
		t.Fatal("repoctl.service: ExecStart does not run /usr/local/bin/repoctl")
	}
	unit := strings.ReplaceAll(string(b), "/usr/local/bin/repoctl", repoctlBin)
	path := filepath.Join(t.TempDir(), "repoctl.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// systemd-analyze verify has nothing to say about the unit.
func TestSystemdUnitVerify(t *testing.T) {
	requireTools(t, "systemd-analyze")
	path := installedUnit(t)
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Warnings about other units of the machine are not ours to fix.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "repoctl") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !strings.Contains(string(b), "\n"+want) {
			t.Errorf("repoctl.service lacks %q", want)
		}
	}
}

// systemd-analyze security (offline: no running systemd is needed) rates
// the unit no worse than it was.
func TestSystemdUnitSecurity(t *testing.T) {
	requireTools(t, "systemd-analyze")
	path := installedUnit(t)
	out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for repoctl\.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security printed no overall exposure level:\n%s", out)
	}
	level, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	if level > maxUnitExposure {
		t.Errorf("repoctl.service exposure level %.1f, worse than %.1f:\n%s", level, maxUnitExposure, out)
	}
}
