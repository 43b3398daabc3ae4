package metadata

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/repoctl/repoctl/internal/rpmhdr"
)

// hdrErrors shows rpmhdr's verdicts as this package's sentinels; the
// errors still match rpmhdr's sentinels too.
var hdrErrors = map[error]error{
	rpmhdr.ErrNotRPM:    ErrNotRPM,
	rpmhdr.ErrTruncated: ErrTruncated,
	rpmhdr.ErrMalformed: ErrMalformed,
	rpmhdr.ErrTooLarge:  ErrTooLarge,
}

func (c *readConfig) hdrOptions() []rpmhdr.Option {
	return []rpmhdr.Option{rpmhdr.WithMaxData(c.maxStore), rpmhdr.WithMaxEntries(c.maxEntries)}
}

// decodeHeaders builds the Package from the headers rpmhdr validated,
// reading values straight from those bytes with go-rpmutils v0.4.0's
// semantics (which repodata parity was established with): the last entry
// of a tag wins, tags below 1000 and from 16384+1000 on are read from the
// signature header, and the main header must match the signature
// header's SHA256 (else SHA1) digest. Decoding once, in place, replaces
// go-rpmutils' second parse of the same bytes (its map, its copies and
// one allocation per value) that cost a quarter of a createrepo run.
func decodeHeaders(raw *rpmhdr.Headers, cfg *readConfig) (p *Package, err error) {
	// Last line of defence: every offset and count read here has been
	// validated, but a panic in extraction must never escape to the
	// caller.
	defer func() {
		if v := recover(); v != nil {
			p, err = nil, fmt.Errorf("%w: header reader panicked: %v", ErrMalformed, v)
		}
	}()
	if cfg.skipDigest {
		if raw, err = rpmhdr.Parse(withFreshDigests(raw), cfg.hdrOptions()...); err != nil {
			return nil, rpmhdr.Reclassify(err, hdrErrors)
		}
	}
	h := newHdr(raw)
	hp := &h
	if err := h.checkDigest(); err != nil {
		return nil, err
	}
	return packageFromHeader(hp, raw)
}

// withFreshDigests returns a copy of the headers whose header digests
// match the main header, so that tests and the fuzz target can reach
// value extraction with mutated headers (cfg.skipDigest; no option sets
// it).
func withFreshDigests(raw *rpmhdr.Headers) []byte {
	b := bytes.Clone(raw.Bytes())
	main := b[raw.Main.Offset:]
	for _, d := range []struct {
		tag uint32
		sum func() []byte
	}{
		{sigTagSHA256, func() []byte { s := sha256.Sum256(main); return s[:] }},
		{sigTagSHA1, func() []byte { s := sha1.Sum(main); return s[:] }},
	} {
		e := raw.Sig.Get(d.tag)
		if e == nil || e.Type != rpmhdr.TypeString {
			continue
		}
		sum := hex.EncodeToString(d.sum())
		if len(e.Data) == len(sum)+1 {
			at := int(raw.Sig.Offset) + rpmhdr.IntroSize + len(raw.Sig.Entries)*rpmhdr.EntrySize + int(e.Offset)
			copy(b[at:], sum)
		}
	}
	return b
}

// Signature header tags.
const (
	sigTagSHA1 = 269 // hex SHA1 of the main header
	// go-rpmutils reads tags below 1000 from the signature header, and
	// signature tags from 1000 on as 16384+tag.
	sigTagSHA256      = 273
	sigTagLongArchive = 271
	sigTagPayloadSize = 16384 + 1007
)

// hdr reads values with rpm's headerGetString and headerGetNumber
// semantics, which createrepo_c relies on: a missing tag or one of
// another type reads as absent. Strings are substrings of one copy of each
// header (one allocation per header, not per value).
type hdr struct {
	sig, main hdrIndex
	mainBlob  []byte // what the digests cover
}

// hdrIndex is one header's entries and its data as a string.
type hdrIndex struct {
	ents []rpmhdr.Entry
	// sorted: tags ascend (rpm writes them so), so lookups bisect.
	sorted bool
	// blob is the header's bytes as one string, entry data at
	// data+Offset; empty for the signature header, whose few values are
	// copied one by one (it is mostly rpm's reserved space).
	blob string
	data int
}

func newIndex(h *rpmhdr.Header, copyBlob bool) hdrIndex {
	x := hdrIndex{ents: h.Entries, sorted: true, data: rpmhdr.IntroSize + len(h.Entries)*rpmhdr.EntrySize}
	if copyBlob {
		x.blob = string(h.Blob)
	}
	for i := 1; i < len(h.Entries); i++ {
		if h.Entries[i].Tag < h.Entries[i-1].Tag {
			x.sorted = false
			break
		}
	}
	return x
}

func newHdr(raw *rpmhdr.Headers) hdr {
	return hdr{sig: newIndex(&raw.Sig, false), main: newIndex(&raw.Main, true), mainBlob: raw.Main.Blob}
}

