package metadata

import (
	"bytes"
	"crypto"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// TestRepodataMatchesCreaterepoCRPM6: packages in rpm 6's format (no
// PAYLOADDIGESTALGO, rpm 6 payload digests, RPMFORMAT 6, a v6 signature
// header with RESERVED 999 and OpenPGP v6 signatures in tag 278) give
// the repodata createrepo_c 0.17.3 gives, header range included.
func TestRepodataMatchesCreaterepoCRPM6(t *testing.T) {
	e, err := openpgp.NewEntity("V6", "", "v6@example.test", &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(main []byte) ([]byte, [][]byte, error) {
		var b bytes.Buffer
		err := openpgp.DetachSign(&b, e, bytes.NewReader(main), &packet.Config{DefaultHash: crypto.SHA512})
		return nil, [][]byte{b.Bytes()}, err
	}
	dir := t.TempDir()
	for i, c := range []struct {
		comp string
		o    testrpm.RPM6Options
	}{
		{"zstd", testrpm.RPM6Options{}},
		{"xz", testrpm.RPM6Options{Sign: sign}},
		{"gzip", testrpm.RPM6Options{V4Format: true}},
		{"zstd", testrpm.RPM6Options{Sign: sign, Reserved: 64}},
	} {
		s := testrpm.Small(900 + i)
		s.Compressor = c.comp
		b, err := testrpm.Build(s)
		if err != nil {
			t.Fatal(err)
		}
		if b, err = testrpm.RPM6(b, c.o); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, s.FileName())
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		mt := time.Unix(1700000000+int64(i), 0)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	// createrepo_c reads them all (it could have skipped them, and so
	// would the comparison below have passed on four missing packages).
	if n := bytes.Count(oracleRepodata(t, dir).primary, []byte("<package type=\"rpm\">")); n != 4 {
		t.Fatalf("createrepo_c listed %d of 4 packages", n)
	}
	assertSameRepodata(t, dir, RenderOptions{})
}
