package upgrade

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func TestParseNEVRAHostile(t *testing.T) {
	bad := []string{
		"", "app", "app-1.0", "app-1.0-1", // incomplete
		"app-1.0-1.el9.x86_64; rm -rf /",
		"app-1.0-1.el9.x86_64 && reboot",
		"$(reboot)-1.0-1.el9.x86_64",
		"`id`-1.0-1.el9.x86_64",
		"app-1.0-1.el9.x86_64\nreboot",
		"app-1.0-1.el9.x86_64|sh",
		"app'-1.0-1.el9.x86_64",
		`app"-1.0-1.el9.x86_64`,
		"-oProxyCommand=x-1.0-1.el9.x86_64",
		"--setopt=x-1-1.x86_64",
		"app-1.0-1.el9.x86_64 ",
		"app-1.0-1.el9.x86_64>/etc/passwd",
		"app-*-1.el9.x86_64",
		"app-1.0-1.el9.../x86_64",
		"app-1:2:3-1.el9.x86_64",
		strings.Repeat("a", 300) + "-1-1.x86_64",
	}
	for _, s := range bad {
		if _, err := ParseNEVRA(s); !errors.Is(err, ErrUnsafeName) {
			t.Errorf("ParseNEVRA(%q) = %v, want ErrUnsafeName", s, err)
		}
	}
	good := map[string]NEVRA{
		"app-2.0-1.el9.x86_64":               {Name: "app", Version: "2.0", Release: "1.el9", Arch: "x86_64"},
		"python3-foo-1:2.0~rc1-3.el8.noarch": {Name: "python3-foo", Epoch: "1", Version: "2.0~rc1", Release: "3.el8", Arch: "noarch"},
		"gcc-c++-4.1.2-55.el5.x86_64":        {Name: "gcc-c++", Version: "4.1.2", Release: "55.el5", Arch: "x86_64"},
	}
	for s, want := range good {
		got, err := ParseNEVRA(s)
		if err != nil || got != want {
			t.Errorf("ParseNEVRA(%q) = %+v, %v", s, got, err)
		}
		if got.String() != s {
			t.Errorf("round trip %q -> %q", s, got.String())
		}
	}
	for _, s := range []string{"app;id", "$x", "-rf", "a b", ""} {
		if ValidName(s) == nil {
			t.Errorf("ValidName(%q) accepted", s)
		}
	}
}

// The quoting is checked by a real shell: whatever the input, sh sees one
// word with exactly those bytes.
func TestShellQuoteRealShell(t *testing.T) {
	for _, s := range []string{"plain", "it's", `"$(id)"`, "`id`;x", "a\nb", "'''", "", "~root", "*", "\\"} {
		out, err := exec.Command("sh", "-c", "printf %s "+ShellQuote(s)).Output()
		if err != nil {
			t.Fatalf("sh: %v", err)
		}
		if string(out) != s {
			t.Errorf("quoted %q came back as %q", s, out)
		}
	}
}

func FuzzParseNEVRA(f *testing.F) {
	f.Add("app-2.0-1.el9.x86_64")
	f.Add("a-1:2-3.noarch")
	f.Add("x;y-1-1.z")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseNEVRA(s)
		if err != nil {
			return
		}
		// Anything accepted carries no shell metacharacter at all.
		if strings.ContainsAny(n.String(), " \t\n;&|<>()$`'\"\\*?[]{}!#=") || strings.HasPrefix(n.String(), "-") {
			t.Fatalf("accepted %q", s)
		}
		// String is what dnf and the event log get: it must parse back to
		// the same fields (an epoch of 0 is written as none).
		m, err := ParseNEVRA(n.String())
		if err != nil {
			t.Fatalf("String() %q of accepted %q does not parse: %v", n.String(), s, err)
		}
		norm := func(x NEVRA) NEVRA {
			if x.Epoch == "0" {
				x.Epoch = ""
			}
			return x
		}
		if norm(m) != norm(n) || m.NVRA() != n.NVRA() {
			t.Fatalf("round trip of %q: %+v, then %+v", s, n, m)
		}
	})
}
