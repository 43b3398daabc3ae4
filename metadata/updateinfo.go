package metadata

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// updateinfo.xml as createrepo_c 0.17.3 writes it (cr_xml_dump_updateinfo,
// which modifyrepo_c publishes unchanged) and reads it
// (cr_xml_parse_updateinfo). dnf finds advisories here: `dnf updateinfo`,
// `dnf upgrade --security`, `--advisory=ID`.

// Sentinel errors of ParseUpdateInfo and MarshalUpdateInfo. Compare with
// errors.Is.
var (
	// ErrUpdateInfoMalformed is input that is not updateinfo.xml: not
	// well-formed XML, not UTF-8, no <updates> root, nesting deeper than
	// any real file, or text that XML cannot carry.
	ErrUpdateInfoMalformed = errors.New("metadata: malformed updateinfo")
	// ErrUpdateInfoTooLarge is input over one of the caps: the document
	// size, the number of updates, references, collections or packages,
	// or the length of one text.
	ErrUpdateInfoTooLarge = errors.New("metadata: updateinfo exceeds a size limit")
	// ErrUpdateInfoText is an Advisory field MarshalUpdateInfo cannot
	// write as well-formed XML: invalid UTF-8, or a character XML 1.0
	// does not allow (C0 controls other than tab, newline and carriage
	// return, U+FFFE, U+FFFF). createrepo_c would write it as is and dnf
	// could then not read the file.
	ErrUpdateInfoText = errors.New("metadata: advisory text that XML cannot carry")
)

// Caps of ParseUpdateInfo. Real files stay far below them: RHEL 9 BaseOS
// has a few thousand updates, descriptions of some KiB.
const (
	MaxUpdateInfoSize   = 64 << 20  // bytes of one document
	MaxUpdates          = 1 << 16   // <update> elements
	MaxUpdateReferences = 4096      // <reference> per update
	MaxUpdateCollection = 256       // <collection> per update
	MaxUpdatePackages   = 1 << 16   // <package> per update, all collections
	MaxUpdateLongText   = 256 << 10 // title, summary, description, solution, rights
	MaxUpdateShortText  = 4096      // every other text and attribute
	maxUpdateInfoDepth  = 64        // element nesting, unknown elements included
	maxUpdateInfoTotal  = 1 << 20   // <package> in the whole document
)

// Advisory is one <update> of updateinfo.xml, field for field what
// createrepo_c's cr_UpdateRecord holds. An empty string is an absent field:
// createrepo_c's parser makes empty content NULL and its writer leaves NULL
// out, so "" and a missing element are the same advisory. (An attribute
// present but empty, which createrepo_c keeps, is dropped.)
type Advisory struct {
	From    string `json:"from,omitempty"`    // <update from=>, the issuer's address
	Status  string `json:"status,omitempty"`  // <update status=>: final, stable, testing
	Type    string `json:"type,omitempty"`    // <update type=>: security, bugfix, enhancement, newpackage
	Version string `json:"version,omitempty"` // <update version=>

	ID    string `json:"id,omitempty"`
	Title string `json:"title,omitempty"`
	// Issued and Updated are the date attributes as written: createrepo_c
	// keeps them as strings ("2026-12-01 00:00:00", or epoch seconds).
	Issued  string `json:"issued,omitempty"`
	Updated string `json:"updated,omitempty"`

	Rights      string `json:"rights,omitempty"`
	Release     string `json:"release,omitempty"`
	Pushcount   string `json:"pushcount,omitempty"`
	Severity    string `json:"severity,omitempty"` // Critical, Important, Moderate, Low
	Summary     string `json:"summary,omitempty"`
	Description string `json:"description,omitempty"`
	Solution    string `json:"solution,omitempty"`

	RebootSuggested bool `json:"reboot_suggested,omitempty"`

	References  []AdvisoryReference  `json:"references,omitempty"`
	Collections []AdvisoryCollection `json:"collections,omitempty"`
}

// AdvisoryReference is one <reference>: a CVE, a bug, the advisory's page.
type AdvisoryReference struct {
	Href  string `json:"href,omitempty" toml:"href"`
	ID    string `json:"id,omitempty" toml:"id"`
	Type  string `json:"type,omitempty" toml:"type"` // cve, bugzilla, self, other
	Title string `json:"title,omitempty" toml:"title"`
}

// AdvisoryCollection is one <collection> of the <pkglist>.
type AdvisoryCollection struct {
	Short    string            `json:"short,omitempty"` // <collection short=>
	Name     string            `json:"name,omitempty"`
	Module   *AdvisoryModule   `json:"module,omitempty"`
	Packages []AdvisoryPackage `json:"packages,omitempty"`
}

