// Package nevra holds the one rule for what a package name, epoch,
// version, release and arch may contain before repoctl builds a path, a
// URL, a shell word, an event or a log line from it.
//
// The fields come from RPM headers and from arguments people type, and
// both may be hostile: a Name of "../../prod/el/9/x86_64/x" must never
// become a file name. The rules are those rpmbuild applies to what it
// builds (rpm's rpmCharCheck: letters, digits and ".-_+" in names,
// "._+~^" in versions and releases, no ".."), made stricter where rpmbuild
// only warns: the macro characters "%{}" are refused, since they only appear
// in a package that was built with an unexpanded macro and are awkward in
// URLs. Arch is [A-Za-z0-9_]+.
//
// It is not an RPM parser and does not compare versions.
package nevra

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is wrapped by every error of this package.
var ErrInvalid = errors.New("invalid package field")

// Why is err's message without the ErrInvalid prefix, for callers that
// wrap it in their own sentinel or reason code.
func Why(err error) string {
	return strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": ")
}

// Limits keep N-V-R.A.rpm within NAME_MAX (255) with room for the suffixes
// the publisher and the rejected/ directory add.
const (
	MaxName    = 128
	MaxVersion = 64
	MaxRelease = 64
	MaxArch    = 32
	MaxEpoch   = 10 // digits; rpm's epoch is a uint32
	MaxSpec    = 240
)

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// check applies the character set allowed (besides letters and digits) and
// the length limit to one field; what names the field in the error.
func check(what, s, allowed string, max int) error {
	if s == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalid, what)
	}
	if len(s) > max {
		return fmt.Errorf("%w: %s is %d bytes long (at most %d)", ErrInvalid, what, len(s), max)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlnum(c) || strings.IndexByte(allowed, c) >= 0 {
			continue
		}
		return fmt.Errorf("%w: %s contains %s", ErrInvalid, what, describe(c))
	}
	if strings.Contains(s, "..") {
		return fmt.Errorf("%w: %s contains \"..\"", ErrInvalid, what)
	}
	return nil
}

// describe names a refused byte so that the message itself stays one safe
// line: "/" is shown, a newline or ESC by its escape.
func describe(c byte) string {
	switch {
	case c == '/':
		return `"/"`
	case c == ' ' || c == '\t' || c == '\n' || c == '\r':
		return fmt.Sprintf("whitespace %q", rune(c))
	case c < 0x20 || c == 0x7f:
		return fmt.Sprintf("control character %q", rune(c))
	case c >= 0x80:
		return fmt.Sprintf("non-ASCII byte 0x%02x", c)
	}
	return fmt.Sprintf("%q", rune(c))
}

// Name checks a package name: letters, digits and ".-_+", starting with a
// letter, digit or "_".
func Name(s string) error {
	if err := check("name", s, ".-_+", MaxName); err != nil {
		return err
	}
	if c := s[0]; !isAlnum(c) && c != '_' {
		return fmt.Errorf("%w: name starts with %s", ErrInvalid, describe(c))
	}
	return nil
}

// Epoch checks an epoch: empty (none) or decimal digits.
func Epoch(s string) error {
	if s == "" {
		return nil
	}
	if len(s) > MaxEpoch {
		return fmt.Errorf("%w: epoch is %d digits long (at most %d)", ErrInvalid, len(s), MaxEpoch)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return fmt.Errorf("%w: epoch contains %s (it must be a number)", ErrInvalid, describe(s[i]))
		}
	}
	return nil
}

// Version checks a version: letters, digits and "._+~^"; no "-", which
// separates version from release.
func Version(s string) error { return check("version", s, "._+~^", MaxVersion) }

// Release checks a release like Version.
func Release(s string) error { return check("release", s, "._+~^", MaxRelease) }

// Arch checks an arch: [A-Za-z0-9_]+.
func Arch(s string) error { return check("arch", s, "_", MaxArch) }

// Check validates all five header fields, name first.
func Check(name, epoch, version, release, arch string) error {
	for _, err := range []error{Name(name), Epoch(epoch), Version(version), Release(release), Arch(arch)} {
		if err != nil {
			return err
		}
	}
	return nil
}

// FileName is the file a package is placed as, N-V-R.A.rpm, for fields
// that passed Check. It refuses fields that did not, so that no caller can
// build a path from an unchecked header by forgetting to call Check.
func FileName(name, version, release, arch string) (string, error) {
	if err := Check(name, "", version, release, arch); err != nil {
		return "", err
	}
	return name + "-" + version + "-" + release + "." + arch + ".rpm", nil
}

// Spec checks what a person typed to name packages: a name, N-V-R,
// N-[E:]V-R.A or N-V-R.A.rpm. It cannot be split unambiguously (names
// contain "-" and "."), so it is checked as a whole against the union of
// the field rules plus ":" for the epoch: whatever matches a stored package
// afterwards is then exactly a valid NEVRA.
func Spec(s string) error {
	if err := check("package spec", s, ".-_+~^:", MaxSpec); err != nil {
		return err
	}
	if c := s[0]; !isAlnum(c) && c != '_' {
		return fmt.Errorf("%w: package spec starts with %s", ErrInvalid, describe(c))
	}
	return nil
}
