package metadata

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/rpmpack"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// rawRPM builds a package with rpmpack directly, for relation flags and
// tags testrpm.Spec cannot express (PreReq, MISSINGOK, legacy weak deps,
// empty names, SOURCEPACKAGE).
type rawRPM struct {
	md       rpmpack.RPMMetaData
	files    []rpmpack.RPMFile
	custom   map[int]rpmpack.IndexEntry
	fileName string
}

func writeRaw(t *testing.T, dir string, r rawRPM) {
	t.Helper()
	if r.md.BuildTime.IsZero() {
		r.md.BuildTime = time.Unix(1700000000, 0)
	}
	if r.md.OS == "" {
		r.md.OS = "linux"
	}
	p, err := rpmpack.NewRPM(r.md)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range r.files {
		if f.Owner == "" {
			f.Owner, f.Group = "root", "root"
		}
		if f.MTime == 0 {
			f.MTime = uint32(r.md.BuildTime.Unix())
		}
		p.AddFile(f)
	}
	for k, v := range r.custom {
		p.AddCustomTag(k, v)
	}
	var b bytes.Buffer
	if err := p.Write(&b); err != nil {
		t.Fatal(err)
	}
	name := r.fileName
	if name == "" {
		name = fmt.Sprintf("%s-%s-%s.%s.rpm", r.md.Name, r.md.Version, r.md.Release, r.md.Arch)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, r.md.BuildTime, r.md.BuildTime); err != nil {
		t.Fatal(err)
	}
}

func rel(name, version string, sense uint32) *rpmpack.Relation {
	r := &rpmpack.Relation{Name: name, Version: version}
	for i := uint(0); i < 32; i++ {
		if sense&(1<<i) != 0 {
			r.Sense |= 1 << i
		}
	}
	return r
}

// longChangelog has 15 entries, newest first as rpm stores them, with
// runs of equal timestamps that createrepo_c spreads apart, authors with
// trailing spaces, and XML-special text.
func longChangelog(special string) []testrpm.Change {
	var cs []testrpm.Change
	base := time.Unix(1700000000, 0)
	times := []int64{15, 14, 14, 14, 12, 11, 10, 10, 8, 7, 6, 5, 5, 2, 1}
	for i, d := range times {
		cs = append(cs, testrpm.Change{
			Time:   base.Add(time.Duration(d) * 24 * time.Hour),
			Author: fmt.Sprintf("Dev %d <dev%d@example.test> - 1.%d-1   ", i, i, len(times)-i),
			Text:   fmt.Sprintf("- change %d %s", len(times)-i, special),
		})
	}
	return cs
}