// AdvisoryModule is the <module> of a modular collection.
type AdvisoryModule struct {
	Name    string `json:"name,omitempty"`
	Stream  string `json:"stream,omitempty"`
	Version uint64 `json:"version"` // always written, 0 when unknown
	Context string `json:"context,omitempty"`
	Arch    string `json:"arch,omitempty"`
}

// AdvisoryPackage is one <package> of a collection: the package the
// advisory is about, matched by dnf on name, epoch, version, release and
// arch.
type AdvisoryPackage struct {
	Name     string `json:"name,omitempty"`
	Version  string `json:"version,omitempty"`
	Release  string `json:"release,omitempty"`
	Epoch    string `json:"epoch,omitempty"`
	Arch     string `json:"arch,omitempty"`
	Src      string `json:"src,omitempty"`      // the source package's file name
	Filename string `json:"filename,omitempty"` // the package's file name
	// Sum is the package file's checksum, SumType its algorithm as
	// createrepo_c names it (md5, sha, sha1, sha224, sha256, sha384,
	// sha512); "" with a Sum is createrepo_c's unknown type. SumType
	// means nothing without a Sum.
	Sum              string `json:"sum,omitempty"`
	SumType          string `json:"sum_type,omitempty"`
	RebootSuggested  bool   `json:"reboot_suggested,omitempty"`
	RestartSuggested bool   `json:"restart_suggested,omitempty"`
	ReloginSuggested bool   `json:"relogin_suggested,omitempty"`
}

// unknownChecksum is what createrepo_c writes as the type of a sum whose
// type it does not know.
const unknownChecksum = "Unknown checksum"

// checksumTypeName is createrepo_c's cr_checksum_type followed by
// cr_checksum_name_str: the name a type attribute is written back as, ""
// for an unknown one.
func checksumTypeName(s string) string {
	if len(s) > 7 {
		return ""
	}
	s = strings.ToLower(s)
	switch {
	case strings.HasPrefix(s, "md"):
		if len(s) > 2 && s[2] == '5' {
			return "md5"
		}
	case strings.HasPrefix(s, "sha"):
		switch s[3:] {
		case "", "1", "224", "256", "384", "512":
			return s
		}
	}
	return ""
}

// MarshalUpdateInfo writes advs as updateinfo.xml byte for byte as
// createrepo_c 0.17.3's cr_xml_dump_updateinfo does (libxml2's pretty
// printer, two-space indentation, UTF-8), in the order given. Empty
// fields are left out, as createrepo_c leaves out NULL ones. It fails with
// ErrUpdateInfoText on text XML cannot carry, where createrepo_c would
// write a file nobody can read.
func MarshalUpdateInfo(advs []Advisory) ([]byte, error) {
	for i := range advs {
		if err := checkAdvisoryText(&advs[i]); err != nil {
			return nil, err
		}
	}
	b := []byte("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
	if len(advs) == 0 {
		return append(b, "<updates/>\n"...), nil
	}
	b = append(b, "<updates>\n"...)
	for i := range advs {
		b = appendAdvisory(b, &advs[i])
	}
	return append(b, "</updates>\n"...), nil
}

// appendUIAttr writes name="value" when value is not empty. Attributes of
// a node inside a document are escaped by libxml2 for &, <, >, " and the
// three whitespace controls; other characters go out as UTF-8.
func appendUIAttr(b []byte, name, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, ' ')
	b = append(b, name...)
	b = append(b, `="`...)
	last := 0
	for i := 0; i < len(value); i++ {
		var rep string
		switch value[i] {
		case '&':
			rep = "&amp;"
		case '<':
			rep = "&lt;"
		case '>':
			rep = "&gt;"
		case '"':
			rep = "&quot;"
		case '\n':
			rep = "&#10;"
		case '\r':
			rep = "&#13;"
		case '\t':
			rep = "&#9;"
		default:
			continue
		}
		b = append(b, value[last:i]...)
		b = append(b, rep...)
		last = i + 1
	}
	b = append(b, value[last:]...)
	return append(b, '"')
}

// appendUIText writes indent<name>text</name> and a newline when text is
// not empty.
func appendUIText(b []byte, indent, name, text string) []byte {
	if text == "" {
		return b
	}
	b = append(b, indent...)
	b = append(b, '<')
	b = append(b, name...)
	b = append(b, '>')
	b = appendText(b, text)
	b = append(b, "</"...)
	b = append(b, name...)
	return append(b, ">\n"...)
}

