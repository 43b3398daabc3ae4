package repo

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// rfHost is one kind of app host: what dnf is told about it, and what it
// must see in the prod channel.
type rfHost struct {
	name       string
	dist       string // --dist for repofile
	releasever string
	arch       string
	install    []string
	visible    []string // every package dnf offers, N-V-R.A
}

// dnfErrorLine is what dnf prints when a repository or a package fails:
// "Error: Failed to download metadata", "Curl error (22) … 404", "GPG check
// FAILED", "Cannot download repomd.xml", "No match for argument".
var dnfErrorLine = regexp.MustCompile(`(?i)error|fail|\b404\b|cannot|unable|no match|not found|skipping|ignoring`)

// Hosts of every kind use the unmodified output of `repoctl repofile
// --channel prod` from a daemon started with --listen on a random port,
// with gpgcheck, repo_gpgcheck and skip_if_unavailable=False: each installs
// its own build of a package built for el8, el9 and fc40 (and the el9-only
// aarch64 build), a noarch and a dist-less package; a package added with
// --release el/8 reaches only EL8 hosts; staging stays invisible; an EL8
// aarch64 host, for which no build exists, reads the empty repodata of
// el/8/aarch64 without complaint; a host whose releasever is 9.4 is served
// el/9; and dnf prints no error line.
func TestRepoFileHosts(t *testing.T) {
	needTools(t, "dnf", "rpm")
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte("[signing]\nalgo = \"ed25519\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	url := "http://" + listen + "/"
	d := startDaemon(t, root, "--listen", listen)
	defer d.stop()

	in := t.TempDir()
	var prod, staging []string
	build := func(name, version, release, arch string) string {
		s := helloSpec(name)
		s.Version, s.Release, s.Arch = version, release, arch
		s.Files = []testrpm.File{{Name: "/usr/share/" + name + "/" + release + "." + arch, Body: []byte(name + "\n")}}
		p, err := testrpm.Write(in, s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	add := func(p string, args ...string) {
		t.Helper()
		out, stderr, code := runCLI(t, root, append(append([]string{"add"}, args...), p)...)
		if code != 0 || !strings.Contains(out, "added") {
			t.Fatalf("add %s %v: exit %d\n%s%s", filepath.Base(p), args, code, out, stderr)
		}
	}
	for _, b := range [][4]string{
		{"uxtool", "1.0", "1.el8", "x86_64"}, {"uxtool", "1.0", "1.el9", "x86_64"}, {"uxtool", "1.0", "1.fc40", "x86_64"},
		{"uxtool", "1.0", "1.el9", "aarch64"},
		{"uxdata", "2.0", "1", "noarch"},                                      // no dist tag: every host
		{"uxagent", "3.0", "1", "x86_64"}, {"uxagent", "3.0", "1", "aarch64"}, // no dist tag, arch: routing.default
	} {
		add(build(b[0], b[1], b[2], b[3]))
		prod = append(prod, b[0]+"-"+b[1]+"-"+b[2]+"."+b[3])
	}
	add(build("uxpin", "1.0", "1", "x86_64"), "--release", "el8")
	prod = append(prod, "uxpin-1.0-1.x86_64")
	for _, b := range [][4]string{{"uxtool", "1.1", "1.el9", "x86_64"}, {"uxstage", "1", "1.el9", "x86_64"}, {"uxstage", "1", "1", "noarch"}} {
		add(build(b[0], b[1], b[2], b[3]))
		staging = append(staging, b[0]+"-"+b[1]+"-"+b[2]+"."+b[3])
	}
	for _, nevra := range prod {
		if out, stderr, code := runCLI(t, root, "promote", nevra, "--to", "prod", "--yes"); code != 0 {
			t.Fatalf("promote %s: exit %d\n%s%s", nevra, code, out, stderr)
		}
	}

	// status and repofile name the port the daemon was given, not 8080.
	stOut, stderr, code := runCLI(t, root, "-o", "json", "status")
	var st Status
	if code != 0 || json.Unmarshal([]byte(stOut), &st) != nil || st.HTTP != url || st.Listen != listen {
		t.Fatalf("status: exit %d, http %q listen %q, want %q %q\n%s", code, st.HTTP, st.Listen, url, listen, stderr)
	}
	files := map[string]string{}
	for _, dist := range []string{"el", "fc"} {
		out, stderr, code := runCLI(t, root, "repofile", "--channel", "prod", "--dist", dist)
		if code != 0 {
			t.Fatalf("repofile --dist %s: exit %d: %s", dist, code, stderr)
		}
		if strings.Contains(out, "staging") || strings.Contains(out, ":8080/") ||
			!strings.Contains(out, "baseurl="+url+"main/prod/"+dist+"/$releasever/$basearch/\n") ||
			!strings.Contains(out, "baseurl="+url+"main/prod/common/$basearch/\n") {
			t.Fatalf("repofile --dist %s:\n%s", dist, out)
		}
		files[dist] = out
	}

	el8 := []string{"uxagent-3.0-1.x86_64", "uxdata-2.0-1.noarch", "uxpin-1.0-1.x86_64", "uxtool-1.0-1.el8.x86_64"}
	el9 := []string{"uxagent-3.0-1.x86_64", "uxdata-2.0-1.noarch", "uxtool-1.0-1.el9.x86_64"}
	hosts := []rfHost{
		{"el8-x86_64", "el", "8", "x86_64", []string{"uxtool", "uxdata", "uxagent", "uxpin"}, el8},
		{"el9-x86_64", "el", "9", "x86_64", []string{"uxtool", "uxdata", "uxagent"}, el9},
		{"el9-aarch64", "el", "9", "aarch64", []string{"uxtool", "uxdata", "uxagent"},
			[]string{"uxagent-3.0-1.aarch64", "uxdata-2.0-1.noarch", "uxtool-1.0-1.el9.aarch64"}},
		{"el9.4-x86_64", "el", "9.4", "x86_64", []string{"uxtool", "uxdata", "uxagent"}, el9},
		{"el8-aarch64", "el", "8", "aarch64", []string{"uxdata", "uxagent"},
			[]string{"uxagent-3.0-1.aarch64", "uxdata-2.0-1.noarch"}},
		{"fc40-x86_64", "fc", "40", "x86_64", []string{"uxtool", "uxdata", "uxagent"},
			[]string{"uxagent-3.0-1.x86_64", "uxdata-2.0-1.noarch", "uxtool-1.0-1.fc40.x86_64"}},
	}
	for _, h := range hosts {
		t.Run(h.name, func(t *testing.T) {
			host := newELHostFor(t, files[h.dist], h.releasever, h.arch)
			dnf, ir := host.mustDNF, host.ir
			out := dnf("-q", "repoquery", "--qf", "%{name}-%{version}-%{release}.%{arch}")
			got := strings.Fields(out)
			sort.Strings(got)
			if !slices.Equal(got, h.visible) {
				t.Errorf("dnf offers %v, want %v", got, h.visible)
			}
			for _, s := range staging {
				if slices.Contains(got, s) {
					t.Errorf("staging-only %s is visible", s)
				}
			}
			dnf(append([]string{"install"}, h.install...)...)
			q, err := exec.Command("rpm", "--root", ir, "-qa", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\n").CombinedOutput()
			if err != nil {
				t.Fatalf("rpm -qa: %v\n%s", err, q)
			}
			var installed []string
			keys := 0
			for _, n := range strings.Fields(string(q)) {
				if strings.HasPrefix(n, "gpg-pubkey-") {
					keys++ // imported from the file's gpgkey
					continue
				}
				installed = append(installed, n)
			}
			sort.Strings(installed)
			if keys != 1 {
				t.Errorf("%d keys imported into the rpmdb, want the repository's one", keys)
			}
			var want []string
			for _, v := range h.visible {
				n, _, _ := strings.Cut(v, "-")
				if slices.Contains(h.install, n) {
					want = append(want, v)
				}
			}
			if !slices.Equal(installed, want) {
				t.Errorf("installed %v, want %v", installed, want)
			}
		})
	}
}
