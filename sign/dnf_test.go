package sign

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// TestDNFInstallsSignedRepo: a repo whose packages and repomd.xml repoctl
// signed installs with gpgcheck=1 and repo_gpgcheck=1; an unsigned package
// in the same repo is refused. createrepo_c builds the repodata here (the
// publisher is tested on its own).
func TestDNFInstallsSignedRepo(t *testing.T) {
	needTool(t, "dnf")
	needTool(t, "createrepo_c")
	for _, algo := range []string{"rsa4096", "ed25519"} {
		t.Run(algo, func(t *testing.T) {
			k := testKey(t, algo)
			base := t.TempDir()
			repo := filepath.Join(base, "repo")
			if err := os.MkdirAll(repo, 0o755); err != nil {
				t.Fatal(err)
			}
			mk := func(name string) string {
				p, err := testrpm.Write(repo, testrpm.Spec{Name: name, Version: "1.0", Release: "1", Arch: "noarch",
					Files: []testrpm.File{{Name: "/usr/share/" + name + "/hello.txt", Body: []byte("hello from " + name + "\n")}}})
				if err != nil {
					t.Fatal(err)
				}
				return p
			}
			signedPkg := mk("signedpkg")
			mk("unsignedpkg")
			signAll(t, k, []string{signedPkg})

			if out, err := exec.Command("createrepo_c", "--quiet", repo).CombinedOutput(); err != nil {
				t.Fatalf("createrepo_c: %v\n%s", err, out)
			}
			repomd := filepath.Join(repo, "repodata", "repomd.xml")
			asc, err := k.DetachSignArmored(context.Background(), readAll(t, repomd))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(repomd+".asc", asc, 0o644); err != nil {
				t.Fatal(err)
			}
			keyFile := filepath.Join(base, "RPM-GPG-KEY-repoctl")
			if err := os.WriteFile(keyFile, pubOf(t, k), 0o644); err != nil {
				t.Fatal(err)
			}
			reposd := filepath.Join(base, "repos.d")
			if err := os.MkdirAll(reposd, 0o755); err != nil {
				t.Fatal(err)
			}
			conf := "[repoctl-test]\nname=repoctl test\nbaseurl=file://" + repo + "\nenabled=1\ngpgcheck=1\nrepo_gpgcheck=1\ngpgkey=file://" + keyFile + "\n"
			if err := os.WriteFile(filepath.Join(reposd, "test.repo"), []byte(conf), 0o644); err != nil {
				t.Fatal(err)
			}
			root := filepath.Join(base, "root")
			dnf := func(args ...string) (string, error) {
				all := append([]string{"-y", "--installroot", root, "--releasever", "9", "--forcearch", "x86_64",
					"--setopt=reposdir=" + reposd, "--setopt=cachedir=" + filepath.Join(base, "cache"),
					"--setopt=install_weak_deps=False", "--setopt=skip_if_unavailable=False", "--disablerepo=*", "--enablerepo=repoctl-test"}, args...)
				out, err := exec.Command("dnf", all...).CombinedOutput()
				return string(out), err
			}
			if out, err := dnf("install", "signedpkg"); err != nil {
				t.Fatalf("dnf install signedpkg: %v\n%s", err, out)
			}
			if b, err := os.ReadFile(filepath.Join(root, "usr/share/signedpkg/hello.txt")); err != nil || string(b) != "hello from signedpkg\n" {
				t.Fatalf("signedpkg not installed: %v %q", err, b)
			}
			out, err := dnf("install", "unsignedpkg")
			if err == nil {
				t.Fatalf("dnf installed an unsigned package:\n%s", out)
			}
			if !strings.Contains(out, "not signed") && !strings.Contains(out, "GPG check FAILED") {
				t.Errorf("unexpected refusal message:\n%s", out)
			}
			if _, err := os.Stat(filepath.Join(root, "usr/share/unsignedpkg")); err == nil {
				t.Fatal("unsigned package files are on disk")
			}

			// A repomd.xml that no longer matches its .asc is refused.
			if err := os.WriteFile(repomd, append(readAll(t, repomd), ' '), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(filepath.Join(base, "cache")); err != nil {
				t.Fatal(err)
			}
			if out, err := dnf("makecache"); err == nil || !strings.Contains(out, "Bad GPG signature") {
				t.Fatalf("dnf accepted a repomd.xml with a stale signature (err %v):\n%s", err, out)
			}
		})
	}
}
