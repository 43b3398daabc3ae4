package testrpm

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/repoctl/repoctl/internal/rpmhdr"
)

// TestRPM6DigestsAreRight: what RPM6 writes passes internal/rpmhdr and
// rpm 4.18's own checks (header SHA-256, payload SHA-256 and, for an
// uncompressed-equal payload, nothing BAD), carries no
// PAYLOADDIGESTALGO, and its ALT digest is over the decompressed payload.
func TestRPM6DigestsAreRight(t *testing.T) {
	dir := t.TempDir()
	for i, c := range []struct {
		comp string
		o    RPM6Options
		want []string
	}{
		{"zstd", RPM6Options{}, []string{"Header SHA256 digest: OK", "Payload SHA256 digest: OK"}},
		{"xz", RPM6Options{}, []string{"Header SHA256 digest: OK", "Payload SHA256 digest: OK"}},
		{"lzma", RPM6Options{}, []string{"Header SHA256 digest: OK", "Payload SHA256 digest: OK"}},
		{"gzip", RPM6Options{V4Format: true}, []string{"Header SHA256 digest: OK", "Header SHA1 digest: OK", "Payload SHA256 digest: OK", "MD5 digest: OK"}},
	} {
		s := Small(50 + i)
		s.Compressor = c.comp
		b, err := Build(s)
		if err != nil {
			t.Fatal(err)
		}
		out, err := RPM6(b, c.o)
		if err != nil {
			t.Fatal(err)
		}
		h, err := rpmhdr.Parse(out)
		if err != nil {
			t.Fatalf("%s: %v", c.comp, err)
		}
		if h.Main.Get(TagPayloadDigestAlgo) != nil {
			t.Errorf("%s: PAYLOADDIGESTALGO left", c.comp)
		}
		if f, _ := h.Main.Uint(TagRPMFormat); (f == 6) == c.o.V4Format {
			t.Errorf("%s: RPMFORMAT %d", c.comp, f)
		}
		p, err := Parse(out)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := p.Uncompressed()
		if err != nil || len(raw) == 0 {
			t.Fatalf("%s: decompress: %v", c.comp, err)
		}
		sum := sha256.Sum256(raw)
		if alt, _ := h.Main.String(TagPayloadSHA256Alt); alt != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: ALT digest %s is not over the uncompressed payload", c.comp, alt)
		}
		path := filepath.Join(dir, c.comp+".rpm")
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
		q, err := exec.Command("rpm", "-qp", "--nosignature", "--qf", "%{NAME}", path).CombinedOutput()
		if err != nil || string(q) != s.Name {
			t.Errorf("%s: rpm -qp: %v %q", c.comp, err, q)
		}
		k, err := exec.Command("rpmkeys", "-Kv", "--nosignature", path).CombinedOutput()
		if err != nil {
			t.Errorf("%s: rpmkeys: %v\n%s", c.comp, err, k)
		}
		for _, w := range c.want {
			if !strings.Contains(string(k), w) {
				t.Errorf("%s: rpmkeys lacks %q:\n%s", c.comp, w, k)
			}
		}
	}
}
