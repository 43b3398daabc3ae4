package repo

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// Drop-in directories that overlap what the pipeline writes would feed our
// own output back into it; the daemon refuses them at start.
func TestCheckDropIns(t *testing.T) {
	root := t.TempDir()
	for name, tc := range map[string]struct {
		toml string
		ok   bool
	}{
		"default":           {"", true},
		"two dirs":          {"[[dropin]]\ndir = \"incoming\"\n[[dropin]]\ndir = \"/srv/uploads\"\n", true},
		"rejected":          {"[[dropin]]\ndir = \"rejected\"\n", false},
		"inside repo":       {"[[dropin]]\ndir = \"repo/main\"\n", false},
		"above spool":       {"[[dropin]]\ndir = \".\"\n", false},
		"spool":             {"[[dropin]]\ndir = \"spool\"\n", false},
		"keys":              {"[[dropin]]\ndir = \"keys\"\n", false},
		"twice":             {"[[dropin]]\ndir = \"in\"\n[[dropin]]\ndir = \"in/\"\n", false},
		"sibling prefix ok": {"[[dropin]]\ndir = \"repo-uploads\"\n", true},
	} {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "repoctl.toml")
			if err := os.WriteFile(f, []byte(tc.toml), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadConfig(root, f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = checkDropIns(cfg)
			if tc.ok && err != nil {
				t.Errorf("refused: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrBadConfig) {
				t.Errorf("got %v, want ErrBadConfig", err)
			}
		})
	}
}
