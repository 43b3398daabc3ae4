package sign

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"

	"github.com/repoctl/repoctl/internal/rpmhdr"
)

// Readers of a check: which rpm versions read the tag it comes from.
const (
	readerRPM4 = "rpm4" // rpm 4.x only (rpm 6 ignores it on this package)
	readerRPM6 = "rpm6" // rpm 6 only (rpm 4.x does not know the tag)
)

// digestSpec is one digest tag as rpm's verifier (lib/rpmvs.cc) reads it.
type digestSpec struct {
	tag    uint32
	typ    uint32 // the one type rpm accepts
	algo   string // as rpm names it: SHA256, SHA1, SHA512, SHA3-256
	alt    bool   // over the uncompressed payload
	reader string
}

// Header digests (signature header, over the main header). rpm 6 adds
// SHA3-256 (279).
var headerDigests = []digestSpec{
	{tagSHA3Header, rpmhdr.TypeString, "SHA3-256", false, readerRPM6},
	{tagSHA256Header, rpmhdr.TypeString, "SHA256", false, ""},
	{tagSHA1Header, rpmhdr.TypeString, "SHA1", false, ""},
}

// Payload digests (main header, over the payload bytes as stored). 5092 is
// SHA-256 whatever PAYLOADDIGESTALGO (5093) says or whether it is there:
// every rpm since 4.14 hashes it with SHA-256 and never reads 5093, which
// rpm 6 no longer writes. rpm 6 adds SHA-512 and SHA3-256 pairs.
var payloadDigests = []digestSpec{
	{tagPayloadDigest, rpmhdr.TypeStringArray, "SHA256", false, ""},
	{tagPayloadDigestAlt, rpmhdr.TypeStringArray, "SHA256", true, ""},
	{tagPayloadSHA512, rpmhdr.TypeString, "SHA512", false, readerRPM6},
	{tagPayloadSHA512Alt, rpmhdr.TypeString, "SHA512", true, readerRPM6},
	{tagPayloadSHA3, rpmhdr.TypeString, "SHA3-256", false, readerRPM6},
	{tagPayloadSHA3Alt, rpmhdr.TypeString, "SHA3-256", true, readerRPM6},
}

func newHash(algo string) hash.Hash {
	switch algo {
	case "SHA1":
		return sha1.New()
	case "SHA256":
		return sha256.New()
	case "SHA512":
		return sha512.New()
	case "SHA3-256":
		return sha3.New256()
	}
	panic("sign: no hash " + algo)
}

// name is the check's name as rpmkeys -Kv prints it.
func (d digestSpec) name(payload bool) string {
	n := "Header " + d.algo
	if payload {
		n = "Payload " + d.algo
	}
	if d.alt {
		n += " ALT"
	}
	return n + " digest"
}

// want reads the tag's hex digest from h. ok is false when the tag is
// absent. A tag of the wrong type, with other than one value or with a
// value that is not a digest of the algorithm's length in hex is an
// ErrDigestTag: rpm reports such a tag as BAD, and no rpm writes one.
func (d digestSpec) want(h *header, payload bool) (string, bool, error) {
	e := h.get(d.tag)
	if e == nil {
		return "", false, nil
	}
	what := fmt.Sprintf("%s (tag %d)", d.name(payload), d.tag)
	if e.typ != d.typ {
		return "", true, &tagError{ErrDigestTag, fmt.Sprintf("%s has type %d, want %d", what, e.typ, d.typ)}
	}
	if e.count != 1 {
		return "", true, &tagError{ErrDigestTag, fmt.Sprintf("%s has %d values, want 1", what, e.count)}
	}
	v, _, _ := bytes.Cut(e.data, []byte{0})
	if n := 2 * newHash(d.algo).Size(); len(v) != n || !isHex(v) {
		return "", true, &tagError{ErrDigestTag, fmt.Sprintf("%s is not a %d-digit hex digest: %q", what, n, clip(v))}
	}
	return string(v), true, nil
}

func isHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// clip keeps error messages short whatever a hostile tag holds.
func clip(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

// tagError is a malformed digest or signature tag: it matches its kind
// (ErrDigestTag, ErrSignatureTag) and ErrCorrupt.
type tagError struct {
	kind   error
	detail string
}

func (e *tagError) Error() string   { return e.kind.Error() + ": " + e.detail }
func (e *tagError) Unwrap() []error { return []error{e.kind, ErrCorrupt} }

// digestCheck is one digest rpm stores in a package.
type digestCheck struct {
	name   string // as rpmkeys -Kv prints it, e.g. "Header SHA256 digest"
	reader string // "", readerRPM4 or readerRPM6
	err    error  // nil: OK
}

// ignoresLegacy is rpm 6's own test for a v6 signature header: with
// RESERVED (999) and the SHA3-256 digest present it skips every signature
// tag from 1000 on (MD5, sizes, header+payload signatures).
func (p *pkg) ignoresLegacy() bool {
	return p.sig.get(tagReserved) != nil && p.sig.get(tagSHA3Header) != nil
}

// hasPayloadDigest: rpm 4.x can check the payload without a header+payload
// signature (rpmsign's own test: PAYLOADSHA256 or its ALT).
func (p *pkg) hasPayloadDigest() bool {
	return p.main.get(tagPayloadDigest) != nil || p.main.get(tagPayloadDigestAlt) != nil
}

// checkDigests verifies the package's own digests. r must be positioned at
// the payload. extra receives the main header and payload bytes as they
// stream past (for header+payload signatures); it may be nil. full also
// checks MD5 when a payload digest exists (verify does, signing does not:
// see the package comment).
//
// Like rpm, the payload is hashed as stored, never decompressed: an ALT
// digest (over the uncompressed payload) of a compressed package does not
// match, and rpm drops a mismatching digest when the other one of its pair
// matches. So does checkDigests.
func checkDigests(ctx context.Context, p *pkg, r io.Reader, extra io.Writer, full bool) ([]digestCheck, error) {
	var checks []digestCheck
	for _, d := range headerDigests {
		want, ok, err := d.want(p.sig, false)
		if !ok {
			continue
		}
		if err == nil {
			h := newHash(d.algo)
			h.Write(p.main.blob)
			if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, want) {
				err = fmt.Errorf("%s mismatch: header says %s, computed %s", d.name(false), want, got)
			}
		}
		checks = append(checks, digestCheck{d.name(false), d.reader, err})
	}

	payloadLen := p.size - p.payloadOff
	hdrPayload := p.size - p.mainOff
	for _, t := range []uint32{tagSize, tagLongSize} {
		if v, ok := p.sig.uint(t); ok && int64(v) != hdrPayload {
			checks = append(checks, digestCheck{"Header+payload size", "", fmt.Errorf("size mismatch: signature header says %d bytes, file has %d (truncated?)", v, hdrPayload)})
			return checks, nil
		}
	}

	var writers []io.Writer
	type pending struct {
		d    digestSpec
		want string
		err  error // malformed tag
	}
	var pend []pending
	hashes := map[string]hash.Hash{}
	for _, d := range payloadDigests {
		want, ok, err := d.want(p.main, true)
		if !ok {
			continue
		}
		pend = append(pend, pending{d, want, err})
		if err == nil && hashes[d.algo] == nil {
			h := newHash(d.algo)
			hashes[d.algo] = h
			writers = append(writers, h)
		}
	}
	var md5h hash.Hash
	var md5want []byte
	if e := p.sig.get(tagMD5); e != nil && e.typ == typeBin && len(e.data) == 16 && (full || !p.hasPayloadDigest()) {
		md5h, md5want = md5.New(), e.data
		md5h.Write(p.main.blob)
		writers = append(writers, md5h)
	}
	if extra != nil {
		extra.Write(p.main.blob)
		writers = append(writers, extra)
	}
	if len(writers) > 0 {
		var w io.Writer
		if len(writers) == 1 {
			w = writers[0]
		} else {
			w = io.MultiWriter(writers...)
		}
		n, err := pipeCopy(ctx, w, r, payloadLen)
		if err != nil {
			return nil, err
		}
		if n != payloadLen {
			return nil, fmt.Errorf("%w: payload is %d bytes, expected %d", ErrCorrupt, n, payloadLen)
		}
	}
	sums := map[string]string{}
	for a, h := range hashes {
		sums[a] = hex.EncodeToString(h.Sum(nil))
	}
	matches := func(pd pending) bool { return pd.err == nil && strings.EqualFold(sums[pd.d.algo], pd.want) }
	for _, pd := range pend {
		err := pd.err
		if err == nil && !matches(pd) {
			// rpm's getAlt: the other digest of the pair vouches for the payload.
			hidden := false
			for _, o := range pend {
				if o.d.algo == pd.d.algo && o.d.alt != pd.d.alt && matches(o) {
					hidden = true
				}
			}
			if hidden {
				continue
			}
			err = fmt.Errorf("%s mismatch: header says %s, computed %s", pd.d.name(true), pd.want, sums[pd.d.algo])
		}
		checks = append(checks, digestCheck{pd.d.name(true), pd.d.reader, err})
	}
	if md5h != nil {
		var err error
		if got := md5h.Sum(nil); !bytes.Equal(got, md5want) {
			err = fmt.Errorf("MD5 digest mismatch: header says %x, computed %x", md5want, got)
		}
		reader := ""
		if p.ignoresLegacy() {
			reader = readerRPM4
		}
		checks = append(checks, digestCheck{"MD5 digest", reader, err})
	}
	return checks, nil
}

