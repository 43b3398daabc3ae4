package metadata

import (
	"bytes"
	"cmp"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// RPM file layout constants (rpm's lib/header_internal.h, lib/rpmlead.c).
const (
	leadSize    = 96
	introSize   = 16
	indexSize   = 16
	maxDataType = 9 // RPM_I18NSTRING_TYPE

	typeNull        = 0
	typeChar        = 1
	typeInt8        = 2
	typeInt16       = 3
	typeInt32       = 4
	typeInt64       = 5
	typeString      = 6
	typeBin         = 7
	typeStringArray = 8
	typeI18NString  = 9

	sigTypeHeaderSig = 5 // the only signature type rpm still reads
)

var (
	leadMagic   = []byte{0xed, 0xab, 0xee, 0xdb}
	headerMagic = []byte{0x8e, 0xad, 0xe8, 0x01}
)

// rawIndex is one validated header index entry.
type rawIndex struct {
	tag, typ, off, cnt uint32
	end                uint32 // off + validated extent
}

// rawHeaders is the validated byte image of lead, signature header (with
// its padding) and main header: exactly what go-rpmutils is given.
type rawHeaders struct {
	buf []byte
	// sig and main index the two headers' validated entries.
	sig, main headerIndex
	// hdrStart is where the main header's intro begins (createrepo_c's
	// header-range start); hdrEnd is where the payload begins.
	hdrStart, hdrEnd int
}

// readFullCounted reads len(p) bytes and maps a short read to ErrTruncated.
func readFullCounted(r io.Reader, p []byte, what string) error {
	n, err := io.ReadFull(r, p)
	if err == nil {
		return nil
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %s: got %d of %d bytes", ErrTruncated, what, n, len(p))
	}
	return fmt.Errorf("reading %s: %w", what, err)
}

// readRawHeaders reads and validates lead and both headers from r. It
// allocates at most what cfg allows, and only after checking the counts.
func readRawHeaders(r io.Reader, cfg *readConfig) (*rawHeaders, error) {
	head := make([]byte, leadSize+introSize, leadSize+introSize+4096)
	n, err := io.ReadFull(r, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading lead: %w", err)
	}
	m := min(n, len(leadMagic))
	if n == 0 || !bytes.Equal(head[:m], leadMagic[:m]) {
		return nil, fmt.Errorf("%w: bad lead magic", ErrNotRPM)
	}
	if n < len(head) {
		return nil, fmt.Errorf("%w: lead: got %d of %d bytes", ErrTruncated, n, len(head))
	}
	if major := head[4]; major < 3 || major > 4 {
		return nil, fmt.Errorf("%w: unsupported lead version %d", ErrMalformed, major)
	}
	if st := binary.BigEndian.Uint16(head[78:80]); st != sigTypeHeaderSig {
		return nil, fmt.Errorf("%w: unsupported signature type %d", ErrMalformed, st)
	}
	h := &rawHeaders{buf: head}

	// Signature header: intro already read.
	if err := h.readHeader(r, cfg, leadSize, &h.sig); err != nil {
		return nil, fmt.Errorf("signature header: %w", err)
	}
	h.hdrStart = len(h.buf)
	h.buf = append(h.buf, make([]byte, introSize)...)
	if err := readFullCounted(r, h.buf[h.hdrStart:], "main header intro"); err != nil {
		return nil, err
	}
	if err := h.readHeader(r, cfg, h.hdrStart, &h.main); err != nil {
		return nil, fmt.Errorf("main header: %w", err)
	}
	h.hdrEnd = len(h.buf)
	return h, nil
}

// readHeader validates the intro at h.buf[at:at+16], reads the index and
// data store that follow and validates every entry against the store.
func (h *rawHeaders) readHeader(r io.Reader, cfg *readConfig, at int, ix *headerIndex) error {
	sig := ix == &h.sig
	intro := h.buf[at : at+introSize]
	if !bytes.Equal(intro[:4], headerMagic) {
		return fmt.Errorf("%w: bad header magic % x", ErrMalformed, intro[:4])
	}
	nindex := binary.BigEndian.Uint32(intro[8:12])
	dsize := binary.BigEndian.Uint32(intro[12:16])
	if uint64(nindex) > uint64(cfg.maxEntries) {
		return fmt.Errorf("%w: %d index entries (limit %d)", ErrTooLarge, nindex, cfg.maxEntries)
	}
	if uint64(dsize) > uint64(cfg.maxStore) {
		return fmt.Errorf("%w: %d byte data store (limit %d)", ErrTooLarge, dsize, cfg.maxStore)
	}
	if nindex == 0 {
		return fmt.Errorf("%w: header has no entries", ErrMalformed)
	}
	want := int(nindex)*indexSize + int(dsize)
	if sig {
		// The signature header is padded to a multiple of 8 bytes.
		want += (8 - int(dsize)%8) % 8
	}
	start := len(h.buf)
	// Grow with the data actually read, so that a short file declaring a
	// large header costs no more memory than its own size.
	for got := 0; got < want; {
		chunk := min(want-got, readChunk)
		at := len(h.buf)
		h.buf = slices.Grow(h.buf, chunk)[:at+chunk]
		if err := readFullCounted(r, h.buf[at:], "header index and data"); err != nil {
			return err
		}
		got += chunk
	}
	index := h.buf[start : start+int(nindex)*indexSize]
	data := h.buf[start+len(index) : start+len(index)+int(dsize)]
	ents, err := validateIndex(index, data)
	if err != nil {
		return err
	}
	*ix = newHeaderIndex(ents, data)
	return nil
}

// readChunk is how much header data is read (and allocated) at a time.
const readChunk = 256 << 10

// validateIndex checks what go-rpmutils takes on trust: every entry's type,
// its offset and extent inside the data store, integer alignment, and for
// string types that count NUL terminators exist inside the store. Because
// rpm never writes overlapping entries, the summed extents are capped to
// keep hostile headers from costing quadratic time.
func validateIndex(index, data []byte) ([]rawIndex, error) {
	ents := make([]rawIndex, 0, len(index)/indexSize)
	dl := uint64(len(data))
	var total uint64
	budget := 2*dl + 1<<16
	for i := 0; i+indexSize <= len(index); i += indexSize {
		e := rawIndex{
			tag: binary.BigEndian.Uint32(index[i:]),
			typ: binary.BigEndian.Uint32(index[i+4:]),
			off: binary.BigEndian.Uint32(index[i+8:]),
			cnt: binary.BigEndian.Uint32(index[i+12:]),
		}
		if e.typ > maxDataType {
			return nil, fmt.Errorf("%w: tag %d has unknown type %d", ErrMalformed, e.tag, e.typ)
		}
		if int32(e.off) < 0 || uint64(e.off) > dl {
			return nil, fmt.Errorf("%w: tag %d offset %d outside %d byte store", ErrMalformed, e.tag, e.off, dl)
		}
		if int32(e.cnt) < 0 || uint64(e.cnt) > dl {
			return nil, fmt.Errorf("%w: tag %d count %d exceeds store", ErrMalformed, e.tag, e.cnt)
		}
		var extent uint64
		switch e.typ {
		case typeNull:
		case typeChar, typeInt8, typeBin:
			extent = uint64(e.cnt)
		case typeInt16, typeInt32, typeInt64:
			size := uint64(1) << (e.typ - typeInt8) // 2, 4, 8
			if uint64(e.off)%size != 0 {
				return nil, fmt.Errorf("%w: tag %d misaligned", ErrMalformed, e.tag)
			}
			extent = uint64(e.cnt) * size
		case typeString, typeStringArray, typeI18NString:
			if e.cnt == 0 || (e.typ == typeString && e.cnt != 1) {
				return nil, fmt.Errorf("%w: tag %d has string count %d", ErrMalformed, e.tag, e.cnt)
			}
			p := data[e.off:]
			for j := uint32(0); j < e.cnt; j++ {
				k := bytes.IndexByte(p, 0)
				if k < 0 {
					return nil, fmt.Errorf("%w: tag %d has an unterminated string", ErrMalformed, e.tag)
				}
				p = p[k+1:]
				extent += uint64(k) + 1
			}
		}
		if uint64(e.off)+extent > dl {
			return nil, fmt.Errorf("%w: tag %d runs past the data store", ErrMalformed, e.tag)
		}
		total += extent
		if total > budget {
			return nil, fmt.Errorf("%w: index entries overlap", ErrMalformed)
		}
		e.end = e.off + uint32(extent)
		ents = append(ents, e)
	}
	return ents, nil
}

// headerIndex answers tag lookups over one validated header. Values are
// read the way rpm's headerGet does for the types createrepo_c asks for;
// a missing tag or one of another type reads as absent, which is what
// rpm's headerGetString/headerGetNumber make of it.
type headerIndex struct {
	ents []rawIndex // sorted by tag, stable: the first of duplicates wins
	data []byte
}

func newHeaderIndex(ents []rawIndex, data []byte) headerIndex {
	slices.SortStableFunc(ents, func(a, b rawIndex) int { return cmp.Compare(a.tag, b.tag) })
	return headerIndex{ents: ents, data: data}
}

func (x *headerIndex) find(tag int) (rawIndex, bool) {
	i, ok := slices.BinarySearchFunc(x.ents, uint32(tag), func(e rawIndex, t uint32) int { return cmp.Compare(e.tag, t) })
	if !ok {
		return rawIndex{}, false
	}
	return x.ents[i], true
}

func (x *headerIndex) has(tag int) bool {
	_, ok := x.find(tag)
	return ok
}

// strs returns a string-typed tag's values. They share one allocation.
func (x *headerIndex) strs(tag int) ([]string, bool) {
	e, ok := x.find(tag)
	if !ok || (e.typ != typeString && e.typ != typeStringArray && e.typ != typeI18NString) {
		return nil, false
	}
	all := string(x.data[e.off:e.end]) // validated: cnt NUL-terminated strings
	out := make([]string, 0, e.cnt)
	for range e.cnt {
		i := strings.IndexByte(all, 0)
		out = append(out, all[:i])
		all = all[i+1:]
	}
	return out, true
}

func (x *headerIndex) str(tag int) string {
	e, ok := x.find(tag)
	if !ok || (e.typ != typeString && e.typ != typeStringArray && e.typ != typeI18NString) {
		return ""
	}
	b := x.data[e.off:e.end]
	return string(b[:bytes.IndexByte(b, 0)])
}

// nums returns an integer-typed tag's values, unsigned as rpm reads them.
func (x *headerIndex) nums(tag int) ([]uint64, bool) {
	e, ok := x.find(tag)
	if !ok {
		return nil, false
	}
	b := x.data[e.off:e.end]
	out := make([]uint64, e.cnt)
	switch e.typ {
	case typeChar, typeInt8:
		for i := range out {
			out[i] = uint64(b[i])
		}
	case typeInt16:
		for i := range out {
			out[i] = uint64(binary.BigEndian.Uint16(b[2*i:]))
		}
	case typeInt32:
		for i := range out {
			out[i] = uint64(binary.BigEndian.Uint32(b[4*i:]))
		}
	case typeInt64:
		for i := range out {
			out[i] = binary.BigEndian.Uint64(b[8*i:])
		}
	default:
		return nil, false
	}
	return out, true
}

func (x *headerIndex) num(tag int) (uint64, bool) {
	v, ok := x.nums(tag)
	if !ok || len(v) == 0 {
		return 0, false
	}
	return v[0], true
}

// Signature header tags.
const (
	sigTagSHA1        = 269 // hex SHA1 of the main header
	sigTagSHA256      = 273 // hex SHA256 of the main header
	sigTagLongArchive = 271
	sigTagPayloadSize = 1007
)

// verifyDigest checks the main header against the signature header's
// SHA256 digest, or its SHA1 digest when there is no SHA256 one, as
// go-rpmutils does; a package with neither passes.
func (h *rawHeaders) verifyDigest() error {
	main := h.buf[h.hdrStart:h.hdrEnd]
	var got []byte
	want := h.sig.str(sigTagSHA256)
	if want != "" {
		s := sha256.Sum256(main)
		got = s[:]
	} else if want = h.sig.str(sigTagSHA1); want != "" {
		s := sha1.Sum(main)
		got = s[:]
	} else {
		return nil
	}
	var buf [2 * sha256.Size]byte
	if hex.Encode(buf[:], got) != len(want) || string(buf[:len(want)]) != want {
		return fmt.Errorf("%w: header digest mismatch", ErrMalformed)
	}
	return nil
}
