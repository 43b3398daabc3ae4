package testrpm

import (
	"os/exec"
	"testing"
	"time"
)

// rpm itself must accept what we build, or every test built on it is moot.
func TestRPMAcceptsBuiltPackage(t *testing.T) {
	dir := t.TempDir()
	s := Small(3)
	s.Epoch = 2
	s.Recommends = []string{"foo >= 1.0"}
	s.Supplements = []string{"bar"}
	s.Files = append(s.Files, File{Name: "/var/log/bulk.log", Ghost: true}, File{Name: "/etc/bulk.conf", Body: []byte("x=1\n")})
	s.Changelog = append(s.Changelog, Change{Time: time.Unix(1695000000, 0), Author: "A <a@b> - 1.1-1", Text: "- more"})
	p, err := Write(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("rpm", "-qp", "--nosignature", "--qf", "%{EPOCH}:%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH} [%{SUPPLEMENTS}]\n", p).CombinedOutput()
	if err != nil {
		t.Fatalf("rpm -qp: %v\n%s", err, out)
	}
	if got, want := string(out), "2:bulk00003-1.3-1.el9.x86_64 bar\n"; got != want {
		t.Fatalf("rpm -qp = %q, want %q", got, want)
	}
	out, err = exec.Command("rpmkeys", "-K", "--nosignature", p).CombinedOutput()
	if err != nil {
		t.Fatalf("rpmkeys -K: %v\n%s", err, out)
	}
}
