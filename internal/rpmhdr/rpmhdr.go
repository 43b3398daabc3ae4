package rpmhdr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Sentinel errors; every error from Read and Parse that is about the input
// (not an I/O failure) matches exactly one of them with errors.Is.
var (
	// ErrNotRPM: the input does not start with an RPM lead magic (this
	// includes an empty input).
	ErrNotRPM = errors.New("rpmhdr: not an RPM package")
	// ErrTruncated: the input ends inside the lead or a header.
	ErrTruncated = errors.New("rpmhdr: RPM package is truncated")
	// ErrMalformed: the lead or a header is inconsistent: bad magic,
	// version or signature type, no entries, an entry of unknown type, out
	// of the data store, misaligned or unterminated, a bad region tag.
	ErrMalformed = errors.New("rpmhdr: RPM header is malformed")
	// ErrTooLarge: a header declares more entries or data than allowed.
	ErrTooLarge = errors.New("rpmhdr: RPM header is too large")
)

// Error is the error Read and Parse return for bad input. Kind is one of
// the package's sentinels. A caller with sentinels of its own passes the
// error through Reclassify, so that its errors.Is tests and its message
// prefix stay its own while rpmhdr's sentinel still matches.
type Error struct {
	Kind   error
	Detail string // what was wrong and where, e.g. "main header: tag 1000 ..."
	as     error
}

func (e *Error) Error() string {
	k := e.Kind
	if e.as != nil {
		k = e.as
	}
	return k.Error() + ": " + e.Detail
}

func (e *Error) Unwrap() []error {
	if e.as != nil {
		return []error{e.as, e.Kind}
	}
	return []error{e.Kind}
}

// Reclassify returns err with its rpmhdr sentinel shown as, and also
// matching, the caller's sentinel m[kind]. Errors that are not rpmhdr
// errors, or whose kind m does not name, are returned unchanged.
func Reclassify(err error, m map[error]error) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	as, ok := m[e.Kind]
	if !ok {
		return err
	}
	return &Error{Kind: e.Kind, Detail: e.Detail, as: as}
}

func errorf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Detail: fmt.Sprintf(format, args...)}
}

// File layout (rpm's lib/rpmlead.c, lib/header_internal.h).
const (
	LeadSize  = 96
	IntroSize = 16 // magic (8 bytes), entry count, data size
	EntrySize = 16 // tag, type, offset, count

	// rpm's limits (lib/header.c: hdrblobVerifyInfo, hdrchkTags,
	// HEADER_DATA_MAX, and the signature header's own 32 / 64 MiB).
	SigMaxEntries  = 32
	SigMaxData     = 64 << 20
	MainMaxEntries = 0xffff
	MainMaxData    = 0x0fffffff

	sigTypeHeaderSig = 5 // the only lead signature type rpm still reads
)

var (
	leadMagic   = []byte{0xed, 0xab, 0xee, 0xdb}
	headerMagic = []byte{0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0}
)

// HeaderMagic returns the 8-byte magic each header starts with.
func HeaderMagic() []byte { return bytes.Clone(headerMagic) }

// Data types (rpm's rpmTagType).
const (
	TypeNull        = 0
	TypeChar        = 1
	TypeInt8        = 2
	TypeInt16       = 3
	TypeInt32       = 4
	TypeInt64       = 5
	TypeString      = 6
	TypeBin         = 7
	TypeStringArray = 8
	TypeI18NString  = 9
)

// Region tags: the first entry of a header written by rpm ≥ 4 names the
// region its signatures and digests cover.
const (
	TagHeaderImage      = 61
	TagHeaderSignatures = 62 // signature header
	TagHeaderImmutable  = 63 // main header
)

// TypeSize is the size of one value of an integer-like type t, 1 for
// char, int8 and bin, 0 for null, and -1 for the NUL-terminated strings.
func TypeSize(t uint32) int {
	switch t {
	case TypeNull:
		return 0
	case TypeChar, TypeInt8, TypeBin:
		return 1
	case TypeInt16:
		return 2
	case TypeInt32:
		return 4
	case TypeInt64:
		return 8
	}
	return -1
}

// Entry is one validated index entry.
type Entry struct {
	Tag, Type, Offset, Count uint32
	// Data is the value's bytes inside the data store: Count values of a
	// fixed-size type, or Count NUL-terminated strings.
	Data []byte
}

// Header is one validated header.
type Header struct {
	// Offset is where the header's intro starts in the file.
	Offset int64
	// Blob is the header exactly as in the file, from the magic to the end
	// of its data store, without the signature header's padding.
	Blob []byte
	// Entries are in index order.
	Entries []Entry
}

