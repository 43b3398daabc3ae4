package sign

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifyDetachedAgreesWithGPG: gpg is the judge of detached signatures
// (dnf's repo_gpgcheck uses gpgme). A signature gpg makes verifies with
// the key gpg exports, read by ReadKeyring from a file holding two keys one
// block after the other (the served RPM-GPG-KEY-repoctl during a key
// rotation); ours verifies in gpg; both refuse changed data, and a
// signature by a key not given is refused naming that key.
func TestVerifyDetachedAgreesWithGPG(t *testing.T) {
	home, gpg := gpgHome(t)
	uid := "GPG Signer <gpg-signer@example.test>"
	gpg(nil, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
	gpgPub := gpg(nil, "--armor", "--export", uid)
	ours := testKey(t, "ed25519")

	ring, err := ReadKeyring(bytes.NewReader(append(pubOf(t, ours), gpgPub...)))
	if err != nil {
		t.Fatal(err)
	}
	if len(ring) != 2 || ring[0].Fingerprint() != ours.Fingerprint() {
		t.Fatalf("ReadKeyring of two blocks: %d keys", len(ring))
	}
	if ring[0].CanSign() || ring[1].CanSign() {
		t.Error("a keyring key has a private part")
	}

	dir := t.TempDir()
	data := []byte("<?xml version=\"1.0\"?>\n<repomd>revision 1</repomd>\n")
	dataFile := filepath.Join(dir, "repomd.xml")
	if err := os.WriteFile(dataFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	gpgSig := gpg(nil, "--armor", "--local-user", uid, "--output", "-", "--detach-sign", dataFile)
	id, err := VerifyDetached(data, gpgSig, ring)
	if err != nil || id != ring[1].KeyID() {
		t.Errorf("gpg's signature: key %q, %v; want %s", id, err, ring[1].KeyID())
	}
	changed := append(bytes.Clone(data), ' ')
	if _, err := VerifyDetached(changed, gpgSig, ring); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("gpg's signature over changed data: %v", err)
	}
	if id, err := VerifyDetached(data, gpgSig, ring[:1]); !errors.Is(err, ErrBadSignature) || id != ring[1].KeyID() || !strings.Contains(err.Error(), ring[1].KeyID()) {
		t.Errorf("a signature by a key not given: key %q, %v", id, err)
	}

	asc, err := ours.DetachSignArmored(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyDetached(data, asc, ring); err != nil {
		t.Errorf("our signature: %v", err)
	}
	kf := filepath.Join(dir, "ours.asc")
	if err := os.WriteFile(kf, pubOf(t, ours), 0o644); err != nil {
		t.Fatal(err)
	}
	gpg(nil, "--import", kf)
	ascFile := filepath.Join(dir, "repomd.xml.asc")
	if err := os.WriteFile(ascFile, asc, 0o644); err != nil {
		t.Fatal(err)
	}
	verify := func(file string) error {
		cmd := exec.Command("gpg", "--batch", "--no-tty", "--verify", ascFile, file)
		cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return errors.New(string(out))
		}
		return nil
	}
	if err := verify(dataFile); err != nil {
		t.Errorf("gpg --verify of our signature: %v", err)
	}
	if err := os.WriteFile(dataFile, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := verify(dataFile); err == nil {
		t.Error("gpg accepts our signature over changed data")
	}
	if _, err := VerifyDetached(changed, asc, ring); !errors.Is(err, ErrBadSignature) {
		t.Errorf("our signature over changed data: %v", err)
	}

	for _, bad := range [][]byte{nil, []byte("not armor"), []byte("-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n"), gpgPub} {
		if _, err := VerifyDetached(data, bad, ring); !errors.Is(err, ErrBadSignature) {
			t.Errorf("VerifyDetached(%.20q): %v, want ErrBadSignature", bad, err)
		}
	}
	for _, bad := range [][]byte{nil, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n"), gpgSig} {
		if _, err := ReadKeyring(bytes.NewReader(bad)); !errors.Is(err, ErrBadKey) {
			t.Errorf("ReadKeyring(%.20q): %v, want ErrBadKey", bad, err)
		}
	}
}
