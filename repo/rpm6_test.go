package repo

import (
	"bytes"
	"context"
	"crypto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/repoctl/repoctl/internal/testrpm"
	"github.com/repoctl/repoctl/sign"
)

// TestAddRPM6Packages: packages as rpm 6 builds them (no
// PAYLOADDIGESTALGO, rpm 6 payload digests, RPMFORMAT 6, a v6 signature
// header, foreign v4 and OpenPGP v6 signatures in tag 278) go through
// add like any other: signed with the repository key, placed, listed in
// the repodata, accepted by rpmkeys 4.18, judged good for rpm 6 by
// verify, and installed by dnf with gpgcheck and repo_gpgcheck.
func TestAddRPM6Packages(t *testing.T) {
	needTools(t, "rpmkeys", "dnf")
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)

	v4, err := openpgp.NewEntity("Foreign", "", "foreign@example.test", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	v6, err := openpgp.NewEntity("Foreign V6", "", "v6@example.test", &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519})
	if err != nil {
		t.Fatal(err)
	}
	detach := func(e *openpgp.Entity, b []byte) []byte {
		var out bytes.Buffer
		if err := openpgp.DetachSign(&out, e, bytes.NewReader(b), &packet.Config{DefaultHash: crypto.SHA256}); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	in := t.TempDir()
	var paths []string
	for _, c := range []struct {
		name, arch, comp string
		o                testrpm.RPM6Options
	}{
		{"rpmsix", "x86_64", "zstd", testrpm.RPM6Options{}},
		{"rpmsix-signed", "x86_64", "zstd", testrpm.RPM6Options{Sign: func(m []byte) ([]byte, [][]byte, error) {
			s4 := detach(v4, m)
			return s4, [][]byte{s4, detach(v6, m)}, nil
		}}},
		{"rpmsix-data", "noarch", "xz", testrpm.RPM6Options{V4Format: true}},
	} {
		s := spec(c.name, "6.0", "1.el9", c.arch)
		s.Compressor = c.comp
		b, err := testrpm.Build(s)
		if err != nil {
			t.Fatal(err)
		}
		if b, err = testrpm.RPM6(b, c.o); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(in, s.FileName())
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	res, err := r.Add(ctx, paths, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(filepath.Join(root, "repo", PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	dbDir := t.TempDir()
	kf := filepath.Join(t.TempDir(), "key.asc")
	if err := os.WriteFile(kf, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("rpmkeys", "--dbpath", dbDir, "--import", kf).CombinedOutput(); err != nil {
		t.Fatalf("rpmkeys --import: %v\n%s", err, out)
	}
	short := r.Key().KeyID()[8:]
	for i, x := range res {
		if x.Action != ActionAdded || len(x.RepoPaths) == 0 {
			t.Fatalf("%s: %+v", paths[i], x)
		}
		for _, rp := range x.RepoPaths {
			f := filepath.Join(root, "repo", rp)
			out, err := exec.Command("rpmkeys", "--dbpath", dbDir, "-Kv", f).CombinedOutput()
			for _, want := range []string{"Signature, key ID " + short + ": OK", "Header SHA256 digest: OK", "Payload SHA256 digest: OK"} {
				if err != nil || !strings.Contains(string(out), want) {
					t.Errorf("rpmkeys -Kv %s lacks %q: %v\n%s", rp, want, err, out)
				}
			}
			if strings.Contains(string(out), "NOKEY") || strings.Contains(string(out), "BAD") {
				t.Errorf("rpmkeys -Kv %s:\n%s", rp, out)
			}
			rep, err := sign.VerifyFile(ctx, f, []*sign.Key{r.Key()})
			if err != nil || !rep.RPM4OK || !rep.RPM6OK {
				t.Errorf("verify %s: %v %+v", rp, err, rep)
			}
		}
	}
	x86 := mustPkgs(t, filepath.Join(root, "repo/main/staging/el/9/x86_64"))
	for _, want := range []string{"rpmsix-6.0-1.el9.x86_64", "rpmsix-signed-6.0-1.el9.x86_64", "rpmsix-data-6.0-1.el9.noarch"} {
		if _, ok := x86[want]; !ok {
			t.Errorf("el/9/x86_64 repodata lacks %s: %v", want, keys(x86))
		}
	}
	f, err := r.RepoFile(ctx, RepoFileOptions{Channel: "staging", Release: "el/9", BaseURL: "file://" + filepath.Join(root, "repo") + "/"})
	if err != nil {
		t.Fatal(err)
	}
	dnfInstall(t, f.Render(), "rpmsix-signed")
}
