package repo

// Advisories: security, bugfix and enhancement notices about packages of a
// repository, published as updateinfo.xml in every repository directory
// that serves one of their packages, so that `dnf updateinfo` and `dnf
// upgrade --security` on the hosts see them. They live in the store
// (bucket advisories), so a republish from the store writes them again.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
	"github.com/repoctl/repoctl/repo/input"
	kv "github.com/repoctl/repoctl/repo/store"

	"github.com/repoctl/repoctl/internal/nevra"
	"github.com/repoctl/repoctl/metadata"
)

// Event actions of advisories.
const (
	EventAdvisoryAdd    = "advisory.add"
	EventAdvisoryImport = "advisory.import"
	EventAdvisoryRemove = "advisory.remove"
)

// Actions in AdvisoryChange.Action besides ActionAdded, ActionUnchanged
// and ActionWouldAdd.
const (
	ActionRemoved     = "removed"
	ActionWouldRemove = "would-remove"
)

// Advisory types, as dnf's --security, --bugfix, --enhancement and
// --newpackage select them.
var advisoryTypes = []string{"security", "bugfix", "enhancement", "newpackage"}

// Bounds of what one advisory may hold: room for any real advisory,
// too little to make one updateinfo.xml unwieldy.
const (
	maxAdvisoryFile     = 1 << 20 // bytes of one `advisory add` file
	maxImportFile       = 8 << 20 // bytes of one updateinfo.xml (fits the control socket's body, base64)
	maxAdvisoryPackages = 4096
	maxAdvisoryRefs     = 256
	maxAdvisoryLong     = 64 << 10 // description, solution
	maxAdvisoryMedium   = 4096     // rights, summary
	maxAdvisoryLine     = 1024     // title, reference titles
	maxAdvisoryShort    = 256      // from, release, reference ids, severity
	maxAdvisoryHref     = 2048
	advisoryDateLayout  = "2006-01-02 15:04:05" // what createrepo_c writes for a datetime
)

