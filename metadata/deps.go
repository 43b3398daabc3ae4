package metadata

import (
	"strings"

	rpmutils "github.com/sassoftware/go-rpmutils"
)

// Dependency tag triples (name, flags, version) in the order createrepo_c
// 0.17.3 walks them (parsehdr.c dep_items); the order matters because
// requires are checked against the provides seen before them and because
// legacy weak dependencies are appended to the modern lists.
const (
	depProvides = iota
	depConflicts
	depObsoletes
	depRequires
	depSuggests
	depEnhances
	depRecommends
	depSupplements
	depOldSuggests
	depOldEnhances
)

var depTags = [...][3]int{
	depProvides:    {1047, 1112, 1113},
	depConflicts:   {1054, 1053, 1055},
	depObsoletes:   {1090, 1114, 1115},
	depRequires:    {1049, 1048, 1050},
	depSuggests:    {5049, 5051, 5050},
	depEnhances:    {5055, 5057, 5056},
	depRecommends:  {5046, 5048, 5047},
	depSupplements: {5052, 5054, 5053},
	depOldSuggests: {1156, 1158, 1157},
	depOldEnhances: {1159, 1161, 1160},
}

// RPMSENSE bits that createrepo_c looks at.
const (
	sensePrereq     = 1 << 6
	senseScriptPre  = 1 << 9
	senseScriptPost = 1 << 10
	senseMissingOK  = 1 << 19
	senseStrong     = 1 << 27
)

// flagString is createrepo_c's cr_flag_to_str.
func flagString(f uint64) string {
	switch f & 0xf {
	case 2:
		return "LT"
	case 4:
		return "GT"
	case 8:
		return "EQ"
	case 10:
		return "LE"
	case 12:
		return "GE"
	}
	return ""
}

// isPrimaryFile is createrepo_c's cr_is_primary: the files listed in
// primary.xml (and therefore the file requires a package satisfies itself
// there).
func isPrimaryFile(name string) bool {
	return strings.HasPrefix(name, "/etc/") || name == "/usr/lib/sendmail" || strings.Contains(name, "bin/")
}

// splitEVR is createrepo_c's cr_str_to_evr. ok is false when the epoch is
// present but not a number, in which case createrepo_c drops the relation.
func splitEVR(s string) (epoch, version, release string, ok bool) {
	if s == "" {
		return "", "", "", true
	}
	rest := s
	epoch = "0"
	if i := strings.IndexByte(s, ':'); i >= 0 {
		if !strtolWhole(s[:i]) {
			return "", "", "", false
		}
		if i > 0 {
			epoch = s[:i]
		}
		rest = s[i+1:]
	}
	if j := strings.IndexByte(rest, '-'); j >= 0 {
		return epoch, rest[:j], rest[j+1:], true
	}
	return epoch, rest, "", true
}

// strtolWhole reports whether C's strtol(s, &end, 10) would stop exactly at
// the end of s: empty, or optional white space, an optional sign and at
// least one digit.
func strtolWhole(s string) bool {
	if s == "" {
		return true
	}
	i := 0
	for i < len(s) && (s[i] == ' ' || (s[i] >= '\t' && s[i] <= '\r')) {
		i++
	}
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	d := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i > d && i == len(s)
}

type apValue struct {
	flags, version string
	pre            bool
}

