package repo

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestConfigRetainOldMD: [publish] retain_old_md defaults to 2, takes 0
// (keep no superseded generation), and refuses what is out of range.
func TestConfigRetainOldMD(t *testing.T) {
	for body, want := range map[string]int{"": 2, "[publish]\nretain_old_md = 0\n": 0, "[publish]\nretain_old_md = 5\n": 5} {
		root := t.TempDir()
		if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(root, "")
		if err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		if c.Publish.RetainOldMD == nil || *c.Publish.RetainOldMD != want {
			t.Errorf("%q: retain_old_md %v, want %d", body, c.Publish.RetainOldMD, want)
		}
	}
	for _, body := range []string{"[publish]\nretain_old_md = -1\n", "[publish]\nretain_old_md = 1001\n", "[publish]\nretain_old_md = \"2\"\n"} {
		root := t.TempDir()
		if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConfig(root, ""); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%q: %v, want ErrBadConfig", body, err)
		}
	}
}
