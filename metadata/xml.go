package metadata

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrControlChars: a text field holds an ASCII control character other
// than tab, newline and carriage return. createrepo_c refuses to dump such
// a package ("Forbidden control chars found") and leaves it out of the
// repodata; callers should do the same.
var ErrControlChars = errors.New("metadata: forbidden control characters in package metadata")

// ChangelogNone as RenderOptions.ChangelogLimit writes no changelog.
const ChangelogNone = -2

// DefaultChangelogLimit is createrepo_c's default --changelog-limit.
const DefaultChangelogLimit = 10

// RenderOptions controls (*Package).Entry.
type RenderOptions struct {
	// ChangelogLimit is how many of the newest changelog entries to keep:
	// 0 means DefaultChangelogLimit (10), -1 means all, ChangelogNone
	// none. Use ChangelogLimitFromFlag for createrepo_c's flag semantics.
	ChangelogLimit int
	// BaseURL becomes <location xml:base=...>; a leading "/" gets
	// "file://" prepended, as createrepo_c does.
	BaseURL string
}

// ChangelogLimitFromFlag maps createrepo_c's --changelog-limit value to
// RenderOptions.ChangelogLimit: 0 keeps none, -1 all, below -1 the default.
func ChangelogLimitFromFlag(n int) int {
	switch {
	case n == 0:
		return ChangelogNone
	case n < -1:
		return DefaultChangelogLimit
	}
	return n
}

// Document wrappers, byte-identical to createrepo_c's xml_file.c. A
// document is header + fragments (sorted by file name) + footer; the
// footer has no trailing newline.
const (
	xmlDecl         = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	primaryFooter   = "</metadata>"
	filelistsFooter = "</filelists>"
	otherFooter     = "</otherdata>"
)

// PrimaryHeader is the start of primary.xml for n packages.
func PrimaryHeader(n int) []byte {
	return fmt.Appendf(nil, xmlDecl+"<metadata xmlns=\"http://linux.duke.edu/metadata/common\" xmlns:rpm=\"http://linux.duke.edu/metadata/rpm\" packages=\"%d\">\n", n)
}

// PrimaryFooter ends primary.xml.
func PrimaryFooter() []byte { return []byte(primaryFooter) }

// FilelistsHeader is the start of filelists.xml for n packages.
func FilelistsHeader(n int) []byte {
	return fmt.Appendf(nil, xmlDecl+"<filelists xmlns=\"http://linux.duke.edu/metadata/filelists\" packages=\"%d\">\n", n)
}

// FilelistsFooter ends filelists.xml.
func FilelistsFooter() []byte { return []byte(filelistsFooter) }

// OtherHeader is the start of other.xml for n packages.
func OtherHeader(n int) []byte {
	return fmt.Appendf(nil, xmlDecl+"<otherdata xmlns=\"http://linux.duke.edu/metadata/other\" packages=\"%d\">\n", n)
}

// OtherFooter ends other.xml.
func OtherFooter() []byte { return []byte(otherFooter) }

// Entry renders p's three repodata fragments for a file at href (relative
// to the repository). p.PkgID must be set (ReadFile does). It returns
// ErrControlChars for metadata createrepo_c refuses to write.
func (p *Package) Entry(href string, o RenderOptions) (*Entry, error) {
	if p.PkgID == "" {
		return nil, errNoPkgID
	}
	changes := p.selectChangelog(o.ChangelogLimit)
	if f := p.controlCharField(href, o.BaseURL, changes); f != "" {
		return nil, fmt.Errorf("%w: %s of %s", ErrControlChars, f, p.NEVRA())
	}
	return &Entry{
		PkgID: p.PkgID, Name: p.Name, Arch: p.Arch, Epoch: p.Epoch,
		Version: p.Version, Release: p.Release,
		Href: href, Size: p.PackageSize, MTime: p.FileTime,
		Primary:   p.appendPrimary(make([]byte, 0, 2048), href, o.BaseURL),
		Filelists: p.appendFilelists(make([]byte, 0, 256+64*len(p.Files))),
		Other:     appendOther(make([]byte, 0, 256), p, changes),
	}, nil
}

// bumpEqualTimes does what createrepo_c's parsehdr.c does while reading
// the changelog (newest first): when an entry has the same time as the
// last distinct one, walk back over the entries before it while each
// equals the running time and add one second to each. createrepo_c's walk
// is quadratic in a run of equal times; a hostile package with 10^5 equal
// entries would take minutes. The walked entries always form a staircase
// (each one second above its successor), so it is kept implicitly as
// [start, top] with the value at top and written out when it ends.
func bumpEqualTimes(sel []ChangelogEntry) {
	var last int64
	start, top := 0, -1 // empty staircase
	var base int64      // value of sel[top]; sel[j] = base + (top - j)
	flush := func() {
		for j := start; j <= top; j++ {
			sel[j].Time = base + int64(top-j)
		}
	}
	for i := range sel {
		t := sel[i].Time
		if t == last && top == i-1 {
			// The whole staircase matches the walk (its top equals t);
			// the walk continues into older, settled entries while they
			// equal the running time.
			j := start - 1
			if top < 0 {
				j = i - 1
			}
			for j >= 0 && sel[j].Time == t+int64(i-1-j) {
				j--
			}
			start, top, base = j+1, i, t
			continue
		}
		flush()
		start, top, base = i, i, t
		last = t
	}
	flush()
}

