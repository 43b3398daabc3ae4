package metadata

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/repoctl/repoctl/internal/nevra"
)

// Comps (group file) validation. A comps file is published verbatim, as
// createrepo_c -g does, so everything a host will parse from it is checked
// first: dnf hands it to libcomps, and its group ids end up in
// `dnf group install` command lines and in our events.

// Sentinel errors of ParseComps. Every one wraps ErrBadComps.
var (
	// ErrBadComps is a comps file repoctl refuses to publish.
	ErrBadComps = errors.New("metadata: invalid comps file")
	// ErrCompsTooLarge: over MaxCompsSize.
	ErrCompsTooLarge = fmt.Errorf("%w: too large", ErrBadComps)
	// ErrCompsSyntax: not well-formed XML, not UTF-8, or holding control
	// characters.
	ErrCompsSyntax = fmt.Errorf("%w: not well-formed", ErrBadComps)
	// ErrCompsStructure: the root is not <comps>, there is more than one
	// root or text outside it, or a group lacks its name.
	ErrCompsStructure = fmt.Errorf("%w: not a comps document", ErrBadComps)
	// ErrCompsEntity: a DOCTYPE with an internal subset or an <!ENTITY>
	// declaration. encoding/xml never expands them, but libcomps' expat
	// on a host might; a plain DOCTYPE naming comps.dtd is fine.
	ErrCompsEntity = fmt.Errorf("%w: entity declarations are refused", ErrBadComps)
	// ErrCompsID: a group, category or environment id (or a groupid
	// reference) that is missing, empty or outside CompsIDPattern.
	ErrCompsID = fmt.Errorf("%w: bad id", ErrBadComps)
	// ErrCompsDuplicate: two groups (categories, environments) with one id.
	ErrCompsDuplicate = fmt.Errorf("%w: duplicate id", ErrBadComps)
	// ErrCompsPackage: a packagereq whose package name no valid package
	// can have, or whose type is unknown.
	ErrCompsPackage = fmt.Errorf("%w: bad package", ErrBadComps)
	// ErrCompsLimit: too many groups, packages, elements, or nesting too
	// deep.
	ErrCompsLimit = fmt.Errorf("%w: over a limit", ErrBadComps)
	// ErrCompsEmpty: no group at all.
	ErrCompsEmpty = fmt.Errorf("%w: no group", ErrBadComps)
)

// CompsSentinels lists the sentinels above, so that a socket client can
// map a remote error back onto them.
var CompsSentinels = []error{ErrBadComps, ErrCompsTooLarge, ErrCompsSyntax, ErrCompsStructure,
	ErrCompsEntity, ErrCompsID, ErrCompsDuplicate, ErrCompsPackage, ErrCompsLimit, ErrCompsEmpty}

// Limits of a comps file. Real ones (Fedora's, with every translation)
// stay well below them.
const (
	// MaxCompsSize caps a comps file. It also has to fit, base64 in
	// JSON, in one control-socket request.
	MaxCompsSize = 10 << 20
	// MaxCompsGroups caps groups, categories and environments, each.
	MaxCompsGroups = 10000
	// MaxCompsPackages caps packagereq (and groupid) elements in all.
	MaxCompsPackages = 500000
	maxCompsElements = 4 << 20
	maxCompsDepth    = 32
	maxCompsText     = 64 << 10 // one element's text (a name, a description)
)

// CompsIDPattern is what a group, category or environment id may be:
// letters, digits and ._+- (the ids of Fedora's and EL's comps), starting
// with a letter, digit or _, at most 128 bytes.
const CompsIDPattern = `^[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}$`

// Compiled on first use: every repoctl command would otherwise pay for
// it at start (the bounded repetitions make large programs).
var compsIDRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(CompsIDPattern) })

// Comps is what ParseComps found in a comps file: enough to say what it
// offers, not a model of the format.
type Comps struct {
	Groups       []CompsGroup `json:"groups"`
	Categories   []string     `json:"categories"`   // ids
	Environments []string     `json:"environments"` // ids
}