// Get returns the first entry with tag, or nil.
func (h *Header) Get(tag uint32) *Entry {
	for i := range h.Entries {
		if h.Entries[i].Tag == tag {
			return &h.Entries[i]
		}
	}
	return nil
}

// String returns the first string of a string-typed entry.
func (h *Header) String(tag uint32) (string, bool) {
	e := h.Get(tag)
	if e == nil || (e.Type != TypeString && e.Type != TypeStringArray && e.Type != TypeI18NString) {
		return "", false
	}
	s, _, _ := bytes.Cut(e.Data, []byte{0})
	return string(s), true
}

// Uint returns the first value of an int16, int32 or int64 entry.
func (h *Header) Uint(tag uint32) (uint64, bool) {
	e := h.Get(tag)
	if e == nil || e.Count == 0 {
		return 0, false
	}
	switch e.Type {
	case TypeInt16:
		return uint64(binary.BigEndian.Uint16(e.Data)), true
	case TypeInt32:
		return uint64(binary.BigEndian.Uint32(e.Data)), true
	case TypeInt64:
		return binary.BigEndian.Uint64(e.Data), true
	}
	return 0, false
}

// Headers is the validated front of an RPM file: lead, signature header
// with its padding, main header. The payload follows at PayloadOffset.
type Headers struct {
	buf  []byte // lead through end of main header, contiguous
	Lead []byte // 96 bytes
	Sig  Header // at LeadSize
	// SigPad is the padding after the signature header that aligns the
	// main header to 8 bytes.
	SigPad []byte
	Main   Header
}

// Bytes returns the file's bytes from the lead to the end of the main
// header: what go-rpmutils' ReadHeader may be given.
func (h *Headers) Bytes() []byte { return h.buf }

// SigArea is the number of bytes between the lead and the main header:
// the signature header and its padding.
func (h *Headers) SigArea() int { return len(h.Sig.Blob) + len(h.SigPad) }

// PayloadOffset is where the payload starts in the file.
func (h *Headers) PayloadOffset() int64 { return int64(len(h.buf)) }

type config struct {
	maxEntries, maxData int
}

// Option sets a cap on what Read and Parse accept.
type Option func(*config) error

// WithMaxEntries caps the index entries of each header. Default and
// upper bound: rpm's 65535 for the main header; the signature header is
// always capped at 32 as well.
func WithMaxEntries(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("rpmhdr: max entries %d must be positive", n)
		}
		c.maxEntries = min(n, MainMaxEntries)
		return nil
	}
}

// WithMaxData caps the data store of each header in bytes. Default and
// upper bound: rpm's 256 MiB for the main header; the signature header is
// always capped at 64 MiB as well.
func WithMaxData(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("rpmhdr: max data %d must be positive", n)
		}
		c.maxData = min(n, MainMaxData)
		return nil
	}
}

func newConfig(opts []Option) (*config, error) {
	c := &config{maxEntries: MainMaxEntries, maxData: MainMaxData}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// readChunk is how much header data Read reads (and allocates) at a time,
// so that a short file declaring a large header costs only its own size.
const readChunk = 256 << 10

// source hands out the file's front bytes, contiguous from the lead on.
type source interface {
	// next extends the front by n bytes and returns all of it; a short
	// input reports how many of the n bytes there were.
	next(n int) (buf []byte, got int, err error)
}

type readerSource struct {
	r   io.Reader
	buf []byte
}

func (s *readerSource) next(n int) ([]byte, int, error) {
	for got := 0; got < n; {
		chunk := min(n-got, readChunk)
		at := len(s.buf)
		s.buf = slices.Grow(s.buf, chunk)[:at+chunk]
		k, err := io.ReadFull(s.r, s.buf[at:])
		if err != nil {
			s.buf = s.buf[:at+k]
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return s.buf, got + k, err
		}
		got += chunk
	}
	return s.buf, n, nil
}

type sliceSource struct {
	b   []byte
	end int
}

func (s *sliceSource) next(n int) ([]byte, int, error) {
	if n > len(s.b)-s.end {
		got := len(s.b) - s.end
		s.end = len(s.b)
		return s.b, got, io.ErrUnexpectedEOF
	}
	s.end += n
	return s.b[:s.end], n, nil
}

// Read reads the lead and both headers from r and validates them. r is
// left at the start of the payload. Memory grows with the bytes actually
// read, never with sizes the file declares beyond the caps.
func Read(r io.Reader, opts ...Option) (*Headers, error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return parse(&readerSource{r: r, buf: make([]byte, 0, LeadSize+IntroSize+4096)}, c)
}

// Parse validates the headers at the start of b without copying: the
// result's slices point into b. b may hold the payload too.
func Parse(b []byte, opts ...Option) (*Headers, error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return parse(&sliceSource{b: b}, c)
}

// short maps a failed next to ErrTruncated, or passes an I/O error on.
func short(err error, what string, got, want int) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errorf(ErrTruncated, "%s: got %d of %d bytes", what, got, want)
	}
	return fmt.Errorf("reading %s: %w", what, err)
}

