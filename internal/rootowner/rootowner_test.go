package rootowner

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	mine := t.TempDir()
	if err := Check(mine); err != nil {
		t.Errorf("own directory: %v", err)
	}
	if err := Check(filepath.Join(mine, "missing")); err != nil {
		t.Errorf("a root that does not exist yet: %v", err)
	}
	other := t.TempDir()
	// 65534 is nobody on Debian; the test runs as root, as CI does.
	if err := os.Chown(other, 65534, 65534); err != nil {
		t.Fatalf("chown (this test needs root): %v", err)
	}
	err := Check(other)
	var e *Error
	if !errors.Is(err, ErrNotOwner) || !errors.As(err, &e) || e.OwnerUID != 65534 || e.UID != os.Geteuid() {
		t.Fatalf("someone else's directory: %#v", err)
	}
	owner := e.Owner
	if owner == "" {
		owner = "'#65534'"
	}
	if msg := err.Error(); !strings.Contains(msg, "sudo -u "+owner+" repoctl") || !strings.Contains(msg, other) {
		t.Errorf("message %q does not say how to run as the owner", msg)
	}
}
