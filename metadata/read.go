package metadata

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"

	"github.com/repoctl/repoctl/internal/rpmhdr"
)

// Errors returned by the package reader; compare with errors.Is.
var (
	// ErrNotRPM: the input does not start with an RPM lead (this includes
	// an empty file).
	ErrNotRPM = errors.New("metadata: not an RPM package")
	// ErrTruncated: the input ends inside the lead or a header.
	ErrTruncated = errors.New("metadata: RPM package is truncated")
	// ErrMalformed: a header is inconsistent (bad magic, offsets or counts
	// outside the data store, unterminated strings, wrong tag types,
	// missing name/version/release, digest mismatch).
	ErrMalformed = errors.New("metadata: RPM header is malformed")
	// ErrTooLarge: a header declares more entries or data than allowed.
	ErrTooLarge = errors.New("metadata: RPM header is too large")
)

const (
	defaultMaxStore   = 64 << 20
	defaultMaxEntries = 1 << 16
	// rpm's own ceilings (HEADER_DATA_MAX, hdrchkTags).
	rpmMaxStore   = 0x0fffffff
	rpmMaxEntries = 0xffff + 1
)

type readConfig struct {
	maxStore   int
	maxEntries int
	// skipDigest lets tests and the fuzz target reach value extraction
	// with mutated headers (see withFreshDigests); no option sets it.
	skipDigest bool
}

// ReadOption configures ReadFile and ReadPackage.
type ReadOption func(*readConfig) error

// WithMaxHeaderSize caps the data store of each header (signature and
// main) in bytes. Default 64 MiB; at most rpm's own limit of 256 MiB.
func WithMaxHeaderSize(n int) ReadOption {
	return func(c *readConfig) error {
		if n <= 0 || n > rpmMaxStore {
			return fmt.Errorf("metadata: max header size %d out of range 1..%d", n, rpmMaxStore)
		}
		c.maxStore = n
		return nil
	}
}

// WithMaxEntries caps the number of index entries of each header.
// Default 65536; rpm's own limits (65535 for the main header, 32 for the
// signature header) apply whatever the cap.
func WithMaxEntries(n int) ReadOption {
	return func(c *readConfig) error {
		if n <= 0 || n > rpmMaxEntries {
			return fmt.Errorf("metadata: max entries %d out of range 1..%d", n, rpmMaxEntries)
		}
		c.maxEntries = n
		return nil
	}
}

func newReadConfig(opts []ReadOption) (*readConfig, error) {
	c := &readConfig{maxStore: defaultMaxStore, maxEntries: defaultMaxEntries}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// ReadPackage reads the lead and headers of an RPM from r and returns the
// package's metadata. It does not read the payload and computes no
// checksum: PkgID, PackageSize and FileTime are left zero for the caller.
func ReadPackage(r io.Reader, opts ...ReadOption) (*Package, error) {
	cfg, err := newReadConfig(opts)
	if err != nil {
		return nil, err
	}
	return readPackage(r, cfg)
}

// readPackage validates the headers with rpmhdr (which reads no more
// than the caps allow, and only as data arrives), then decodes them.
func readPackage(r io.Reader, cfg *readConfig) (*Package, error) {
	raw, err := rpmhdr.Read(r, cfg.hdrOptions()...)
	if err != nil {
		return nil, rpmhdr.Reclassify(err, hdrErrors)
	}
	return decodeHeaders(raw, cfg)
}

// readPackageBytes is readPackage for a file already in memory: rpmhdr
// validates it in place, without a copy.
func readPackageBytes(b []byte, cfg *readConfig) (*Package, error) {
	raw, err := rpmhdr.Parse(b, cfg.hdrOptions()...)
	if err != nil {
		return nil, rpmhdr.Reclassify(err, hdrErrors)
	}
	return decodeHeaders(raw, cfg)
}

// wholeFileMax is the largest file ReadFile reads in one piece.
const wholeFileMax = 4 << 20

var fileBufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// hashingReader feeds everything read through it into h.
type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	hr.h.Write(p[:n])
	hr.n += int64(n)
	return n, err
}

// ReadFile reads the package at path in a single pass: the headers are
// parsed while the whole file streams through sha256, so PkgID (sha256
// hex), PackageSize and FileTime (mtime, unix seconds) are set as
// createrepo_c sets them. The payload is hashed, never decompressed.
func ReadFile(ctx context.Context, path string, opts ...ReadOption) (*Package, error) {
	cfg, err := newReadConfig(opts)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading package %q: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading package %q: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("reading package %q: %w: not a regular file", path, ErrNotRPM)
	}
	var p *Package
	if size := st.Size(); size <= wholeFileMax {
		// Small files, the common case, cost one read: hash the bytes
		// and parse headers from memory.
		bp := fileBufs.Get().(*[]byte)
		defer fileBufs.Put(bp)
		if int64(cap(*bp)) < size {
			*bp = make([]byte, size)
		}
		b := (*bp)[:size]
		if _, err := io.ReadFull(f, b); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: file shrank while reading", ErrTruncated)
			}
			return nil, fmt.Errorf("reading package %q: %w", path, err)
		}
		if p, err = readPackageBytes(b, cfg); err != nil {
			return nil, fmt.Errorf("reading package %q: %w", path, err)
		}
		sum := sha256.Sum256(b)
		p.PkgID = hex.EncodeToString(sum[:])
		p.PackageSize = size
	} else {
		hr := &hashingReader{r: f, h: sha256.New()}
		if p, err = readPackage(hr, cfg); err != nil {
			return nil, fmt.Errorf("reading package %q: %w", path, err)
		}
		bp := copyBufs.Get().(*[]byte)
		rest, err := io.CopyBuffer(struct{ io.Writer }{hr.h}, struct{ io.Reader }{f}, *bp)
		copyBufs.Put(bp)
		if err != nil {
			return nil, fmt.Errorf("reading package %q: %w", path, err)
		}
		var sum [sha256.Size]byte
		p.PkgID = hex.EncodeToString(hr.h.Sum(sum[:0]))
		// Count what was hashed: size and checksum describe the same bytes.
		p.PackageSize = hr.n + rest
	}
	p.FileTime = st.ModTime().Unix()
	return p, nil
}
