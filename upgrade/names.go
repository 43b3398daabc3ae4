package upgrade

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// Package names and NEVRAs reach a remote shell. They are checked against
// these patterns first and then single-quoted, so that even a name that
// slipped through could not inject: the pattern is the policy, the quoting
// the belt and braces.
var (
	// Compiled on first use: their bounded repetitions make large programs,
	// which every repoctl command (createrepo too) would otherwise build at start.
	nameRE  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._+-]{0,199}$`) })
	nevraRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^([A-Za-z0-9_][A-Za-z0-9._+-]{0,199})-(?:([0-9]{1,10}):)?([A-Za-z0-9._+~^]{1,100})-([A-Za-z0-9._+~^]{1,100})\.([A-Za-z0-9_]{1,32})$`)
	})
)

// NEVRA is a parsed name-[epoch:]version-release.arch.
type NEVRA struct {
	Name, Epoch, Version, Release, Arch string
}

// ParseNEVRA validates s strictly. Arch is required: a rollout installs one
// exact build.
func ParseNEVRA(s string) (NEVRA, error) {
	m := nevraRE().FindStringSubmatch(s)
	if m == nil || strings.Contains(s, "..") {
		return NEVRA{}, fmt.Errorf("%w: %q is not name-[epoch:]version-release.arch", ErrUnsafeName, s)
	}
	return NEVRA{Name: m[1], Epoch: m[2], Version: m[3], Release: m[4], Arch: m[5]}, nil
}

// String is name-[epoch:]version-release.arch, the form yum and dnf take.
func (n NEVRA) String() string {
	if n.Epoch != "" && n.Epoch != "0" {
		return fmt.Sprintf("%s-%s:%s-%s.%s", n.Name, n.Epoch, n.Version, n.Release, n.Arch)
	}
	return n.NVRA()
}

// NVRA omits the epoch: the form rpm -q takes on every EL release.
func (n NEVRA) NVRA() string {
	return fmt.Sprintf("%s-%s-%s.%s", n.Name, n.Version, n.Release, n.Arch)
}

// ValidName checks a bare package name.
func ValidName(s string) error {
	if !nameRE().MatchString(s) {
		return fmt.Errorf("%w: %q", ErrUnsafeName, s)
	}
	return nil
}

// ShellQuote returns s as one POSIX shell word.
func ShellQuote(s string) string {
	if s == "" {
		return "''"
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