// CompsGroup is one <group>.
type CompsGroup struct {
	ID       string         `json:"id"`
	Name     string         `json:"name"` // the untranslated <name>
	Packages []CompsPackage `json:"packages"`
}

// CompsPackage is one <packagereq>.
type CompsPackage struct {
	Name string `json:"name"`
	Type string `json:"type,omitempty"` // mandatory, default, optional, conditional; "" is dnf's mandatory
}

// GroupIDs are the ids of the groups, in file order.
func (c *Comps) GroupIDs() []string {
	out := make([]string, len(c.Groups))
	for i, g := range c.Groups {
		out[i] = g.ID
	}
	return out
}

var packagereqTypes = map[string]bool{"": true, "mandatory": true, "default": true, "optional": true, "conditional": true}

// ReadCompsFile reads and validates the comps file at path: a regular
// file of at most MaxCompsSize bytes that ParseComps accepts. It returns
// the bytes, to be published as they are.
func ReadCompsFile(path string) ([]byte, *Comps, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading comps file %q: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("reading comps file %q: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("reading comps file %q: %w: not a regular file", path, ErrBadComps)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxCompsSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading comps file %q: %w", path, err)
	}
	c, err := ParseComps(data)
	if err != nil {
		return nil, nil, fmt.Errorf("comps file %q: %w", path, err)
	}
	return data, c, nil
}

// ParseComps validates a comps file and returns what it offers. It
// accepts what libcomps reads from real comps files (groups, categories,
// environments, langpacks, translations, unknown elements) and refuses,
// with an error wrapping ErrBadComps and one of the sentinels above:
// more than MaxCompsSize bytes; anything but well-formed UTF-8 XML without
// control characters; a root other than <comps> (or a second one); a
// DOCTYPE internal subset or <!ENTITY>; group, category and environment
// ids outside CompsIDPattern or repeated; a group without a name; a
// packagereq whose name fails internal/nevra's name rule or whose type is
// not mandatory, default, optional or conditional; and too many groups,
// packages, elements or levels.
func ParseComps(data []byte) (*Comps, error) {
	if len(data) > MaxCompsSize {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrCompsTooLarge, MaxCompsSize)
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrCompsSyntax)
	}
	if err := checkCompsText(string(data)); err != nil {
		return nil, err
	}
	p := compsParser{d: xml.NewDecoder(bytes.NewReader(data)), out: &Comps{Groups: []CompsGroup{}, Categories: []string{}, Environments: []string{}}}
	p.d.Strict = true // undefined entities are errors; CharsetReader nil: UTF-8 only
	if err := p.run(); err != nil {
		return nil, err
	}
	if len(p.out.Groups) == 0 {
		return nil, ErrCompsEmpty
	}
	return p.out, nil
}

