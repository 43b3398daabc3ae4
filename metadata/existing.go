package metadata

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"html"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sync/errgroup"
)

// existingPackage is a package as the current repodata describes it:
// its three fragments sliced out of the uncompressed documents, which our
// writer and createrepo_c format identically.
type existingPackage struct {
	Entry
	base string // <location xml:base>, "" when absent
	// src is 1 + the index of the saved state's block whose documents
	// hold the fragments (loadStateReuse), 0 for parsed repodata.
	src int
	// same: a file scanned now has this href, size and mtime
	// (loadStateReuse).
	same bool
	// pos is 1 + the package's place in the saved state's (published)
	// order, 0 for parsed repodata.
	pos int
}

// loadExisting reads repoDir/repodata (ours or createrepo_c's; zstd, gz or
// xz) and returns its packages by href. It returns (nil, nil) when there is
// no repodata. Checksums in repomd.xml are verified while reading.
func loadExisting(ctx context.Context, repoDir string) (map[string]*existingPackage, error) {
	root, err := os.OpenRoot(repoDir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return loadExistingRoot(ctx, root)
}

// loadExistingRoot is loadExisting for the repository directory root:
// every file is read through it.
func loadExistingRoot(ctx context.Context, root *os.Root) (map[string]*existingPackage, error) {
	md, err := readRepomdRoot(root, RepodataDir+"/repomd.xml")
	if err != nil || md == nil {
		return nil, err
	}
	var docs [3][]byte
	g, gctx := errgroup.WithContext(ctx)
	for k, d := range docSpecs {
		r := md.Record(d.typ)
		if r == nil || r.Href == "" {
			return nil, fmt.Errorf("%w: repomd.xml has no %s", ErrBadRepodata, d.typ)
		}
		g.Go(func() error {
			b, err := readMetadataFileRoot(gctx, root, r, md.sumTypes[d.typ], md.openTypes[d.typ])
			docs[k] = b
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return parseExisting(ctx, docs)
}

// parseExisting slices the uncompressed primary, filelists and other
// documents into packages and matches them up.
func parseExisting(ctx context.Context, docs [3][]byte) (map[string]*existingPackage, error) {
	var frags [3][][]byte
	var err error
	for k, d := range docSpecs {
		if frags[k], err = splitPackages(docs[k]); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadRepodata, d.typ, err)
		}
	}
	n := len(frags[0])
	if len(frags[1]) != n || len(frags[2]) != n {
		return nil, fmt.Errorf("%w: primary, filelists and other list %d, %d and %d packages",
			ErrBadRepodata, n, len(frags[1]), len(frags[2]))
	}
	out := make(map[string]*existingPackage, n)
	for i := 0; i < n; i++ {
		if i%1024 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		p, ok := parsePrimaryFragment(frags[0][i])
		if !ok {
			// Not reusable (e.g. sha1 checksums); it will be read again.
			continue
		}
		// createrepo_c and we write the three documents in the same order.
		if fragmentPkgID(frags[1][i]) != p.PkgID || fragmentPkgID(frags[2][i]) != p.PkgID {
			return nil, fmt.Errorf("%w: filelists/other do not follow primary's order at package %d", ErrBadRepodata, i)
		}
		p.Primary, p.Filelists, p.Other = frags[0][i], frags[1][i], frags[2][i]
		if _, dup := out[p.Href]; dup {
			delete(out, p.Href)
			continue
		}
		out[p.Href] = p
	}
	return out, nil
}

// readMetadataFile reads the file a repomd record names, verifying its
// checksum and open-checksum (sha256) while streaming, and returns the
// uncompressed content, capped at maxOpenSize.
func readMetadataFile(ctx context.Context, repoDir string, r *RepomdRecord, sumType, openType string) ([]byte, error) {
	root, err := os.OpenRoot(repoDir)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRepodata, err)
	}
	defer root.Close()
	return readMetadataFileRoot(ctx, root, r, sumType, openType)
}

