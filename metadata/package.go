package metadata

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/repoctl/repoctl/internal/rpmhdr"
)

// Package is what repodata says about one RPM: the fields of primary.xml,
// filelists.xml and other.xml, read from the header the way createrepo_c
// 0.17.3 reads them (parsehdr.c). Dependency lists are already filtered
// by createrepo_c's rules (see Requires). Strings are the header's raw
// bytes; the XML renderer converts non-UTF-8 text as Latin-1.
type Package struct {
	Name    string
	Arch    string // "src" for source packages (SOURCEPACKAGE set)
	Epoch   string // decimal; "0" when the header has none
	Version string
	Release string

	Summary     string
	Description string
	Packager    string
	URL         string
	License     string
	Vendor      string
	Group       string
	BuildHost   string
	SourceRPM   string // "(none)" when rpm would retrofit it so

	BuildTime int64 // BUILDTIME, unix seconds

	// Set by ReadFile; ReadPackage leaves them zero.
	PkgID       string // sha256 hex of the whole file
	PackageSize int64  // file size in bytes
	FileTime    int64  // file mtime, unix seconds

	InstalledSize int64 // LONGSIZE, else SIZE
	ArchiveSize   int64 // LONGARCHIVESIZE, else ARCHIVESIZE/PAYLOADSIZE

	// HeaderStart and HeaderEnd are the byte range of the main header:
	// from its intro (after lead and padded signature header) to the
	// start of the payload.
	HeaderStart int64
	HeaderEnd   int64

	// Requires has rpmlib() requirements, requirements on the package's
	// own primary files, requirements its own provides satisfy and
	// duplicates removed; legacy MISSINGOK requirements are moved to
	// Recommends; of the libc.so.6 requirements only the highest is kept,
	// last. The other lists are in header order.
	Provides    []Dependency
	Requires    []Dependency
	Conflicts   []Dependency
	Obsoletes   []Dependency
	Suggests    []Dependency
	Enhances    []Dependency
	Recommends  []Dependency
	Supplements []Dependency

	Files []File
	// Changelog holds every entry in header order (newest first); the
	// renderer applies the limit. Authors have trailing spaces removed.
	Changelog []ChangelogEntry
}

// Dependency is one relation as repodata writes it.
type Dependency struct {
	Name    string
	Flags   string // "", "EQ", "LT", "GT", "LE" or "GE"
	Epoch   string // "" when the relation has no version
	Version string
	Release string
	Pre     bool // requires only: Requires(pre), (post) or PreReq
}

// File is one path of the package.
type File struct {
	Path string // full path
	Type string // "", "dir" or "ghost"
}

// ChangelogEntry is one %changelog entry.
type ChangelogEntry struct {
	Author string
	Time   int64 // unix seconds
	Text   string
}

// NEVRA returns name-[epoch:]version-release.arch, epoch omitted when 0.
func (p *Package) NEVRA() string {
	if p.Epoch == "" || p.Epoch == "0" {
		return p.Name + "-" + p.Version + "-" + p.Release + "." + p.Arch
	}
	return p.Name + "-" + p.Epoch + ":" + p.Version + "-" + p.Release + "." + p.Arch
}

// Main header tags (rpm's rpmtag.h).
const (
	tagName          = 1000
	tagVersion       = 1001
	tagRelease       = 1002
	tagEpoch         = 1003
	tagSummary       = 1004
	tagDescription   = 1005
	tagBuildTime     = 1006
	tagBuildHost     = 1007
	tagSize          = 1009
	tagVendor        = 1011
	tagLicense       = 1014
	tagPackager      = 1015
	tagGroup         = 1016
	tagURL           = 1020
	tagArch          = 1022
	tagOldFilenames  = 1027
	tagFileModes     = 1030
	tagFileFlags     = 1037
	tagSourceRPM     = 1044
	tagArchiveSize   = 1046
	tagChangelogTime = 1080
	tagChangelogName = 1081
	tagChangelogText = 1082
	tagSourcePackage = 1106
	tagDirIndexes    = 1116
	tagBaseNames     = 1117
	tagDirNames      = 1118
	tagLongSize      = 5009

	fileGhost = 1 << 6
	modeFmt   = 0o170000
	modeDir   = 0o040000
)