func appendAdvisory(b []byte, a *Advisory) []byte {
	const in = "    "
	b = append(b, "  <update"...)
	b = appendUIAttr(b, "from", a.From)
	b = appendUIAttr(b, "status", a.Status)
	b = appendUIAttr(b, "type", a.Type)
	b = appendUIAttr(b, "version", a.Version)
	b = append(b, ">\n"...)
	b = appendUIText(b, in, "id", a.ID)
	b = appendUIText(b, in, "title", a.Title)
	if a.Issued != "" {
		b = append(b, in+"<issued"...)
		b = appendUIAttr(b, "date", a.Issued)
		b = append(b, "/>\n"...)
	}
	if a.Updated != "" {
		b = append(b, in+"<updated"...)
		b = appendUIAttr(b, "date", a.Updated)
		b = append(b, "/>\n"...)
	}
	b = appendUIText(b, in, "rights", a.Rights)
	b = appendUIText(b, in, "release", a.Release)
	b = appendUIText(b, in, "pushcount", a.Pushcount)
	b = appendUIText(b, in, "severity", a.Severity)
	b = appendUIText(b, in, "summary", a.Summary)
	b = appendUIText(b, in, "description", a.Description)
	b = appendUIText(b, in, "solution", a.Solution)
	if a.RebootSuggested {
		b = append(b, in+"<reboot_suggested>True</reboot_suggested>\n"...)
	}
	if len(a.References) == 0 {
		b = append(b, in+"<references/>\n"...)
	} else {
		b = append(b, in+"<references>\n"...)
		for _, r := range a.References {
			b = append(b, in+"  <reference"...)
			b = appendUIAttr(b, "href", r.Href)
			b = appendUIAttr(b, "id", r.ID)
			b = appendUIAttr(b, "type", r.Type)
			b = appendUIAttr(b, "title", r.Title)
			b = append(b, "/>\n"...)
		}
		b = append(b, in+"</references>\n"...)
	}
	if len(a.Collections) == 0 {
		b = append(b, in+"<pkglist/>\n"...)
	} else {
		b = append(b, in+"<pkglist>\n"...)
		for i := range a.Collections {
			b = appendCollection(b, &a.Collections[i])
		}
		b = append(b, in+"</pkglist>\n"...)
	}
	return append(b, "  </update>\n"...)
}

func appendCollection(b []byte, c *AdvisoryCollection) []byte {
	const in = "      "
	b = append(b, in+"<collection"...)
	b = appendUIAttr(b, "short", c.Short)
	if c.Name == "" && c.Module == nil && len(c.Packages) == 0 {
		return append(b, "/>\n"...)
	}
	b = append(b, ">\n"...)
	b = appendUIText(b, in+"  ", "name", c.Name)
	if m := c.Module; m != nil {
		b = append(b, in+"  <module"...)
		b = appendUIAttr(b, "name", m.Name)
		b = appendUIAttr(b, "stream", m.Stream)
		b = appendUIAttr(b, "version", strconv.FormatUint(m.Version, 10))
		b = appendUIAttr(b, "context", m.Context)
		b = appendUIAttr(b, "arch", m.Arch)
		b = append(b, "/>\n"...)
	}
	for i := range c.Packages {
		b = appendPackage(b, &c.Packages[i])
	}
	return append(b, in+"</collection>\n"...)
}

func appendPackage(b []byte, p *AdvisoryPackage) []byte {
	const in = "        "
	b = append(b, in+"<package"...)
	b = appendUIAttr(b, "name", p.Name)
	b = appendUIAttr(b, "version", p.Version)
	b = appendUIAttr(b, "release", p.Release)
	b = appendUIAttr(b, "epoch", p.Epoch)
	b = appendUIAttr(b, "arch", p.Arch)
	b = appendUIAttr(b, "src", p.Src)
	if p.Filename == "" && p.Sum == "" && !p.RebootSuggested && !p.RestartSuggested && !p.ReloginSuggested {
		return append(b, "/>\n"...)
	}
	b = append(b, ">\n"...)
	b = appendUIText(b, in+"  ", "filename", p.Filename)
	if p.Sum != "" {
		typ := checksumTypeName(p.SumType)
		if typ == "" {
			typ = unknownChecksum
		}
		b = append(b, in+"  <sum"...)
		b = appendUIAttr(b, "type", typ)
		b = append(b, '>')
		b = appendText(b, p.Sum)
		b = append(b, "</sum>\n"...)
	}
	if p.RebootSuggested {
		b = append(b, in+"  <reboot_suggested>True</reboot_suggested>\n"...)
	}
	if p.RestartSuggested {
		b = append(b, in+"  <restart_suggested>True</restart_suggested>\n"...)
	}
	if p.ReloginSuggested {
		b = append(b, in+"  <relogin_suggested>True</relogin_suggested>\n"...)
	}
	return append(b, in+"</package>\n"...)
}

