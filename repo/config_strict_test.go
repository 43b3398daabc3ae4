package repo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// badConfigs are config files every command must refuse, each with the
// line and key its first problem must name. Every section has its unknown
// key; wrong types and bad durations must say where they are too.
var badConfigs = []struct {
	name string
	body string
	line int
	key  string
}{
	{"unknown top-level key", "repos = [\"main\"]\nrepo = \"x\"\n", 2, "repo"},
	{"unknown [paths] key", "[paths]\nrepo = \"repo\"\ndbb = \"x\"\n", 3, "paths.dbb"},
	{"unknown [http] key", "[http]\nlisten = \"off\"\n# a comment = 1\nmax_conections = 5\n", 4, "http.max_conections"},
	{"unknown [signing] key", "[signing]\nalgo = \"ed25519\"\npassphrase = \"hunter2\"\n", 3, "signing.passphrase"},
	{"unknown [publish] key", "[publish]\ncompresion = \"gz\"\n", 2, "publish.compresion"},
	{"unknown [routing] key", "[routing]\ndefault = \"common\"\nnoarh = \"common\"\n", 3, "routing.noarh"},
	{"unknown [[route]] key", "[[route]]\nmatch = 'a'\nrelease = \"el/7\"\n[[route]]\nmatch = 'b'\nrelase = \"el/7\"\n", 6, "route.relase"},
	{"unknown [releases.X] key", "[releases.\"el/9\"]\narches = [\"x86_64\"]\n\n[releases.\"el/8\"]\narchs = [\"x86_64\"]\n", 5, `releases."el/8".archs`},
	{"unknown [[dropin]] key", "[[dropin]]\ndir = \"incoming\"\n[[dropin]]\ndir = \"other\"\nchanel = \"prod\"\n", 5, "dropin.chanel"},
	{"unknown [daemon] key", "[daemon]\nsettel = \"1s\"\n", 2, "daemon.settel"},
	{"unknown [metrics] key", "[metrics]\nlisten = \"off\"\nlistne = \"x\"\n", 3, "metrics.listne"},
	{"unknown [upgrade] key", "[upgrade]\nknwon_hosts = \"/x\"\n", 2, "upgrade.knwon_hosts"},
	{"unknown [upgrade.health] key", "[upgrade]\nuser = \"root\"\n[upgrade.health]\nurll = \"http://x/\"\n", 4, "upgrade.health.urll"},
	{"unknown key of an upgrade host", "[[upgrade.groups]]\nname = \"g\"\n  [[upgrade.groups.hosts]]\n  name = \"a\"\n  adress = \"10.0.0.1\"\n", 5, "upgrade.groups.hosts.adress"},
	{"unknown key in an inline table", "[[upgrade.groups]]\nname = \"g\"\nhosts = [\n  {name = \"a\"},\n  {name = \"b\", adress = \"x\"},\n]\n", 5, "upgrade.groups.hosts.adress"},
	{"unknown section", "repos = [\"main\"]\n\n[publsh]\ncompression = \"gz\"\n", 3, "publsh"},
	{"unknown dotted key", "publish.compresion = \"gz\"\n", 1, "publish.compresion"},
	{"after a multi-line string", "[upgrade.commands]\nrestart = \"\"\"\nfake = 1\n\"\"\"\nrestrat = \"x\"\n", 5, "upgrade.commands.restrat"},
	{"wrong type at top level", "repos = 5\n", 1, "repos"},
	{"wrong type in a section", "[http]\nlisten = \"off\"\nmax_connections = \"many\"\n", 3, "http.max_connections"},
	{"wrong type in [upgrade]", "[upgrade]\nport = \"22\"\n", 2, "upgrade.port"},
	{"bad duration settle", "[daemon]\n\nsettle = \"5 seconds\"\n", 3, "daemon.settle"},
	{"bad duration idle_timeout", "[http]\nidle_timeout = \"-1s\"\n", 2, "http.idle_timeout"},
	{"bad duration in [upgrade]", "[upgrade]\nconnect_timeout = \"10x\"\n", 2, "upgrade.connect_timeout"},
	{"bad file mode", "[publish]\nfile_mode = \"0999\"\n", 2, "publish.file_mode"},
	{"unusable dir mode", "[publish]\ndir_mode = \"0644\"\n", 2, "publish.dir_mode"},
	{"syntax error", "repos = [\n", 1, "repos"},
	{"bad value", "[publish]\n\ncompression = \"lzma\"\n", 3, "publish.compression"},
	{"bad route regexp", "[[route]]\nmatch = 'a'\nrelease = \"el/7\"\n[[route]]\nmatch = '('\nrelease = \"el/7\"\n", 5, "route.match"},
	{"overlapping drop-in", "[[dropin]]\ndir = \"incoming\"\n[[dropin]]\ndir = \"spool\"\n", 4, "dropin"},
}

