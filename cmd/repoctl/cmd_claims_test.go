package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// README claims about the CLI, each driven through the real binary.

// sign --key, --legacy and --dry-run, and verify --key, as a user runs
// them on loose files, judged by rpmkeys.
func TestSignVerifyFlagsCLI(t *testing.T) {
	requireTools(t, "rpmkeys")
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if _, errOut, code := runBin(t, "", "key", "generate", "--algo", "ed25519", "--name", "CLI Test", "--email", "cli@example.test", "--out", keys); code != 0 {
		t.Fatalf("key generate: exit %d\n%s", code, errOut)
	}
	other := filepath.Join(dir, "other")
	if _, errOut, code := runBin(t, "", "key", "generate", "--algo", "ed25519", "--name", "Other", "--email", "o@example.test", "--out", other); code != 0 {
		t.Fatalf("key generate: exit %d\n%s", code, errOut)
	}
	p, err := testrpm.Write(dir, testrpm.Small(1))
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := runBin(t, "", "sign", "--dry-run", "--key", filepath.Join(keys, "signing.asc"), p); code != 0 {
		t.Fatalf("sign --dry-run: exit %d\n%s", code, errOut)
	}
	after, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("sign --dry-run changed the file")
	}
	if _, errOut, code := runBin(t, "", "sign", "--key", filepath.Join(keys, "signing.asc"), p); code != 0 {
		t.Fatalf("sign: exit %d\n%s", code, errOut)
	}
	if out, errOut, code := runBin(t, "", "verify", "--key", filepath.Join(keys, "signing.pub.asc"), p); code != 0 {
		t.Errorf("verify with the signing key: exit %d\n%s%s", code, out, errOut)
	}
	if out, _, code := runBin(t, "", "verify", "--key", filepath.Join(other, "signing.pub.asc"), p); code != exitRejected || !strings.Contains(out, "NOKEY") {
		t.Errorf("verify with another key: exit %d, want 3 and NOKEY\n%s", code, out)
	}
	// --legacy adds the header+payload signature rpm lists as "V4 …".
	db := t.TempDir()
	if out, err := exec.Command("rpmkeys", "--dbpath", db, "--import", filepath.Join(keys, "signing.pub.asc")).CombinedOutput(); err != nil {
		t.Fatalf("rpmkeys --import: %v\n%s", err, out)
	}
	kv := func() string {
		out, err := exec.Command("rpmkeys", "--dbpath", db, "-Kv", p).CombinedOutput()
		if err != nil {
			t.Fatalf("rpmkeys -Kv: %v\n%s", err, out)
		}
		return string(out)
	}
	legacyLine := func(s string) bool {
		for _, l := range strings.Split(s, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "V4 ") {
				return true
			}
		}
		return false
	}
	if legacyLine(kv()) {
		t.Errorf("header-only signing left a header+payload signature:\n%s", kv())
	}
	q, err := testrpm.Write(t.TempDir(), testrpm.Small(2))
	if err != nil {
		t.Fatal(err)
	}
	p = q
	if _, errOut, code := runBin(t, "", "sign", "--legacy", "--key", filepath.Join(keys, "signing.asc"), p); code != 0 {
		t.Fatalf("sign --legacy: exit %d\n%s", code, errOut)
	}
	if out := kv(); !legacyLine(out) || !strings.Contains(out, "Header V4") {
		t.Errorf("sign --legacy: want both signatures\n%s", out)
	}
}

// key import of a passphrase-protected key takes REPOCTL_KEY_PASSPHRASE.
func TestKeyImportPassphraseEnv(t *testing.T) {
	requireTools(t, "gpg")
	home, err := os.MkdirTemp("", "gpgh")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if out, err := exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").CombinedOutput(); err != nil {
			t.Errorf("gpgconf --kill gpg-agent: %v\n%s", err, out)
		}
		if err := os.RemoveAll(home); err != nil {
			t.Fatal(err)
		}
	}()
	gpg := func(stdin string, args ...string) []byte {
		cmd := exec.Command("gpg", append([]string{"--homedir", home, "--batch", "--pinentry-mode", "loopback", "--passphrase", "s3cret"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gpg %v: %v", args, err)
		}
		return out
	}
	gpg("", "--quick-gen-key", "Pass Test <pass@example.test>", "ed25519", "sign", "never")
	sec := filepath.Join(t.TempDir(), "secret.asc")
	if err := os.WriteFile(sec, gpg("", "--armor", "--export-secret-keys", "pass@example.test"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "keys")
	cmd := exec.Command(repoctlBin, "key", "import", "--out", out, sec)
	cmd.Env = append(os.Environ(), "REPOCTL_KEY_PASSPHRASE=")
	if b, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("import without the passphrase succeeded:\n%s", b)
	}
	cmd = exec.Command(repoctlBin, "key", "import", "--out", out, sec)
	cmd.Env = append(os.Environ(), "REPOCTL_KEY_PASSPHRASE=s3cret")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("import with REPOCTL_KEY_PASSPHRASE: %v\n%s", err, b)
	}
	// The imported key signs (with the passphrase from the environment).
	p, err := testrpm.Write(t.TempDir(), testrpm.Small(3))
	if err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(repoctlBin, "sign", "--key", filepath.Join(out, "signing.asc"), p)
	cmd.Env = append(os.Environ(), "REPOCTL_KEY_PASSPHRASE=s3cret")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sign with the imported key: %v\n%s", err, b)
	}
	if o, _, code := runBin(t, "", "verify", "--key", filepath.Join(out, "signing.pub.asc"), p); code != 0 {
		t.Errorf("verify: exit %d\n%s", code, o)
	}
}