// get returns the last entry with tag (go-rpmutils keeps entries in a
// map, so a repeated tag reads as its last occurrence).
func (x *hdrIndex) get(tag uint32) *rpmhdr.Entry {
	e := x.ents
	if x.sorted {
		// First index whose tag is > tag; the one before is the last
		// with tag, if any.
		lo, hi := 0, len(e)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if e[m].Tag <= tag {
				lo = m + 1
			} else {
				hi = m
			}
		}
		if lo > 0 && e[lo-1].Tag == tag {
			return &e[lo-1]
		}
		return nil
	}
	for i := len(e) - 1; i >= 0; i-- {
		if e[i].Tag == tag {
			return &e[i]
		}
	}
	return nil
}

// value is e's data as a substring of the header's string.
func (x *hdrIndex) value(e *rpmhdr.Entry) string {
	if x.blob == "" {
		return string(e.Data)
	}
	at := x.data + int(e.Offset)
	return x.blob[at : at+len(e.Data)]
}

// Signature header tag numbering, as go-rpmutils reads it.
const (
	sigTagBase     = 16384
	generalTagBase = 1000
)

func (h *hdr) entry(tag int) (*hdrIndex, *rpmhdr.Entry) {
	switch {
	case tag > sigTagBase:
		return &h.sig, h.sig.get(uint32(tag - sigTagBase))
	case tag < generalTagBase:
		return &h.sig, h.sig.get(uint32(tag))
	}
	return &h.main, h.main.get(uint32(tag))
}

func (h *hdr) has(tag int) bool {
	_, e := h.entry(tag)
	return e != nil
}

func (h *hdr) strs(tag int) ([]string, bool) {
	x, e := h.entry(tag)
	if e == nil || (e.Type != rpmhdr.TypeString && e.Type != rpmhdr.TypeStringArray && e.Type != rpmhdr.TypeI18NString) {
		return nil, false
	}
	// rpmhdr checked that Data is Count NUL-terminated strings.
	v := x.value(e)
	out := make([]string, e.Count)
	for i := range out {
		k := strings.IndexByte(v, 0)
		out[i], v = v[:k], v[k+1:]
	}
	return out, true
}

// str is the first value: rpm reads an I18NSTRING as its first (C locale)
// string.
func (h *hdr) str(tag int) string {
	x, e := h.entry(tag)
	if e == nil || (e.Type != rpmhdr.TypeString && e.Type != rpmhdr.TypeStringArray && e.Type != rpmhdr.TypeI18NString) {
		return ""
	}
	v := x.value(e)
	return v[:strings.IndexByte(v, 0)]
}

// nums reads any integer type (and char) as unsigned, as rpm does.
func (h *hdr) nums(tag int) ([]uint64, bool) {
	_, e := h.entry(tag)
	if e == nil {
		return nil, false
	}
	d := e.Data
	var out []uint64
	switch e.Type {
	case rpmhdr.TypeInt8, rpmhdr.TypeChar:
		out = make([]uint64, len(d))
		for i, b := range d {
			out[i] = uint64(b)
		}
	case rpmhdr.TypeInt16:
		out = make([]uint64, len(d)/2)
		for i := range out {
			out[i] = uint64(binary.BigEndian.Uint16(d[2*i:]))
		}
	case rpmhdr.TypeInt32:
		out = make([]uint64, len(d)/4)
		for i := range out {
			out[i] = uint64(binary.BigEndian.Uint32(d[4*i:]))
		}
	case rpmhdr.TypeInt64:
		out = make([]uint64, len(d)/8)
		for i := range out {
			out[i] = binary.BigEndian.Uint64(d[8*i:])
		}
	default:
		return nil, false
	}
	return out, true
}

func (h *hdr) num(tag int) (uint64, bool) {
	_, e := h.entry(tag)
	if e == nil {
		return 0, false
	}
	d := e.Data
	switch e.Type {
	case rpmhdr.TypeInt8, rpmhdr.TypeChar:
		if len(d) >= 1 {
			return uint64(d[0]), true
		}
	case rpmhdr.TypeInt16:
		if len(d) >= 2 {
			return uint64(binary.BigEndian.Uint16(d)), true
		}
	case rpmhdr.TypeInt32:
		if len(d) >= 4 {
			return uint64(binary.BigEndian.Uint32(d)), true
		}
	case rpmhdr.TypeInt64:
		if len(d) >= 8 {
			return binary.BigEndian.Uint64(d), true
		}
	}
	return 0, false
}

// checkDigest compares the main header with the signature header's hex
// SHA256 digest, else its SHA1, as go-rpmutils' ReadHeader did (a
// missing or one-character digest is not checked).
func (h *hdr) checkDigest() error {
	want, name, sum := h.str(sigTagSHA256), "SHA-256", func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
	if want == "" {
		want, name, sum = h.str(sigTagSHA1), "SHA-1", func(b []byte) []byte { s := sha1.Sum(b); return s[:] }
	}
	if len(want) <= 1 {
		return nil
	}
	var buf [2 * sha256.Size]byte
	got := sum(h.mainBlob)
	if len(want) != 2*len(got) || string(hex.AppendEncode(buf[:0], got)) != want {
		return fmt.Errorf("%w: %s mismatch in signature header", ErrMalformed, name)
	}
	return nil
}
