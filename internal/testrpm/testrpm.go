// Package testrpm builds small, real RPM files for tests and benchmarks.
//
// It wraps github.com/google/rpmpack so that tests can make thousands of
// packages in seconds, where rpmbuild would take minutes. It is for fixtures
// only: the packages are unsigned and carry whatever the Spec says, including
// deliberately odd metadata. It is not part of repoctl's product code.
package testrpm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/rpmpack"
	"golang.org/x/sync/errgroup"
)

// File is one payload entry. Dirs are made with Mode's directory bit
// (040000); ghosts carry no payload.
type File struct {
	Name  string
	Body  []byte
	Mode  uint // 0 means 0100644
	Ghost bool
	Dir   bool
	MTime uint32
}

// Change is one changelog entry.
type Change struct {
	Time   time.Time
	Author string
	Text   string
}

// Spec describes a package. Relations use rpm's textual form, e.g.
// "foo >= 1:2.0-3" or "rpmlib(PayloadIsZstd)".
type Spec struct {
	Name, Version, Release, Arch string
	Epoch                        uint32 // rpmpack.NoEpoch for "no epoch tag"
	Summary, Description         string
	License, URL, Vendor         string
	Group, Packager, BuildHost   string
	BuildTime                    time.Time
	SourceRPM                    string // empty: name-version-release.src.rpm

	Provides, Requires, Conflicts, Obsoletes []string
	Recommends, Suggests                     []string
	Supplements, Enhances                    []string

	Files     []File
	Changelog []Change
	// Compressor is rpmpack's name ("gzip", "zstd", "xz", "lzma"); default gzip.
	Compressor string
}

// FileName is the conventional N-V-R.A.rpm name.
func (s Spec) FileName() string {
	return fmt.Sprintf("%s-%s-%s.%s.rpm", s.Name, s.Version, s.Release, s.Arch)
}

func relations(in []string) (rpmpack.Relations, error) {
	var rs rpmpack.Relations
	for _, r := range in {
		if err := rs.Set(r); err != nil {
			return nil, fmt.Errorf("relation %q: %w", r, err)
		}
	}
	return rs, nil
}

