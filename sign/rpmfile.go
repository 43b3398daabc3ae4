package sign

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
)

// RPM file layout: a 96-byte lead, the signature header (padded to 8
// bytes), the main header, the payload. Each header is an 8-byte magic, an
// index count il and data length dl (uint32 BE), il 16-byte index entries
// (tag, type, offset, count) and dl bytes of data.

const (
	leadSize  = 96
	introSize = 16

	// Limits as rpm enforces them (lib/header.c hdrblobVerifyInfo): a
	// signature header has at most 32 entries and 64 MiB of data, a main
	// header at most 0xffff entries and 256 MiB of data.
	sigMaxIL  = 32
	sigMaxDL  = 64 << 20
	mainMaxIL = 0xffff
	mainMaxDL = 256 << 20
)

var (
	leadMagic   = []byte{0xed, 0xab, 0xee, 0xdb}
	headerMagic = []byte{0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0}
)

// Header data types.
const (
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
)

// Signature header tags.
const (
	tagSigRegion     = 62
	tagDSAHeader     = 267
	tagRSAHeader     = 268
	tagSHA1Header    = 269
	tagLongSize      = 270
	tagSHA256Header  = 273
	tagOpenPGP       = 278 // rpm 6 multi-signature array; rpm 4.18 ignores it
	tagSize          = 1000
	tagPGP           = 1002
	tagMD5           = 1004
	tagGPG           = 1005
	tagPGP5          = 1006
	tagReservedSpace = 1008

	tagMainRegion        = 63
	tagPayloadDigest     = 5092
	tagPayloadDigestAlgo = 5093
	defaultReservedFill  = 4096
	maxPackageSize       = 1 << 40
)

// sigTags are the tags that hold signatures; signing replaces all of them.
var sigTags = map[uint32]bool{tagDSAHeader: true, tagRSAHeader: true, tagPGP: true, tagGPG: true, tagPGP5: true, tagOpenPGP: true}

type entry struct {
	tag, typ uint32
	off      int32
	count    uint32
	data     []byte // the value's bytes, sliced from the header data
}

type header struct {
	entries []entry
	blob    []byte // magic through end of data, no padding
}

func (h *header) get(tag uint32) *entry {
	for i := range h.entries {
		if h.entries[i].tag == tag {
			return &h.entries[i]
		}
	}
	return nil
}

func (h *header) str(tag uint32) (string, bool) {
	e := h.get(tag)
	if e == nil || (e.typ != typeString && e.typ != typeStringArray && e.typ != typeI18NString) {
		return "", false
	}
	s, _, _ := bytes.Cut(e.data, []byte{0})
	return string(s), true
}

func (h *header) uint(tag uint32) (uint64, bool) {
	e := h.get(tag)
	if e == nil {
		return 0, false
	}
	switch e.typ {
	case typeInt32:
		return uint64(binary.BigEndian.Uint32(e.data)), true
	case typeInt64:
		return binary.BigEndian.Uint64(e.data), true
	case typeInt16:
		return uint64(binary.BigEndian.Uint16(e.data)), true
	}
	return 0, false
}

func typeSize(t uint32) int {
	switch t {
	case typeNull:
		return 0
	case typeChar, typeInt8, typeBin:
		return 1
	case typeInt16:
		return 2
	case typeInt32:
		return 4
	case typeInt64:
		return 8
	}
	return -1 // strings
}

// parseIntro checks a header intro and returns il, dl.
func parseIntro(b []byte, maxIL, maxDL uint32) (il, dl uint32, err error) {
	if !bytes.Equal(b[:8], headerMagic) {
		return 0, 0, fmt.Errorf("%w: bad header magic", ErrCorrupt)
	}
	il, dl = binary.BigEndian.Uint32(b[8:]), binary.BigEndian.Uint32(b[12:])
	if il == 0 {
		return 0, 0, fmt.Errorf("%w: header has no index entries", ErrCorrupt)
	}
	if il > maxIL {
		return 0, 0, fmt.Errorf("%w: header has %d index entries (limit %d)", ErrTooLarge, il, maxIL)
	}
	if dl > maxDL {
		return 0, 0, fmt.Errorf("%w: header data is %d bytes (limit %d)", ErrTooLarge, dl, maxDL)
	}
	return il, dl, nil
}