// generatedCorpus writes packages covering createrepo_c's rules and
// quirks into dir.
func generatedCorpus(t *testing.T, dir string) {
	t.Helper()
	specs := []testrpm.Spec{
		testrpm.Small(1), testrpm.Small(2), testrpm.Small(42),
		{
			Name: "epochs", Version: "1.2.3", Release: "4.el9", Epoch: 7,
			Provides:  []string{"epochs-api = 2:1.0-1", "epochs-cap"},
			Requires:  []string{"base >= 3:4.5-6", "plain", "epochs-api = 2:1.0-1", "epochs-api >= 2:1.0-1", "bad-epoch >= x:1.0", "colon-only = :1.0", "nodash = 1:2"},
			Conflicts: []string{"epochs-old < 1:1"}, Obsoletes: []string{"epochs-legacy <= 0:0.9"},
		},
		{
			Name: "noepoch", Version: "0.1", Release: "1", Epoch: rpmpack.NoEpoch, Arch: "noarch",
		},
		{
			Name: "weak", Version: "2", Release: "1", Arch: "noarch",
			Recommends: []string{"rec-a >= 1.0", "rec-b"}, Suggests: []string{"sug-a", "sug-b < 3"},
			Supplements: []string{"sup-a", "sup-b = 1:2-3"}, Enhances: []string{"enh-a > 0.5", "enh-b"},
		},
		{
			Name: "files", Version: "1", Release: "1",
			Requires: []string{"/usr/bin/files-tool", "/etc/files.conf", "/usr/share/files/data", "/usr/lib/sendmail", "/bin/sh", "rpmlib(CompressedFileNames) <= 3.0.4-1", "dup", "dup", "dup >= 1", "libc.so.6()(64bit)", "libc.so.6(GLIBC_2.17)(64bit)", "libc.so.6(GLIBC_2.3.4)(64bit)", "libc.so.6", "libc.so.6(GLIBC_PRIVATE)(64bit)"},
			Files: []testrpm.File{
				{Name: "/etc/files.conf", Body: []byte("a=1\n")},
				{Name: "/etc/files.d", Dir: true},
				{Name: "/usr/bin/files-tool", Body: []byte("#!/bin/sh\n"), Mode: 0o100755},
				{Name: "/usr/sbin/filesd", Body: []byte("#!/bin/sh\n"), Mode: 0o100755},
				{Name: "/opt/files/bin/helper", Body: []byte("x")},
				{Name: "/usr/lib/sendmail", Body: []byte("m")},
				{Name: "/usr/share/files", Dir: true},
				{Name: "/usr/share/files/data", Body: []byte("d")},
				{Name: "/var/log/files.log", Ghost: true},
				{Name: "/etc/files.d/ghost.conf", Ghost: true},
				{Name: "/usr/share/files/a&b <c> \"q\" 'a'.txt", Body: []byte("s")},
				{Name: "/usr/share/files/caf\xe9-latin1.txt", Body: []byte("l")},
				{Name: "/usr/share/files/naïve-utf8.txt", Body: []byte("u")},
			},
			Changelog: longChangelog("& < > \" ' ünï\r\nsecond line\ttab"),
		},
		{
			Name: "special", Version: "1", Release: "1",
			Summary:     `Special <summary> & "quotes" 'apos' é`,
			Description: "Line 1 <b>bold</b> & more\r\nLine 2 \"q\" 'a'\tTab\n\nUTF-8: žluťoučký 日本 🎉",
			License:     "GPL & <MIT>", URL: "https://example.test/?a=1&b=<2>", Vendor: "Vendor \"V\" & Co",
			Group: "Group/<Sub>", Packager: "Pàckager <p@example.test>", BuildHost: "host&<>",
			Provides: []string{"special(<x>) = 1", "special-\"q\"", "perl(Caf\xe9) = 1"},
			Requires: []string{"req-with-tab\tx", "req<&>"},
			Changelog: []testrpm.Change{
				{Time: time.Unix(1690000000, 0), Author: "Jörg <j@example.test> & \"co\"", Text: "- <fix> & \"quote\""},
				{Time: time.Unix(1690000000, 0), Author: " ", Text: "same time"},
				{Time: time.Unix(1690000000, 0), Author: "x  ", Text: "same time again"},
			},
		},
		{
			Name: "latin1", Version: "1", Release: "1",
			Summary: "Caf\xe9 cr\xe8me \xa9 \x80\x9f", Description: "Stra\xdfe \xfc\xf6\xe4 \xff",
			Packager: "J\xf6rg", Vendor: "overlong \xc0\xaf surrogate \xed\xa0\x80 big \xf4\x90\x80\x80 end\xc3",
			Provides:  []string{"ovl\xc0\xafx", "sur\xed\xa0\x80x", "f8\xf8x", "short\xe2\x82", "lead\xc3"},
			Changelog: []testrpm.Change{{Time: time.Unix(1690000000, 0), Author: "Ren\xe9 <r@example.test>", Text: "- caf\xe9"}},
		},
		{
			Name: "oddver", Version: "1.0\xe9", Release: "r\xc3\xa9l", Arch: "noarch",
		},
		{
			Name: "ctrl-summary", Version: "1", Release: "1", Summary: "bell \x07 here",
		},
		{
			// Control character in an entry beyond the changelog limit:
			// createrepo_c only checks what it keeps, so this one stays.
			Name: "ctrl-old-changelog", Version: "1", Release: "1",
			Changelog: append(longChangelog("x")[:12], testrpm.Change{Time: time.Unix(1600000000, 0), Author: "old", Text: "esc \x1b old"}),
		},
		{
			Name: "ctrl-new-changelog", Version: "1", Release: "1",
			Changelog: []testrpm.Change{{Time: time.Unix(1690000000, 0), Author: "a", Text: "esc \x1b new"}},
		},
		{
			Name: "ctrl-file", Version: "1", Release: "1",
			Files: []testrpm.File{{Name: "/usr/share/ctrl\x01file", Body: []byte("x")}},
		},
		{
			Name: "src-heuristic", Version: "1", Release: "1", Arch: "src",
			Files: []testrpm.File{{Name: "src-heuristic.spec", Body: []byte("Name: x\n")}},
		},
	}
	for _, s := range specs {
		if _, err := testrpm.Write(dir, s); err != nil {
			t.Fatalf("building %s: %v", s.Name, err)
		}
	}

	// Raw rpmpack builds for flags testrpm cannot express.
	const (
		less, greater, equal = 1 << 1, 1 << 2, 1 << 3
		prereq, scriptPre    = 1 << 6, 1 << 9
		scriptPost           = 1 << 10
		missingOK            = 1 << 19
		strong               = 1 << 27
	)
	writeRaw(t, dir, rawRPM{
		md: rpmpack.RPMMetaData{
			Name: "flags", Version: "1", Release: "1", Arch: "x86_64", Summary: "flags", Description: "flags", Licence: "MIT",
			Provides: rpmpack.Relations{rel("flags-cap", "1.0", equal), rel("", "", 0)},
			Requires: rpmpack.Relations{
				rel("pre-a", "", scriptPre), rel("post-b", "1.0", scriptPost|greater|equal), rel("prereq-c", "", prereq),
				rel("pre-a", "", 0), rel("pre-a", "", scriptPre), rel("opt-d", "2", missingOK|greater),
				rel("flags-cap", "1.0", equal), rel("flags-cap", "1.0", equal|scriptPre), rel("noflag-ver", "3.0", 0),
				rel("odd-flags", "1", 0x1|0x10), rel("spaced-epoch", " 5:1.0-2", equal), rel("signed-epoch", "+5:1", equal),
				rel("libc.so.6(GLIBC_2.2.5)(64bit)", "", prereq), rel("libc.so.6(GLIBC_2.28)(64bit)", "", 0),
			},
			Conflicts: rpmpack.Relations{rel("", "1", equal)},
		},
		files: []rpmpack.RPMFile{{Name: "/usr/bin/flags", Body: []byte("f"), Mode: 0o100755}},
		custom: map[int]rpmpack.IndexEntry{
			// OLDSUGGESTS (1156-1158) and OLDENHANCES (1159-1161).
			1156: rpmpack.EntryStringSlice([]string{"old-sug", "old-rec"}),
			1157: rpmpack.EntryStringSlice([]string{"", "1.0"}),
			1158: rpmpack.EntryUint32([]uint32{0, strong | greater | equal}),
			1159: rpmpack.EntryStringSlice([]string{"old-enh", "old-sup"}),
			1160: rpmpack.EntryStringSlice([]string{"2", ""}),
			1161: rpmpack.EntryUint32([]uint32{less, strong}),
			// SOURCERPM
			1044: rpmpack.EntryString("flags-1-1.src.rpm"),
		},
	})
	writeRaw(t, dir, rawRPM{
		md: rpmpack.RPMMetaData{
			Name: "srcpkg", Version: "2", Release: "1", Arch: "x86_64", Summary: "s", Description: "s", Licence: "MIT",
		},
		files:  []rpmpack.RPMFile{{Name: "srcpkg.spec", Body: []byte("x")}},
		custom: map[int]rpmpack.IndexEntry{1106: rpmpack.EntryUint32([]uint32{1})},
	})
}

