package sign

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// TestSignRpmbuildFixtures: packages rpmbuild makes from testdata/specs
// (payload digest, reserved space) are signed in place.
func TestSignRpmbuildFixtures(t *testing.T) {
	needTool(t, "rpmbuild")
	specs, err := filepath.Glob(filepath.Join("..", "testdata", "specs", "*.spec"))
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) == 0 {
		t.Fatal("no specs in ../testdata/specs")
	}
	top := t.TempDir()
	for _, s := range specs {
		abs, err := filepath.Abs(s)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("rpmbuild", "-bb", "--define", "_topdir "+top, abs).CombinedOutput(); err != nil {
			t.Fatalf("rpmbuild %s: %v\n%s", s, err, out)
		}
	}
	rpms, err := filepath.Glob(filepath.Join(top, "RPMS", "*", "*.rpm"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rpms) == 0 {
		t.Fatal("rpmbuild made nothing")
	}
	k := testKey(t, "rsa4096")
	for _, r := range signAll(t, k, rpms) {
		if !r.InPlace || r.Action != ActionSigned {
			t.Errorf("%s: in place %v action %s", r.Path, r.InPlace, r.Action)
		}
	}
	db := newRPMDB(t, pubOf(t, k))
	for _, p := range rpms {
		db.assertSignedOK(t, p, k)
	}
}

// TestUnsupportedKeysRefused: ECDSA and v6 keys are refused on import,
// since rpm 4.18 cannot verify what they would sign.
func TestUnsupportedKeysRefused(t *testing.T) {
	for name, cfg := range map[string]*packet.Config{
		"ecdsa-p256":         {Algorithm: packet.PubKeyAlgoECDSA, Curve: packet.CurveNistP256, DefaultHash: crypto.SHA256},
		"v6-ed25519":         {Algorithm: packet.PubKeyAlgoEd25519, V6Keys: true, DefaultHash: crypto.SHA256},
		"v4-ed25519-rfc9580": {Algorithm: packet.PubKeyAlgoEd25519, DefaultHash: crypto.SHA256},
	} {
		e, err := openpgp.NewEntity("X", "", "x@example.test", cfg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var buf bytes.Buffer
		if err := e.SerializePrivate(&buf, cfg); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadKey(&buf, nil); !errors.Is(err, ErrUnsupportedKey) {
			t.Errorf("%s: err %v, want ErrUnsupportedKey", name, err)
		}
	}
	for _, junk := range [][]byte{nil, []byte("hello"), []byte("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nzzz\n-----END PGP PRIVATE KEY BLOCK-----\n")} {
		if _, err := ReadKey(bytes.NewReader(junk), nil); !errors.Is(err, ErrBadKey) {
			t.Errorf("junk %q: err %v, want ErrBadKey", junk, err)
		}
	}
}

// TestVerifyReports checks VerifyFile against rpmkeys' verdicts.
func TestVerifyReports(t *testing.T) {
	a, b := testKey(t, "rsa4096"), testKey(t, "ed25519")
	dir := t.TempDir()
	p, err := testrpm.Write(dir, testrpm.Small(7))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rep, err := VerifyFile(ctx, p, []*Key{a})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || !rep.DigestsOK || len(rep.Signatures) != 0 {
		t.Errorf("unsigned: %+v", rep)
	}
	if rep.NEVRA != "bulk00007-1.0-1.el9.x86_64" {
		t.Errorf("NEVRA %q", rep.NEVRA)
	}
	signAll(t, a, []string{p})
	if rep, err = VerifyFile(ctx, p, []*Key{a}); err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Summary() != "digests signatures OK" || rep.Signatures[0].KeyID != a.KeyID() {
		t.Errorf("signed: %+v", rep)
	}
	if rep, err = VerifyFile(ctx, p, []*Key{b}); err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.Signatures[0].Status != "NOKEY" {
		t.Errorf("other key: %+v", rep)
	}
	// Tamper with the main header: signature and digests must fail.
	data := readAll(t, p)
	pk := mustReadPkg(t, p)
	data[pk.payloadOff-30] ^= 1
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if rep, err = VerifyFile(ctx, p, []*Key{a}); err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.DigestsOK || rep.Signatures[0].Status != "BAD" {
		t.Errorf("tampered: %+v", rep)
	}
	db := newRPMDB(t, pubOf(t, a))
	if sum := db.checksigSummary(t, p); !strings.Contains(sum, "NOT OK") {
		t.Errorf("rpmkeys accepted the tampered package: %s", sum)
	}
}

type countProgress struct {
	mu    sync.Mutex
	total int
	done  []Result
}

func (c *countProgress) Start(n int) { c.total = n }
func (c *countProgress) Done(r Result) {
	c.mu.Lock()
	c.done = append(c.done, r)
	c.mu.Unlock()
}

// TestSignBatchesProgressDryRunDuplicates covers batching, progress, dry
// runs, duplicate paths and a cancelled context.
func TestSignBatchesProgressDryRunDuplicates(t *testing.T) {
	k := testKey(t, "ed25519")
	dir := t.TempDir()
	paths, err := testrpm.Corpus(context.Background(), dir, 25)
	if err != nil {
		t.Fatal(err)
	}
	before := map[string][]byte{}
	for _, p := range paths {
		before[p] = readAll(t, p)
	}
	s, err := NewSigner(k, WithDryRun(true))
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.SignFiles(context.Background(), paths)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil || r.Action != ActionSigned || !bytes.Equal(before[r.Path], readAll(t, r.Path)) {
			t.Fatalf("dry run: %+v", r)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s, err = NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SignFiles(ctx, paths); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	for _, p := range paths {
		if !bytes.Equal(before[p], readAll(t, p)) {
			t.Fatalf("cancelled run changed %s", p)
		}
	}
	prog := &countProgress{}
	s, err = NewSigner(k, WithBatchSize(7), WithWorkers(3), WithProgress(prog))
	if err != nil {
		t.Fatal(err)
	}
	withDup := append(append([]string(nil), paths...), paths[0], paths[3])
	res, err = s.SignFiles(context.Background(), withDup)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Path, r.Err)
		}
	}
	if prog.total != len(withDup) || len(prog.done) != len(withDup) {
		t.Fatalf("progress %d/%d", len(prog.done), prog.total)
	}
	db := newRPMDB(t, pubOf(t, k))
	for _, p := range paths {
		db.assertSignedOK(t, p, k)
	}
	left, err := filepath.Glob(filepath.Join(dir, ".*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}

// TestSignThroughSymlink: the link stays a link, its target gets signed.
func TestSignThroughSymlink(t *testing.T) {
	k := testKey(t, "ed25519")
	dir := t.TempDir()
	p, err := testrpm.Write(dir, testrpm.Small(2))
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link.rpm")
	if err := os.Symlink(p, link); err != nil {
		t.Fatal(err)
	}
	signAll(t, k, []string{link})
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("link replaced: %v %v", err, st.Mode())
	}
	newRPMDB(t, pubOf(t, k)).assertSignedOK(t, p, k)
}