func TestConfigStrictErrors(t *testing.T) {
	for _, tc := range badConfigs {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			file := filepath.Join(root, ConfigFileName)
			if err := os.WriteFile(file, []byte(tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(root, "")
			if !errors.Is(err, ErrConfigFile) || !errors.Is(err, ErrBadConfig) {
				t.Fatalf("LoadConfig: %v, want ErrConfigFile and ErrBadConfig", err)
			}
			ps := ConfigProblems(err)
			if len(ps) == 0 {
				t.Fatalf("no *ConfigError in %v", err)
			}
			if ps[0].File != file || ps[0].Line != tc.line || ps[0].Key != tc.key {
				t.Errorf("first problem at %s:%d key %q (%v), want %s:%d key %q", ps[0].File, ps[0].Line, ps[0].Key, err, file, tc.line, tc.key)
			}
			if want := fmt.Sprintf("%s:%d: ", file, tc.line); !strings.Contains(err.Error(), want) {
				t.Errorf("%q does not name %q", err, want)
			}
		})
	}
}

// An unknown table is one problem, not one per key in it; every unknown key
// elsewhere is reported, each on its own line.
func TestConfigUnknownKeysAll(t *testing.T) {
	root := t.TempDir()
	body := "[publsh]\ncompression = \"gz\"\nworkers = 2\n[paths]\nrep = \"x\"\n[[route]]\nmatch = 'a'\nrelease = \"el/7\"\nx = 1\n[[route]]\nmatch = 'b'\nrelease = \"el/7\"\nx = 2\n"
	file := filepath.Join(root, "c.toml")
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(root, file)
	var got []string
	for _, p := range ConfigProblems(err) {
		got = append(got, fmt.Sprintf("%d %s", p.Line, p.Key))
	}
	want := []string{"1 publsh", "5 paths.rep", "9 route.x", "13 route.x"}
	if !slices.Equal(got, want) {
		t.Errorf("problems %q, want %q (%v)", got, want, err)
	}
	if !strings.Contains(err.Error(), `unknown key "paths.rep" (did you mean "paths.repo"?)`) {
		t.Errorf("no suggestion in %v", err)
	}
}

// Keys in strings, comments and multi-line values are not keys.
func TestScanKeyLines(t *testing.T) {
	src := `# top = 1
a = "x = 1" # b = 2
ml = """
c = 3
"""
lit = '''
d = 4'''
arr = [
  1, # e = 5
  "f = 6",
]
[t."q.k"]
'x.y' = { g = 1, h = { i = 2 } }
[[u]]
j = 1
[[u]]
j = 2
`
	got := scanKeyLines(src)
	want := map[string][]int{
		"a": {2}, "ml": {3}, "lit": {6}, "arr": {8}, `t."q.k"`: {12},
		`t."q.k"."x.y"`: {13}, `t."q.k"."x.y".g`: {13}, `t."q.k"."x.y".h`: {13}, `t."q.k"."x.y".h.i`: {13},
		"u": {14, 16}, "u.j": {15, 17},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("scanKeyLines:\n got %v\nwant %v", got, want)
	}
	// The keys the scanner finds are the keys the decoder finds.
	var m map[string]any
	md, err := toml.Decode(src, &m)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range md.Keys() {
		if _, ok := got[k.String()]; !ok {
			t.Errorf("decoder key %q not found by the scanner", k)
		}
	}
}