func parse(src source, c *config) (*Headers, error) {
	buf, n, err := src.next(LeadSize + IntroSize)
	if m := min(n, len(leadMagic)); n == 0 || !bytes.Equal(buf[:m], leadMagic[:m]) {
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("reading lead: %w", err)
		}
		return nil, errorf(ErrNotRPM, "bad lead magic")
	}
	if err != nil {
		return nil, short(err, "lead", n, LeadSize+IntroSize)
	}
	if major := buf[4]; major < 3 || major > 4 {
		return nil, errorf(ErrMalformed, "unsupported lead version %d", major)
	}
	if st := binary.BigEndian.Uint16(buf[78:80]); st != sigTypeHeaderSig {
		return nil, errorf(ErrMalformed, "lead signature type %d is not a header signature", st)
	}

	sig, buf, err := readHeader(src, buf, LeadSize, min(c.maxEntries, SigMaxEntries), min(c.maxData, SigMaxData), true)
	if err != nil {
		return nil, err
	}
	mainOff := len(buf)
	buf, n, err = src.next(IntroSize)
	if err != nil {
		return nil, short(err, "main header intro", n, IntroSize)
	}
	main, buf, err := readHeader(src, buf, mainOff, c.maxEntries, c.maxData, false)
	if err != nil {
		return nil, err
	}
	sigEnd := LeadSize + sig.size
	h := &Headers{
		buf:    buf,
		Lead:   buf[:LeadSize:LeadSize],
		SigPad: buf[sigEnd:mainOff:mainOff],
		Sig:    Header{Offset: LeadSize, Blob: buf[LeadSize:sigEnd:sigEnd]},
		Main:   Header{Offset: int64(mainOff), Blob: buf[mainOff:len(buf):len(buf)]},
	}
	h.Sig.Entries = sig.rebase(h.Sig.Blob)
	h.Main.Entries = main.rebase(h.Main.Blob)
	return h, nil
}

// span is a header validated inside the front before it stopped growing.
type span struct {
	il      int
	size    int // intro + index + data, no padding
	entries []Entry
}

// rebase points the entries' Data into blob, the header's final bytes (a
// growing front may have moved since they were validated).
func (s span) rebase(blob []byte) []Entry {
	data := blob[IntroSize+s.il*EntrySize:]
	for i := range s.entries {
		e := &s.entries[i]
		end := int(e.Offset) + len(e.Data)
		e.Data = data[e.Offset:end:end]
	}
	return s.entries
}

// readHeader validates the intro at buf[at:at+16], reads the index and
// data store (and, for the signature header, its padding) and validates
// every entry. It returns the grown front.
func readHeader(src source, buf []byte, at, maxEntries, maxData int, sig bool) (span, []byte, error) {
	what, region := "main header", uint32(TagHeaderImmutable)
	if sig {
		what, region = "signature header", TagHeaderSignatures
	}
	intro := buf[at : at+IntroSize]
	if !bytes.Equal(intro[:8], headerMagic) {
		return span{}, nil, errorf(ErrMalformed, "%s: bad magic % x", what, intro[:8])
	}
	il := binary.BigEndian.Uint32(intro[8:12])
	dl := binary.BigEndian.Uint32(intro[12:16])
	if uint64(il) > uint64(maxEntries) {
		return span{}, nil, errorf(ErrTooLarge, "%s: %d index entries (limit %d)", what, il, maxEntries)
	}
	if uint64(dl) > uint64(maxData) {
		return span{}, nil, errorf(ErrTooLarge, "%s: %d byte data store (limit %d)", what, dl, maxData)
	}
	if il == 0 {
		return span{}, nil, errorf(ErrMalformed, "%s: no index entries", what)
	}
	s := span{il: int(il), size: IntroSize + int(il)*EntrySize + int(dl)}
	want := s.size - IntroSize
	if sig {
		want += (8 - int(dl)%8) % 8
	}
	buf, n, err := src.next(want)
	if err != nil {
		return span{}, nil, short(err, what, n, want)
	}
	if s.entries, err = validate(buf[at:at+s.size], s.il, int(dl), region, what); err != nil {
		return span{}, nil, err
	}
	return s, buf, nil
}