// readDeps fills the eight dependency lists following parsehdr.c.
func readDeps(h *hdr, p *Package, fileNames []string) {
	var files map[string]struct{}
	provided := make(map[string]struct{})
	var seenReq map[string]apValue

	for kind, tags := range depTags {
		// Most kinds are absent: stop at the first missing tag.
		names, ok := h.strs(tags[0])
		if !ok {
			continue
		}
		flags, ok := h.nums(tags[1])
		if !ok {
			continue
		}
		vers, ok := h.strs(tags[2])
		if !ok {
			continue
		}
		n := min(len(names), len(flags), len(vers))
		var libc *Dependency
		for i := range n {
			name, nflags, full := names[i], flags[i], vers[i]
			fl := flagString(nflags)
			nfv := name + fl + full
			pre := false
			if kind == depRequires {
				if strings.HasPrefix(name, "rpmlib(") {
					continue
				}
				if strings.HasPrefix(name, "/") && isPrimaryFile(name) {
					if files == nil {
						files = make(map[string]struct{}, len(fileNames))
						for _, f := range fileNames {
							files[f] = struct{}{}
						}
					}
					if _, own := files[name]; own {
						continue
					}
				}
				if _, ok := provided[nfv]; ok {
					continue
				}
				pre = nflags&(sensePrereq|senseScriptPre|senseScriptPost) != 0
				if v, ok := seenReq[name]; ok && v.flags == fl && v.version == full && v.pre == pre {
					continue
				}
			}
			e, v, r, ok := splitEVR(full)
			if !ok {
				// createrepo_c warns "Bad epoch in version string" and skips.
				continue
			}
			d := Dependency{Name: name, Flags: fl, Epoch: e, Version: v, Release: r}
			switch kind {
			case depProvides:
				provided[nfv] = struct{}{}
				p.Provides = append(p.Provides, d)
			case depConflicts:
				p.Conflicts = append(p.Conflicts, d)
			case depObsoletes:
				p.Obsoletes = append(p.Obsoletes, d)
			case depRequires:
				if nflags&senseMissingOK != 0 {
					p.Recommends = append(p.Recommends, d)
					break
				}
				d.Pre = pre
				if strings.HasPrefix(name, "libc.so.6") {
					if libc == nil || compareLibcDep(libc.Name, name) == 2 {
						dd := d
						libc = &dd
					}
					break
				}
				p.Requires = append(p.Requires, d)
				if seenReq == nil {
					seenReq = make(map[string]apValue)
				}
				seenReq[name] = apValue{flags: fl, version: full, pre: pre}
			case depSuggests:
				p.Suggests = append(p.Suggests, d)
			case depEnhances:
				p.Enhances = append(p.Enhances, d)
			case depRecommends:
				p.Recommends = append(p.Recommends, d)
			case depSupplements:
				p.Supplements = append(p.Supplements, d)
			case depOldSuggests:
				if nflags&senseStrong != 0 {
					p.Recommends = append(p.Recommends, d)
				} else {
					p.Suggests = append(p.Suggests, d)
				}
			case depOldEnhances:
				if nflags&senseStrong != 0 {
					p.Supplements = append(p.Supplements, d)
				} else {
					p.Enhances = append(p.Enhances, d)
				}
			}
		}
		if kind == depRequires && libc != nil {
			p.Requires = append(p.Requires, *libc)
		}
	}
}

// compareLibcDep is createrepo_c's cr_compare_dependency for two
// libc.so.6 requirements: 0 same, 1 first bigger, 2 second bigger.
func compareLibcDep(a, b string) int {
	if a == b {
		return 0
	}
	i1, i2 := strings.IndexByte(a, '('), strings.IndexByte(b, '(')
	switch {
	case i1 < 0 && i2 < 0:
		return 0
	case i1 < 0:
		return 2
	case i2 < 0:
		return 1
	}
	v1, v2 := a[i1:], b[i2:]
	e1, e2 := strings.IndexByte(v1, ')'), strings.IndexByte(v2, ')')
	switch {
	case e1 < 0 && e2 < 0:
		return -1
	case e1 < 0:
		return 2
	case e2 < 0:
		return 1
	}
	// Positions relative to v1/v2: content is v[1:e].
	switch {
	case e1 == 1 && e2 == 1:
		return 0
	case e1 == 1:
		return 2
	case e2 == 1:
		return 1
	}
	d1, d2 := firstDigit(v1, 1), firstDigit(v2, 1)
	switch {
	case d1 > e1 && d2 > e2:
		return 0
	case d1 > e1:
		return 2
	case d2 > e2:
		return 1
	}
	r := rpmutils.Vercmp(v1[d1:e1], v2[d2:e2])
	if r == -1 {
		return 2
	}
	return r
}

// firstDigit returns the index of the first ASCII digit in s at or after
// from, or len(s) when there is none (C walks to the terminating NUL).
func firstDigit(s string, from int) int {
	for i := from; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			return i
		}
	}
	return len(s)
}
