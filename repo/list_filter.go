package repo

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/repoctl/repoctl/internal/nevra"
)

// Bounds of a name pattern: a pattern is at most a name long plus room
// for its metacharacters, and a List takes few of them.
const (
	maxNamePattern  = 2 * nevra.MaxName
	maxNamePatterns = 64
)

// globMeta are the characters that make a pattern more than a name:
// path.Match's "*", "?", "[...]" with "^" for negation, and "\" escapes.
const globMeta = `*?[]^\`

// listFilter is a checked ListOptions: every filter that is set must match.
type listFilter struct {
	channel string
	names   []string // patterns; none means every name
	arch    string
	release string
	// archKnown: arch is one the config or the index knows; otherwise
	// List accepts it only if some package has it.
	archKnown bool
}

// newListFilter checks o: a pattern no name could match because of what
// it contains, or that path.Match cannot parse, a channel, arch or release
// the root does not know, are errors rather than an empty list.
func (r *Repo) newListFilter(o ListOptions) (*listFilter, error) {
	f := &listFilter{}
	var pats []string
	if o.Name != "" {
		pats = append(pats, o.Name)
	}
	for _, p := range o.Names {
		// An empty --name always meant "every name".
		if p != "" {
			pats = append(pats, p)
		}
	}
	if len(pats) > maxNamePatterns {
		return nil, fmt.Errorf("%w: %d name patterns (at most %d)", ErrBadOption, len(pats), maxNamePatterns)
	}
	for _, p := range pats {
		if err := checkNamePattern(p); err != nil {
			return nil, err
		}
	}
	f.names = pats
	if o.Channel != "" {
		if _, err := r.cfg.checkChannel(o.Channel, ""); err != nil {
			return nil, err
		}
		f.channel = o.Channel
	}
	if o.Release != "" {
		rel, err := ParseRelease(o.Release)
		if err != nil {
			return nil, err
		}
		known := r.knownReleases(false)
		if _, ok := known[rel]; !ok {
			return nil, fmt.Errorf("%w: unknown release %q (known: %s)", ErrBadOption, rel, strings.Join(sortedKeys(boolSet(known)), ", "))
		}
		f.release = rel
	}
	if o.Arch != "" {
		if err := nevra.Arch(o.Arch); err != nil {
			return nil, fmt.Errorf("%w: --arch %q: %s", ErrBadOption, o.Arch, nevra.Why(err))
		}
		f.arch = o.Arch
		f.archKnown = slices.Contains(r.knownArches(), o.Arch)
	}
	return f, nil
}

// knownArches are the package arches a root can hold: every binary arch
// of a known release, noarch and the source arches.
func (r *Repo) knownArches() []string {
	set := map[string]bool{"noarch": true, "src": true, "nosrc": true}
	for _, a := range r.cfg.allArches() {
		set[a] = true
	}
	for _, arches := range r.knownReleases(false) {
		for a := range arches {
			if a != "SRPMS" {
				set[a] = true
			}
		}
	}
	return sortedKeys(set)
}

// unknownArch is the error for an arch filter that names no arch of the
// root and of no package in it: a typo, not an empty list.
func (r *Repo) unknownArch(arch string) error {
	return fmt.Errorf("%w: unknown arch %q (known: %s)", ErrBadOption, arch, strings.Join(r.knownArches(), ", "))
}

// checkNamePattern refuses a pattern with a character no package name
// has (other than path.Match's metacharacters) and one path.Match cannot
// parse. A pattern without metacharacters must be a valid name: that is
// the rule `list --name` always applied.
func checkNamePattern(p string) error {
	if !strings.ContainsAny(p, globMeta) {
		if err := nevra.Name(p); err != nil {
			return fmt.Errorf("%w: %s", ErrInvalidName, nevra.Why(err))
		}
		return nil
	}
	if len(p) > maxNamePattern {
		return fmt.Errorf("%w: name pattern is %d bytes long (at most %d)", ErrInvalidName, len(p), maxNamePattern)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if isPatternByte(c) {
			continue
		}
		hint := ""
		if c == '!' {
			hint = " (path.Match negates a class with ^, as in [^a]*)"
		}
		return fmt.Errorf("%w: name pattern %q contains %q, which no package name has%s", ErrInvalidName, p, rune(c), hint)
	}
	// path.Match checks the whole pattern when the name does not match,
	// and the empty name never matches one with a metacharacter.
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("%w: bad name pattern %q: %v (path.Match syntax: *, ?, [a-z], [^a-z], \\ to escape)", ErrBadOption, p, err)
	}
	return nil
}

func isPatternByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte(".-_+", c) >= 0 || strings.IndexByte(globMeta, c) >= 0
}

// match reports whether p passes every filter. Channel and release must
// hold for one and the same placement.
func (f *listFilter) match(p *PackageRecord) bool {
	if f.arch != "" && p.Arch != f.arch {
		return false
	}
	if len(f.names) > 0 && !slices.ContainsFunc(f.names, func(pat string) bool {
		ok, _ := path.Match(pat, p.Name) // checked in newListFilter
		return ok
	}) {
		return false
	}
	if f.channel == "" && f.release == "" {
		return true
	}
	return slices.ContainsFunc(p.Placements, func(pl Placement) bool {
		return (f.channel == "" || pl.Channel == f.channel) && (f.release == "" || pl.Release == f.release)
	})
}