// selectChangelog applies createrepo_c's changelog rules: keep the first
// limit entries of the header (the newest), write them oldest first, and
// where consecutive entries share a timestamp bump the newer ones by a
// second each so that dates stay distinct.
func (p *Package) selectChangelog(limit int) []ChangelogEntry {
	switch {
	case limit == 0:
		limit = DefaultChangelogLimit
	case limit == ChangelogNone:
		return nil
	case limit < 0:
		limit = len(p.Changelog)
	}
	k := min(limit, len(p.Changelog))
	sel := make([]ChangelogEntry, k)
	copy(sel, p.Changelog[:k])
	bumpEqualTimes(sel)
	// Reverse into output order (oldest first).
	for i, j := 0, len(sel)-1; i < j; i, j = i+1, j-1 {
		sel[i], sel[j] = sel[j], sel[i]
	}
	return sel
}

func hasControlChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 32 && c != '\t' && c != '\n' && c != '\r' {
			return true
		}
	}
	return false
}

// controlCharField names the first field createrepo_c's
// cr_Package_contains_forbidden_control_chars would object to.
func (p *Package) controlCharField(href, base string, changes []ChangelogEntry) string {
	for _, f := range []struct{ name, v string }{
		{"name", p.Name}, {"arch", p.Arch}, {"version", p.Version}, {"epoch", p.Epoch},
		{"release", p.Release}, {"summary", p.Summary}, {"description", p.Description},
		{"url", p.URL}, {"license", p.License}, {"vendor", p.Vendor}, {"group", p.Group},
		{"buildhost", p.BuildHost}, {"sourcerpm", p.SourceRPM}, {"packager", p.Packager},
		{"location href", href}, {"location base", base},
	} {
		if hasControlChars(f.v) {
			return f.name
		}
	}
	for _, l := range [][]Dependency{p.Requires, p.Provides, p.Conflicts, p.Obsoletes,
		p.Suggests, p.Enhances, p.Recommends, p.Supplements} {
		for _, d := range l {
			if hasControlChars(d.Name) || hasControlChars(d.Epoch) || hasControlChars(d.Version) || hasControlChars(d.Release) {
				return "dependency " + strconv.Quote(d.Name)
			}
		}
	}
	for _, f := range p.Files {
		if hasControlChars(f.Path) {
			return "file " + strconv.Quote(f.Path)
		}
	}
	for _, c := range changes {
		if hasControlChars(c.Author) || hasControlChars(c.Text) {
			return "changelog"
		}
	}
	return ""
}

var depElems = [8]string{"rpm:provides", "rpm:requires", "rpm:conflicts", "rpm:obsoletes",
	"rpm:suggests", "rpm:enhances", "rpm:recommends", "rpm:supplements"}

func (p *Package) appendPrimary(b []byte, href, base string) []byte {
	b = append(b, "<package type=\"rpm\">\n  <name>"...)
	b = appendText(b, p.Name)
	b = append(b, "</name>\n  <arch>"...)
	b = appendText(b, p.Arch)
	b = append(b, "</arch>\n"...)
	b = appendVersion(b, p, true)
	b = append(b, "  <checksum type=\"sha256\" pkgid=\"YES\">"...)
	b = appendText(b, p.PkgID)
	b = append(b, "</checksum>\n  <summary>"...)
	b = appendText(b, p.Summary)
	b = append(b, "</summary>\n  <description>"...)
	b = appendText(b, p.Description)
	b = append(b, "</description>\n  <packager>"...)
	b = appendText(b, p.Packager)
	b = append(b, "</packager>\n  <url>"...)
	b = appendText(b, p.URL)
	b = append(b, "</url>\n  <time file=\""...)
	b = strconv.AppendInt(b, p.FileTime, 10)
	b = append(b, "\" build=\""...)
	b = strconv.AppendInt(b, p.BuildTime, 10)
	b = append(b, "\"/>\n  <size package=\""...)
	b = strconv.AppendInt(b, p.PackageSize, 10)
	b = append(b, "\" installed=\""...)
	b = strconv.AppendInt(b, p.InstalledSize, 10)
	b = append(b, "\" archive=\""...)
	b = strconv.AppendInt(b, p.ArchiveSize, 10)
	b = append(b, "\"/>\n  <location "...)
	if base != "" {
		if base[0] == '/' {
			base = "file://" + base
		}
		b = append(b, "xml:base=\""...)
		b = appendAttr(b, base, true)
		b = append(b, "\" "...)
	}
	b = append(b, "href=\""...)
	b = appendAttr(b, href, true)
	b = append(b, "\"/>\n  <format>\n    <rpm:license>"...)
	b = appendText(b, p.License)
	b = append(b, "</rpm:license>\n    <rpm:vendor>"...)
	b = appendText(b, p.Vendor)
	b = append(b, "</rpm:vendor>\n    <rpm:group>"...)
	b = appendText(b, p.Group)
	b = append(b, "</rpm:group>\n    <rpm:buildhost>"...)
	b = appendText(b, p.BuildHost)
	b = append(b, "</rpm:buildhost>\n    <rpm:sourcerpm>"...)
	b = appendText(b, p.SourceRPM)
	b = append(b, "</rpm:sourcerpm>\n    <rpm:header-range start=\""...)
	b = strconv.AppendInt(b, p.HeaderStart, 10)
	b = append(b, "\" end=\""...)
	b = strconv.AppendInt(b, p.HeaderEnd, 10)
	b = append(b, "\"/>\n"...)
	for i, l := range [8][]Dependency{p.Provides, p.Requires, p.Conflicts, p.Obsoletes,
		p.Suggests, p.Enhances, p.Recommends, p.Supplements} {
		b = appendDeps(b, depElems[i], l, i == 1)
	}
	b = appendFiles(b, p.Files, "    ", true)
	return append(b, "  </format>\n</package>\n"...)
}

