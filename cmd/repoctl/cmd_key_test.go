package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeySignVerifyCLI drives the real binary: key generate/list/export,
// sign (with a refused file) and verify, checking output and exit codes.
func TestKeySignVerifyCLI(t *testing.T) {
	requireTools(t, "rpmkeys")
	dir := t.TempDir()
	bin := repoctlBin
	root := filepath.Join(dir, "root")
	run := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"--root", root}, args...)...)
		cmd.Env = append(os.Environ(), "REPOCTL_KEY_PASSPHRASE=")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	if out, code := run("key", "generate", "--algo", "ed25519", "--name", "CLI (test)", "--email", "cli@example.test"); code != exitUsage {
		t.Fatalf("bad user ID: exit %d\n%s", code, out)
	}
	if out, code := run("key", "generate", "--algo", "ed25519", "--name", "CLI Test", "--email", "cli@example.test"); code != 0 {
		t.Fatalf("generate: exit %d\n%s", code, out)
	}
	if out, code := run("key", "generate", "--algo", "ed25519", "--name", "CLI Test", "--email", "cli@example.test"); code == 0 || !strings.Contains(out, "already exists") {
		t.Fatalf("second generate must refuse to overwrite: exit %d\n%s", code, out)
	}
	out, code := run("-o", "json", "key", "list")
	var infos []struct {
		KeyID     string `json:"key_id"`
		Algorithm string `json:"algorithm"`
		Private   bool   `json:"private"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &infos) != nil || len(infos) != 2 {
		t.Fatalf("key list: exit %d\n%s", code, out)
	}
	pub, code := run("key", "export")
	if code != 0 || !strings.HasPrefix(pub, "-----BEGIN PGP PUBLIC KEY BLOCK-----") {
		t.Fatalf("export: exit %d\n%s", code, pub)
	}
	db := t.TempDir()
	pubFile := filepath.Join(dir, "pub.asc")
	if err := os.WriteFile(pubFile, []byte(pub), 0o644); err != nil {
		t.Fatal(err)
	}
	if o, err := exec.Command("rpmkeys", "--dbpath", db, "--import", pubFile).CombinedOutput(); err != nil {
		t.Fatalf("rpmkeys --import: %v\n%s", err, o)
	}

	src := filepath.Join("..", "..", "..", "shared", "corpus", "createrepo_c-testdata", "Archer-3.4.5-6.x86_64.rpm")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	good, bad := filepath.Join(dir, "Archer.rpm"), filepath.Join(dir, "trunc.rpm")
	if err := os.WriteFile(good, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, data[:3000], 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = run("sign", good, bad)
	if code != exitRejected || !strings.Contains(out, good+"\tsigned\t"+infos[0].KeyID) || !strings.Contains(out, bad+"\trefused") {
		t.Fatalf("sign: exit %d\n%s", code, out)
	}
	b, err := os.ReadFile(bad)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(data[:3000]) {
		t.Fatal("refused file changed")
	}
	o, err := exec.Command("rpmkeys", "--dbpath", db, "--checksig", good).CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(o), good+": digests signatures OK") {
		t.Fatalf("rpmkeys: %s", o)
	}
	if out, code = run("sign", good); code != 0 || !strings.Contains(out, "\tunchanged\t") {
		t.Fatalf("re-sign: exit %d\n%s", code, out)
	}
	if out, code = run("verify", good); code != 0 || !strings.Contains(out, "digests signatures OK") {
		t.Fatalf("verify good: exit %d\n%s", code, out)
	}
	if out, code = run("verify", good, bad); code != exitRejected || !strings.Contains(out, "NOT OK") {
		t.Fatalf("verify bad: exit %d\n%s", code, out)
	}
	priv := filepath.Join(root, "keys", "signing.asc")
	if err := os.Chmod(priv, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code = run("sign", good); code == 0 || !strings.Contains(out, "accessible by group or others") || strings.Contains(out, "PRIVATE KEY") {
		t.Fatalf("world-readable key: exit %d\n%s", code, out)
	}
}
