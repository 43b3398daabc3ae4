package sign

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// Two hard links to one package in one call are one file: it is signed
// once and both paths report the same result, instead of the second
// patch tripping over the first ("file changed while signing").
func TestSignFilesHardLinksOnce(t *testing.T) {
	dir := t.TempDir()
	a, err := testrpm.Write(dir, testrpm.Small(7))
	if err != nil {
		t.Fatal(err)
	}
	k := testKey(t, "rsa3072")
	s, err := NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	// First signature rewrites the file (rpmpack leaves no reserved
	// space); link only afterwards, so the second run patches in place.
	if _, err := s.SignFile(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	other := testKey(t, "ed25519")
	s2, err := NewSigner(other)
	if err != nil {
		t.Fatal(err)
	}
	b := filepath.Join(dir, "link.rpm")
	if err := os.Link(a, b); err != nil {
		t.Fatal(err)
	}
	res, err := s2.SignFiles(context.Background(), []string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil || r.Action != ActionReplaced {
			t.Errorf("%s: action %q, err %v; want replaced", r.Path, r.Action, r.Err)
		}
	}
	db := newRPMDB(t, pubOf(t, other))
	db.assertSignedOK(t, a, other)
	db.assertSignedOK(t, b, other)
}