// parseHeader validates every index entry of blob (which begins with the
// magic and is exactly 16+il*16+dl bytes) so that nothing later can index
// out of range.
func parseHeader(blob []byte, il, dl uint32) (*header, error) {
	idx := blob[introSize : introSize+16*int(il)]
	data := blob[introSize+16*int(il):]
	h := &header{blob: blob, entries: make([]entry, il)}
	for i := range h.entries {
		e := &h.entries[i]
		b := idx[16*i:]
		e.tag, e.typ = binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])
		e.off, e.count = int32(binary.BigEndian.Uint32(b[8:])), binary.BigEndian.Uint32(b[12:])
		if e.typ > typeI18NString {
			return nil, fmt.Errorf("%w: tag %d has unknown type %d", ErrCorrupt, e.tag, e.typ)
		}
		if e.off < 0 || uint32(e.off) > dl {
			return nil, fmt.Errorf("%w: tag %d offset %d outside data (%d bytes)", ErrCorrupt, e.tag, e.off, dl)
		}
		if e.count == 0 || e.count > dl {
			return nil, fmt.Errorf("%w: tag %d has count %d", ErrCorrupt, e.tag, e.count)
		}
		rest := data[e.off:]
		if sz := typeSize(e.typ); sz >= 0 {
			n := uint64(sz) * uint64(e.count)
			if n > uint64(len(rest)) {
				return nil, fmt.Errorf("%w: tag %d runs past the header data", ErrCorrupt, e.tag)
			}
			if sz > 1 && int(e.off)%sz != 0 {
				return nil, fmt.Errorf("%w: tag %d is misaligned", ErrCorrupt, e.tag)
			}
			e.data = rest[:n]
		} else {
			if e.typ == typeString && e.count != 1 {
				return nil, fmt.Errorf("%w: string tag %d has count %d", ErrCorrupt, e.tag, e.count)
			}
			end := 0
			for j := uint32(0); j < e.count; j++ {
				k := bytes.IndexByte(rest[end:], 0)
				if k < 0 {
					return nil, fmt.Errorf("%w: tag %d is not NUL-terminated", ErrCorrupt, e.tag)
				}
				end += k + 1
			}
			e.data = rest[:end]
		}
	}
	return h, nil
}

// pkg is a parsed package: everything before the payload, with offsets.
type pkg struct {
	size       int64 // file size
	lead       []byte
	sig        *header
	sigArea    int // bytes from end of lead to main header (sig header + padding)
	sigPad     []byte
	main       *header
	mainOff    int64 // file offset of the main header
	payloadOff int64
}

func pad8(n int) int { return (n + 7) &^ 7 }

// readPkg reads and validates lead and both headers from r (positioned at
// the start of a file of the given size). It never allocates more than the
// file can hold. r is left at the start of the payload.
func readPkg(r io.Reader, size int64) (*pkg, error) {
	if size > maxPackageSize {
		return nil, fmt.Errorf("%w: file is %d bytes", ErrTooLarge, size)
	}
	p := &pkg{size: size, lead: make([]byte, leadSize)}
	if _, err := io.ReadFull(r, p.lead); err != nil {
		return nil, fmt.Errorf("%w: shorter than an RPM lead", ErrNotRPM)
	}
	if !bytes.Equal(p.lead[:4], leadMagic) {
		return nil, ErrNotRPM
	}
	if p.lead[4] != 3 && p.lead[4] != 4 {
		return nil, fmt.Errorf("%w: unsupported RPM format version %d", ErrNotRPM, p.lead[4])
	}
	if binary.BigEndian.Uint16(p.lead[78:]) != 5 {
		return nil, fmt.Errorf("%w: lead signature type %d is not a header signature", ErrCorrupt, binary.BigEndian.Uint16(p.lead[78:]))
	}
	remaining := size - leadSize
	readHdr := func(what string, maxIL, maxDL uint32) (*header, error) {
		intro := make([]byte, introSize)
		if remaining < introSize {
			return nil, fmt.Errorf("%w: truncated before the %s header", ErrCorrupt, what)
		}
		if _, err := io.ReadFull(r, intro); err != nil {
			return nil, fmt.Errorf("%w: reading %s header: %v", ErrCorrupt, what, err)
		}
		il, dl, err := parseIntro(intro, maxIL, maxDL)
		if err != nil {
			return nil, fmt.Errorf("%s header: %w", what, err)
		}
		n := int64(introSize) + 16*int64(il) + int64(dl)
		if n > remaining {
			return nil, fmt.Errorf("%w: %s header claims %d bytes, file has %d left (truncated?)", ErrCorrupt, what, n, remaining)
		}
		blob := make([]byte, n)
		copy(blob, intro)
		if _, err := io.ReadFull(r, blob[introSize:]); err != nil {
			return nil, fmt.Errorf("%w: reading %s header: %v", ErrCorrupt, what, err)
		}
		remaining -= n
		return parseHeader(blob, il, dl)
	}
	var err error
	if p.sig, err = readHdr("signature", sigMaxIL, sigMaxDL); err != nil {
		return nil, err
	}
	p.sigArea = pad8(len(p.sig.blob))
	padding := int64(p.sigArea - len(p.sig.blob))
	if remaining < padding {
		return nil, fmt.Errorf("%w: truncated after the signature header", ErrCorrupt)
	}
	p.sigPad = make([]byte, padding)
	if _, err := io.ReadFull(r, p.sigPad); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	remaining -= padding
	p.mainOff = leadSize + int64(p.sigArea)
	if p.main, err = readHdr("main", mainMaxIL, mainMaxDL); err != nil {
		return nil, err
	}
	p.payloadOff = p.mainOff + int64(len(p.main.blob))
	return p, nil
}

