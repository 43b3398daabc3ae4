package sign

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// A package that someone else re-signs between our read and our in-place
// write keeps their signature: the write checks the signature area is
// still what it read, and refuses instead of overwriting it.
func TestSignInPlaceRefusesFileChangedSinceRead(t *testing.T) {
	ctx := context.Background()
	p, err := testrpm.Write(t.TempDir(), testrpm.Small(11))
	if err != nil {
		t.Fatal(err)
	}
	// The first signature rewrites the file with reserved space, so the
	// later ones patch it in place.
	first, err := NewSigner(testKey(t, "rsa3072"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.SignFile(ctx, p); err != nil {
		t.Fatal(err)
	}
	ours, err := NewSigner(testKey(t, "ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	pl, err := ours.prepare(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if !pl.inPlace || pl.action != ActionReplaced {
		t.Fatalf("prepare: in place %v, action %q; want an in-place replace", pl.inPlace, pl.action)
	}
	otherKey, err := GenerateKey("ed25519", "Other Signer", "other@example.test")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewSigner(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	r, err := other.SignFile(ctx, p)
	if err != nil || r.Err != nil || !r.InPlace {
		t.Fatalf("the other signer: %+v, %v; want an in-place signature", r, err)
	}
	theirs := readAll(t, p)

	err = ours.patch(pl, false)
	if err == nil || !strings.Contains(err.Error(), "file changed while signing") {
		t.Fatalf("patch after the file changed: %v, want \"file changed while signing\"", err)
	}
	if !bytes.Equal(readAll(t, p), theirs) {
		t.Fatal("the refused patch changed the file")
	}
	newRPMDB(t, pubOf(t, otherKey)).assertSignedOK(t, p, otherKey)
}