// advisoryIDRE is the id charset: what real advisory ids use
// (RHSA-2024:1234, FEDORA-2024-1a2b3c, openSUSE-SU-2024:0001-1), nothing
// that could be a path, a shell word or a line break.
var (
	// Compiled on first use: their bounded repetitions make large programs,
	// which every repoctl command (createrepo too) would otherwise build at start.
	advisoryIDRE    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$`) })
	advisoryWordRE  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`) }) // status, reference type
	advisoryShortRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`) })
)

// Advisory is one advisory of a repository: what `repoctl advisory add`
// reads (TOML like the config, or JSON, with these keys) and the store
// keeps. Packages are NEVRAs in the store; each repository directory's
// updateinfo.xml lists the advisory with the packages it serves.
type Advisory struct {
	ID              string                       `json:"id" toml:"id"`
	Type            string                       `json:"type" toml:"type"` // security, bugfix, enhancement, newpackage
	Severity        string                       `json:"severity,omitempty" toml:"severity"`
	Title           string                       `json:"title" toml:"title"`
	Description     string                       `json:"description,omitempty" toml:"description"`
	Issued          string                       `json:"issued" toml:"issued"`             // "2006-01-02 15:04:05", UTC
	Updated         string                       `json:"updated,omitempty" toml:"updated"` // same form; not before Issued
	Packages        []string                     `json:"packages" toml:"packages"`         // sorted NEVRAs
	References      []metadata.AdvisoryReference `json:"references,omitempty" toml:"references"`
	RebootSuggested bool                         `json:"reboot_suggested,omitempty" toml:"reboot_suggested"`

	// The rest of what updateinfo.xml carries; all optional.
	Status    string `json:"status,omitempty" toml:"status"` // final, stable, testing
	From      string `json:"from,omitempty" toml:"from"`     // the issuer's address
	Version   string `json:"version,omitempty" toml:"version"`
	Release   string `json:"release,omitempty" toml:"release"`
	Pushcount string `json:"pushcount,omitempty" toml:"pushcount"`
	Rights    string `json:"rights,omitempty" toml:"rights"`
	Summary   string `json:"summary,omitempty" toml:"summary"`
	Solution  string `json:"solution,omitempty" toml:"solution"`

	// Recorded by the store, not part of the advisory's content.
	Repo    string    `json:"repo,omitempty" toml:"-"`
	Added   time.Time `json:"added,omitzero" toml:"-"`
	AddedBy string    `json:"added_by,omitempty" toml:"-"`
	// Published lists the repository directories (relative to ROOT/repo)
	// whose updateinfo.xml lists it; filled in by AdvisoryList and
	// AdvisoryShow, never stored.
	Published []string `json:"published,omitempty" toml:"-"`
}

// AdvisoryRequest is one AdvisoryAdd or AdvisoryImport.
type AdvisoryRequest struct {
	Repo string `json:"repo,omitempty"` // default: default_repo
	// File names the input: the path a Repo reads when Data is nil, and
	// what messages and events name. Its extension (.toml, .json) tells
	// AdvisoryAdd the format; without one the content does.
	File string `json:"file"`
	// Data is the file's content. The socket client reads the file with
	// the user's rights and sends it: the daemon never opens a path for a
	// client.
	Data   []byte `json:"data"`
	Who    string `json:"who,omitempty"`
	DryRun bool   `json:"dry_run,omitempty"` // validate against the store; record and publish nothing
}

// AdvisoryOptions steer AdvisoryList, AdvisoryShow and AdvisoryRemove.
type AdvisoryOptions struct {
	// Repo is the repository; empty means default_repo, and for
	// AdvisoryList every repository.
	Repo   string `json:"repo,omitempty"`
	Who    string `json:"who,omitempty"`
	DryRun bool   `json:"dry_run,omitempty"` // AdvisoryRemove only
}

// AdvisoryResult is what an add, import or remove changed.
type AdvisoryResult struct {
	Repo       string           `json:"repo"`
	Advisories []AdvisoryChange `json:"advisories"`
	// Dirs were republished (with DryRun: would be), relative to
	// ROOT/repo: every directory serving one of the changed advisories'
	// packages.
	Dirs   []string `json:"dirs"`
	DryRun bool     `json:"dry_run,omitempty"`
}

// AdvisoryChange is one advisory of an AdvisoryResult.
type AdvisoryChange struct {
	ID       string   `json:"id"`
	Type     string   `json:"type"`
	Action   string   `json:"action"` // added, unchanged, removed; would-add, would-remove
	Packages []string `json:"packages"`
}

// advisoryFile is the file format of `advisory add`: Advisory's keys,
// with dates as TOML dates or strings.
type advisoryFile struct {
	ID              string                       `json:"id" toml:"id"`
	Type            string                       `json:"type" toml:"type"`
	Severity        string                       `json:"severity" toml:"severity"`
	Title           string                       `json:"title" toml:"title"`
	Description     string                       `json:"description" toml:"description"`
	Issued          any                          `json:"issued" toml:"issued"`
	Updated         any                          `json:"updated" toml:"updated"`
	Packages        []string                     `json:"packages" toml:"packages"`
	References      []metadata.AdvisoryReference `json:"references" toml:"references"`
	RebootSuggested bool                         `json:"reboot_suggested" toml:"reboot_suggested"`
	Status          string                       `json:"status" toml:"status"`
	From            string                       `json:"from" toml:"from"`
	Version         string                       `json:"version" toml:"version"`
	Release         string                       `json:"release" toml:"release"`
	Pushcount       string                       `json:"pushcount" toml:"pushcount"`
	Rights          string                       `json:"rights" toml:"rights"`
	Summary         string                       `json:"summary" toml:"summary"`
	Solution        string                       `json:"solution" toml:"solution"`
}

func invalidAdvisory(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidAdvisory, fmt.Sprintf(format, a...))
}

// ParseAdvisory reads one advisory in TOML or JSON (name's extension
// decides, else the content: JSON starts with "{") and checks everything
// that does not need the store. Unknown keys are refused, as in the
// config. Errors wrap ErrInvalidAdvisory.
func ParseAdvisory(name string, data []byte) (*Advisory, error) {
	if len(data) > maxAdvisoryFile {
		return nil, invalidAdvisory("%q is %d bytes, at most %d", name, len(data), maxAdvisoryFile)
	}
	var f advisoryFile
	trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff")
	switch ext := strings.ToLower(filepath.Ext(name)); {
	case bytes.HasPrefix(trimmed, []byte("<")):
		return nil, invalidAdvisory("%q looks like XML; read an updateinfo.xml with `repoctl advisory import`", name)
	case ext == ".json" || ext != ".toml" && bytes.HasPrefix(trimmed, []byte("{")):
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			return nil, invalidAdvisory("%q: %v", name, err)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return nil, invalidAdvisory("%q: more than one JSON value (one advisory per file)", name)
		}
	default:
		if !utf8.Valid(data) {
			return nil, invalidAdvisory("%q is not UTF-8", name)
		}
		md, err := toml.Decode(string(data), &f)
		if err != nil {
			return nil, invalidAdvisory("%q: %v", name, err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			keys := make([]string, len(und))
			for i, k := range und {
				keys[i] = strconv.Quote(k.String())
			}
			return nil, invalidAdvisory("%q: unknown key %s (known: id, type, severity, title, description, issued, updated, packages, references, reboot_suggested, status, from, version, release, pushcount, rights, summary, solution)", name, strings.Join(keys, ", "))
		}
	}
	a := &Advisory{ID: f.ID, Type: f.Type, Severity: f.Severity, Title: f.Title, Description: f.Description,
		Packages: f.Packages, References: f.References, RebootSuggested: f.RebootSuggested,
		Status: f.Status, From: f.From, Version: f.Version, Release: f.Release, Pushcount: f.Pushcount,
		Rights: f.Rights, Summary: f.Summary, Solution: f.Solution}
	var err error
	if a.Issued, err = advisoryDate(f.Issued); err != nil {
		return nil, invalidAdvisory("%s: issued: %v", advisoryName(a.ID), err)
	}
	if a.Updated, err = advisoryDate(f.Updated); err != nil {
		return nil, invalidAdvisory("%s: updated: %v", advisoryName(a.ID), err)
	}
	if err := a.check(); err != nil {
		return nil, err
	}
	return a, nil
}

// advisoryName is id for messages, quoted and cut short: it may be the
// invalid value being reported.
func advisoryName(id string) string {
	if len(id) > 140 {
		id = id[:140] + "…"
	}
	return "advisory " + strconv.QuoteToGraphic(id)
}

// advisoryDate normalises a date to createrepo_c's "2006-01-02 15:04:05"
// (UTC): a TOML date or datetime, or a string that is a date, a date and
// time (with "T" or " ", RFC 3339 with a zone), or epoch seconds, as
// updateinfo.xml files carry; a JSON number is epoch seconds. nil is "".
func advisoryDate(v any) (string, error) {
	var t time.Time
	switch x := v.(type) {
	case nil:
		return "", nil
	case time.Time:
		// A TOML date or datetime without an offset is taken as written
		// (the TOML library names those zones; they are not exported).
		t = x
		switch x.Location().String() {
		case "date-local", "datetime-local":
		case "time-local":
			return "", errors.New("a time without a date")
		default:
			t = x.UTC()
		}
	case int64:
		t = time.Unix(x, 0).UTC()
	case float64:
		if x != float64(int64(x)) {
			return "", fmt.Errorf("%v is not whole epoch seconds", x)
		}
		t = time.Unix(int64(x), 0).UTC()
	case string:
		var err error
		if t, err = parseAdvisoryDate(x); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("a %T is not a date", v)
	}
	if t.Year() < 1970 || t.Year() > 9999 {
		return "", fmt.Errorf("%s is out of range (1970-9999)", t.Format(advisoryDateLayout))
	}
	return t.Format(advisoryDateLayout), nil
}

func parseAdvisoryDate(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("empty date")
	}
	if len(s) <= 12 && strings.Trim(s, "0123456789") == "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err == nil {
			return time.Unix(n, 0).UTC(), nil
		}
	}
	for _, layout := range []string{"2006-01-02", advisoryDateLayout, "2006-01-02T15:04:05", time.RFC3339} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%s is not a date (2026-12-01, 2026-12-01 10:00:00, RFC 3339 or epoch seconds)", strconv.QuoteToGraphic(truncate(s, 64)))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// checkAdvisoryText refuses text that is too long or that a terminal, a
// log line or XML could take for something else: invalid UTF-8, control
// characters (tab, newline and CR only where multiline), U+FFFE, U+FFFF.
func checkAdvisoryText(field, s string, max int, multiline bool) error {
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes long (at most %d)", field, len(s), max)
	}
	for i, c := range s {
		switch {
		case c == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			return fmt.Errorf("%s is not UTF-8 (byte %d)", field, i)
		case multiline && (c == '\n' || c == '\t' || c == '\r'):
		case c < 0x20 || c >= 0x7f && c < 0xa0 || c == 0xfffe || c == 0xffff:
			return fmt.Errorf("%s contains control character %q", field, c)
		}
	}
	return nil
}

// check validates everything but the packages' presence in the store, and
// sorts and dedups Packages.
func (a *Advisory) check() error {
	if !advisoryIDRE().MatchString(a.ID) || strings.Contains(a.ID, "..") {
		if a.ID == "" {
			return invalidAdvisory("no id")
		}
		return invalidAdvisory("%s: an id is 1-128 letters, digits and ._:+- starting with a letter or digit", advisoryName(a.ID))
	}
	bad := func(format string, args ...any) error {
		return invalidAdvisory("%s: %s", advisoryName(a.ID), fmt.Sprintf(format, args...))
	}
	if !slices.Contains(advisoryTypes, a.Type) {
		return bad("type %s is not one of %s", strconv.QuoteToGraphic(truncate(a.Type, 64)), strings.Join(advisoryTypes, ", "))
	}
	if a.Title == "" {
		return bad("no title")
	}
	if a.Issued == "" {
		return bad("no issued date")
	}
	if a.Updated != "" && a.Updated < a.Issued {
		return bad("updated %s is before issued %s", a.Updated, a.Issued)
	}
	for _, f := range []struct {
		name      string
		s         string
		max       int
		multiline bool
	}{
		{"severity", a.Severity, maxAdvisoryShort, false}, {"title", a.Title, maxAdvisoryLine, false},
		{"description", a.Description, maxAdvisoryLong, true}, {"from", a.From, maxAdvisoryShort, false},
		{"release", a.Release, maxAdvisoryShort, false}, {"rights", a.Rights, maxAdvisoryMedium, true},
		{"summary", a.Summary, maxAdvisoryMedium, true}, {"solution", a.Solution, maxAdvisoryLong, true},
	} {
		if err := checkAdvisoryText(f.name, f.s, f.max, f.multiline); err != nil {
			return bad("%v", err)
		}
	}
	if a.Status != "" && !advisoryWordRE().MatchString(a.Status) {
		return bad("status %s is not a lower-case word", strconv.QuoteToGraphic(truncate(a.Status, 64)))
	}
	for _, f := range []struct{ name, s string }{{"version", a.Version}, {"pushcount", a.Pushcount}} {
		if f.s != "" && !advisoryShortRE().MatchString(f.s) {
			return bad("%s %s is not 1-64 letters, digits and ._+-", f.name, strconv.QuoteToGraphic(truncate(f.s, 64)))
		}
	}
	if len(a.References) > maxAdvisoryRefs {
		return bad("%d references, at most %d", len(a.References), maxAdvisoryRefs)
	}
	for i, r := range a.References {
		if !advisoryWordRE().MatchString(r.Type) {
			return bad("reference %d: type %s is not a lower-case word such as cve, bugzilla, self", i+1, strconv.QuoteToGraphic(truncate(r.Type, 64)))
		}
		if err := checkAdvisoryText("id", r.ID, maxAdvisoryShort, false); err != nil {
			return bad("reference %d: %v", i+1, err)
		}
		if err := checkAdvisoryText("title", r.Title, maxAdvisoryLine, false); err != nil {
			return bad("reference %d: %v", i+1, err)
		}
		if r.Href != "" {
			if err := checkHref(r.Href); err != nil {
				return bad("reference %d: href: %v", i+1, err)
			}
		}
	}
	if len(a.References) == 0 {
		a.References = nil
	}
	if len(a.Packages) == 0 {
		return bad("no packages")
	}
	if len(a.Packages) > maxAdvisoryPackages {
		return bad("%d packages, at most %d", len(a.Packages), maxAdvisoryPackages)
	}
	for i, p := range a.Packages {
		if err := nevra.Spec(p); err != nil {
			return fmt.Errorf("%w: %s: package %s", ErrInvalidName, advisoryName(a.ID), nevra.Why(err))
		}
		a.Packages[i] = withoutZeroEpoch(p)
	}
	a.Packages = slices.Compact(slices.Sorted(slices.Values(a.Packages)))
	return nil
}

// withoutZeroEpoch writes N-0:V-R.A as the store does, N-V-R.A. Version
// and release hold no "-", so the epoch is what follows the second "-"
// from the right.
func withoutZeroEpoch(s string) string {
	i := strings.LastIndexByte(s, '-')
	if i <= 0 {
		return s
	}
	j := strings.LastIndexByte(s[:i], '-')
	if j < 0 || !strings.HasPrefix(s[j+1:], "0:") {
		return s
	}
	return s[:j+1] + s[j+3:]
}

// checkHref accepts an absolute http, https or ftp URL without
// whitespace or controls.
func checkHref(h string) error {
	if len(h) > maxAdvisoryHref {
		return fmt.Errorf("%d bytes long (at most %d)", len(h), maxAdvisoryHref)
	}
	for _, c := range h {
		if c <= ' ' || c == 0x7f || c == utf8.RuneError {
			return fmt.Errorf("%s contains whitespace or a control character", strconv.QuoteToGraphic(truncate(h, 64)))
		}
	}
	u, err := url.Parse(h)
	if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "ftp" {
		return fmt.Errorf("%s is not an absolute http, https or ftp URL", strconv.QuoteToGraphic(truncate(h, 64)))
	}
	return nil
}

// content is a with what the store adds zeroed: two advisories with the
// same content are the same advisory.
func (a Advisory) content() Advisory {
	a.Repo, a.Added, a.AddedBy, a.Published = "", time.Time{}, "", nil
	return a
}

// fromUpdate turns one <update> of an imported updateinfo.xml into an
// advisory: its packages are the NEVRAs of every collection (modules
// aside), a reboot suggested for one package is suggested for the
// advisory.
func fromUpdate(u *metadata.Advisory) (*Advisory, error) {
	a := &Advisory{ID: u.ID, Type: u.Type, Severity: u.Severity, Title: u.Title, Description: u.Description,
		References: u.References, RebootSuggested: u.RebootSuggested, Status: u.Status, From: u.From,
		Version: u.Version, Release: u.Release, Pushcount: u.Pushcount, Rights: u.Rights, Summary: u.Summary, Solution: u.Solution}
	for _, c := range u.Collections {
		for _, p := range c.Packages {
			epoch := p.Epoch
			if epoch == "0" {
				epoch = ""
			}
			if err := nevra.Check(p.Name, epoch, p.Version, p.Release, p.Arch); err != nil {
				return nil, fmt.Errorf("%w: %s: a package of its pkglist: %s", ErrInvalidName, advisoryName(u.ID), nevra.Why(err))
			}
			a.Packages = append(a.Packages, formatNEVRA(p.Name, epoch, p.Version, p.Release, p.Arch))
			a.RebootSuggested = a.RebootSuggested || p.RebootSuggested
		}
	}
	var err error
	if u.Issued == "" {
		return nil, invalidAdvisory("%s: no issued date", advisoryName(u.ID))
	}
	if a.Issued, err = advisoryDate(u.Issued); err != nil {
		return nil, invalidAdvisory("%s: issued: %v", advisoryName(u.ID), err)
	}
	if u.Updated != "" {
		if a.Updated, err = advisoryDate(u.Updated); err != nil {
			return nil, invalidAdvisory("%s: updated: %v", advisoryName(u.ID), err)
		}
	}
	if err := a.check(); err != nil {
		return nil, err
	}
	return a, nil
}

// ParseUpdateInfoAdvisories reads an updateinfo.xml as createrepo_c and
// modifyrepo_c write it into advisories, each checked as ParseAdvisory
// checks one. An id that occurs twice with different content is refused.
func ParseUpdateInfoAdvisories(name string, data []byte) ([]*Advisory, error) {
	if len(data) > maxImportFile {
		return nil, invalidAdvisory("%q is %d bytes, at most %d", name, len(data), maxImportFile)
	}
	ups, err := metadata.ParseUpdateInfo(data)
	if err != nil {
		return nil, invalidAdvisory("%q: %v", name, err)
	}
	if len(ups) == 0 {
		return nil, invalidAdvisory("%q holds no advisory", name)
	}
	var out []*Advisory
	seen := map[string]*Advisory{}
	for i := range ups {
		a, err := fromUpdate(&ups[i])
		if err != nil {
			return nil, fmt.Errorf("%q: %w", name, err)
		}
		if prev := seen[a.ID]; prev != nil {
			if !reflect.DeepEqual(prev.content(), a.content()) {
				return nil, fmt.Errorf("%w: %q: %s occurs twice with different content", ErrAdvisoryConflict, name, advisoryName(a.ID))
			}
			continue
		}
		seen[a.ID] = a
		out = append(out, a)
	}
	return out, nil
}

// readAdvisoryInput is req's content: Data, or the file it names, opened
// without blocking on a FIFO and read up to max bytes.
func readAdvisoryInput(req *AdvisoryRequest, max int) ([]byte, error) {
	if req.Data != nil {
		return req.Data, nil
	}
	// Events and messages name the file wherever the caller's directory
	// was.
	if abs, err := filepath.Abs(req.File); err == nil && req.File != "" {
		req.File = abs
	}
	if req.File == "" {
		return nil, invalidAdvisory("no file")
	}
	f, err := input.Open(req.File, false)
	if err != nil {
		return nil, invalidAdvisory("reading %q: %v", req.File, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, invalidAdvisory("reading %q: %v", req.File, err)
	}
	if len(b) > max {
		return nil, invalidAdvisory("%q is larger than %d bytes", req.File, max)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// AdvisoryAdd stores the advisory of req's TOML or JSON file and
// republishes the directories that serve one of its packages. Every
// package must be in the store for the repository; an id already stored
// with the same content changes nothing, with other content it fails with
// ErrAdvisoryConflict. On any error nothing is recorded or published.
func (r *Repo) AdvisoryAdd(ctx context.Context, req AdvisoryRequest) (*AdvisoryResult, error) {
	data, err := readAdvisoryInput(&req, maxAdvisoryFile)
	if err != nil {
		return nil, err
	}
	a, err := ParseAdvisory(req.File, data)
	if err != nil {
		return nil, fmt.Errorf("adding advisory from %q: %w", req.File, err)
	}
	res, err := r.storeAdvisories(ctx, req, []*Advisory{a}, EventAdvisoryAdd)
	if err != nil {
		return nil, fmt.Errorf("adding advisory %q: %w", a.ID, err)
	}
	return res, nil
}

// AdvisoryImport stores every advisory of req's updateinfo.xml (as
// createrepo_c and modifyrepo_c write it), all or none, as AdvisoryAdd
// stores one.
func (r *Repo) AdvisoryImport(ctx context.Context, req AdvisoryRequest) (*AdvisoryResult, error) {
	data, err := readAdvisoryInput(&req, maxImportFile)
	if err != nil {
		return nil, err
	}
	advs, err := ParseUpdateInfoAdvisories(req.File, data)
	if err != nil {
		return nil, fmt.Errorf("importing advisories: %w", err)
	}
	res, err := r.storeAdvisories(ctx, req, advs, EventAdvisoryImport)
	if err != nil {
		return nil, fmt.Errorf("importing advisories from %q: %w", req.File, err)
	}
	return res, nil
}

func (r *Repo) storeAdvisories(ctx context.Context, req AdvisoryRequest, advs []*Advisory, action string) (*AdvisoryResult, error) {
	repoName, err := r.cfg.checkRepo(req.Repo)
	if err != nil {
		return nil, err
	}
	act := r.actor(ctx, req.Who)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	res := &AdvisoryResult{Repo: repoName, Advisories: []AdvisoryChange{}, Dirs: []string{}, DryRun: req.DryRun}
	var changed []*Advisory
	err = r.st.db.View(func(tx kv.Tx) error {
		for _, a := range advs {
			for _, p := range a.Packages {
				rec, err := getPackage(tx, repoName, p)
				if err != nil {
					return err
				}
				if rec == nil {
					return fmt.Errorf("%w: %s names %s, which is not in repository %s (repoctl list shows what is)", ErrAdvisoryPackage, advisoryName(a.ID), p, repoName)
				}
			}
			var old Advisory
			ok, err := getJSON(tx.Bucket(bucketAdvisories), advisoryKey(repoName, a.ID), &old)
			if err != nil {
				return err
			}
			c := AdvisoryChange{ID: a.ID, Type: a.Type, Packages: a.Packages}
			switch {
			case ok && reflect.DeepEqual(old.content(), a.content()):
				c.Action = ActionUnchanged
			case ok:
				return fmt.Errorf("%w: %s is stored with other content (added %s by %s); remove it first to replace it",
					ErrAdvisoryConflict, advisoryName(a.ID), old.Added.UTC().Format(time.RFC3339), old.AddedBy)
			default:
				c.Action = ActionAdded
				if req.DryRun {
					c.Action = ActionWouldAdd
				}
				changed = append(changed, a)
			}
			res.Advisories = append(res.Advisories, c)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	dirs := map[string]bool{}
	for _, a := range changed {
		for _, d := range r.servingDirs(repoName, a.Packages) {
			dirs[d] = true
		}
	}
	res.Dirs = sortedKeys(dirs)
	if req.DryRun || len(changed) == 0 {
		return res, nil
	}
	now := time.Now().UTC().Round(time.Microsecond)
	events := make([]Event, 0, len(changed))
	for _, a := range changed {
		a.Repo, a.Added, a.AddedBy = repoName, now, act.who
		events = append(events, act.stamp(Event{Action: action, Repo: repoName, Path: req.File, Details: map[string]string{
			"id": a.ID, "type": a.Type, "nevras": strings.Join(a.Packages, " "),
			"dirs": strings.Join(r.servingDirs(repoName, a.Packages), " ")}}))
	}
	err = r.st.db.Update(func(tx kv.Tx) error {
		for _, a := range changed {
			if err := putJSON(tx.Bucket(bucketAdvisories), advisoryKey(repoName, a.ID), a); err != nil {
				return err
			}
		}
		if err := markDirty(tx, res.Dirs); err != nil {
			return err
		}
		return appendEvents(tx, events)
	})
	if err != nil {
		return nil, err
	}
	if err := r.publishDirty(ctx, res.Dirs, act); err != nil {
		return nil, err
	}
	return res, nil
}

// servingDirs are the repository directories of repo that publish one of
// nevras, sorted.
func (r *Repo) servingDirs(repo string, nevras []string) []string {
	r.idxMu.RLock()
	defer r.idxMu.RUnlock()
	var out []string
	for d, idx := range r.dirs {
		if !strings.HasPrefix(d, repo+"/") {
			continue
		}
		for _, n := range nevras {
			if _, ok := idx[n]; ok {
				out = append(out, d)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

func advisoryKey(repo, id string) []byte { return []byte(repo + "\x00" + id) }

// eachAdvisory calls fn for every advisory of repo ("" = all), by repo
// and id.
func eachAdvisory(tx kv.Tx, repo string, fn func(*Advisory) error) error {
	c := tx.Bucket(bucketAdvisories).Cursor()
	var prefix []byte
	if repo != "" {
		prefix = []byte(repo + "\x00")
	}
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var a Advisory
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("decoding advisory %q: %w", k, err)
		}
		if err := fn(&a); err != nil {
			return err
		}
	}
	return nil
}

// checkAdvisoryID refuses an id no advisory can have before it is used as
// a key or quoted.
func checkAdvisoryID(id string) error {
	if !advisoryIDRE().MatchString(id) || strings.Contains(id, "..") {
		return invalidAdvisory("%s is not an advisory id", advisoryName(id))
	}
	return nil
}

// AdvisoryList returns the advisories of o.Repo (empty: every
// repository), by repository and id, each with the directories that
// publish it.
func (r *Repo) AdvisoryList(ctx context.Context, o AdvisoryOptions) ([]Advisory, error) {
	if o.Repo != "" {
		if _, err := r.cfg.checkRepo(o.Repo); err != nil {
			return nil, err
		}
	}
	out := []Advisory{}
	err := r.view(func(tx kv.Tx) error {
		return eachAdvisory(tx, o.Repo, func(a *Advisory) error {
			out = append(out, *a)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Published = r.servingDirs(out[i].Repo, out[i].Packages)
	}
	return out, nil
}

// AdvisoryShow returns one advisory of o.Repo (default: default_repo)
// with the directories that publish it; ErrAdvisoryNotFound if there is
// none with that id.
func (r *Repo) AdvisoryShow(ctx context.Context, id string, o AdvisoryOptions) (*Advisory, error) {
	repoName, err := r.cfg.checkRepo(o.Repo)
	if err != nil {
		return nil, err
	}
	if err := checkAdvisoryID(id); err != nil {
		return nil, err
	}
	var a Advisory
	var ok bool
	err = r.view(func(tx kv.Tx) error {
		var err error
		ok, err = getJSON(tx.Bucket(bucketAdvisories), advisoryKey(repoName, id), &a)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s in repository %s", ErrAdvisoryNotFound, advisoryName(id), repoName)
	}
	a.Published = r.servingDirs(repoName, a.Packages)
	return &a, nil
}

// AdvisoryRemove deletes an advisory and republishes the directories
// that listed it.
func (r *Repo) AdvisoryRemove(ctx context.Context, id string, o AdvisoryOptions) (*AdvisoryResult, error) {
	repoName, err := r.cfg.checkRepo(o.Repo)
	if err != nil {
		return nil, err
	}
	if err := checkAdvisoryID(id); err != nil {
		return nil, err
	}
	act := r.actor(ctx, o.Who)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	var a Advisory
	var ok bool
	err = r.st.db.View(func(tx kv.Tx) error {
		var err error
		ok, err = getJSON(tx.Bucket(bucketAdvisories), advisoryKey(repoName, id), &a)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("removing advisory %q: %w: not in repository %s", id, ErrAdvisoryNotFound, repoName)
	}
	res := &AdvisoryResult{Repo: repoName, DryRun: o.DryRun, Dirs: r.servingDirs(repoName, a.Packages),
		Advisories: []AdvisoryChange{{ID: a.ID, Type: a.Type, Action: ActionRemoved, Packages: a.Packages}}}
	if res.Dirs == nil {
		res.Dirs = []string{}
	}
	if o.DryRun {
		res.Advisories[0].Action = ActionWouldRemove
		return res, nil
	}
	ev := act.stamp(Event{Action: EventAdvisoryRemove, Repo: repoName, Details: map[string]string{
		"id": a.ID, "type": a.Type, "nevras": strings.Join(a.Packages, " "), "dirs": strings.Join(res.Dirs, " ")}})
	err = r.st.db.Update(func(tx kv.Tx) error {
		if err := tx.Bucket(bucketAdvisories).Delete(advisoryKey(repoName, id)); err != nil {
			return err
		}
		if err := markDirty(tx, res.Dirs); err != nil {
			return err
		}
		return appendEvent(tx, &ev)
	})
	if err != nil {
		return nil, err
	}
	if err := r.publishDirty(ctx, res.Dirs, act); err != nil {
		return nil, fmt.Errorf("removing advisory %q: %w", id, err)
	}
	return res, nil
}

// advisoryRecords is dir's updateinfo record: every advisory of its
// repository naming a package dir serves, by id, each with one collection
// of those packages (by file name). None when no advisory applies, so a
// directory without advisories has no updateinfo at all.
func (r *Repo) advisoryRecords(dir string) ([]metadata.ExtraRecord, error) {
	repoName, _, ok := strings.Cut(dir, "/")
	if !ok {
		return nil, nil
	}
	var advs []Advisory
	err := r.view(func(tx kv.Tx) error {
		return eachAdvisory(tx, repoName, func(a *Advisory) error {
			advs = append(advs, *a)
			return nil
		})
	})
	if err != nil || len(advs) == 0 {
		return nil, err
	}
	// The index keeps light entries (no XML): the source package names
	// come from the store records of the packages that need them.
	r.idxMu.RLock()
	served := map[string]metadata.Entry{}
	for _, a := range advs {
		for _, n := range a.Packages {
			if e, ok := r.dirs[dir][n]; ok {
				served[n] = *e
			}
		}
	}
	r.idxMu.RUnlock()
	err = r.view(func(tx kv.Tx) error {
		for n, e := range served {
			if e.Primary != nil {
				continue
			}
			p, err := getPackage(tx, repoName, n)
			if err != nil {
				return err
			}
			if p != nil && p.Entry != nil && p.Entry.PkgID == e.PkgID {
				e.Primary = p.Entry.Primary
				served[n] = e
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var ups []metadata.Advisory
	for _, a := range advs {
		var pkgs []metadata.AdvisoryPackage
		for _, n := range a.Packages {
			if e, ok := served[n]; ok {
				pkgs = append(pkgs, advisoryPackage(&e))
			}
		}
		if len(pkgs) == 0 {
			continue
		}
		sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Filename < pkgs[j].Filename })
		ups = append(ups, metadata.Advisory{
			From: a.From, Status: a.Status, Type: a.Type, Version: a.Version,
			ID: a.ID, Title: a.Title, Issued: a.Issued, Updated: a.Updated,
			Rights: a.Rights, Release: a.Release, Pushcount: a.Pushcount, Severity: a.Severity,
			Summary: a.Summary, Description: a.Description, Solution: a.Solution,
			RebootSuggested: a.RebootSuggested, References: a.References,
			Collections: []metadata.AdvisoryCollection{{Short: strings.ReplaceAll(dir, "/", "-"), Name: dir, Packages: pkgs}},
		})
	}
	if len(ups) == 0 {
		return nil, nil
	}
	data, err := metadata.MarshalUpdateInfo(ups)
	if err != nil {
		return nil, fmt.Errorf("writing updateinfo.xml of %q: %w", dir, err)
	}
	return []metadata.ExtraRecord{{Type: "updateinfo", Name: "updateinfo.xml", Data: data, Compress: true}}, nil
}

// advisoryPackage is a pkglist entry for e as published: its file name
// and checksum, and its source package when the header names one.
func advisoryPackage(e *metadata.Entry) metadata.AdvisoryPackage {
	return metadata.AdvisoryPackage{Name: e.Name, Version: e.Version, Release: e.Release, Epoch: e.Epoch, Arch: e.Arch,
		Src: sourceRPM(e.Primary), Filename: path.Base(e.Href), Sum: e.PkgID, SumType: "sha256"}
}

// sourceRPM is the <rpm:sourcerpm> of a primary.xml block, when it is a
// plain file name.
func sourceRPM(primary []byte) string {
	const open, end = "<rpm:sourcerpm>", "</rpm:sourcerpm>"
	i := bytes.Index(primary, []byte(open))
	if i < 0 {
		return ""
	}
	rest := primary[i+len(open):]
	j := bytes.Index(rest, []byte(end))
	if j <= 0 {
		return ""
	}
	s := string(rest[:j])
	if !plainName(s) || !strings.HasSuffix(s, ".rpm") || nevra.Spec(s) != nil {
		return ""
	}
	return s
}