// xmlText reports whether s is valid UTF-8 made of XML 1.0 characters.
func xmlText(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x80 {
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 || !isXMLChar(int(r)) {
			return false
		}
		i += n
	}
	return true
}

// advisoryFields calls fn with every text of a, named for messages.
func advisoryFields(a *Advisory, fn func(field, s string) bool) bool {
	for _, f := range []struct{ n, s string }{
		{"from", a.From}, {"status", a.Status}, {"type", a.Type}, {"version", a.Version},
		{"id", a.ID}, {"title", a.Title}, {"issued", a.Issued}, {"updated", a.Updated},
		{"rights", a.Rights}, {"release", a.Release}, {"pushcount", a.Pushcount}, {"severity", a.Severity},
		{"summary", a.Summary}, {"description", a.Description}, {"solution", a.Solution},
	} {
		if !fn(f.n, f.s) {
			return false
		}
	}
	for _, r := range a.References {
		if !fn("reference href", r.Href) || !fn("reference id", r.ID) || !fn("reference type", r.Type) || !fn("reference title", r.Title) {
			return false
		}
	}
	for _, c := range a.Collections {
		if !fn("collection short", c.Short) || !fn("collection name", c.Name) {
			return false
		}
		if m := c.Module; m != nil && (!fn("module name", m.Name) || !fn("module stream", m.Stream) || !fn("module context", m.Context) || !fn("module arch", m.Arch)) {
			return false
		}
		for _, p := range c.Packages {
			for _, f := range []struct{ n, s string }{
				{"package name", p.Name}, {"package version", p.Version}, {"package release", p.Release},
				{"package epoch", p.Epoch}, {"package arch", p.Arch}, {"package src", p.Src},
				{"package filename", p.Filename}, {"package sum", p.Sum}, {"package sum type", p.SumType},
			} {
				if !fn(f.n, f.s) {
					return false
				}
			}
		}
	}
	return true
}

func checkAdvisoryText(a *Advisory) error {
	var err error
	advisoryFields(a, func(field, s string) bool {
		if !xmlText(s) {
			err = fmt.Errorf("%w: %s of advisory %q", ErrUpdateInfoText, field, strings.ToValidUTF8(a.ID, "\uFFFD"))
			return false
		}
		return true
	})
	return err
}

// ParseUpdateInfo reads updateinfo.xml as createrepo_c and modifyrepo_c
// write it (and as createrepo_c reads it: unknown elements are skipped,
// repeated <references> and <pkglist> add up, the last of a repeated text
// wins, empty text is absent, reboot_suggested is set by its presence).
// Every count and text is capped (MaxUpdates and friends) before it can
// grow; what it returns, MarshalUpdateInfo writes, and that parses to the
// same advisories. Errors wrap ErrUpdateInfoMalformed or
// ErrUpdateInfoTooLarge.
func ParseUpdateInfo(data []byte) ([]Advisory, error) {
	if len(data) > MaxUpdateInfoSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrUpdateInfoTooLarge, len(data), MaxUpdateInfoSize)
	}
	p := &uiParser{d: xml.NewDecoder(bytes.NewReader(data))}
	p.d.Strict = true
	advs, err := p.document()
	if err != nil {
		return nil, err
	}
	for i := range advs {
		if err := checkAdvisoryText(&advs[i]); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUpdateInfoMalformed, err)
		}
	}
	return advs, nil
}

type uiParser struct {
	d        *xml.Decoder
	depth    int
	packages int // in the whole document
}

func (p *uiParser) malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s (line %d)", ErrUpdateInfoMalformed, fmt.Sprintf(format, a...), p.line())
}

func (p *uiParser) line() int {
	l, _ := p.d.InputPos()
	return l
}