// readMetadataFileRoot is readMetadataFile for the repository directory
// root: the file is opened through it, so a symbolic link cannot make it
// read outside.
func readMetadataFileRoot(ctx context.Context, root *os.Root, r *RepomdRecord, sumType, openType string) ([]byte, error) {
	rel := path.Clean(r.Href)
	if path.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") || !strings.HasPrefix(rel, RepodataDir+"/") {
		return nil, fmt.Errorf("%w: %s location %q is outside repodata/", ErrBadRepodata, r.Type, r.Href)
	}
	p := rootPath(root, rel)
	f, err := root.Open(rel)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRepodata, err)
	}
	defer f.Close()
	sr := newSumReader(f)
	dr, err := decompressedReader(rel, sr)
	if err != nil {
		return nil, fmt.Errorf("%w: reading %q: %v", ErrBadRepodata, p, err)
	}
	defer dr.Close()
	// open-size is only a hint: never allocate on the file's word
	// beyond a modest amount.
	capHint := r.OpenSize
	if capHint < 0 || capHint > 64<<20 {
		capHint = 0
	}
	buf := bytes.NewBuffer(make([]byte, 0, capHint+512))
	n, err := io.Copy(buf, io.LimitReader(dr, maxOpenSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading %q: %v", ErrBadRepodata, p, err)
	}
	if n > maxOpenSize {
		return nil, fmt.Errorf("%w: reading %q: %v", ErrBadRepodata, p, errTooLarge)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Drain what the decompressor did not need so the checksum covers
	// the whole file.
	if _, err := io.Copy(io.Discard, sr); err != nil {
		return nil, fmt.Errorf("%w: reading %q: %v", ErrBadRepodata, p, err)
	}
	if sumType == "sha256" && sr.sum() != r.Checksum {
		return nil, fmt.Errorf("%w: %q does not match its checksum in repomd.xml", ErrBadRepodata, p)
	}
	// The compressed checksum covers the content; hash the uncompressed
	// bytes only when it could not be checked.
	if sumType != "sha256" && openType == "sha256" && r.OpenChecksum != "" {
		s := sha256.Sum256(buf.Bytes())
		if hex.EncodeToString(s[:]) != r.OpenChecksum {
			return nil, fmt.Errorf("%w: %q does not match its open-checksum in repomd.xml", ErrBadRepodata, p)
		}
	}
	return buf.Bytes(), nil
}

var (
	pkgOpen  = []byte("<package")
	pkgClose = []byte("</package>\n")
)

// splitPackages cuts a document into its "<package ...>...</package>\n"
// fragments. Text inside is escaped, so "</package>" cannot occur in it.
func splitPackages(doc []byte) ([][]byte, error) {
	// The header ends with the root element's start tag and a newline.
	first := bytes.Index(doc, []byte("\n<package"))
	if first < 0 {
		if bytes.Contains(doc, pkgOpen) {
			return nil, fmt.Errorf("unexpected formatting")
		}
		return nil, nil
	}
	pos := first + 1
	var out [][]byte
	for bytes.HasPrefix(doc[pos:], pkgOpen) {
		end := bytes.Index(doc[pos:], pkgClose)
		if end < 0 {
			return nil, fmt.Errorf("unterminated <package> at byte %d", pos)
		}
		end += pos + len(pkgClose)
		out = append(out, doc[pos:end:end])
		pos = end
	}
	if !bytes.HasPrefix(doc[pos:], []byte("</")) {
		return nil, fmt.Errorf("unexpected content at byte %d", pos)
	}
	return out, nil
}

// between returns the text after open up to the next close in b.
func between(b []byte, open, close string) ([]byte, bool) {
	i := bytes.Index(b, []byte(open))
	if i < 0 {
		return nil, false
	}
	rest := b[i+len(open):]
	j := bytes.Index(rest, []byte(close))
	if j < 0 {
		return nil, false
	}
	return rest[:j], true
}

// attr returns the unescaped value of name="..." in the attributes of a
// start tag (with or without the element name before them).
func attr(tag []byte, name string) (string, bool) {
	key := []byte(name + "=\"")
	for i := 0; ; {
		j := bytes.Index(tag[i:], key)
		if j < 0 {
			return "", false
		}
		j += i
		if j == 0 || tag[j-1] == ' ' || tag[j-1] == '\n' || tag[j-1] == '\t' {
			rest := tag[j+len(key):]
			k := bytes.IndexByte(rest, '"')
			if k < 0 {
				return "", false
			}
			return unescapeXML(rest[:k]), true
		}
		i = j + 1
	}
}

func unescapeXML(b []byte) string {
	if bytes.IndexByte(b, '&') < 0 {
		return string(b)
	}
	return html.UnescapeString(string(b))
}

// parsePrimaryFragment recovers what --update needs from one primary
// <package>: identity, href, size and mtime. ok is false when the package
// cannot be reused as is (no sha256 pkgid, missing fields).
func parsePrimaryFragment(f []byte) (*existingPackage, bool) {
	p := &existingPackage{}
	name, ok1 := between(f, "<name>", "</name>")
	arch, ok2 := between(f, "<arch>", "</arch>")
	ver, ok3 := between(f, "<version ", "/>")
	sum, ok4 := between(f, "<checksum ", "</checksum>")
	tm, ok5 := between(f, "<time ", "/>")
	sz, ok6 := between(f, "<size ", "/>")
	loc, ok7 := between(f, "<location ", "/>")
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) {
		return nil, false
	}
	gt := bytes.IndexByte(sum, '>')
	if gt < 0 {
		return nil, false
	}
	if t, _ := attr(sum[:gt], "type"); t != "sha256" {
		return nil, false
	}
	p.PkgID = string(sum[gt+1:])
	if len(p.PkgID) != 64 {
		return nil, false
	}
	p.Name, p.Arch = unescapeXML(name), unescapeXML(arch)
	p.Epoch, _ = attr(ver, "epoch")
	p.Version, _ = attr(ver, "ver")
	p.Release, _ = attr(ver, "rel")
	var err error
	ft, _ := attr(tm, "file")
	if p.MTime, err = strconv.ParseInt(ft, 10, 64); err != nil {
		return nil, false
	}
	ps, _ := attr(sz, "package")
	if p.Size, err = strconv.ParseInt(ps, 10, 64); err != nil {
		return nil, false
	}
	if p.Href, ok1 = attr(loc, "href"); !ok1 || p.Href == "" {
		return nil, false
	}
	p.base, _ = attr(loc, "xml:base")
	return p, true
}

// fragmentPkgID returns the pkgid attribute of a filelists/other package.
func fragmentPkgID(f []byte) string {
	nl := bytes.IndexByte(f, '\n')
	if nl < 0 {
		return ""
	}
	id, _ := attr(f[:nl], "pkgid")
	return id
}