// firstDigestError turns the first failed check into an ErrCorrupt error
// (a malformed tag keeps its own sentinel too).
func firstDigestError(checks []digestCheck) error {
	for _, c := range checks {
		if c.err != nil {
			var te *tagError
			if errors.As(c.err, &te) {
				return c.err
			}
			return fmt.Errorf("%w: %v", ErrCorrupt, c.err)
		}
	}
	return nil
}

const (
	copyBuf       = 1 << 20
	pipelineAbove = 8 << 20
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBuf); return &b }}

// pipeCopy copies n bytes from r to w. For large inputs it reads ahead in
// its own goroutine so that reading (page cache copy or disk) overlaps the
// hashing, which is what bounds signing a big package.
func pipeCopy(ctx context.Context, w io.Writer, r io.Reader, n int64) (int64, error) {
	if n < pipelineAbove {
		bp := bufPool.Get().(*[]byte)
		defer bufPool.Put(bp)
		got, err := io.CopyBuffer(w, io.LimitReader(r, n), *bp)
		if err != nil {
			return got, fmt.Errorf("reading payload: %w", err)
		}
		return got, nil
	}
	type chunk struct {
		b   *[]byte
		n   int
		err error
	}
	full := make(chan chunk, 3)
	free := make(chan *[]byte, 4)
	for i := 0; i < 4; i++ {
		b := make([]byte, 4*copyBuf)
		free <- &b
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		defer close(full)
		var left = n
		for left > 0 {
			var b *[]byte
			select {
			case b = <-free:
			case <-done:
				return
			}
			want := len(*b)
			if int64(want) > left {
				want = int(left)
			}
			k, err := io.ReadFull(r, (*b)[:want])
			left -= int64(k)
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				select {
				case full <- chunk{b, k, nil}:
				case <-done:
				}
				return
			}
			select {
			case full <- chunk{b, k, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	var total int64
	for c := range full {
		if c.n > 0 {
			w.Write((*c.b)[:c.n])
			total += int64(c.n)
		}
		if c.err != nil {
			return total, fmt.Errorf("reading payload: %w", c.err)
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
		free <- c.b
	}
	return total, nil
}
