package upgrade

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// archRE is rpm's arch rule as repoctl applies it to headers: an arch ends
// up in a NEVRA that reaches a shell, and in a map key the executor picks
// commands by.
// Compiled on first use: their bounded repetitions make large programs,
// which every repoctl command (createrepo too) would otherwise build at start.
var archRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_]{1,32}$`) })

// ArchProbe is the command that asks a host for its arch before a
// multi-arch build is installed on it: rpm's own %_arch (what rpm and dnf
// install for), or the kernel's when rpm is absent or does not expand the
// macro. It changes nothing on the host, so it never needs sudo.
const ArchProbe = `a=$(rpm --eval '%{_arch}' 2>/dev/null); case "$a" in ''|*[!A-Za-z0-9_]*) a=$(uname -m);; esac; echo "$a"`

// Build is one arch's package of the build a rollout installs.
type Build struct {
	NEVRA string `json:"nevra"`
	// Previous is what the target channel had before for this name and
	// arch; "" if nothing.
	Previous string `json:"previous,omitempty"`
}

// archBuild is a validated Build.
type archBuild struct {
	nv, prev NEVRA
	hasPrev  bool
}

// checkBuilds validates the builds of one rollout: each NEVRA and
// previous, all arches of one name-epoch-version-release, no arch twice,
// and no source package (hosts never install one).
func checkBuilds(bs []Build) ([]archBuild, error) {
	if len(bs) == 0 {
		return nil, fmt.Errorf("%w: nothing to roll out", ErrInventory)
	}
	var out []archBuild
	seen := map[string]bool{}
	for _, b := range bs {
		nv, err := ParseNEVRA(b.NEVRA)
		if err != nil {
			return nil, err
		}
		ab := archBuild{nv: nv}
		if b.Previous != "" {
			if ab.prev, err = ParseNEVRA(b.Previous); err != nil {
				return nil, fmt.Errorf("previous version: %w", err)
			}
			if ab.prev.Name != nv.Name {
				return nil, fmt.Errorf("%w: previous %q is not the same package as %q", ErrInventory, b.Previous, b.NEVRA)
			}
			ab.hasPrev = true
		}
		if nv.Arch == "src" || nv.Arch == "nosrc" {
			return nil, fmt.Errorf("%w: %q is a source package; hosts install binary packages", ErrInventory, b.NEVRA)
		}
		if f := out; len(f) > 0 {
			a := f[0].nv
			if nv.Name != a.Name || epoch(nv.Epoch) != epoch(a.Epoch) || nv.Version != a.Version || nv.Release != a.Release {
				return nil, fmt.Errorf("%w: %q and %q are not one build", ErrInventory, a.String(), nv.String())
			}
		}
		if seen[nv.Arch] {
			return nil, fmt.Errorf("%w: two packages of arch %s in one build", ErrInventory, nv.Arch)
		}
		seen[nv.Arch] = true
		out = append(out, ab)
	}
	return out, nil
}

func epoch(e string) string {
	if e == "" {
		return "0"
	}
	return e
}

// forArch picks the build a host of arch installs: its own arch, else
// noarch.
func forArch(bs []archBuild, arch string) (archBuild, bool) {
	for _, b := range bs {
		if b.nv.Arch == arch {
			return b, true
		}
	}
	for _, b := range bs {
		if b.nv.Arch == "noarch" {
			return b, true
		}
	}
	return archBuild{}, false
}

func buildArches(bs []archBuild) string {
	var as []string
	for _, b := range bs {
		as = append(as, b.nv.Arch)
	}
	return strings.Join(as, ", ")
}

// parseProbe reads what ArchProbe printed: one arch word.
func parseProbe(out string) (string, error) {
	a := strings.TrimSpace(out)
	if !archRE().MatchString(a) {
		return "", fmt.Errorf("arch probe printed %q, not an arch", trimTo(a, 64))
	}
	return a, nil
}

// pickByArch is the executor's choice among a task's per-arch commands.
func pickByArch(byArch map[string]string, arch string) (string, error) {
	if c, ok := byArch[arch]; ok {
		return c, nil
	}
	if c, ok := byArch["noarch"]; ok {
		return c, nil
	}
	as := make([]string, 0, len(byArch))
	for a := range byArch {
		as = append(as, a)
	}
	sort.Strings(as)
	return "", fmt.Errorf("host is %s; the build has %s", arch, strings.Join(as, ", "))
}

func trimTo(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
