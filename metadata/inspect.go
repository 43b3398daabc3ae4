package metadata

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// RepodataState is a repository directory's current repodata as a client
// would see it, read through the directory's root and trusted in nothing:
// for checks such as `repoctl fsck`. Compare what a publish would write
// with Publish and WithDryRun; this says what is there and what is wrong
// with it.
type RepodataState struct {
	// Repomd is repodata/repomd.xml as served; nil when there is none.
	Repomd []byte `json:"-"`
	// Signature is repodata/repomd.xml.asc; nil when there is none.
	Signature []byte         `json:"-"`
	Revision  string         `json:"revision"`
	Records   []RepomdRecord `json:"records"`
	// Problems are what a client would trip over: repomd.xml that does
	// not parse, a record whose file is missing, outside repodata/, not a
	// regular file or not matching its checksum, a primary that does not
	// parse. One sentence each, naming the file.
	Problems []string `json:"problems,omitempty"`
	// Packages are the packages primary lists, in its order; nil when
	// primary could not be read (Problems says why).
	Packages []ListedPackage `json:"packages"`
}

// ListedPackage is one <package> of a primary document.
type ListedPackage struct {
	Href         string `json:"href"`           // <location href>, relative to the repository directory
	Base         string `json:"base,omitempty"` // <location xml:base>, "" when absent
	ChecksumType string `json:"checksum_type"`
	PkgID        string `json:"pkgid"` // the package's checksum as listed
	Name         string `json:"name"`
	Epoch        string `json:"epoch"`
	Version      string `json:"version"`
	Release      string `json:"release"`
	Arch         string `json:"arch"`
}

// ReadRepodataState reads repodata/ of the repository directory dir.
// A missing repodata/ gives a state with Repomd nil and no problems; the
// error is only for a cancelled ctx or a fault reading the directory.
func ReadRepodataState(ctx context.Context, dir *os.Root) (*RepodataState, error) {
	st := &RepodataState{}
	raw, err := readCapped(dir, RepodataDir+"/repomd.xml", maxRepomdSize)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return st, nil
	case err != nil:
		st.Problems = append(st.Problems, fmt.Sprintf("repodata/repomd.xml: %v", err))
		return st, nil
	}
	st.Repomd = raw
	if sig, err := readCapped(dir, RepodataDir+"/repomd.xml.asc", 1<<20); err == nil {
		st.Signature = sig
	} else if !errors.Is(err, fs.ErrNotExist) {
		st.Problems = append(st.Problems, fmt.Sprintf("repodata/repomd.xml.asc: %v", err))
	}
	md, err := parseRepomd(raw)
	if err != nil {
		st.Problems = append(st.Problems, err.Error())
		return st, nil
	}
	st.Revision, st.Records = md.Revision, md.Records
	for i := range md.Records {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rec := &md.Records[i]
		if rec.Type == "primary" {
			continue // checked while it is read below
		}
		if p := checkRecordFile(dir, rec, md.sumTypes[rec.Type]); p != "" {
			st.Problems = append(st.Problems, p)
		}
	}
	prim := md.Record("primary")
	if prim == nil || prim.Href == "" {
		st.Problems = append(st.Problems, "repodata/repomd.xml names no primary")
		return st, nil
	}
	doc, err := readMetadataFileRoot(ctx, dir, prim, md.sumTypes["primary"], md.openTypes["primary"])
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		st.Problems = append(st.Problems, "primary: "+strings.TrimPrefix(err.Error(), ErrBadRepodata.Error()+": "))
		return st, nil
	}
	frags, err := splitPackages(doc)
	if err != nil {
		st.Problems = append(st.Problems, fmt.Sprintf("%s: %v", prim.Href, err))
		return st, nil
	}
	st.Packages = make([]ListedPackage, 0, len(frags))
	for i, f := range frags {
		p, ok := parseListed(f)
		if !ok {
			st.Problems = append(st.Problems, fmt.Sprintf("%s: package %d does not parse", prim.Href, i+1))
			continue
		}
		st.Packages = append(st.Packages, p)
	}
	return st, nil
}

// checkRecordFile says what is wrong with the file rec names, "" if
// nothing: it must be a regular file inside repodata/ with the recorded
// size and sha256.
func checkRecordFile(dir *os.Root, rec *RepomdRecord, sumType string) string {
	if rec.Href == "" {
		return fmt.Sprintf("repomd.xml record %q names a file elsewhere (xml:base)", rec.Type)
	}
	rel := path.Clean(rec.Href)
	if path.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") || !strings.HasPrefix(rel, RepodataDir+"/") {
		return fmt.Sprintf("repomd.xml record %q names %q, outside repodata/", rec.Type, rec.Href)
	}
	fi, err := dir.Lstat(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("%s (%s) is missing", rel, rec.Type)
	case err != nil:
		return fmt.Sprintf("%s (%s): %v", rel, rec.Type, err)
	case !fi.Mode().IsRegular():
		return fmt.Sprintf("%s (%s) is not a regular file", rel, rec.Type)
	case sumType != "sha256":
		return fmt.Sprintf("%s (%s) has a %q checksum, not sha256", rel, rec.Type, sumType)
	case !fileMatches(dir, rel, rec.Size, rec.Checksum):
		return fmt.Sprintf("%s (%s) does not match its size and checksum in repomd.xml", rel, rec.Type)
	}
	return ""
}

// readCapped reads a regular file of at most max bytes through root.
func readCapped(root *os.Root, name string, max int64) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("larger than %d bytes", max)
	}
	return b, nil
}

// parseListed reads identity, checksum and location of one primary
// <package>, written by createrepo_c or by us.
func parseListed(f []byte) (ListedPackage, bool) {
	var p ListedPackage
	name, ok1 := between(f, "<name>", "</name>")
	arch, ok2 := between(f, "<arch>", "</arch>")
	ver, ok3 := between(f, "<version ", "/>")
	sum, ok4 := between(f, "<checksum ", "</checksum>")
	loc, ok5 := between(f, "<location ", "/>")
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return p, false
	}
	gt := bytes.IndexByte(sum, '>')
	if gt < 0 {
		return p, false
	}
	p.ChecksumType, _ = attr(sum[:gt], "type")
	p.PkgID = string(sum[gt+1:])
	p.Name, p.Arch = unescapeXML(name), unescapeXML(arch)
	p.Epoch, _ = attr(ver, "epoch")
	p.Version, _ = attr(ver, "ver")
	p.Release, _ = attr(ver, "rel")
	var ok bool
	if p.Href, ok = attr(loc, "href"); !ok || p.Href == "" {
		return p, false
	}
	p.Base, _ = attr(loc, "xml:base")
	return p, true
}
