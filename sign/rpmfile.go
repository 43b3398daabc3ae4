package sign

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"

	"github.com/repoctl/repoctl/internal/rpmhdr"
)

// RPM file layout: a 96-byte lead, the signature header (padded to 8
// bytes), the main header, the payload. internal/rpmhdr reads and
// validates all of it up to the payload; this file keeps what only the
// signer needs: the parsed view it works with and the building of a new
// signature header area.

const leadSize = rpmhdr.LeadSize

// Header data types used when building signature headers.
const typeBin = rpmhdr.TypeBin

// Signature header tags.
const (
	tagSigRegion     = rpmhdr.TagHeaderSignatures
	tagDSAHeader     = 267
	tagRSAHeader     = 268
	tagSHA1Header    = 269
	tagLongSize      = 270
	tagSHA256Header  = 273
	tagOpenPGP       = 278 // rpm 6 signatures: base64 packets; rpm 4 ignores it
	tagSHA3Header    = 279 // rpm 6 only
	tagReserved      = 999 // rpm 6's space reservation (v6 packages)
	tagSize          = 1000
	tagPGP           = 1002
	tagMD5           = 1004
	tagGPG           = 1005
	tagPGP5          = 1006
	tagReservedSpace = 1008

	// Main header payload digests (rpm's include/rpm/rpmtag.h). Only
	// 5092/5097 are read by rpm 4.x; rpm 6 reads all six. ALT digests are
	// over the uncompressed payload.
	tagPayloadDigest     = 5092 // PAYLOADSHA256, string array
	tagPayloadDigestAlgo = 5093 // obsolete: rpm ≥ 4.14 always hashes 5092 with SHA-256
	tagPayloadDigestAlt  = 5097 // PAYLOADSHA256ALT, string array
	tagRPMFormat         = 5114 // int32; 6 for rpm 6's v6 packages
	tagPayloadSHA512     = 5121 // string
	tagPayloadSHA512Alt  = 5122
	tagPayloadSHA3       = 5123
	tagPayloadSHA3Alt    = 5124

	defaultReservedFill = 4096
	maxPackageSize      = 1 << 40
)

// sigTags are the tags that hold signatures; signing replaces all of them.
var sigTags = map[uint32]bool{tagDSAHeader: true, tagRSAHeader: true, tagPGP: true, tagGPG: true, tagPGP5: true, tagOpenPGP: true}

// entry is one signature header entry as the signer copies or adds it.
type entry struct {
	tag, typ uint32
	count    uint32
	data     []byte // the value's bytes
}

// header is a validated header with its entries in signer form.
type header struct {
	raw     *rpmhdr.Header
	entries []entry
	blob    []byte // magic through end of data, no padding
}

func newHeader(h *rpmhdr.Header) *header {
	out := &header{raw: h, blob: h.Blob, entries: make([]entry, len(h.Entries))}
	for i, e := range h.Entries {
		out.entries[i] = entry{tag: e.Tag, typ: e.Type, count: e.Count, data: e.Data}
	}
	return out
}

func (h *header) get(tag uint32) *entry {
	for i := range h.entries {
		if h.entries[i].tag == tag {
			return &h.entries[i]
		}
	}
	return nil
}

func (h *header) str(tag uint32) (string, bool) { return h.raw.String(tag) }

func (h *header) uint(tag uint32) (uint64, bool) { return h.raw.Uint(tag) }

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

// hdrErrors shows rpmhdr's verdicts as the signer's sentinels.
var hdrErrors = map[error]error{
	rpmhdr.ErrNotRPM:    ErrNotRPM,
	rpmhdr.ErrTruncated: ErrCorrupt,
	rpmhdr.ErrMalformed: ErrCorrupt,
	rpmhdr.ErrTooLarge:  ErrTooLarge,
}