// validate checks every index entry of blob (intro, il entries, dl bytes
// of data) against the data store: what go-rpmutils takes on trust. rpm
// never writes overlapping entries, so the summed extents are capped to
// keep hostile headers from costing quadratic time.
func validate(blob []byte, il, dl int, region uint32, what string) ([]Entry, error) {
	index := blob[IntroSize : IntroSize+il*EntrySize]
	data := blob[IntroSize+il*EntrySize:]
	ents := make([]Entry, il)
	udl := uint64(dl)
	var total uint64
	budget := 2*udl + 1<<16
	for i := range ents {
		b := index[i*EntrySize:]
		e := Entry{
			Tag:    binary.BigEndian.Uint32(b),
			Type:   binary.BigEndian.Uint32(b[4:]),
			Offset: binary.BigEndian.Uint32(b[8:]),
			Count:  binary.BigEndian.Uint32(b[12:]),
		}
		if e.Type > TypeI18NString {
			return nil, errorf(ErrMalformed, "%s: tag %d has unknown type %d", what, e.Tag, e.Type)
		}
		if int32(e.Offset) < 0 || uint64(e.Offset) > udl {
			return nil, errorf(ErrMalformed, "%s: tag %d offset %d outside the %d byte data store", what, e.Tag, int32(e.Offset), dl)
		}
		if uint64(e.Count) > udl || (e.Count == 0 && e.Type != TypeNull) {
			return nil, errorf(ErrMalformed, "%s: tag %d has count %d", what, e.Tag, e.Count)
		}
		var extent uint64
		if sz := TypeSize(e.Type); sz >= 0 {
			if sz > 1 && e.Offset%uint32(sz) != 0 {
				return nil, errorf(ErrMalformed, "%s: tag %d is misaligned", what, e.Tag)
			}
			extent = uint64(sz) * uint64(e.Count)
		} else {
			if e.Type == TypeString && e.Count != 1 {
				return nil, errorf(ErrMalformed, "%s: string tag %d has count %d", what, e.Tag, e.Count)
			}
			p := data[e.Offset:]
			for range e.Count {
				k := bytes.IndexByte(p, 0)
				if k < 0 {
					return nil, errorf(ErrMalformed, "%s: tag %d has an unterminated string", what, e.Tag)
				}
				p = p[k+1:]
				extent += uint64(k) + 1
			}
		}
		if uint64(e.Offset)+extent > udl {
			return nil, errorf(ErrMalformed, "%s: tag %d runs past the data store", what, e.Tag)
		}
		if total += extent; total > budget {
			return nil, errorf(ErrMalformed, "%s: index entries overlap", what)
		}
		e.Data = data[e.Offset : uint64(e.Offset)+extent : uint64(e.Offset)+extent]
		ents[i] = e
	}
	if err := checkRegion(ents, il, dl, region, what); err != nil {
		return nil, err
	}
	return ents, nil
}

// checkRegion checks the region tag as rpm's hdrblobVerifyRegion does: a
// header whose first entry is not a region tag is a legacy header and
// passes; otherwise the tag and its trailer must be sane and the region
// must lie inside the header.
func checkRegion(ents []Entry, il, dl int, region uint32, what string) error {
	first := ents[0]
	if first.Tag != region {
		return nil
	}
	if first.Type != TypeBin || first.Count != 16 {
		return errorf(ErrMalformed, "%s: region tag has type %d count %d", what, first.Type, first.Count)
	}
	tr := first.Data // 16 bytes, inside the store (validated above)
	tag := binary.BigEndian.Uint32(tr)
	if region == TagHeaderSignatures && tag == TagHeaderImage {
		tag = TagHeaderSignatures // some old packages have this trailer
	}
	roff := -int64(int32(binary.BigEndian.Uint32(tr[8:])))
	if tag != region || binary.BigEndian.Uint32(tr[4:]) != TypeBin || binary.BigEndian.Uint32(tr[12:]) != 16 {
		return errorf(ErrMalformed, "%s: bad region trailer", what)
	}
	if roff < 0 || roff%EntrySize != 0 || roff/EntrySize > int64(il) {
		return errorf(ErrMalformed, "%s: region of %d bytes of index does not fit %d entries", what, roff, il)
	}
	return nil
}