// token is the next token, with nesting counted and capped.
func (p *uiParser) token() (xml.Token, error) {
	tok, err := p.d.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, p.malformed("unexpected end of document")
		}
		return nil, fmt.Errorf("%w: %v", ErrUpdateInfoMalformed, err)
	}
	switch tok.(type) {
	case xml.StartElement:
		p.depth++
		if p.depth > maxUpdateInfoDepth {
			return nil, p.malformed("elements nested more than %d deep", maxUpdateInfoDepth)
		}
	case xml.EndElement:
		p.depth--
	}
	return tok, nil
}

// skip consumes the rest of the element whose start was just read.
func (p *uiParser) skip() error {
	for start := p.depth; ; {
		tok, err := p.token()
		if err != nil {
			return err
		}
		if _, ok := tok.(xml.EndElement); ok && p.depth < start {
			return nil
		}
	}
}

// children calls fn for each child element of the element just started,
// until its end; fn must consume the child (skip it at least).
func (p *uiParser) children(fn func(xml.StartElement) error) error {
	for start := p.depth; ; {
		tok, err := p.token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if err := fn(t); err != nil {
				return err
			}
		case xml.EndElement:
			if p.depth < start {
				return nil
			}
		}
	}
}

// text is the character data directly inside the element just started,
// capped at max bytes; child elements are skipped.
func (p *uiParser) text(name string, max int) (string, error) {
	var sb []byte
	for start := p.depth; ; {
		tok, err := p.token()
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.CharData:
			if len(sb)+len(t) > max {
				return "", fmt.Errorf("%w: <%s> is longer than %d bytes (line %d)", ErrUpdateInfoTooLarge, name, max, p.line())
			}
			sb = append(sb, t...)
		case xml.StartElement:
			if err := p.skip(); err != nil {
				return "", err
			}
		case xml.EndElement:
			if p.depth < start {
				return string(sb), nil
			}
		}
	}
}

// attrs reads the named attributes of se, each capped.
func (p *uiParser) attrs(se xml.StartElement, dst map[string]*string) error {
	for _, a := range se.Attr {
		if a.Name.Space != "" {
			continue
		}
		if v, ok := dst[a.Name.Local]; ok {
			if len(a.Value) > MaxUpdateShortText {
				return fmt.Errorf("%w: attribute %s of <%s> is longer than %d bytes (line %d)", ErrUpdateInfoTooLarge, a.Name.Local, se.Name.Local, MaxUpdateShortText, p.line())
			}
			*v = a.Value
		}
	}
	return nil
}

func (p *uiParser) document() ([]Advisory, error) {
	var advs []Advisory
	root := false
	for {
		tok, err := p.d.Token()
		if errors.Is(err, io.EOF) {
			if !root {
				return nil, p.malformed("no <updates> element")
			}
			return advs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUpdateInfoMalformed, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if root {
				return nil, p.malformed("a second root element <%s>", t.Name.Local)
			}
			if t.Name.Local != "updates" {
				return nil, p.malformed("root element is <%s>, not <updates>", t.Name.Local)
			}
			root = true
			p.depth = 1
			advs = []Advisory{}
			err := p.children(func(se xml.StartElement) error {
				if se.Name.Local != "update" {
					return p.skip()
				}
				if len(advs) == MaxUpdates {
					return fmt.Errorf("%w: more than %d updates", ErrUpdateInfoTooLarge, MaxUpdates)
				}
				a, err := p.update(se)
				if err != nil {
					return err
				}
				advs = append(advs, a)
				return nil
			})
			if err != nil {
				return nil, err
			}
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return nil, p.malformed("text outside the root element")
			}
		}
	}
}