func TestRepodataMatchesCreaterepoCGenerated(t *testing.T) {
	dir := t.TempDir()
	generatedCorpus(t, dir)
	assertSameRepodata(t, dir, RenderOptions{})
}

// buildSpecs builds testdata/specs with rpmbuild into a fresh topdir and
// returns the directory holding the resulting binary and source RPMs.
func buildSpecs(t *testing.T) string {
	t.Helper()
	rpmbuild, err := exec.LookPath("rpmbuild")
	if err != nil {
		t.Fatalf("rpmbuild is required to build fixtures: %v", err)
	}
	specs, err := filepath.Glob(filepath.Join("..", "testdata", "specs", "*.spec"))
	if err != nil || len(specs) == 0 {
		t.Fatalf("no specs: %v", err)
	}
	top := t.TempDir()
	out := t.TempDir()
	for _, s := range specs {
		for _, mode := range []string{"-bb", "-bs"} {
			cmd := exec.Command(rpmbuild, mode, "--quiet", "--define", "_topdir "+top, s)
			cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "SOURCE_DATE_EPOCH=1700000000")
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("rpmbuild %s %s: %v\n%s", mode, s, err, b)
			}
		}
	}
	err = filepath.Walk(top, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !strings.HasSuffix(p, ".rpm") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(out, filepath.Base(p))
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return err
		}
		mt := time.Unix(1700000000, 0)
		return os.Chtimes(dst, mt, mt)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRepodataMatchesCreaterepoCSpecs(t *testing.T) {
	dir := buildSpecs(t)
	ms, err := filepath.Glob(filepath.Join(dir, "*.rpm"))
	if err != nil {
		t.Fatal(err)
	}
	var srcs int
	for _, m := range ms {
		if strings.HasSuffix(m, ".src.rpm") {
			srcs++
		}
	}
	if len(ms) < 4 || srcs < 2 {
		t.Fatalf("expected binary and source rpms, got %v", ms)
	}
	assertSameRepodata(t, dir, RenderOptions{})
	// Non-default render options must match the same createrepo_c flags.
	t.Run("limit-and-baseurl", func(t *testing.T) {
		assertSameRepodataArgs(t, dir, RenderOptions{ChangelogLimit: 3, BaseURL: "/srv/repo & <x>"},
			"--changelog-limit", "3", "--baseurl", "/srv/repo & <x>")
		assertSameRepodataArgs(t, dir, RenderOptions{ChangelogLimit: ChangelogLimitFromFlag(0)}, "--changelog-limit", "0")
		assertSameRepodataArgs(t, dir, RenderOptions{ChangelogLimit: -1, BaseURL: "https://mirror.example.test/el9/"},
			"--changelog-limit", "-1", "--baseurl", "https://mirror.example.test/el9/")
	})
}