func TestConfigLookupOrder(t *testing.T) {
	dir := t.TempDir()
	sys := filepath.Join(dir, "etc-repoctl.toml")
	if err := os.WriteFile(sys, []byte("repos = [\"sys\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := systemConfigFile
	systemConfigFile = sys
	t.Cleanup(func() { systemConfigFile = old })

	root := t.TempDir()
	c, err := LoadConfig(root, "")
	if err != nil || c.File != sys || c.Repos[0] != "sys" {
		t.Fatalf("without ROOT/repoctl.toml: %v %+v, want the system file", err, c)
	}
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte("repos = [\"root\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err = LoadConfig(root, ""); err != nil || c.File != filepath.Join(root, ConfigFileName) || c.Repos[0] != "root" {
		t.Fatalf("with ROOT/repoctl.toml: %v %+v, want it", err, c)
	}
	explicit := filepath.Join(dir, "explicit.toml")
	if err := os.WriteFile(explicit, []byte("repos = [\"explicit\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err = LoadConfig(root, explicit); err != nil || c.File != explicit || c.Repos[0] != "explicit" {
		t.Fatalf("explicit file: %v %+v", err, c)
	}
	if _, err = LoadConfig(root, filepath.Join(dir, "missing.toml")); !errors.Is(err, ErrConfigFile) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing explicit file: %v, want ErrConfigFile wrapping ErrNotExist", err)
	}
	systemConfigFile = filepath.Join(dir, "none.toml")
	if c, err = LoadConfig(t.TempDir(), ""); err != nil || c.File != "" {
		t.Errorf("nothing to find: %v %+v, want the defaults", err, c)
	}
}

// The documented files are valid, and the example sets every key the
// defaults have: a key added to Config must be documented there.
func TestConfigExamplesValid(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"../testdata/repoctl.example.toml", "../upgrade/testdata/upgrade.example.toml"} {
		if _, err := LoadConfig(root, f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	def, err := LoadConfig(root, "")
	if err != nil {
		t.Fatal(err)
	}
	want, err := flattenConfig(def)
	if err != nil {
		t.Fatal(err)
	}
	var ex map[string]any
	if _, err := toml.DecodeFile("../testdata/repoctl.example.toml", &ex); err != nil {
		t.Fatal(err)
	}
	have := flattenTOML(ex)
	var missing []string
	for k := range want {
		if _, ok := have[k]; !ok {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("testdata/repoctl.example.toml lacks %v", missing)
	}
}

func TestConfigShowAndCheck(t *testing.T) {
	root := t.TempDir()
	body := "[publish]\ncompression = \"gz\"\n[signing]\npassphrase_file = \"secret.pass\"\n[upgrade]\nuser = \"deploy\"\n[[upgrade.hosts]]\nname = \"app1\"\n"
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	// The passphrase file is unreadable: show and check must not need it.
	if err := os.WriteFile(filepath.Join(root, "secret.pass"), []byte("hunter2\n"), 0o000); err != nil {
		t.Fatal(err)
	}
	ec, err := ShowConfig(root, "")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ec.TOML, "hunter2") || !strings.Contains(ec.TOML, `passphrase_file = "`+filepath.Join(root, "secret.pass")+`"`) ||
		!strings.Contains(ec.TOML, `compression = "gz"`) || !strings.Contains(ec.TOML, `file_mode = "0644"`) || !strings.Contains(ec.TOML, `user = "deploy"`) {
		t.Errorf("show:\n%s", ec.TOML)
	}
	if pub, _ := ec.Config["publish"].(map[string]any); pub["changelog_limit"] != int64(10) {
		t.Errorf("show as data: publish = %v, want the default changelog_limit", ec.Config["publish"])
	}
	// What show prints is a valid config that means the same.
	again := filepath.Join(t.TempDir(), "shown.toml")
	if err := os.WriteFile(again, []byte(ec.TOML), 0o644); err != nil {
		t.Fatal(err)
	}
	c1, err := LoadConfig(root, again)
	if err != nil {
		t.Fatalf("shown config does not load: %v\n%s", err, ec.TOML)
	}
	c2, err := LoadConfig(root, "")
	if err != nil {
		t.Fatal(err)
	}
	c1.File, c2.File = "", ""
	if !reflect.DeepEqual(c1, c2) {
		t.Errorf("shown config differs:\n%+v\n%+v", c1, c2)
	}
	res, err := CheckConfig(root, "")
	if err != nil || res.Upgrade == nil || res.Upgrade.Hosts != 1 {
		t.Fatalf("check: %+v %v, want one upgrade host", res, err)
	}
	if _, err := os.Stat(filepath.Join(root, "repoctl.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("check or show created the store: %v", err)
	}
	// An [upgrade] section that does not resolve fails the check.
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte("[upgrade]\nnot_idempotent = [\"reboot\"]\n[[upgrade.hosts]]\nname = \"a\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckConfig(root, ""); !errors.Is(err, ErrConfigFile) || !strings.Contains(err.Error(), "reboot") {
		t.Errorf("check of a bad inventory: %v", err)
	}
}

// A config file is read up to maxConfigSize bytes, that size included; a
// larger one is refused rather than cut short, which would silently drop
// its last keys.
func TestConfigSizeCap(t *testing.T) {
	tail := "[publish]\ncompression = \"gz\"\n"
	body := func(size int) []byte {
		pad := size - len(tail) - len("#\n")
		return []byte("#" + strings.Repeat("x", pad) + "\n" + tail)
	}
	root := t.TempDir()
	file := filepath.Join(root, "c.toml")
	if err := os.WriteFile(file, body(maxConfigSize), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(root, file)
	if err != nil {
		t.Fatalf("a config of exactly %d bytes: %v", maxConfigSize, err)
	}
	if cfg.Publish.Compression != "gz" {
		t.Fatalf("the last key of a %d-byte config was lost: compression %q", maxConfigSize, cfg.Publish.Compression)
	}
	if err := os.WriteFile(file, body(maxConfigSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(root, file); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("larger than %d bytes", maxConfigSize)) {
		t.Fatalf("a config of %d bytes: %v, want it refused as larger than %d", maxConfigSize+1, err, maxConfigSize)
	}
}
