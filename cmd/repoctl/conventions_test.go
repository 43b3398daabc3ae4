package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// convRoot is a root with a fast (ed25519) key and one package,
// conv-1.0-1.el9.noarch, in staging and prod; pkg is a copy of its file
// outside the root.
type convRoot struct {
	dir, root, pkg string
}

const convNEVRA = "conv-1.0-1.el9.noarch"

func newConvRoot(t *testing.T) *convRoot {
	t.Helper()
	dir := t.TempDir()
	c := &convRoot{dir: dir, root: filepath.Join(dir, "root")}
	if err := os.MkdirAll(c.root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.root, "repoctl.toml"), []byte("[signing]\nalgo = \"ed25519\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "in")
	if err := os.MkdirAll(in, 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := testrpm.Write(in, testrpm.Spec{Name: "conv", Version: "1.0", Release: "1.el9", Arch: "noarch", Summary: "t", License: "MIT",
		Files: []testrpm.File{{Name: "/usr/share/conv/a", Body: []byte("a")}}})
	if err != nil {
		t.Fatal(err)
	}
	c.pkg = p
	if o, e, code := runIn(t, c.root, "add", p); code != 0 {
		t.Fatalf("add: exit %d\n%s%s", code, o, e)
	}
	if o, e, code := runIn(t, c.root, "promote", convNEVRA, "--to", "prod", "--yes"); code != 0 {
		t.Fatalf("promote: exit %d\n%s%s", code, o, e)
	}
	return c
}

// fresh is a new empty directory below the fixture.
func (c *convRoot) fresh(t *testing.T, name string) string {
	t.Helper()
	d, err := os.MkdirTemp(c.dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// copyPkg is a copy of the package file in a new directory.
func (c *convRoot) copyPkg(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(c.pkg)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(c.fresh(t, "pkg"), filepath.Base(c.pkg))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// convCase says how to run one command for the conformance test: ok is an
// invocation that succeeds (exit 0) on the fixture; a command that cannot
// succeed here without app hosts or a long-running process has fail, an
// invocation that fails after its command line was accepted, with the
// exit code it must give, and why says why.
type convCase struct {
	ok   func(t *testing.T, c *convRoot) []string
	fail func(t *testing.T, c *convRoot) ([]string, int)
	why  string
}

func convCases() map[string]convCase {
	args := func(a ...string) func(*testing.T, *convRoot) []string {
		return func(*testing.T, *convRoot) []string { return a }
	}
	return map[string]convCase{
		"add":              {ok: func(t *testing.T, c *convRoot) []string { return []string{c.pkg} }}, // unchanged
		"list":             {ok: args("conv*", "--channel", "prod", "--arch", "noarch", "--release", "el/9")},
		"show":             {ok: args(convNEVRA)},
		"status":           {ok: args()},
		"history":          {ok: args()},
		"remove":           {ok: args("--dry-run", convNEVRA)},
		"repofile":         {ok: args()},
		"promote":          {ok: args(convNEVRA, "--from", "staging", "--to", "prod", "--dry-run")},
		"fsck":             {ok: args()},
		"republish":        {ok: args("--dry-run")},
		"channel log":      {ok: args("prod")},
		"channel show":     {ok: args("prod", "1")},
		"channel diff":     {ok: args("staging", "1")},
		"channel rollback": {ok: args("prod", "--to", "1", "--dry-run")},
		"prune":            {ok: args("--keep", "1", "--dry-run")},
		"createrepo":       {ok: func(t *testing.T, c *convRoot) []string { return []string{filepath.Dir(c.copyPkg(t))} }},
		"sign": {ok: func(t *testing.T, c *convRoot) []string {
			return []string{"--dry-run", "--key", filepath.Join(c.root, "keys/signing.asc"), c.copyPkg(t)}
		}},
		"verify": {ok: func(t *testing.T, c *convRoot) []string {
			return []string{"--key", filepath.Join(c.root, "keys/signing.pub.asc"), filepath.Join(c.root, "repo/main/prod/el/9/x86_64", convNEVRA+".rpm")}
		}},
		"key generate": {ok: func(t *testing.T, c *convRoot) []string {
			return []string{"--algo", "ed25519", "--name", "Conv Test", "--email", "conv@example.com", "--out", c.fresh(t, "keys")}
		}},
		"key import": {ok: func(t *testing.T, c *convRoot) []string {
			return []string{"--out", c.fresh(t, "keys"), filepath.Join(c.root, "keys/signing.asc")}
		}},
		"key export": {ok: args()},
		"key list":   {ok: args()},
		"key status": {ok: args()},
		"key rotate": {ok: args("--dry-run")},
		"key retire": {fail: func(t *testing.T, c *convRoot) ([]string, int) {
			return []string{"--dry-run", convKeyID(t, c)}, exitRejected
		},
			why: "only a key a rotation replaced can be retired; the active one is refused with exit 3"},
		"rollout list": {ok: args()},
		"rollout status": {fail: func(*testing.T, *convRoot) ([]string, int) { return nil, exitError },
			why: "a rollout needs app hosts; TestRolloutResumeAsks makes one"},
		"rollout resume": {fail: func(*testing.T, *convRoot) ([]string, int) { return []string{"--yes"}, exitError },
			why: "a rollout needs app hosts; TestRolloutResumeAsks resumes one"},
		"rollout abort": {fail: func(*testing.T, *convRoot) ([]string, int) { return nil, exitError },
			why: "a rollout needs app hosts"},
		"daemon": {fail: func(*testing.T, *convRoot) ([]string, int) { return []string{"--log-format", "xml"}, exitUsage },
			why: "the daemon runs until stopped and prints no result"},
		"version":       {ok: args()},
		"gen-man":       {ok: func(t *testing.T, c *convRoot) []string { return []string{c.fresh(t, "man")} }},
		"rejected list": {ok: args()},
		"rejected show": {fail: func(*testing.T, *convRoot) ([]string, int) { return []string{"nosuch.rpm"}, exitUsage },
			why: "the fixture has nothing rejected; naming what is not there is a usage error"},
		"rejected retry": {fail: func(*testing.T, *convRoot) ([]string, int) { return []string{"nosuch.rpm"}, exitUsage },
			why: "the fixture has nothing rejected; naming what is not there is a usage error"},
		"rejected purge": {ok: args()},
		"config check":   {ok: args()},
		"config show":    {ok: args()},
		"comps set": {ok: func(t *testing.T, c *convRoot) []string {
			return []string{"--dry-run", convComps(t, c)}
		}},
		// show and remove need a comps file: each invocation sets one first.
		"comps show": {ok: func(t *testing.T, c *convRoot) []string {
			convSetComps(t, c)
			return nil
		}},
		"comps remove": {ok: func(t *testing.T, c *convRoot) []string {
			convSetComps(t, c)
			return nil
		}},
		"advisory add": {ok: func(t *testing.T, c *convRoot) []string {
			return []string{"--dry-run", c.writeFile(t, "adv.toml", convAdvisoryTOML)}
		}},
		"advisory import": {ok: func(t *testing.T, c *convRoot) []string {
			return []string{"--dry-run", c.writeFile(t, "updateinfo.xml", convUpdateInfo)}
		}},
		"advisory list": {ok: args()},
		"advisory show": {fail: func(*testing.T, *convRoot) ([]string, int) { return []string{"CONV-0000"}, exitUsage },
			why: "the fixture has no advisory; an id it does not have is a usage error"},
		"advisory remove": {fail: func(*testing.T, *convRoot) ([]string, int) { return []string{"--dry-run", "CONV-0000"}, exitUsage },
			why: "the fixture has no advisory; an id it does not have is a usage error"},
	}
}

// convComps is the example comps file copied below the fixture.
func convComps(t *testing.T, c *convRoot) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "comps", "comps.xml"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(c.fresh(t, "comps"), "comps.xml")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func convSetComps(t *testing.T, c *convRoot) {
	t.Helper()
	if o, e, code := runIn(t, c.root, "comps", "set", convComps(t, c)); code != 0 {
		t.Fatalf("comps set: exit %d\n%s%s", code, o, e)
	}
}

const convAdvisoryTOML = `id = "CONV-2026-0001"
type = "security"
severity = "Important"
title = "conv: a fix"
issued = "2026-12-01"
packages = ["` + convNEVRA + `"]
`

const convUpdateInfo = `<?xml version="1.0" encoding="UTF-8"?>
<updates>
  <update type="bugfix">
    <id>CONV-2026-0002</id>
    <title>conv: another fix</title>
    <issued date="2026-12-02 00:00:00"/>
    <references/>
    <pkglist>
      <collection short="c">
        <package name="conv" version="1.0" release="1.el9" epoch="0" arch="noarch">
          <filename>conv-1.0-1.el9.noarch.rpm</filename>
        </package>
      </collection>
    </pkglist>
  </update>
</updates>
`

// writeFile writes body as name in a new directory below the fixture.
func (c *convRoot) writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(c.fresh(t, "file"), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func convKeyID(t *testing.T, c *convRoot) string {
	t.Helper()
	out, e, code := runIn(t, c.root, "-o", "json", "key", "status")
	var st struct {
		Keys []struct {
			KeyID  string `json:"key_id"`
			Active bool   `json:"active"`
		} `json:"keys"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st.Keys) == 0 {
		t.Fatalf("key status: exit %d\n%s%s", code, out, e)
	}
	return st.Keys[0].KeyID
}

// exempt are commands for shells and people, not scripts: cobra's help and
// completion scripts.
func exempt(c *cobra.Command) bool {
	for ; c != nil; c = c.Parent() {
		switch c.Name() {
		case "help", "completion", cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd:
			return true
		}
	}
	return false
}

// leafCommands are every command that does something, below root.
func leafCommands(c *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	for _, sub := range c.Commands() {
		if exempt(sub) {
			continue
		}
		if sub.HasSubCommands() {
			out = append(out, leafCommands(sub)...)
			continue
		}
		out = append(out, sub)
	}
	return out
}

func groupCommands(c *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	for _, sub := range c.Commands() {
		if sub.HasSubCommands() && !exempt(sub) {
			out = append(out, sub)
			out = append(out, groupCommands(sub)...)
		}
	}
	return out
}

// path is the command's words below root, e.g. ["key", "generate"].
func path(c *cobra.Command) []string {
	return strings.Fields(strings.TrimPrefix(c.CommandPath(), rootCmd.Name()))
}

// checkJSONValue fails unless out is exactly one JSON value, and returns it.
func checkJSONValue(t *testing.T, what, out string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Errorf("%s: stdout is not JSON: %v\n%s", what, err, out)
		return nil
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		t.Errorf("%s: more than one JSON value on stdout:\n%s", what, out)
	}
	return v
}

// checkErrorJSON fails unless out is exactly the error object of a
// command that exited with code.
func checkErrorJSON(t *testing.T, what, out string, code int) {
	t.Helper()
	v, _ := checkJSONValue(t, what, out).(map[string]any)
	e, _ := v["error"].(map[string]any)
	if e == nil {
		t.Errorf("%s: no error object on stdout:\n%s", what, out)
		return
	}
	if c, _ := e["code"].(float64); int(c) != code {
		t.Errorf("%s: error.code %v, exit code %d", what, e["code"], code)
	}
	if k, _ := e["kind"].(string); k != exitKinds[code] {
		t.Errorf("%s: error.kind %q, want %q for exit %d", what, k, exitKinds[code], code)
	}
	if m, _ := e["message"].(string); m == "" {
		t.Errorf("%s: empty error.message", what)
	}
}

// usageInvocations are command lines that cobra refuses for c: an unknown
// flag; an argument count c's Args refuses; no flags at all when c has
// required ones.
func usageInvocations(c *cobra.Command) [][]string {
	p := path(c)
	out := [][]string{append(append([]string{}, p...), "--no-such-flag")}
	if c.Args != nil {
		for _, args := range [][]string{nil, {"a1", "a2", "a3", "a4", "a5", "a6"}} {
			if c.Args(c, args) != nil {
				out = append(out, append(append([]string{}, p...), args...))
			}
		}
	}
	required := false
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if len(f.Annotations[cobra.BashCompOneRequiredFlag]) > 0 {
			required = true
		}
	})
	if required {
		// Arguments that Args takes, so that only the flags are missing.
		args := []string{}
		for n := range 3 {
			if c.Args == nil || c.Args(c, args) == nil {
				break
			}
			args = append(args, fmt.Sprintf("a%d", n))
		}
		out = append(out, append(append([]string{}, p...), args...))
	}
	return out
}

// TestEveryCommandConventions walks the command tree, so that a new
// command is covered (or fails here until it has a case): every usage
// error exits 2; with -o json, that error is exactly one JSON object on
// stdout whose error.code is the exit code; a successful run prints
// exactly one JSON value with -o json and nothing with -q; a failure
// after the command line was accepted is the same error object.
func TestEveryCommandConventions(t *testing.T) {
	c := newConvRoot(t)
	cases := convCases()
	seen := map[string]bool{}
	for _, cmd := range leafCommands(rootCmd) {
		name := strings.Join(path(cmd), " ")
		seen[name] = true
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			for _, inv := range usageInvocations(cmd) {
				out, stderr, code := runIn(t, c.root, inv...)
				if code != exitUsage {
					t.Errorf("repoctl %q: exit %d, want %d (usage)\n%s%s", inv, code, exitUsage, out, stderr)
				}
				if out != "" {
					t.Errorf("repoctl %q: a usage error printed on stdout:\n%s", inv, out)
				}
				jinv := append([]string{"-o", "json"}, inv...)
				out, _, code = runIn(t, c.root, jinv...)
				if code != exitUsage {
					t.Errorf("repoctl %q: exit %d, want %d", jinv, code, exitUsage)
				}
				checkErrorJSON(t, fmt.Sprintf("repoctl %q", jinv), out, code)
			}
			cc, ok := cases[name]
			switch {
			case !ok:
				t.Fatalf("no conformance case for %q: add one to convCases", name)
			case cc.ok != nil:
				inv := append(append([]string{"-o", "json"}, path(cmd)...), cc.ok(t, c)...)
				out, stderr, code := runIn(t, c.root, inv...)
				if code != 0 {
					t.Fatalf("repoctl %q: exit %d\n%s%s", inv, code, out, stderr)
				}
				if checkJSONValue(t, fmt.Sprintf("repoctl %q", inv), out) == nil && strings.TrimSpace(out) == "null" {
					t.Errorf("repoctl %q: printed null", inv)
				}
				inv = append(append([]string{"-q"}, path(cmd)...), cc.ok(t, c)...)
				out, stderr, code = runIn(t, c.root, inv...)
				if code != 0 || out != "" {
					t.Errorf("repoctl %q: exit %d, want 0 and nothing on stdout:\n%s%s", inv, code, out, stderr)
				}
			case cc.fail != nil:
				args, want := cc.fail(t, c)
				inv := append(append([]string{"-o", "json"}, path(cmd)...), args...)
				out, stderr, code := runIn(t, c.root, inv...)
				if code != want {
					t.Fatalf("repoctl %q: exit %d, want %d (%s)\n%s%s", inv, code, want, cc.why, out, stderr)
				}
				checkErrorJSON(t, fmt.Sprintf("repoctl %q", inv), out, code)
			}
		})
	}
	for name := range cases {
		if !seen[name] {
			t.Errorf("conformance case for %q, which is no command", name)
		}
	}
	// A group refuses an unknown subcommand instead of printing its help.
	for _, g := range append(groupCommands(rootCmd), rootCmd) {
		inv := append(path(g), "no-such-command")
		out, stderr, code := runIn(t, c.root, append([]string{"-o", "json"}, inv...)...)
		if code != exitUsage {
			t.Errorf("repoctl %q: exit %d, want %d\n%s%s", inv, code, exitUsage, out, stderr)
		}
		checkErrorJSON(t, fmt.Sprintf("repoctl -o json %q", inv), out, code)
	}
}

// TestUsageErrorsExit2 are the usage errors a user met, each exit 2 with
// the reason on stderr: nothing to add, nothing to remove, two builds to
// promote, a key without a name, channels, repositories and enum values
// that do not exist.
func TestUsageErrorsExit2(t *testing.T) {
	c := newConvRoot(t)
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"add"}, "requires at least 1 arg"},
		{[]string{"remove"}, "accepts 1 arg"},
		{[]string{"promote", "a", "b"}, "accepts 1 arg"},
		{[]string{"key", "generate", "--email", "x@example.com"}, `required flag(s) "name" not set`},
		{[]string{"add", "--channel", "nope", c.pkg}, `unknown channel "nope"`},
		{[]string{"add", "--repo", "nope", c.pkg}, `unknown repository "nope"`},
		{[]string{"list", "--channel", "nope"}, `unknown channel "nope"`},
		{[]string{"remove", "--channel", "nope", convNEVRA}, `unknown channel "nope"`},
		{[]string{"promote", convNEVRA, "--to", "nope", "--yes"}, `unknown channel "nope"`},
		{[]string{"promote", convNEVRA, "--from", "prod", "--to", "prod", "--yes"}, "to itself"},
		{[]string{"list", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"list", "conv[", "--channel", "prod"}, `bad name pattern "conv["`},
		{[]string{"list", "--name", "[!c]*"}, "negates a class with ^"},
		{[]string{"list", "--arch", "sparc"}, `unknown arch "sparc"`},
		{[]string{"list", "--release", "el/10"}, `unknown release "el/10"`},
		{[]string{"list", "--release", "../el"}, "is not a release directory"},
		{[]string{"show"}, "accepts 1 arg"},
		{[]string{"show", "--repo", "nope", convNEVRA}, `unknown repository "nope"`},
		{[]string{"show", "conv/../x"}, `invalid package name`},
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"key", "bogus"}, `unknown command "bogus"`},
		{[]string{"-o", "yaml", "list"}, "--output must be text or json"},
		{[]string{"promote", convNEVRA, "--phased", "--restart", "soft"}, "--restart must be graceful or hard"},
		{[]string{"key", "rotate", "--algo", "dsa"}, "--algo must be"},
		{[]string{"createrepo", "--compress-type", "bz2", c.fresh(t, "cr")}, "bz2"},
		{[]string{"daemon", "--log-level", "loud"}, "--log-level"},
	} {
		out, stderr, code := runIn(t, c.root, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.says) {
			t.Errorf("repoctl %q: exit %d, want %d with %q\n%s%s", tc.args, code, exitUsage, tc.says, out, stderr)
		}
	}
	if out, _, _ := runIn(t, c.root, "list", "--channel", "prod"); !strings.Contains(out, convNEVRA) {
		t.Errorf("list --channel prod after the refusals:\n%s", out)
	}
}

// TestJSONErrorAfterResult: a command that failed after producing results
// (add with a rejected file, exit 3) prints one object, the error with
// the results under "result".
func TestJSONErrorAfterResult(t *testing.T) {
	c := newConvRoot(t)
	junk := filepath.Join(c.fresh(t, "junk"), "junk.rpm")
	if err := os.WriteFile(junk, []byte("not an rpm"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runIn(t, c.root, "-o", "json", "add", c.pkg, junk)
	if code != exitRejected {
		t.Fatalf("add: exit %d, want %d\n%s%s", code, exitRejected, out, stderr)
	}
	checkErrorJSON(t, "add with a rejected file", out, code)
	var v struct {
		Result []struct {
			Action string `json:"action"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || len(v.Result) != 2 || v.Result[0].Action != "unchanged" || v.Result[1].Action != "rejected" {
		t.Errorf("add's results under \"result\": %v\n%s", err, out)
	}
	if !strings.Contains(stderr, "rejected") {
		t.Errorf("stderr does not give the error:\n%s", stderr)
	}
}

// TestRemoveFromProdAsks: removing a package from prod (by default from
// every channel, or --channel prod) is refused without a terminal unless
// --yes, and changes nothing; staging alone needs no confirmation.
func TestRemoveFromProdAsks(t *testing.T) {
	c := newConvRoot(t)
	inProd := func() bool {
		out, _, _ := runIn(t, c.root, "list", "--channel", "prod")
		return strings.Contains(out, convNEVRA)
	}
	for _, args := range [][]string{{"remove", convNEVRA}, {"remove", "--channel", "prod", convNEVRA}} {
		out, stderr, code := runIn(t, c.root, args...)
		if code != exitUsage || !strings.Contains(stderr, "pass --yes") || !strings.Contains(stderr, "prod") {
			t.Errorf("repoctl %q without a terminal: exit %d, want %d asking for --yes\n%s%s", args, code, exitUsage, out, stderr)
		}
		if !inProd() {
			t.Fatalf("repoctl %q removed from prod without confirmation", args)
		}
	}
	if out, stderr, code := runIn(t, c.root, "remove", "--channel", "staging", convNEVRA); code != 0 || !strings.Contains(out, "removed main/staging/") {
		t.Errorf("remove from staging: exit %d\n%s%s", code, out, stderr)
	}
	if out, stderr, code := runIn(t, c.root, "remove", "--yes", convNEVRA); code != 0 || !strings.Contains(out, "removed main/prod/") {
		t.Errorf("remove --yes: exit %d\n%s%s", code, out, stderr)
	}
	if inProd() {
		t.Error("remove --yes left the package in prod")
	}
}

// TestRolloutListEmptyJSON: no rollouts is an empty list, not null.
func TestRolloutListEmptyJSON(t *testing.T) {
	root := t.TempDir()
	out, stderr, code := runIn(t, root, "-o", "json", "rollout", "list")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("rollout list -o json: exit %d, want [] \n%q%s", code, out, stderr)
	}
}

// TestSignDryRunSaysWould: a dry run says what it would do and writes
// nothing; the real run then does it.
func TestSignDryRunSaysWould(t *testing.T) {
	c := newConvRoot(t)
	p := c.copyPkg(t) // the unsigned file that was added
	before, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(c.root, "keys/signing.asc")
	out, stderr, code := runIn(t, c.root, "sign", "--dry-run", "--key", key, p)
	if code != 0 || !strings.Contains(out, "\twould sign\t") || strings.Contains(out, "\tsigned\t") {
		t.Errorf("sign --dry-run: exit %d, want \"would sign\"\n%s%s", code, out, stderr)
	}
	after, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("sign --dry-run changed the file")
	}
	out, _, _ = runIn(t, c.root, "-o", "json", "sign", "--dry-run", "--key", key, p)
	var res []struct {
		Action string `json:"action"`
		DryRun bool   `json:"dry_run"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 || res[0].Action != "signed" || !res[0].DryRun {
		t.Errorf("sign --dry-run -o json: %v\n%s", err, out)
	}
	out, stderr, code = runIn(t, c.root, "sign", "--key", key, p)
	if code != 0 || !strings.Contains(out, "\tsigned\t") {
		t.Errorf("sign: exit %d, want \"signed\"\n%s%s", code, out, stderr)
	}
}

// TestCreaterepoQuiet: -q prints nothing at all on success; without it
// the summary is printed.
func TestCreaterepoQuiet(t *testing.T) {
	c := newConvRoot(t)
	dir := filepath.Dir(c.copyPkg(t))
	out, stderr, code := runBin(t, "", "createrepo", "-q", dir)
	if code != 0 || out != "" || stderr != "" {
		t.Errorf("createrepo -q: exit %d, want 0 and no output\nstdout: %q\nstderr: %q", code, out, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "repodata", "repomd.xml")); err != nil {
		t.Errorf("createrepo -q wrote no repodata: %v", err)
	}
	out, _, code = runBin(t, "", "createrepo", dir)
	if code != 0 || !strings.Contains(out, "1 packages to") {
		t.Errorf("createrepo without -q: exit %d, no summary:\n%s", code, out)
	}
}

// TestCompletion: channels, repositories and enum values complete from the
// config, NEVRAs from the store; a root that does not exist completes
// nothing and is not created; a root whose lock is held completes no
// NEVRA and does not wait for the holder.
func TestCompletion(t *testing.T) {
	requireTools(t, "flock")
	c := newConvRoot(t)
	complete := func(root string, words ...string) []string {
		t.Helper()
		out, stderr, code := runIn(t, root, append([]string{cobra.ShellCompRequestCmd}, words...)...)
		if code != 0 {
			t.Fatalf("__complete %q: exit %d\n%s%s", words, code, out, stderr)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		return lines[:len(lines)-1] // the last line is the directive
	}
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{"add", "--channel", ""}, []string{"staging", "prod"}},
		{[]string{"list", "--repo", ""}, []string{"main"}},
		{[]string{"promote", "x", "--restart", ""}, []string{"graceful", "hard"}},
		{[]string{"-o", ""}, []string{"text", "json"}},
		{[]string{"remove", ""}, []string{convNEVRA}},
		{[]string{"remove", "--channel", "staging", "co"}, []string{convNEVRA}},
		{[]string{"promote", "conv-1"}, []string{"conv-1.0-1.el9", convNEVRA}},
		{[]string{"history", "--nevra", ""}, []string{convNEVRA}},
	} {
		got := complete(c.root, tc.words...)
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("complete %q: %q, want %q", tc.words, got, tc.want)
		}
	}
	missing := filepath.Join(c.dir, "missing")
	if got := complete(missing, "remove", ""); len(got) != 0 {
		t.Errorf("completion in a missing root: %q", got)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("completion created the root")
	}

	// Another process holds the ROOT lock until it is killed.
	holder := exec.Command("flock", filepath.Join(c.root, "repoctl.lock"), "sleep", "600")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	for deadline := time.Now().Add(time.Minute); ; {
		if exec.Command("flock", "-n", filepath.Join(c.root, "repoctl.lock"), "true").Run() != nil {
			break // held
		}
		if time.Now().After(deadline) {
			t.Fatal("flock never took the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := complete(c.root, "remove", ""); len(got) != 0 {
		t.Errorf("completion while the root is locked: %q, want nothing", got)
	}
	if holder.Process.Signal(syscall.Signal(0)) != nil {
		t.Error("the lock holder ended before the completion returned: the completion waited for the lock")
	}
}

// TestRolloutResumeAsks: a halted rollout (its one host refuses SSH
// connections) is not resumed without a terminal unless --yes, and
// nothing runs on its host; with --yes it runs again.
func TestRolloutResumeAsks(t *testing.T) {
	requireTools(t, "ssh-keygen")
	c := newConvRoot(t)
	id := filepath.Join(c.dir, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", id).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	known := filepath.Join(c.dir, "known_hosts")
	if err := os.WriteFile(known, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	// Nothing listens there now: every connection is refused.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`[signing]
algo = "ed25519"

[upgrade]
known_hosts = %q
identity_file = %q
connect_timeout = "5s"

[[upgrade.groups]]
name = "g1"
  [[upgrade.groups.hosts]]
  name = "app1"
  address = "127.0.0.1"
  port = %d
`, known, id, port)
	if err := os.WriteFile(filepath.Join(c.root, "repoctl.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// A new build to roll out.
	p, err := testrpm.Write(c.fresh(t, "in"), testrpm.Spec{Name: "conv", Version: "1.1", Release: "1.el9", Arch: "noarch", Summary: "t", License: "MIT",
		Files: []testrpm.File{{Name: "/usr/share/conv/a", Body: []byte("b")}}})
	if err != nil {
		t.Fatal(err)
	}
	if o, e, code := runIn(t, c.root, "add", p); code != 0 {
		t.Fatalf("add: exit %d\n%s%s", code, o, e)
	}
	if o, e, code := runIn(t, c.root, "promote", "conv-1.1-1.el9.noarch", "--to", "prod", "--phased", "--yes"); code != exitHalted {
		t.Fatalf("promote --phased: exit %d, want %d (the host refuses connections)\n%s%s", code, exitHalted, o, e)
	}
	runs := func() (string, int) {
		t.Helper()
		out, e, code := runIn(t, c.root, "-o", "json", "rollout", "status")
		var st struct {
			State string `json:"state"`
			Plan  struct {
				Settings struct {
					ConnectTimeout any `json:"connect_timeout"`
				} `json:"settings"`
			} `json:"plan"`
			Steps []struct {
				Runs int `json:"runs"`
			} `json:"steps"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
			t.Fatalf("rollout status: exit %d\n%s%s", code, out, e)
		}
		if st.Plan.Settings.ConnectTimeout != "5s" {
			t.Errorf("connect_timeout in -o json: %#v, want \"5s\"", st.Plan.Settings.ConnectTimeout)
		}
		n := 0
		for _, s := range st.Steps {
			n += s.Runs
		}
		return st.State, n
	}
	state, before := runs()
	if state != "halted" || before == 0 {
		t.Fatalf("after the failed rollout: state %q, %d runs", state, before)
	}
	out, stderr, code := runIn(t, c.root, "rollout", "resume")
	if code != exitUsage || !strings.Contains(stderr, "pass --yes") {
		t.Errorf("rollout resume without a terminal: exit %d, want %d asking for --yes\n%s%s", code, exitUsage, out, stderr)
	}
	if _, n := runs(); n != before {
		t.Errorf("a refused resume ran steps: %d runs, was %d", n, before)
	}
	if o, e, code := runIn(t, c.root, "rollout", "resume", "--yes"); code != exitHalted {
		t.Errorf("rollout resume --yes: exit %d, want %d (the host still refuses)\n%s%s", code, exitHalted, o, e)
	}
	if _, n := runs(); n <= before {
		t.Errorf("rollout resume --yes ran nothing: %d runs, was %d", n, before)
	}
}

// TestAddProgressOnTerminal runs add on a terminal (script(1) gives it a
// pty): a bar with counts for every stage, then a summary line. Without a
// terminal, and with -q on one, no bar is drawn.
func TestAddProgressOnTerminal(t *testing.T) {
	requireTools(t, "script")
	c := newConvRoot(t)
	in := c.fresh(t, "many")
	var files []string
	for i := range 5 {
		p, err := testrpm.Write(in, testrpm.Spec{Name: fmt.Sprintf("many%d", i), Version: "1", Release: "1.el9", Arch: "noarch", Summary: "t", License: "MIT",
			Files: []testrpm.File{{Name: "/usr/share/many/" + fmt.Sprint(i), Body: []byte("x")}}})
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	onTerminal := func(args ...string) string {
		t.Helper()
		line := shellQuote(append([]string{repoctlBin, "--root", c.root}, args...))
		out, err := exec.Command("script", "-qec", line, "/dev/null").CombinedOutput()
		if err != nil {
			t.Fatalf("script %s: %v\n%s", line, err, out)
		}
		return string(out)
	}
	out := onTerminal(append([]string{"add"}, files[:3]...)...)
	for _, want := range []string{"repoctl: validating", "repoctl: signing", "repoctl: placing", "repoctl: publishing", "(0/3)", "3 files: 3 added"} {
		if !strings.Contains(out, want) {
			t.Errorf("add on a terminal lacks %q:\n%q", want, out)
		}
	}
	if out := onTerminal(append([]string{"-q", "add"}, files[3:]...)...); strings.TrimSpace(out) != "" {
		t.Errorf("add -q on a terminal printed:\n%q", out)
	}
	_, stderr, code := runIn(t, c.root, "add", c.pkg)
	if code != 0 || strings.Contains(stderr, "validating") {
		t.Errorf("add without a terminal: exit %d, drew progress:\n%q", code, stderr)
	}
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// TestEmptyListsNotNull: a list with nothing in it is [] in -o json, here
// the signatures of an unsigned package (verify fails it: exit 3, the
// report under "result").
func TestEmptyListsNotNull(t *testing.T) {
	c := newConvRoot(t)
	out, stderr, code := runIn(t, c.root, "-o", "json", "verify", "--key", filepath.Join(c.root, "keys/signing.pub.asc"), c.pkg)
	if code != exitRejected {
		t.Fatalf("verify of an unsigned package: exit %d, want %d\n%s%s", code, exitRejected, out, stderr)
	}
	var v struct {
		Result []struct {
			Signatures json.RawMessage `json:"signatures"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || len(v.Result) != 1 || string(v.Result[0].Signatures) != "[]" {
		t.Errorf("signatures of an unsigned package: %v, want []\n%s", err, out)
	}
}

// TestEmptyListsValue: nil slices become [] at any depth, through
// pointers, maps, interfaces and exported struct fields; []byte, values
// that marshal themselves, omitempty fields and (out of reflection's
// reach) an embedded struct of an unexported type keep their form; the
// original is not modified.
func TestEmptyListsValue(t *testing.T) {
	type inner struct {
		List []string `json:"list"`
	}
	type outer struct {
		inner
		Exported  inner            `json:"exported"`
		Ptr       *inner           `json:"ptr"`
		Map       map[string]inner `json:"map"`
		Any       any              `json:"any"`
		Bytes     []byte           `json:"bytes"`
		Omit      []int            `json:"omit,omitempty"`
		Time      time.Time        `json:"time"`
		Nested    [][]int          `json:"nested"`
		NilPtr    *inner           `json:"nil_ptr"`
		unexposed []int
	}
	in := &outer{Ptr: &inner{}, Map: map[string]inner{"k": {}}, Any: inner{}, Nested: [][]int{nil}}
	b, err := json.Marshal(emptyLists(in))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"list":null,"exported":{"list":[]},"ptr":{"list":[]},"map":{"k":{"list":[]}},"any":{"list":[]},"bytes":null,` +
		`"time":"0001-01-01T00:00:00Z","nested":[[]],"nil_ptr":null}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	if in.Ptr.List != nil || in.Map["k"].List != nil || in.Nested[0] != nil {
		t.Error("emptyLists modified its argument")
	}
	b, err = json.Marshal(emptyLists([]string(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "[]" {
		t.Errorf("a nil list: %s", b)
	}
}