// Build returns the bytes of the RPM described by s.
func Build(s Spec) ([]byte, error) {
	if s.Arch == "" {
		s.Arch = "x86_64"
	}
	if s.BuildTime.IsZero() {
		s.BuildTime = time.Unix(1700000000, 0)
	}
	if s.Summary == "" {
		s.Summary = s.Name + " test package"
	}
	if s.Description == "" {
		s.Description = s.Summary + "."
	}
	if s.License == "" {
		s.License = "MIT"
	}
	if s.BuildHost == "" {
		s.BuildHost = "build.example.test"
	}
	md := rpmpack.RPMMetaData{
		Name: s.Name, Version: s.Version, Release: s.Release, Arch: s.Arch, OS: "linux",
		Summary: s.Summary, Description: s.Description, Licence: s.License, URL: s.URL,
		Vendor: s.Vendor, Group: s.Group, Packager: s.Packager, BuildHost: s.BuildHost,
		BuildTime: s.BuildTime, Epoch: s.Epoch, Compressor: s.Compressor,
	}
	var err error
	for _, x := range []struct {
		dst *rpmpack.Relations
		src []string
	}{{&md.Provides, s.Provides}, {&md.Requires, s.Requires}, {&md.Conflicts, s.Conflicts},
		{&md.Obsoletes, s.Obsoletes}, {&md.Recommends, s.Recommends}, {&md.Suggests, s.Suggests}} {
		if *x.dst, err = relations(x.src); err != nil {
			return nil, err
		}
	}
	r, err := rpmpack.NewRPM(md)
	if err != nil {
		return nil, err
	}
	// rpmpack has no supplements/enhances; add them as raw tags
	// (SUPPLEMENTNAME 5052-5054, ENHANCENAME 5055-5057).
	for _, x := range []struct {
		src                  []string
		name, version, flags int
	}{{s.Supplements, 5052, 5053, 5054}, {s.Enhances, 5055, 5056, 5057}} {
		rs, err := relations(x.src)
		if err != nil {
			return nil, err
		}
		if len(rs) == 0 {
			continue
		}
		var names, vers []string
		var flags []int32
		for _, rel := range rs {
			names = append(names, rel.Name)
			vers = append(vers, rel.Version)
			flags = append(flags, int32(rel.Sense))
		}
		r.AddCustomTag(x.name, rpmpack.EntryStringSlice(names))
		r.AddCustomTag(x.version, rpmpack.EntryStringSlice(vers))
		r.AddCustomTag(x.flags, rpmpack.EntryInt32(flags))
	}
	if len(s.Changelog) > 0 {
		var times []int32
		var names, texts []string
		for _, c := range s.Changelog {
			times = append(times, int32(c.Time.Unix()))
			names = append(names, c.Author)
			texts = append(texts, c.Text)
		}
		r.AddCustomTag(1080, rpmpack.EntryInt32(times))
		r.AddCustomTag(1081, rpmpack.EntryStringSlice(names))
		r.AddCustomTag(1082, rpmpack.EntryStringSlice(texts))
	}
	src := s.SourceRPM
	if src == "" && s.Arch != "src" {
		src = fmt.Sprintf("%s-%s-%s.src.rpm", s.Name, s.Version, s.Release)
	}
	if src != "" {
		r.AddCustomTag(1044, rpmpack.EntryString(src))
	}
	files := append([]File(nil), s.Files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	for _, f := range files {
		mode := f.Mode
		if mode == 0 {
			mode = 0o100644
			if f.Dir {
				mode = 0o40755
			}
		}
		ft := rpmpack.GenericFile
		if f.Ghost {
			ft = rpmpack.GhostFile
		}
		if strings.HasPrefix(f.Name, "/etc/") && !f.Dir {
			ft |= rpmpack.ConfigFile
		}
		mt := f.MTime
		if mt == 0 {
			mt = uint32(s.BuildTime.Unix())
		}
		r.AddFile(rpmpack.RPMFile{Name: f.Name, Body: f.Body, Mode: mode, Owner: "root", Group: "root", MTime: mt, Type: ft})
	}
	var b strings.Builder
	if err := r.Write(&b); err != nil {
		return nil, fmt.Errorf("writing rpm %s: %w", s.FileName(), err)
	}
	return []byte(b.String()), nil
}

// Write builds s into dir/s.FileName() and returns the path. The file's
// mtime is set to the build time so that repodata comparisons are stable.
func Write(dir string, s Spec) (string, error) {
	b, err := Build(s)
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, s.FileName())
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return "", err
	}
	bt := s.BuildTime
	if bt.IsZero() {
		bt = time.Unix(1700000000, 0)
	}
	return p, os.Chtimes(p, bt, bt)
}

// Small is the i-th package of a bulk corpus: a few files, a couple of
// dependencies, distinct names.
func Small(i int) Spec {
	name := fmt.Sprintf("bulk%05d", i)
	return Spec{
		Name: name, Version: fmt.Sprintf("1.%d", i%7), Release: "1.el9", Arch: "x86_64",
		Summary:  "bulk package " + name,
		Provides: []string{fmt.Sprintf("%s-cap = 1.0", name)},
		Requires: []string{"/bin/sh", fmt.Sprintf("bulk%05d-cap", (i+1)%100000)},
		Files: []File{
			{Name: "/usr/share/" + name, Dir: true},
			{Name: "/usr/share/" + name + "/README", Body: []byte("readme " + name + "\n")},
			{Name: "/usr/bin/" + name, Body: []byte("#!/bin/sh\necho " + name + "\n"), Mode: 0o100755},
		},
		Changelog: []Change{{Time: time.Unix(1690000000, 0), Author: "Bulk Builder <bulk@example.test> - 1.0-1", Text: "- initial"}},
	}
}

// Corpus writes n Small packages into dir using all cores and returns
// their paths in index order.
func Corpus(ctx context.Context, dir string, n int) ([]string, error) {
	paths := make([]string, n)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := 0; i < n; i++ {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			p, err := Write(dir, Small(i))
			paths[i] = p
			return err
		})
	}
	return paths, g.Wait()
}