// checkCompsText refuses C0 controls but tab, newline and carriage
// return, DEL and C1 controls: `repoctl comps show` prints the file, and
// none of them belongs in a comps file.
func checkCompsText(s string) error {
	for i, r := range s {
		if (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || (r >= 0x7f && r <= 0x9f) {
			return fmt.Errorf("%w: control character %U at byte %d", ErrCompsSyntax, r, i)
		}
	}
	return nil
}

type compsParser struct {
	d     *xml.Decoder
	out   *Comps
	stack []string // local names of the open elements
	// text collects the character data of the element being read when
	// it is one whose text we check (ids, names, packagereq).
	text    strings.Builder
	collect bool
	group   *CompsGroup
	pkgType string
	// curID is the id of the group, category or environment being read.
	curID    string
	sawRoot  bool
	elements int
	packages int
	seen     map[string]map[string]bool // kind → ids
}

func (p *compsParser) run() error {
	p.seen = map[string]map[string]bool{"group": {}, "category": {}, "environment": {}}
	first := true
	for {
		tok, err := p.d.Token()
		if err == io.EOF {
			if !p.sawRoot {
				return fmt.Errorf("%w: no <comps> element", ErrCompsStructure)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrCompsSyntax, err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			if err := checkDirective(t, p.sawRoot || len(p.stack) > 0); err != nil {
				return err
			}
		case xml.StartElement:
			if err := p.start(t); err != nil {
				return err
			}
		case xml.EndElement:
			if err := p.end(t); err != nil {
				return err
			}
		case xml.CharData:
			if len(p.stack) == 0 {
				s := string(t)
				if first {
					s = strings.TrimPrefix(s, "\ufeff")
				}
				if strings.TrimSpace(s) != "" {
					return fmt.Errorf("%w: text outside <comps>", ErrCompsStructure)
				}
				break
			}
			if err := checkCompsText(string(t)); err != nil {
				return err
			}
			if p.collect {
				if p.text.Len()+len(t) > maxCompsText {
					return fmt.Errorf("%w: <%s> holds more than %d bytes", ErrCompsLimit, p.stack[len(p.stack)-1], maxCompsText)
				}
				p.text.Write(t)
			}
		}
		first = false
	}
}

// checkDirective allows one kind of <!…>: a DOCTYPE before the root
// without an internal subset.
func checkDirective(t xml.Directive, inside bool) error {
	s := string(t)
	if strings.Contains(strings.ToUpper(s), "ENTITY") || strings.Contains(s, "[") {
		return fmt.Errorf("%w: <!%s>", ErrCompsEntity, clip(s))
	}
	if inside || !strings.HasPrefix(s, "DOCTYPE") {
		return fmt.Errorf("%w: <!%s>", ErrCompsStructure, clip(s))
	}
	return nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// parent is the local name of the element enclosing the current one.
func (p *compsParser) parent(up int) string {
	if i := len(p.stack) - 1 - up; i >= 0 {
		return p.stack[i]
	}
	return ""
}

func (p *compsParser) start(t xml.StartElement) error {
	p.elements++
	if p.elements > maxCompsElements {
		return fmt.Errorf("%w: more than %d elements", ErrCompsLimit, maxCompsElements)
	}
	if len(p.stack) >= maxCompsDepth {
		return fmt.Errorf("%w: elements nested more than %d deep", ErrCompsLimit, maxCompsDepth)
	}
	name := t.Name.Local
	if t.Name.Space != "" {
		// A namespaced element is none of comps' own; libcomps skips it.
		name = t.Name.Space + ":" + name
	}
	for _, a := range t.Attr {
		if err := checkCompsText(a.Value); err != nil {
			return err
		}
	}
	if len(p.stack) == 0 {
		if p.sawRoot {
			return fmt.Errorf("%w: a second root element <%s>", ErrCompsStructure, clip(name))
		}
		if name != "comps" {
			return fmt.Errorf("%w: the root element is <%s>, not <comps>", ErrCompsStructure, clip(name))
		}
		p.sawRoot = true
	}
	p.stack = append(p.stack, name)
	p.collect = false
	switch {
	case len(p.stack) == 2 && (name == "group" || name == "category" || name == "environment"):
		if len(p.seen[name]) >= MaxCompsGroups {
			return fmt.Errorf("%w: more than %d %s elements", ErrCompsLimit, MaxCompsGroups, name)
		}
		p.curID = ""
		if name == "group" {
			p.out.Groups = append(p.out.Groups, CompsGroup{Packages: []CompsPackage{}})
			p.group = &p.out.Groups[len(p.out.Groups)-1]
		}
	case len(p.stack) == 3 && name == "id" && p.seen[p.parent(1)] != nil:
		p.collect = true
	case len(p.stack) == 3 && name == "name" && p.parent(1) == "group":
		p.collect = !hasLang(t)
	case len(p.stack) == 4 && name == "packagereq" && p.parent(1) == "packagelist" && p.parent(2) == "group":
		p.packages++
		if p.packages > MaxCompsPackages {
			return fmt.Errorf("%w: more than %d packagereq and groupid elements", ErrCompsLimit, MaxCompsPackages)
		}
		p.pkgType = ""
		for _, a := range t.Attr {
			switch {
			case a.Name.Space == "" && a.Name.Local == "type":
				p.pkgType = a.Value
			case a.Name.Space == "" && a.Name.Local == "requires" && a.Value != "":
				if err := nevra.Name(a.Value); err != nil {
					return fmt.Errorf("%w: packagereq requires=%q: %s", ErrCompsPackage, clip(a.Value), nevra.Why(err))
				}
			}
		}
		if !packagereqTypes[p.pkgType] {
			return fmt.Errorf("%w: packagereq type %q (want mandatory, default, optional or conditional)", ErrCompsPackage, clip(p.pkgType))
		}
		p.collect = true
	case len(p.stack) == 4 && name == "groupid" && (p.parent(1) == "grouplist" || p.parent(1) == "optionlist"):
		p.packages++
		if p.packages > MaxCompsPackages {
			return fmt.Errorf("%w: more than %d packagereq and groupid elements", ErrCompsLimit, MaxCompsPackages)
		}
		p.collect = true
	}
	p.text.Reset()
	return nil
}

func hasLang(t xml.StartElement) bool {
	for _, a := range t.Attr {
		if a.Name.Local == "lang" {
			return true
		}
	}
	return false
}

func (p *compsParser) end(t xml.EndElement) error {
	name := p.stack[len(p.stack)-1]
	text := p.text.String()
	collected := p.collect
	p.collect = false
	p.text.Reset()
	defer func() { p.stack = p.stack[:len(p.stack)-1] }()
	kind := p.parent(1)
	switch {
	case len(p.stack) == 2 && p.seen[name] != nil:
		if p.curID == "" {
			return fmt.Errorf("%w: %s number %d has no <id>", ErrCompsID, name, len(p.seen[name])+1)
		}
		if p.seen[name][p.curID] {
			return fmt.Errorf("%w: %s %q appears twice", ErrCompsDuplicate, name, p.curID)
		}
		p.seen[name][p.curID] = true
		switch name {
		case "group":
			p.group.ID = p.curID
			if p.group.Name == "" {
				return fmt.Errorf("%w: group %q has no untranslated <name>", ErrCompsStructure, p.curID)
			}
			p.group = nil
		case "category":
			p.out.Categories = append(p.out.Categories, p.curID)
		case "environment":
			p.out.Environments = append(p.out.Environments, p.curID)
		}
	case collected && name == "id":
		if err := checkCompsID(kind, text); err != nil {
			return err
		}
		if p.curID != "" {
			return fmt.Errorf("%w: %s %q has a second <id>", ErrCompsStructure, kind, p.curID)
		}
		p.curID = text
	case collected && name == "name":
		if strings.TrimSpace(text) != "" && p.group.Name == "" {
			p.group.Name = text
		}
	case collected && name == "packagereq":
		if err := nevra.Name(text); err != nil {
			return fmt.Errorf("%w: packagereq %q in group number %d: %s", ErrCompsPackage, clip(text), len(p.out.Groups), nevra.Why(err))
		}
		p.group.Packages = append(p.group.Packages, CompsPackage{Name: text, Type: p.pkgType})
	case collected && name == "groupid":
		if err := checkCompsID("groupid", text); err != nil {
			return err
		}
	}
	return nil
}

func checkCompsID(kind, id string) error {
	if !compsIDRE().MatchString(id) {
		return fmt.Errorf("%w: %s id %q (want %s)", ErrCompsID, kind, clip(id), CompsIDPattern)
	}
	return nil
}

// CompsRecords are the repomd records createrepo_c 0.17.3 -g writes for
// the group file data named name (its base name, e.g. "comps.xml"):
// "group", the file as it is, then "group_gz", the same gzip-compressed
// (name.gz, with open-checksum and open-size). They are gz whatever the
// repository's compression: dnf 4 (libdnf's getCompsFn) reads group_gz
// and falls back to group, and never asks for a group_zst, a type no
// createrepo_c writes.
func CompsRecords(name string, data []byte) []ExtraRecord {
	return []ExtraRecord{
		{Type: "group", Name: name, Data: data},
		{Type: "group_gz", Name: name, Data: data, Compress: true, Compression: CompressGzip},
	}
}
