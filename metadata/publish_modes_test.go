package metadata

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// WithModes sets the mode of every file of the new generation and of
// repodata/, also for files carried over from the previous one; without
// it files are 0644 less the umask, as before.
func TestPublishWithModes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	check := func(file, d os.FileMode) {
		t.Helper()
		rd := filepath.Join(dir, RepodataDir)
		if fi, err := os.Stat(rd); err != nil || fi.Mode().Perm() != d {
			t.Errorf("repodata/: %v %v, want %v", fi.Mode().Perm(), err, d)
		}
		ents, err := os.ReadDir(rd)
		if err != nil || len(ents) < 4 {
			t.Fatalf("repodata/: %v %v", ents, err)
		}
		for _, e := range ents {
			fi, err := e.Info()
			if err != nil || fi.Mode().Perm() != file {
				t.Errorf("%s: %v %v, want %v", e.Name(), fi.Mode().Perm(), err, file)
			}
		}
	}
	signer := WithSigner(func(context.Context, []byte) ([]byte, error) { return []byte("sig"), nil })
	if _, err := Publish(ctx, dir, fakeEntries(20, "a"), signer); err != nil {
		t.Fatal(err)
	}
	// A new generation with one document changed: the unchanged ones are
	// linked from the old generation and get the mode too.
	if _, err := Publish(ctx, dir, fakeEntries(21, "a"), signer, WithModes(0o640, 0o750)); err != nil {
		t.Fatal(err)
	}
	check(0o640, 0o750)
	if _, err := Publish(ctx, dir, fakeEntries(22, "a"), signer, WithModes(0o644, 0o755)); err != nil {
		t.Fatal(err)
	}
	check(0o644, 0o755)
	if _, err := Publish(ctx, dir, nil, WithModes(0o400, 0o755)); !errors.Is(err, ErrBadOption) {
		t.Errorf("a file mode the owner cannot write: %v, want ErrBadOption", err)
	}
}