// buildSigHeader serializes a signature header from entries (minus any
// region and reserved-space entries, which it adds itself): index sorted by
// tag, the region tag 62 first with its trailer at the end of the data, each
// value aligned to its type's size. reserved > 0 adds RESERVEDSPACE of that
// many zero bytes. The result is not padded.
func buildSigHeader(entries []entry, reserved int) []byte {
	es := make([]entry, 0, len(entries)+2)
	for _, e := range entries {
		if e.tag != tagSigRegion && e.tag != tagReservedSpace {
			es = append(es, e)
		}
	}
	if reserved > 0 {
		es = append(es, entry{tag: tagReservedSpace, typ: typeBin, count: uint32(reserved), data: make([]byte, reserved)})
	}
	sort.SliceStable(es, func(i, j int) bool { return es[i].tag < es[j].tag })
	il := len(es) + 1
	var data []byte
	offs := make([]int, len(es))
	for i, e := range es {
		if sz := typeSize(e.typ); sz > 1 {
			for len(data)%sz != 0 {
				data = append(data, 0)
			}
		}
		offs[i] = len(data)
		data = append(data, e.data...)
	}
	trailerOff := len(data)
	var tr [16]byte
	binary.BigEndian.PutUint32(tr[0:], tagSigRegion)
	binary.BigEndian.PutUint32(tr[4:], typeBin)
	binary.BigEndian.PutUint32(tr[8:], uint32(int32(-16*il)))
	binary.BigEndian.PutUint32(tr[12:], 16)
	data = append(data, tr[:]...)

	out := make([]byte, 0, introSize+16*il+len(data))
	out = append(out, headerMagic...)
	out = binary.BigEndian.AppendUint32(out, uint32(il))
	out = binary.BigEndian.AppendUint32(out, uint32(len(data)))
	out = binary.BigEndian.AppendUint32(out, tagSigRegion)
	out = binary.BigEndian.AppendUint32(out, typeBin)
	out = binary.BigEndian.AppendUint32(out, uint32(trailerOff))
	out = binary.BigEndian.AppendUint32(out, 16)
	for i, e := range es {
		out = binary.BigEndian.AppendUint32(out, e.tag)
		out = binary.BigEndian.AppendUint32(out, e.typ)
		out = binary.BigEndian.AppendUint32(out, uint32(offs[i]))
		out = binary.BigEndian.AppendUint32(out, e.count)
	}
	return append(out, data...)
}

// fitSigHeader builds the new signature header area so that it occupies
// exactly area bytes (signature header plus padding), shrinking or growing
// RESERVEDSPACE as rpmsign does. ok is false when it cannot fit.
func fitSigHeader(entries []entry, area int) (b []byte, ok bool) {
	if h := buildSigHeader(entries, 0); pad8(len(h)) == area {
		return padTo(h, area), true
	}
	base := len(buildSigHeader(entries, 1)) - 1
	if r := area - base; r >= 1 {
		h := buildSigHeader(entries, r)
		if pad8(len(h)) == area {
			return padTo(h, area), true
		}
	}
	return nil, false
}

// newSigArea builds a fresh, padded signature area with room to spare for
// later re-signing without a rewrite.
func newSigArea(entries []entry) []byte {
	h := buildSigHeader(entries, defaultReservedFill)
	return padTo(h, pad8(len(h)))
}

func padTo(b []byte, n int) []byte {
	for len(b) < n {
		b = append(b, 0)
	}
	return b
}

// origArea is the signature area exactly as it is in the file.
func (p *pkg) origArea() []byte {
	b := make([]byte, 0, p.sigArea)
	return append(append(b, p.sig.blob...), p.sigPad...)
}