// history --verify from the CLI names an altered event and exits 1.
func TestHistoryVerifyTamperedCLI(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "repoctl.toml"), []byte("[signing]\nalgo = \"ed25519\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := testrpm.Write(t.TempDir(), testrpm.Spec{Name: "audit", Version: "1", Release: "1.el9", Arch: "x86_64", Summary: "a", License: "MIT",
		Files: []testrpm.File{{Name: "/usr/share/audit", Body: []byte("a\n")}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := runIn(t, root, "add", p); code != 0 {
		t.Fatalf("add: exit %d\n%s", code, errOut)
	}
	if _, errOut, code := runIn(t, root, "history", "--verify"); code != 0 {
		t.Fatalf("history --verify on an intact log: exit %d\n%s", code, errOut)
	}
	db, err := bolt.Open(filepath.Join(root, "repoctl.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("events"))
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var e map[string]any
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if e["action"] == "add" {
				e["who"] = "mallory"
				nv, err := json.Marshal(e)
				if err != nil {
					t.Fatal(err)
				}
				return b.Put(append([]byte(nil), k...), nv)
			}
		}
		t.Fatal("no add event")
		return nil
	})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runIn(t, root, "history", "--verify")
	if code != 1 || !strings.Contains(errOut, "altered") {
		t.Errorf("history --verify on a tampered log: exit %d, want 1 naming the altered event\n%s", code, errOut)
	}
}

// An interrupted `sign` exits 130 and leaves every file either as it was
// or completely signed.
func TestSignInterrupted(t *testing.T) {
	requireTools(t, "rpmkeys")
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if _, errOut, code := runBin(t, "", "key", "generate", "--algo", "ed25519", "--name", "Int", "--email", "i@example.test", "--out", keys); code != 0 {
		t.Fatalf("key generate: exit %d\n%s", code, errOut)
	}
	pkgs := filepath.Join(dir, "pkgs")
	if err := os.Mkdir(pkgs, 0o755); err != nil {
		t.Fatal(err)
	}
	paths, err := testrpm.Corpus(context.Background(), pkgs, 1200)
	if err != nil {
		t.Fatal(err)
	}
	orig := map[string][]byte{}
	for _, p := range paths {
		var err error
		orig[p], err = os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(repoctlBin, append([]string{"sign", "--workers", "1", "--key", filepath.Join(keys, "signing.asc")}, paths...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Interrupt once the first package is signed.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		changed := false
		for _, p := range paths[:20] {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, orig[p]) {
				changed = true
				break
			}
		}
		if changed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sign never got going")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != exitInterrupted {
		t.Fatalf("interrupted sign: exit %d (%v), want %d\n%s", code, err, exitInterrupted, out.String())
	}
	db := t.TempDir()
	if b, err := exec.Command("rpmkeys", "--dbpath", db, "--import", filepath.Join(keys, "signing.pub.asc")).CombinedOutput(); err != nil {
		t.Fatalf("rpmkeys --import: %v\n%s", err, b)
	}
	signed, untouched := 0, 0
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(b, orig[p]) {
			untouched++
			continue
		}
		if o, err := exec.Command("rpmkeys", "--dbpath", db, "--checksig", p).CombinedOutput(); err != nil {
			t.Errorf("%s is neither original nor validly signed: %s", filepath.Base(p), o)
		}
		signed++
	}
	t.Logf("interrupted after %d of %d signed", signed, len(paths))
	if untouched == 0 {
		t.Errorf("all %d signed: the interrupt came too late to test anything", len(paths))
	}
}
