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
	"time"

	"github.com/repoctl/repoctl/internal/testrpm"
)

func signAll(t testing.TB, k *Key, files []string, opts ...SignerOption) []Result {
	t.Helper()
	s, err := NewSigner(k, opts...)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.SignFiles(context.Background(), files)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Path, r.Err)
		}
	}
	return res
}

// TestSignCorpusRpmkeys signs every createrepo_c test package (unsigned,
// RSA- and EdDSA-signed by another key, and the rpm 6 multi-signature one)
// and asks rpm itself.
func TestSignCorpusRpmkeys(t *testing.T) {
	for _, algo := range []string{"rsa4096", "ed25519"} {
		t.Run(algo, func(t *testing.T) {
			k := testKey(t, algo)
			_, files := copyCorpus(t)
			res := signAll(t, k, files)
			db := newRPMDB(t, pubOf(t, k))
			for _, r := range res {
				base := filepath.Base(r.Path)
				want := ActionSigned
				if strings.Contains(base, "-signed-") {
					want = ActionReplaced
				}
				if r.Action != want {
					t.Errorf("%s: action %q, want %q", base, r.Action, want)
				}
				db.assertSignedOK(t, r.Path, k)
			}
			// The foreign signatures in tag 278 of this v4 package are gone:
			// rpm 6 would check them and never look at ours.
			for _, f := range files {
				if strings.Contains(f, "v6-multiple") {
					p := mustReadPkg(t, f)
					if p.sig.get(tagOpenPGP) != nil {
						t.Errorf("%s still carries tag 278", f)
					}
				}
			}
			// Signing again changes nothing.
			before := map[string][]byte{}
			for _, f := range files {
				before[f] = readAll(t, f)
			}
			for _, r := range signAll(t, k, files) {
				if r.Action != ActionUnchanged {
					t.Errorf("%s: second run action %q", r.Path, r.Action)
				}
				if !bytes.Equal(before[r.Path], readAll(t, r.Path)) {
					t.Errorf("%s changed on second run", r.Path)
				}
			}
		})
	}
}

