package repo

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// elHost is a dnf --installroot host set up as a stock EL host is: the
// unmodified `repoctl repofile` output in its yum.repos.d; gpgcheck=1,
// repo_gpgcheck=1 and skip_if_unavailable=False in its dnf.conf (and again
// on the command line, so that no distribution default can loosen them);
// one $releasever and one arch. Its rpm database persists across calls, so
// upgrades and downgrades act on what an earlier call installed.
type elHost struct {
	t                testing.TB
	ir, conf, rds    string
	releasever, arch string
}

// newELHost is an EL 9 x86_64 host.
func newELHost(t testing.TB, repofile string) *elHost {
	t.Helper()
	return newELHostFor(t, repofile, "9", "x86_64")
}

func newELHostFor(t testing.TB, repofile, releasever, arch string) *elHost {
	t.Helper()
	ir := t.TempDir()
	h := &elHost{t: t, ir: ir, conf: filepath.Join(ir, "dnf.conf"), rds: filepath.Join(ir, "etc/yum.repos.d"),
		releasever: releasever, arch: arch}
	if err := os.MkdirAll(h.rds, 0o755); err != nil {
		t.Fatal(err)
	}
	h.setRepo(repofile)
	if err := os.WriteFile(h.conf, []byte("[main]\ngpgcheck=1\nrepo_gpgcheck=1\nskip_if_unavailable=False\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

// setRepo replaces the host's .repo file, as a configuration management
// run would.
func (h *elHost) setRepo(repofile string) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.rds, "repoctl.repo"), []byte(repofile), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// install installs pkgs (mustDNF) and fails unless rpm then knows each.
func (h *elHost) install(pkgs ...string) string {
	h.t.Helper()
	out := h.mustDNF(append([]string{"--nodocs", "install"}, pkgs...)...)
	for _, p := range pkgs {
		if q, err := exec.Command("rpm", "--root", h.ir, "-q", p).CombinedOutput(); err != nil {
			h.t.Fatalf("rpm -q %s after dnf install: %v\n%s\n(dnf said:\n%s)", p, err, q, out)
		}
	}
	return out
}

// keys are the short ids of the gpg-pubkey packages dnf imported.
func (h *elHost) keys() []string { return importedKeys(h.t, "--root", h.ir) }

// run runs dnf on the host. Metadata is always fetched afresh, as
// `dnf clean metadata` before each step of the runbook does.
func (h *elHost) run(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command("dnf", append([]string{"-y", "--config", h.conf, "--installroot", h.ir, "--refresh",
		"--setopt=reposdir=" + h.rds, "--setopt=cachedir=" + filepath.Join(h.ir, "var/cache/dnf"),
		"--setopt=skip_if_unavailable=False", "--setopt=gpgcheck=1", "--setopt=repo_gpgcheck=1",
		"--setopt=install_weak_deps=False", "--releasever", h.releasever, "--forcearch", h.arch}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// dnf runs dnf and returns what it printed, stdout and stderr together,
// for a caller that expects it to fail.
func (h *elHost) dnf(args ...string) (string, error) {
	o, e, err := h.run(args...)
	return o + e, err
}

// mustDNF runs dnf and returns its stdout. It fails the test when dnf
// fails, and when dnf reports on stderr a repository or package it could
// not use (dnfErrorLine) even though it exited 0.
func (h *elHost) mustDNF(args ...string) string {
	h.t.Helper()
	o, e, err := h.run(args...)
	for _, line := range strings.Split(e, "\n") {
		if dnfErrorLine.MatchString(line) {
			h.t.Errorf("dnf %v printed an error line: %q", args, line)
		}
	}
	if err != nil {
		h.t.Fatalf("dnf %v: %v\n%s%s", args, err, o, e)
	}
	return o
}

// installed is the NEVRA of name in the host's rpm database, or "".
func (h *elHost) installed(name string) string {
	h.t.Helper()
	q, err := exec.Command("rpm", "--root", h.ir, "-q", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}", name).CombinedOutput()
	if err != nil {
		return ""
	}
	return string(q)
}

// installedAll lists every package in the host's rpm database as
// N-V-R.A, in rpm's order.
func (h *elHost) installedAll() []string {
	h.t.Helper()
	q, err := exec.Command("rpm", "--root", h.ir, "-qa", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\n").CombinedOutput()
	if err != nil {
		h.t.Fatalf("rpm -qa: %v\n%s", err, q)
	}
	return strings.Fields(string(q))
}