func appendDeps(b []byte, elem string, deps []Dependency, requires bool) []byte {
	if len(deps) == 0 {
		return b
	}
	b = append(b, "    <"...)
	b = append(b, elem...)
	open := len(b)
	b = append(b, ">\n"...)
	n := 0
	for _, d := range deps {
		if d.Name == "" {
			continue
		}
		n++
		b = append(b, "      <rpm:entry name=\""...)
		b = appendAttr(b, d.Name, true)
		b = append(b, '"')
		if d.Flags != "" {
			b = append(b, " flags=\""...)
			b = append(b, d.Flags...)
			b = append(b, '"')
			for _, a := range [3][2]string{{" epoch=\"", d.Epoch}, {" ver=\"", d.Version}, {" rel=\"", d.Release}} {
				if a[1] != "" {
					b = append(b, a[0]...)
					b = appendAttr(b, a[1], true)
					b = append(b, '"')
				}
			}
		}
		if requires && d.Pre {
			b = append(b, " pre=\"1\""...)
		}
		b = append(b, "/>\n"...)
	}
	if n == 0 {
		// libxml2 writes a childless element in its short form.
		return append(b[:open], "/>\n"...)
	}
	b = append(b, "    </"...)
	b = append(b, elem...)
	return append(b, ">\n"...)
}

func appendFiles(b []byte, files []File, indent string, primary bool) []byte {
	for _, f := range files {
		if primary && !isPrimaryFile(f.Path) {
			continue
		}
		b = append(b, indent...)
		b = append(b, "<file"...)
		if f.Type != "" && f.Type != "file" {
			b = append(b, " type=\""...)
			b = appendAttr(b, f.Type, true)
			b = append(b, '"')
		}
		b = append(b, '>')
		b = appendText(b, f.Path)
		b = append(b, "</file>\n"...)
	}
	return b
}

// appendVersion writes <version epoch= ver= rel=/>. other.xml uses
// libxml2's xmlNewProp directly, without createrepo_c's Latin-1 fallback.
func appendVersion(b []byte, p *Package, convert bool) []byte {
	b = append(b, "  <version epoch=\""...)
	b = appendAttr(b, p.Epoch, convert)
	b = append(b, "\" ver=\""...)
	b = appendAttr(b, p.Version, convert)
	b = append(b, "\" rel=\""...)
	b = appendAttr(b, p.Release, convert)
	return append(b, "\"/>\n"...)
}

func appendPackageAttrs(b []byte, p *Package) []byte {
	b = append(b, "<package pkgid=\""...)
	b = appendAttr(b, p.PkgID, true)
	b = append(b, "\" name=\""...)
	b = appendAttr(b, p.Name, true)
	b = append(b, "\" arch=\""...)
	b = appendAttr(b, p.Arch, true)
	return append(b, "\">\n"...)
}

func (p *Package) appendFilelists(b []byte) []byte {
	b = appendPackageAttrs(b, p)
	b = appendVersion(b, p, true)
	b = appendFiles(b, p.Files, "  ", false)
	return append(b, "</package>\n"...)
}

func appendOther(b []byte, p *Package, changes []ChangelogEntry) []byte {
	b = appendPackageAttrs(b, p)
	b = appendVersion(b, p, false)
	for _, c := range changes {
		b = append(b, "  <changelog author=\""...)
		b = appendAttr(b, c.Author, true)
		b = append(b, "\" date=\""...)
		b = strconv.AppendInt(b, c.Time, 10)
		b = append(b, "\">"...)
		b = appendText(b, c.Text)
		b = append(b, "</changelog>\n"...)
	}
	return append(b, "</package>\n"...)
}