func mustReadPkg(t testing.TB, path string) *pkg {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	p, err := readPkg(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSignRewriteThenInPlace: rpmpack output has no reserved space, so the
// first signature needs a rewrite (mode and mtime kept); the rewrite
// leaves reserved space, so re-signing with another key is in place.
func TestSignRewriteThenInPlace(t *testing.T) {
	dir := t.TempDir()
	paths, err := testrpm.Corpus(context.Background(), dir, 6)
	if err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(1600000000, 0)
	for _, p := range paths {
		if err := os.Chmod(p, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		if mustReadPkg(t, p).sig.get(tagReservedSpace) != nil {
			t.Fatalf("%s: expected rpmpack output without reserved space", p)
		}
	}
	a, b := testKey(t, "rsa4096"), testKey(t, "ed25519")
	for _, r := range signAll(t, a, paths) {
		if r.InPlace || r.Action != ActionSigned {
			t.Errorf("%s: in place %v, action %s; want rewrite, signed", r.Path, r.InPlace, r.Action)
		}
		st, err := os.Stat(r.Path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o640 || !st.ModTime().Equal(mtime) {
			t.Errorf("%s: mode %v mtime %v not preserved", r.Path, st.Mode(), st.ModTime())
		}
	}
	dbA := newRPMDB(t, pubOf(t, a))
	for _, p := range paths {
		dbA.assertSignedOK(t, p, a)
	}
	sizes := map[string]int64{}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		sizes[p] = st.Size()
	}
	for _, r := range signAll(t, b, paths) {
		if !r.InPlace || r.Action != ActionReplaced {
			t.Errorf("%s: in place %v, action %s; want in place, replaced", r.Path, r.InPlace, r.Action)
		}
		st, err := os.Stat(r.Path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != sizes[r.Path] {
			t.Errorf("%s: size changed on in-place signing", r.Path)
		}
		// Same size, so the mtime must move for createrepo_c --update.
		if st.ModTime().Equal(mtime) || st.Mode().Perm() != 0o640 {
			t.Errorf("%s: in-place signing kept mtime %v / changed mode %v", r.Path, st.ModTime(), st.Mode())
		}
	}
	dbB := newRPMDB(t, pubOf(t, b))
	for _, p := range paths {
		dbB.assertSignedOK(t, p, b)
		if sum := dbA.checksigSummary(t, p); !strings.Contains(sum, "NOT OK") {
			t.Errorf("old key still accepted: %s", sum)
		}
	}
}

// TestSignLegacy adds the header+payload signature rpm < 4.14 needs.
func TestSignLegacy(t *testing.T) {
	for _, algo := range []string{"rsa4096", "ed25519"} {
		k := testKey(t, algo)
		dir := t.TempDir()
		p, err := testrpm.Write(dir, testrpm.Small(1))
		if err != nil {
			t.Fatal(err)
		}
		signAll(t, k, []string{p}, WithLegacy(true))
		db := newRPMDB(t, pubOf(t, k))
		db.assertSigned(t, p, k, true)
		out, _ := db.checksig(t, p)
		name := "RSA"
		if algo == "ed25519" {
			name = "EdDSA"
		}
		want := "    V4 " + name + "/SHA256 Signature, key ID " + k.KeyID()[8:] + ": OK"
		if !strings.Contains(out, want) {
			t.Errorf("%s: want %q in\n%s", algo, want, out)
		}
		// Legacy again is a no-op; without --legacy the same key signs
		// again, header-only: what is there is not what it would write.
		if r := signAll(t, k, []string{p}, WithLegacy(true)); r[0].Action != ActionUnchanged {
			t.Errorf("%s: --legacy twice: action %q, want unchanged", algo, r[0].Action)
		}
		if r := signAll(t, k, []string{p}); r[0].Action != ActionReplaced {
			t.Errorf("%s: header-only after --legacy: action %q, want replaced", algo, r[0].Action)
		}
		db.assertSignedOK(t, p, k)
		// And back: a header-only package of ours still needs the
		// header+payload signature --legacy asks for.
		if r := signAll(t, k, []string{p}, WithLegacy(true)); r[0].Action != ActionReplaced {
			t.Errorf("%s: --legacy after header-only: action %q, want replaced", algo, r[0].Action)
		}
		db.assertSigned(t, p, k, true)
	}
}

// gpgHome makes a throwaway GNUPGHOME (short path: the agent socket must
// fit in sun_path) and stops its agent afterwards.
func gpgHome(t testing.TB) (home string, run func(stdin []byte, args ...string) []byte) {
	t.Helper()
	needTool(t, "gpg")
	home, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	run = func(stdin []byte, args ...string) []byte {
		t.Helper()
		cmd := exec.Command("gpg", append([]string{"--batch", "--no-tty", "--pinentry-mode", "loopback"}, args...)...)
		cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
		cmd.Stdin = bytes.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gpg %v: %v\n%s", args, err, stderr.String())
		}
		return out
	}
	t.Cleanup(func() {
		c := exec.Command("gpgconf", "--kill", "gpg-agent")
		c.Env = append(os.Environ(), "GNUPGHOME="+home)
		if err := c.Run(); err != nil {
			t.Error(err)
		}
		if err := os.RemoveAll(home); err != nil {
			t.Error(err)
		}
	})
	return home, run
}

// TestGPGKeyImport: keys made by gpg, exported with --export-secret-keys,
// with and without passphrase, imported like `repoctl key import`.
func TestGPGKeyImport(t *testing.T) {
	cases := []struct {
		algo, pass string
	}{{"rsa2048", ""}, {"rsa2048", "correct horse"}, {"ed25519", ""}, {"ed25519", "battery staple"}}
	for _, c := range cases {
		t.Run(c.algo+"-pass"+boolStr(c.pass != ""), func(t *testing.T) {
			_, gpg := gpgHome(t)
			uid := "GPG Made <gpg-" + c.algo + "@example.test>"
			gpg(nil, "--passphrase", c.pass, "--quick-gen-key", uid, c.algo, "sign", "never")
			armored := gpg(nil, "--passphrase", c.pass, "--armor", "--export-secret-keys", uid)
			binary := gpg(nil, "--passphrase", c.pass, "--export-secret-keys", uid)
			for i, exp := range [][]byte{armored, binary} {
				src := filepath.Join(t.TempDir(), "exported")
				if err := os.WriteFile(src, exp, 0o600); err != nil {
					t.Fatal(err)
				}
				if c.pass != "" {
					if _, err := ImportKeyFile(src, nil, t.TempDir()); !errors.Is(err, ErrBadPassphrase) {
						t.Fatalf("no passphrase: err %v, want ErrBadPassphrase", err)
					}
					_, err := ImportKeyFile(src, []byte("xyzzy-wrong-7"), t.TempDir())
					if !errors.Is(err, ErrBadPassphrase) {
						t.Fatalf("wrong passphrase: err %v, want ErrBadPassphrase", err)
					}
					if strings.Contains(err.Error(), c.pass) || strings.Contains(err.Error(), "xyzzy") {
						t.Fatalf("error mentions the passphrase: %v", err)
					}
				}
				keys := t.TempDir()
				k, err := ImportKeyFile(src, []byte(c.pass), keys)
				if err != nil {
					t.Fatal(err)
				}
				// The installed file loads again (protected ones need the passphrase).
				priv, pub := filepath.Join(keys, "signing.asc"), filepath.Join(keys, "signing.pub.asc")
				k2, err := LoadKeyFile(priv, []byte(c.pass))
				if err != nil {
					t.Fatal(err)
				}
				if k2.Fingerprint() != k.Fingerprint() {
					t.Fatal("reloaded key differs")
				}
				pubKey, err := os.ReadFile(pub)
				if err != nil {
					t.Fatal(err)
				}
				dir := t.TempDir()
				p, err := testrpm.Write(dir, testrpm.Small(10+i))
				if err != nil {
					t.Fatal(err)
				}
				signAll(t, k2, []string{p})
				newRPMDB(t, pubKey).assertSignedOK(t, p, k2)
				// gpg's own public export works for rpm too.
				newRPMDB(t, gpg(nil, "--armor", "--export", uid)).assertSignedOK(t, p, k2)
			}
		})
	}
}

// TestGPGSigningSubkey: a gpg key whose primary only certifies signs with
// its signing subkey, and rpm verifies that through the imported primary.
func TestGPGSigningSubkey(t *testing.T) {
	_, gpg := gpgHome(t)
	uid := "Sub Key <sub@example.test>"
	gpg(nil, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "cert", "never")
	fpr := ""
	for _, ln := range strings.Split(string(gpg(nil, "--with-colons", "--list-keys", uid)), "\n") {
		if f := strings.Split(ln, ":"); len(f) > 9 && f[0] == "fpr" {
			fpr = f[9]
			break
		}
	}
	gpg(nil, "--passphrase", "", "--quick-add-key", fpr, "rsa2048", "sign", "never")
	k, err := ReadKey(bytes.NewReader(gpg(nil, "--export-secret-keys", uid)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if k.Algorithm() != "rsa2048" || strings.HasSuffix(strings.ToUpper(fpr), strings.ToUpper(k.KeyID())) {
		t.Fatalf("want the RSA subkey to sign, got %s %s", k.Algorithm(), k.KeyID())
	}
	p, err := testrpm.Write(t.TempDir(), testrpm.Small(20))
	if err != nil {
		t.Fatal(err)
	}
	signAll(t, k, []string{p})
	newRPMDB(t, gpg(nil, "--armor", "--export", uid)).assertSignedOK(t, p, k)
	rep, err := VerifyFile(context.Background(), p, []*Key{k})
	if err != nil || !rep.OK {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}

func boolStr(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func TestKeyFilePermissions(t *testing.T) {
	k := testKey(t, "ed25519")
	dir := t.TempDir()
	priv := filepath.Join(dir, "signing.asc")
	if err := k.WritePrivateFile(priv); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(priv)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	if err := k.WritePrivateFile(priv); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("overwrite: %v", err)
	}
	for _, m := range []os.FileMode{0o640, 0o604, 0o660} {
		if err := os.Chmod(priv, m); err != nil {
			t.Fatal(err)
		}
		_, err := LoadKeyFile(priv, nil)
		if !errors.Is(err, ErrKeyPermissions) {
			t.Errorf("mode %v: err %v", m, err)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE") {
			t.Errorf("error leaks key material: %v", err)
		}
	}
	if err := os.Chmod(priv, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(priv, nil); err != nil {
		t.Fatal(err)
	}
	// Public key files may be world readable.
	pub := filepath.Join(dir, "signing.pub.asc")
	if err := k.WritePublicFile(pub); err != nil {
		t.Fatal(err)
	}
	pk, err := LoadKeyFile(pub, nil)
	if err != nil || pk.CanSign() {
		t.Fatalf("public key: %v can sign %v", err, pk != nil && pk.CanSign())
	}
	if _, err := NewSigner(pk); !errors.Is(err, ErrNoPrivateKey) {
		t.Fatalf("signer from public key: %v", err)
	}
}

func TestGenerateKeyValidation(t *testing.T) {
	for _, c := range []struct{ algo, name, email string }{
		{"rsa4096", "Infra (prod)", "a@b.example"},
		{"ed25519", "", "a@b.example"},
		{"ed25519", "Infra", "not-an-email"},
		{"ed25519", "Infra", "<a@b.example>"},
	} {
		if _, err := GenerateKey(c.algo, c.name, c.email); !errors.Is(err, ErrBadUserID) {
			t.Errorf("%+v: err %v, want ErrBadUserID", c, err)
		}
	}
	for _, algo := range []string{"ecdsa", "dsa", "ed448", "rsa1024"} {
		if _, err := GenerateKey(algo, "X", "x@y.example"); !errors.Is(err, ErrUnsupportedKey) {
			t.Errorf("%s: err %v, want ErrUnsupportedKey", algo, err)
		}
	}
	k, err := GenerateKey("rsa3072", "Infra", "infra@example.test")
	if err != nil {
		t.Fatal(err)
	}
	if k.Algorithm() != "rsa3072" || len(k.KeyID()) != 16 || len(k.Fingerprint()) != 40 || time.Since(k.Created()) > time.Hour {
		t.Fatalf("bad key info %s %s %s %v", k.Algorithm(), k.KeyID(), k.Fingerprint(), k.Created())
	}
}