func packageFromHeader(h *hdr, raw *rpmhdr.Headers) (*Package, error) {
	p := &Package{
		HeaderStart: raw.Main.Offset,
		HeaderEnd:   raw.PayloadOffset(),
	}
	var ok bool
	for _, f := range []struct {
		dst *string
		tag int
	}{{&p.Name, tagName}, {&p.Version, tagVersion}, {&p.Release, tagRelease}} {
		var v []string
		if v, ok = h.strs(f.tag); !ok || len(v) == 0 {
			return nil, fmt.Errorf("%w: no %s tag", ErrMalformed, tagLabel(f.tag))
		}
		// Identity fields outlive the Package (Entry, the daemon's
		// store): a copy, so they do not pin the whole header.
		*f.dst = strings.Clone(v[0])
	}
	epoch, _ := h.num(tagEpoch)
	p.Epoch = strconv.FormatUint(epoch, 10)
	p.Summary = h.str(tagSummary)
	p.Description = h.str(tagDescription)
	p.URL = h.str(tagURL)
	bt, _ := h.num(tagBuildTime)
	p.BuildTime = int64(bt)
	p.License = h.str(tagLicense)
	p.Vendor = h.str(tagVendor)
	p.Group = h.str(tagGroup)
	p.BuildHost = h.str(tagBuildHost)
	p.Packager = h.str(tagPackager)

	if v, ok := h.num(tagLongSize); ok {
		p.InstalledSize = int64(v)
	} else if v, ok := h.num(tagSize); ok {
		p.InstalledSize = int64(v)
	}
	// rpm merges the signature header's sizes into the main header
	// unless it has its own; LONGARCHIVESIZE wins over ARCHIVESIZE.
	for _, tag := range []int{sigTagLongArchive, tagArchiveSize, sigTagPayloadSize} {
		if v, ok := h.num(tag); ok {
			p.ArchiveSize = int64(v)
			break
		}
	}

	dirs, hasDirs := h.strs(tagDirNames)
	bases, hasBases := h.strs(tagBaseNames)
	idx, hasIdx := h.nums(tagDirIndexes)
	if !hasBases {
		// rpm converts legacy OLDFILENAMES headers on load.
		if old, ok := h.strs(tagOldFilenames); ok {
			dirs, bases, idx = compressFilelist(old)
			hasDirs, hasBases, hasIdx = true, true, true
		}
	}

	// rpm's applyRetrofits: a header with neither SOURCERPM nor
	// SOURCEPACKAGE is a source package when its only directory is "".
	_, hasSrcPkg := h.nums(tagSourcePackage)
	p.SourceRPM = h.str(tagSourceRPM)
	isSrc := false
	if !h.has(tagSourceRPM) && !hasSrcPkg {
		if hasDirs && len(dirs) == 1 && dirs[0] == "" {
			isSrc = true
		} else {
			p.SourceRPM = "(none)"
		}
	}
	if n, _ := h.num(tagSourcePackage); n != 0 {
		isSrc = true
	}
	if isSrc {
		p.Arch = "src"
	} else {
		p.Arch = strings.Clone(h.str(tagArch))
	}

	// Files: createrepo_c needs all of these tags and walks them in step.
	var fullNames []string
	flags, hasFlags := h.nums(tagFileFlags)
	modes, hasModes := h.nums(tagFileModes)
	if hasBases && hasIdx && hasFlags && hasModes {
		n := min(len(bases), len(idx), len(flags), len(modes))
		p.Files = make([]File, n)
		fullNames = make([]string, n)
		for i := range n {
			dir := ""
			if hasDirs && len(dirs) > 0 {
				if idx[i] >= uint64(len(dirs)) {
					return nil, fmt.Errorf("%w: file %d has directory index %d of %d", ErrMalformed, i, idx[i], len(dirs))
				}
				dir = dirs[idx[i]]
			}
			full := dir + bases[i]
			fullNames[i] = full
			t := ""
			if modes[i]&modeFmt == modeDir {
				t = "dir"
			} else if flags[i]&fileGhost != 0 {
				t = "ghost"
			}
			p.Files[i] = File{Path: full, Type: t}
		}
	}

	readDeps(h, p, fullNames)
	readChangelog(h, p)
	return p, nil
}

func tagLabel(tag int) string {
	switch tag {
	case tagName:
		return "NAME"
	case tagVersion:
		return "VERSION"
	case tagRelease:
		return "RELEASE"
	}
	return strconv.Itoa(tag)
}

// compressFilelist splits legacy full paths into rpm's dirname/basename
// form, as rpm does when it loads such a header.
func compressFilelist(old []string) (dirs, bases []string, idx []uint64) {
	for _, f := range old {
		i := strings.LastIndexByte(f, '/')
		d, b := "", f
		if i >= 0 {
			d, b = f[:i+1], f[i+1:]
		}
		if len(dirs) == 0 || dirs[len(dirs)-1] != d {
			dirs = append(dirs, d)
		}
		bases = append(bases, b)
		idx = append(idx, uint64(len(dirs)-1))
	}
	return dirs, bases, idx
}

func readChangelog(h *hdr, p *Package) {
	times, ok1 := h.nums(tagChangelogTime)
	names, ok2 := h.strs(tagChangelogName)
	texts, ok3 := h.strs(tagChangelogText)
	if !ok1 || !ok2 || !ok3 {
		return
	}
	n := min(len(times), len(names), len(texts))
	p.Changelog = make([]ChangelogEntry, n)
	for i := range n {
		author := names[i]
		// createrepo_c trims trailing spaces but never the first byte.
		j := len(author)
		for j > 1 && author[j-1] == ' ' {
			j--
		}
		p.Changelog[i] = ChangelogEntry{Author: author[:j], Time: int64(times[i]), Text: texts[i]}
	}
}

var errNoPkgID = errors.New("metadata: package has no checksum (read it with ReadFile or set PkgID)")
