package repo

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestConfigDefaults(t *testing.T) {
	root := t.TempDir()
	c, err := LoadConfig(root, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.File != "" || c.DefaultRepo != "main" || c.DefaultChannel != "staging" ||
		!reflect.DeepEqual(c.Channels, []string{"staging", "prod"}) ||
		c.Paths.DB != filepath.Join(root, "repoctl.db") || c.Paths.Repo != filepath.Join(root, "repo") ||
		c.HTTP.Listen != "127.0.0.1:8080" || c.HTTP.PublicURL != "http://127.0.0.1:8080/" ||
		c.KeyPath() != filepath.Join(root, "keys", "signing.asc") ||
		len(c.DropIns) != 1 || c.DropIns[0].Dir != filepath.Join(root, "incoming") ||
		c.Publish.Compression != "zstd" || c.Publish.ChangelogLimit != 10 {
		t.Errorf("defaults: %+v", c)
	}
	if _, err := LoadConfig(root, filepath.Join(root, "nope.toml")); err == nil {
		t.Error("an explicit --config that is missing must fail")
	}
}

// The documented example must be exactly the defaults.
func TestConfigExampleIsDefaults(t *testing.T) {
	root := t.TempDir()
	ex, err := LoadConfig(root, filepath.Join("..", "testdata", "repoctl.example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	def, err := LoadConfig(root, "")
	if err != nil {
		t.Fatal(err)
	}
	ex.File = ""
	if !reflect.DeepEqual(ex, def) {
		t.Errorf("example differs from defaults:\nexample  %+v\ndefaults %+v", ex, def)
	}
}

func TestRouting(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(`
[[route]]
match = '\.amzn2(\.|$)'
release = "el/7"
[releases."el/5"]
arches = ["i386", "x86_64"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(root, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		release, arch string
		rel           string
		dirs          []string
		err           error
	}{
		{"1.el9", "x86_64", "el/9", []string{"x86_64"}, nil},
		{"3.el9_2", "aarch64", "el/9", []string{"aarch64"}, nil},
		{"2.el7.centos", "noarch", "el/7", []string{"x86_64", "aarch64"}, nil},
		{"1.fc40", "src", "fc/40", []string{"SRPMS"}, nil},
		{"5.el5", "i386", "el/5", []string{"i386"}, nil},
		{"5.el5", "noarch", "el/5", []string{"i386", "x86_64"}, nil},
		{"1.amzn2", "x86_64", "el/7", []string{"x86_64"}, nil},
		{"1.el9", "ppc64le", "", nil, ErrUnroutable},
		{"1", "x86_64", "common", []string{"x86_64"}, nil},
		{"1", "noarch", "common", []string{"x86_64", "aarch64", "i386"}, nil},
		{"1.elephant9", "x86_64", "common", []string{"x86_64"}, nil}, // no dist tag
	} {
		rel, dirs, err := c.Route(tc.release, tc.arch, false)
		if !errors.Is(err, tc.err) || rel != tc.rel || !reflect.DeepEqual(dirs, tc.dirs) {
			t.Errorf("Route(%q, %q) = %q %v %v; want %q %v %v", tc.release, tc.arch, rel, dirs, err, tc.rel, tc.dirs, tc.err)
		}
	}
}

// malformedConfigs are files that must be refused with ErrBadConfig.
var malformedConfigs = map[string]string{
	"syntax":             "repos = [",
	"bad repo name":      `repos = ["../evil"]`,
	"unknown default":    `default_repo = "other"`,
	"bad channel":        `channels = ["a/b"]`,
	"unknown channel":    `default_channel = "qa"`,
	"bad compression":    "[publish]\ncompression = \"lzma\"",
	"bad listen":         "[http]\nlisten = \"nonsense\"",
	"bad regexp":         "[[route]]\nmatch = \"(\"\nrelease = \"el/9\"",
	"bad route release":  "[[route]]\nmatch = \"x\"\nrelease = \"../x\"",
	"bad arch":           "[releases.\"el/9\"]\narches = [\"SRPMS\"]",
	"dropin unknown":     "[[dropin]]\ndir = \"x\"\nrepo = \"nope\"",
	"wrong type":         "repos = 5",
	"bad default route":  "[routing]\ndefault = \"/abs\"",
	"bad release key":    "[releases.\"..\"]\narches = [\"x86_64\"]",
	"bad default arches": "[routing]\ndefault_arches = [\"noarch\"]",
}

func TestConfigMalformed(t *testing.T) {
	for name, body := range malformedConfigs {
		root := t.TempDir()
		if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadConfig(root, "")
		if !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: %v, want ErrBadConfig", name, err)
		}
	}
}

func FuzzLoadConfig(f *testing.F) {
	for _, s := range malformedConfigs {
		f.Add(s)
	}
	ex, err := os.ReadFile(filepath.Join("..", "testdata", "repoctl.example.toml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(ex))
	root := f.TempDir()
	f.Fuzz(func(t *testing.T, body string) {
		file := filepath.Join(root, "fuzz.toml")
		if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(root, file)
		if err != nil {
			if !errors.Is(err, ErrBadConfig) {
				t.Fatalf("non-sentinel error: %v", err)
			}
			return
		}
		for _, r := range c.Repos {
			if strings.Contains(r, "/") || strings.HasPrefix(r, ".") {
				t.Fatalf("accepted repository name %q", r)
			}
		}
		// An accepted config routes a package, or says it cannot.
		if _, _, err := c.Route("1.el9", "noarch", false); err != nil && !errors.Is(err, ErrUnroutable) {
			t.Fatalf("routing with an accepted config: %v", err)
		}
	})
}
