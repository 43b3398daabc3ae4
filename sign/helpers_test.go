package sign

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// corpusDir is createrepo_c's test RPMs, beside the repository (CI clones
// shared/ next to it).
func corpusDir(t testing.TB) string {
	t.Helper()
	d := filepath.Join("..", "..", "shared", "corpus", "createrepo_c-testdata")
	if _, err := os.Stat(d); err != nil {
		t.Fatalf("corpus missing: %v", err)
	}
	return d
}

func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is required for this test (run make test-deps): %v", name, err)
	}
	return p
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyCorpus copies every corpus RPM into a fresh dir.
func copyCorpus(t testing.TB) (string, []string) {
	t.Helper()
	src := corpusDir(t)
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".rpm") {
			p := filepath.Join(dir, e.Name())
			copyFile(t, filepath.Join(src, e.Name()), p)
			out = append(out, p)
		}
	}
	return dir, out
}

// rpmDB is a throwaway rpm database holding the public keys given.
type rpmDB struct{ dir string }

func newRPMDB(t testing.TB, pubKeys ...[]byte) *rpmDB {
	t.Helper()
	needTool(t, "rpmkeys")
	db := &rpmDB{dir: t.TempDir()}
	for i, k := range pubKeys {
		kf := filepath.Join(t.TempDir(), "key"+string(rune('a'+i))+".asc")
		if err := os.WriteFile(kf, k, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("rpmkeys", "--dbpath", db.dir, "--import", kf).CombinedOutput()
		if err != nil {
			t.Fatalf("rpmkeys --import: %v\n%s", err, out)
		}
	}
	return db
}

// checksig runs rpmkeys --checksig -v and returns its output and whether it
// exited 0.
func (db *rpmDB) checksig(t testing.TB, path string) (string, bool) {
	t.Helper()
	out, err := exec.Command("rpmkeys", "--dbpath", db.dir, "--checksig", "-v", path).CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("rpmkeys: %v", err)
		}
	}
	return string(out), err == nil
}

// checksigSummary runs rpmkeys --checksig (not verbose) and returns the line.
func (db *rpmDB) checksigSummary(t testing.TB, path string) string {
	t.Helper()
	out, err := exec.Command("rpmkeys", "--dbpath", db.dir, "--checksig", path).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err) // not run at all; a failed check exits 1 and says why
	}
	return strings.TrimSpace(string(out))
}

// assertSignedOK asserts rpm's own verdict for a package signed by key,
// header-only as rpmsign --addsign (rpm >= 4.16) signs: rpmkeys -Kv must
// list no header+payload signature (its indented "V4 …" line without
// "Header") unless the package has no payload digest.
func (db *rpmDB) assertSignedOK(t testing.TB, path string, key *Key) {
	t.Helper()
	db.assertSigned(t, path, key, false)
}

// assertSigned is assertSignedOK that also takes packages signed with
// WithLegacy, which must carry the header+payload signature as well.
func (db *rpmDB) assertSigned(t testing.TB, path string, key *Key, legacy bool) {
	t.Helper()
	out, _ := db.checksig(t, path)
	hasLegacy := false
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "V4 ") && strings.Contains(l, " Signature, key ID "+key.KeyID()[8:]) {
			hasLegacy = true
		}
	}
	// A package without a payload digest (built by rpm < 4.14) keeps a
	// header+payload signature either way: nothing else would cover its
	// payload.
	wantLegacy := legacy || mustReadPkg(t, path).main.get(tagPayloadDigest) == nil
	if hasLegacy != wantLegacy {
		t.Errorf("rpmkeys -Kv %s: header+payload signature present = %v, want %v\n%s", path, hasLegacy, wantLegacy, out)
	}
	sum := db.checksigSummary(t, path)
	if sum != path+": digests signatures OK" {
		t.Errorf("rpmkeys --checksig %s:\n%s", path, sum)
	}
	out, ok := db.checksig(t, path)
	algo := "RSA"
	if !key.isRSA() {
		algo = "EdDSA"
	}
	want := "Header V4 " + algo + "/SHA256 Signature, key ID " + key.KeyID()[8:] + ": OK"
	if !ok || !strings.Contains(out, want) || strings.Contains(out, "NOKEY") || strings.Contains(out, "BAD") {
		t.Errorf("rpmkeys -Kv %s: want %q\n%s", path, want, out)
	}
}

var (
	keyCacheMu sync.Mutex
	keyCache   = map[string]*Key{}
)

// testKey returns a generated key per algo, shared within the test binary
// (RSA-4096 generation takes seconds).
func testKey(t testing.TB, algo string) *Key {
	t.Helper()
	keyCacheMu.Lock()
	defer keyCacheMu.Unlock()
	if k, ok := keyCache[algo]; ok {
		return k
	}
	k, err := GenerateKey(algo, "Repoctl Test "+algo, "test-"+algo+"@example.test")
	if err != nil {
		t.Fatal(err)
	}
	keyCache[algo] = k
	return k
}

func pubOf(t testing.TB, k *Key) []byte {
	t.Helper()
	b, err := k.PublicArmored()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readAll(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var _ = bytes.Equal
var _ = io.EOF
var _ = context.Background