// readPkg reads and validates lead and both headers from r (positioned at
// the start of a file of the given size) with rpm's own limits. It never
// allocates much more than the file holds. r is left at the start of the
// payload.
func readPkg(r io.Reader, size int64) (*pkg, error) {
	if size > maxPackageSize {
		return nil, fmt.Errorf("%w: file is %d bytes", ErrTooLarge, size)
	}
	if size < leadSize {
		return nil, fmt.Errorf("%w: shorter than an RPM lead", ErrNotRPM)
	}
	h, err := rpmhdr.Read(r)
	if err != nil {
		return nil, rpmhdr.Reclassify(err, hdrErrors)
	}
	return &pkg{
		size:       size,
		lead:       h.Lead,
		sig:        newHeader(&h.Sig),
		sigArea:    h.SigArea(),
		sigPad:     h.SigPad,
		main:       newHeader(&h.Main),
		mainOff:    h.Main.Offset,
		payloadOff: h.PayloadOffset(),
	}, nil
}

// v6 reports whether the package is in rpm 6's v6 format (RPMFORMAT ≥ 6
// in the main header, or the signature header of one: RESERVED 999 and the
// SHA3-256 header digest, the test rpm 6 itself applies). rpm 6 signs such
// packages with tag 278 as well and never with header+payload signatures.
func (p *pkg) v6() bool {
	if f, ok := p.main.uint(tagRPMFormat); ok && f >= 6 {
		return true
	}
	return p.sig.get(tagReserved) != nil && p.sig.get(tagSHA3Header) != nil
}

// reserveTag is the tag that holds the reserved space: the one the package
// already uses, else RESERVED (999) for v6 packages and RESERVEDSPACE
// (1008) for the rest, as rpmsign chooses.
func (p *pkg) reserveTag() uint32 {
	switch {
	case p.sig.get(tagReservedSpace) != nil:
		return tagReservedSpace
	case p.sig.get(tagReserved) != nil || p.v6():
		return tagReserved
	}
	return tagReservedSpace
}

// buildSigHeader serializes a signature header from entries (minus any
// region and reserved-space entries, which it adds itself): index sorted by
// tag, the region tag 62 first with its trailer at the end of the data, each
// value aligned to its type's size, data in index order (rpm rejects
// entries whose data overlaps the one before). reserved > 0 adds
// reserveTag (RESERVEDSPACE 1008 or rpm 6's RESERVED 999) of that many zero
// bytes. The result is not padded.
func buildSigHeader(entries []entry, reserved int, reserveTag uint32) []byte {
	es := make([]entry, 0, len(entries)+2)
	for _, e := range entries {
		if e.tag != tagSigRegion && e.tag != tagReservedSpace && e.tag != tagReserved {
			es = append(es, e)
		}
	}
	if reserved > 0 {
		es = append(es, entry{tag: reserveTag, typ: typeBin, count: uint32(reserved), data: make([]byte, reserved)})
	}
	sort.SliceStable(es, func(i, j int) bool { return es[i].tag < es[j].tag })
	il := len(es) + 1
	var data []byte
	offs := make([]int, len(es))
	for i, e := range es {
		if sz := rpmhdr.TypeSize(e.typ); sz > 1 {
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

	out := make([]byte, 0, rpmhdr.IntroSize+16*il+len(data))
	out = append(out, rpmhdr.HeaderMagic()...)
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
func fitSigHeader(entries []entry, area int, reserveTag uint32) (b []byte, ok bool) {
	if h := buildSigHeader(entries, 0, reserveTag); pad8(len(h)) == area {
		return padTo(h, area), true
	}
	base := len(buildSigHeader(entries, 1, reserveTag)) - 1
	if r := area - base; r >= 1 {
		h := buildSigHeader(entries, r, reserveTag)
		if pad8(len(h)) == area {
			return padTo(h, area), true
		}
	}
	return nil, false
}

// newSigArea builds a fresh, padded signature area with room to spare for
// later re-signing without a rewrite.
func newSigArea(entries []entry, reserveTag uint32) []byte {
	h := buildSigHeader(entries, defaultReservedFill, reserveTag)
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