func (p *uiParser) update(se xml.StartElement) (Advisory, error) {
	var a Advisory
	if err := p.attrs(se, map[string]*string{"from": &a.From, "status": &a.Status, "type": &a.Type, "version": &a.Version}); err != nil {
		return a, err
	}
	texts := map[string]struct {
		dst *string
		max int
	}{
		"id": {&a.ID, MaxUpdateShortText}, "title": {&a.Title, MaxUpdateLongText}, "rights": {&a.Rights, MaxUpdateLongText},
		"release": {&a.Release, MaxUpdateShortText}, "pushcount": {&a.Pushcount, MaxUpdateShortText},
		"severity": {&a.Severity, MaxUpdateShortText}, "summary": {&a.Summary, MaxUpdateLongText},
		"description": {&a.Description, MaxUpdateLongText}, "solution": {&a.Solution, MaxUpdateLongText},
	}
	npkgs := 0
	err := p.children(func(c xml.StartElement) error {
		name := c.Name.Local
		if t, ok := texts[name]; ok {
			s, err := p.text(name, t.max)
			*t.dst = s
			return err
		}
		switch name {
		case "issued", "updated":
			dst := &a.Issued
			if name == "updated" {
				dst = &a.Updated
			}
			if err := p.attrs(c, map[string]*string{"date": dst}); err != nil {
				return err
			}
		case "reboot_suggested":
			a.RebootSuggested = true
		case "references":
			return p.children(func(r xml.StartElement) error {
				if r.Name.Local == "reference" {
					if len(a.References) == MaxUpdateReferences {
						return fmt.Errorf("%w: more than %d references in update %q", ErrUpdateInfoTooLarge, MaxUpdateReferences, a.ID)
					}
					var ref AdvisoryReference
					if err := p.attrs(r, map[string]*string{"href": &ref.Href, "id": &ref.ID, "type": &ref.Type, "title": &ref.Title}); err != nil {
						return err
					}
					a.References = append(a.References, ref)
				}
				return p.skip()
			})
		case "pkglist":
			return p.children(func(c xml.StartElement) error {
				if c.Name.Local != "collection" {
					return p.skip()
				}
				if len(a.Collections) == MaxUpdateCollection {
					return fmt.Errorf("%w: more than %d collections in update %q", ErrUpdateInfoTooLarge, MaxUpdateCollection, a.ID)
				}
				col, err := p.collection(c, &npkgs)
				if err != nil {
					return err
				}
				a.Collections = append(a.Collections, col)
				return nil
			})
		}
		return p.skip()
	})
	return a, err
}

func (p *uiParser) collection(se xml.StartElement, npkgs *int) (AdvisoryCollection, error) {
	var col AdvisoryCollection
	if err := p.attrs(se, map[string]*string{"short": &col.Short}); err != nil {
		return col, err
	}
	err := p.children(func(c xml.StartElement) error {
		switch c.Name.Local {
		case "name":
			s, err := p.text("name", MaxUpdateShortText)
			col.Name = s
			return err
		case "module":
			m := &AdvisoryModule{}
			var version string
			if err := p.attrs(c, map[string]*string{"name": &m.Name, "stream": &m.Stream, "version": &version, "context": &m.Context, "arch": &m.Arch}); err != nil {
				return err
			}
			m.Version = moduleVersion(version)
			col.Module = m
		case "package":
			if *npkgs == MaxUpdatePackages {
				return fmt.Errorf("%w: more than %d packages in one update", ErrUpdateInfoTooLarge, MaxUpdatePackages)
			}
			if p.packages == maxUpdateInfoTotal {
				return fmt.Errorf("%w: more than %d packages", ErrUpdateInfoTooLarge, maxUpdateInfoTotal)
			}
			*npkgs++
			p.packages++
			pkg, err := p.pkg(c)
			if err != nil {
				return err
			}
			col.Packages = append(col.Packages, pkg)
			return nil
		}
		return p.skip()
	})
	return col, err
}

// moduleVersion reads a module version as createrepo_c's strtoull does for
// plain digits: leading blanks skipped, digits up to the first other
// byte, 0 for none or for a value past uint64.
func moduleVersion(s string) uint64 {
	s = strings.TrimLeft(s, " \t\n\r\f\v")
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	v, err := strconv.ParseUint(s[:n], 10, 64)
	if err != nil {
		return 0
	}
	return v
}

func (p *uiParser) pkg(se xml.StartElement) (AdvisoryPackage, error) {
	var pkg AdvisoryPackage
	if err := p.attrs(se, map[string]*string{"name": &pkg.Name, "version": &pkg.Version, "release": &pkg.Release,
		"epoch": &pkg.Epoch, "arch": &pkg.Arch, "src": &pkg.Src}); err != nil {
		return pkg, err
	}
	err := p.children(func(c xml.StartElement) error {
		switch c.Name.Local {
		case "filename":
			s, err := p.text("filename", MaxUpdateShortText)
			pkg.Filename = s
			return err
		case "sum":
			var typ string
			if err := p.attrs(c, map[string]*string{"type": &typ}); err != nil {
				return err
			}
			s, err := p.text("sum", MaxUpdateShortText)
			pkg.Sum = s
			if typ != "" {
				pkg.SumType = checksumTypeName(typ)
			}
			return err
		case "reboot_suggested":
			pkg.RebootSuggested = true
		case "restart_suggested":
			pkg.RestartSuggested = true
		case "relogin_suggested":
			pkg.ReloginSuggested = true
		}
		return p.skip()
	})
	if pkg.Sum == "" {
		pkg.SumType = "" // not written without a sum
	}
	return pkg, err
}
