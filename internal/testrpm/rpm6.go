package testrpm

// rpm 6 writes packages Debian's rpm 4.18 cannot build: no
// PAYLOADDIGESTALGO, payload digests over the compressed and the
// uncompressed payload in SHA-256, SHA-512 and SHA3-256, RPMFORMAT 6, and
// a v6 signature header (SHA-256 and SHA3-256 header digests, RESERVED
// 999, OpenPGP signatures in tag 278). RPM6 turns an rpmpack package into
// one, with every digest correct, so that tests can feed repoctl what
// rpm 6's rpmbuild makes (tag numbers and layout: rpm's rpmtag.h,
// build/pack.cc and docs/manual/format_v6.md).

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"sort"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// Header data types and region tags (rpm's rpmtag.h). testrpm keeps its
// own copy: internal/rpmhdr's tests build their fixtures with testrpm.
const (
	typeInt16       = 3
	typeInt32       = 4
	typeInt64       = 5
	typeString      = 6
	typeBin         = 7
	typeStringArray = 8
	typeI18NString  = 9

	regionSig  = 62
	regionMain = 63
	regionOld  = 61
)

func typeSize(t uint32) int {
	switch t {
	case typeInt16:
		return 2
	case typeInt32:
		return 4
	case typeInt64:
		return 8
	}
	return 1
}

// Tag is one header entry: Count values of Type in Data (strings
// NUL-terminated).
type Tag struct {
	Tag, Type, Count uint32
	Data             []byte
}

// StringTag is a STRING entry.
func StringTag(tag uint32, s string) Tag {
	return Tag{tag, typeString, 1, append([]byte(s), 0)}
}

// StringArrayTag is a STRING_ARRAY entry.
func StringArrayTag(tag uint32, ss ...string) Tag {
	var d []byte
	for _, s := range ss {
		d = append(append(d, s...), 0)
	}
	return Tag{tag, typeStringArray, uint32(len(ss)), d}
}

// Int32Tag is an INT32 entry.
func Int32Tag(tag uint32, vs ...uint32) Tag {
	var d []byte
	for _, v := range vs {
		d = binary.BigEndian.AppendUint32(d, v)
	}
	return Tag{tag, typeInt32, uint32(len(vs)), d}
}

// Int64Tag is an INT64 entry.
func Int64Tag(tag uint32, vs ...uint64) Tag {
	var d []byte
	for _, v := range vs {
		d = binary.BigEndian.AppendUint64(d, v)
	}
	return Tag{tag, typeInt64, uint32(len(vs)), d}
}

// BinTag is a BIN entry.
func BinTag(tag uint32, b []byte) Tag {
	return Tag{tag, typeBin, uint32(len(b)), bytes.Clone(b)}
}

// Package is an RPM file taken apart: the tags of both headers (region
// tags left out; BuildHeader adds them) and the payload as stored.
type Package struct {
	Lead      []byte
	Sig, Main []Tag
	Payload   []byte
}

// Parse takes b apart. It trusts b (testrpm's own output or a package the
// test made): it is no validator, and panics rather than checks.
func Parse(b []byte) (p *Package, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("testrpm: cannot parse package: %v", r)
		}
	}()
	if len(b) < 96 || !bytes.Equal(b[:4], []byte{0xed, 0xab, 0xee, 0xdb}) {
		return nil, fmt.Errorf("testrpm: not an RPM package")
	}
	header := func(off int) ([]Tag, int) {
		il := int(binary.BigEndian.Uint32(b[off+8:]))
		dl := int(binary.BigEndian.Uint32(b[off+12:]))
		index := b[off+16 : off+16+16*il]
		data := b[off+16+16*il : off+16+16*il+dl]
		var out []Tag
		for i := range il {
			e := index[16*i:]
			t := Tag{binary.BigEndian.Uint32(e), binary.BigEndian.Uint32(e[4:]), binary.BigEndian.Uint32(e[12:]), nil}
			at := int(binary.BigEndian.Uint32(e[8:]))
			if t.Tag == regionSig || t.Tag == regionMain || t.Tag == regionOld {
				continue
			}
			n := 0
			switch t.Type {
			case typeString, typeStringArray, typeI18NString:
				for range t.Count {
					n += bytes.IndexByte(data[at+n:], 0) + 1
				}
			default:
				n = typeSize(t.Type) * int(t.Count)
			}
			t.Data = bytes.Clone(data[at : at+n])
			out = append(out, t)
		}
		return out, off + 16 + 16*il + dl
	}
	sig, end := header(96)
	main, pay := header((end + 7) &^ 7)
	return &Package{Lead: bytes.Clone(b[:96]), Sig: sig, Main: main, Payload: bytes.Clone(b[pay:])}, nil
}

// Get returns the first entry with tag, or nil.
func Get(tags []Tag, tag uint32) *Tag {
	for i := range tags {
		if tags[i].Tag == tag {
			return &tags[i]
		}
	}
	return nil
}

// Without returns tags minus every entry whose tag is in drop.
func Without(tags []Tag, drop ...uint32) []Tag {
	var out []Tag
	for _, t := range tags {
		keep := true
		for _, d := range drop {
			if t.Tag == d {
				keep = false
			}
		}
		if keep {
			out = append(out, t)
		}
	}
	return out
}

// Set replaces the entry with t's tag, or adds it.
func Set(tags []Tag, t Tag) []Tag {
	return append(Without(tags, t.Tag), t)
}

// BuildHeader serializes tags as rpm does: the region tag first, the other
// entries sorted by tag, their data in index order, each value aligned to
// its type, and the region trailer (tag, BIN, -16 × entries, 16) at the
// end of the data. region is 62 for a signature header, 63 for a main
// header. The result is not padded.
func BuildHeader(tags []Tag, region uint32) []byte {
	es := append([]Tag(nil), tags...)
	sort.SliceStable(es, func(i, j int) bool { return es[i].Tag < es[j].Tag })
	il := len(es) + 1
	var data []byte
	offs := make([]int, len(es))
	for i, e := range es {
		if sz := typeSize(e.Type); sz > 1 {
			for len(data)%sz != 0 {
				data = append(data, 0)
			}
		}
		offs[i] = len(data)
		data = append(data, e.Data...)
	}
	trailerOff := len(data)
	data = binary.BigEndian.AppendUint32(data, region)
	data = binary.BigEndian.AppendUint32(data, typeBin)
	data = binary.BigEndian.AppendUint32(data, uint32(int32(-16*il)))
	data = binary.BigEndian.AppendUint32(data, 16)

	out := []byte{0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0}
	out = binary.BigEndian.AppendUint32(out, uint32(il))
	out = binary.BigEndian.AppendUint32(out, uint32(len(data)))
	for _, v := range []uint32{region, typeBin, uint32(trailerOff), 16} {
		out = binary.BigEndian.AppendUint32(out, v)
	}
	for i, e := range es {
		for _, v := range []uint32{e.Tag, e.Type, uint32(offs[i]), e.Count} {
			out = binary.BigEndian.AppendUint32(out, v)
		}
	}
	return append(out, data...)
}

// Bytes assembles the file: lead, signature header padded to 8 bytes,
// main header, payload.
func (p *Package) Bytes() []byte {
	sig := BuildHeader(p.Sig, regionSig)
	for len(sig)%8 != 0 {
		sig = append(sig, 0)
	}
	out := append(bytes.Clone(p.Lead), sig...)
	out = append(out, BuildHeader(p.Main, regionMain)...)
	return append(out, p.Payload...)
}

// Uncompressed returns the payload decompressed as PAYLOADCOMPRESSOR
// (1125) says.
func (p *Package) Uncompressed() ([]byte, error) {
	comp := ""
	if t := Get(p.Main, 1125); t != nil {
		comp = string(bytes.TrimRight(t.Data, "\x00"))
	}
	var r io.Reader
	var err error
	src := bytes.NewReader(p.Payload)
	switch comp {
	case "", "none":
		return bytes.Clone(p.Payload), nil
	case "gzip":
		r, err = gzip.NewReader(src)
	case "zstd":
		var d *zstd.Decoder
		if d, err = zstd.NewReader(src); err == nil {
			defer d.Close()
			r = d
		}
	case "xz":
		r, err = xz.NewReader(src)
	case "lzma":
		r, err = lzma.NewReader(src)
	default:
		return nil, fmt.Errorf("testrpm: payload compressor %q", comp)
	}
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// Main-header and signature-header tags RPM6 writes.
const (
	TagPayloadSHA256     = 5092
	TagPayloadDigestAlgo = 5093
	TagPayloadSHA256Alt  = 5097
	TagPayloadSize       = 5112
	TagPayloadSizeAlt    = 5113
	TagRPMFormat         = 5114
	TagPayloadSHA512     = 5121
	TagPayloadSHA512Alt  = 5122
	TagPayloadSHA3       = 5123
	TagPayloadSHA3Alt    = 5124

	SigTagRSAHeader = 268
	SigTagSHA1      = 269
	SigTagSHA256    = 273
	SigTagOpenPGP   = 278
	SigTagSHA3      = 279
	SigTagReserved  = 999
	SigTagSize      = 1000
	SigTagMD5       = 1004
	SigTagPayload   = 1007
	SigTagReserve4  = 1008
)

// RPM6Options says how RPM6 rewrites a package. The zero value makes an
// unsigned v6 package like rpm 6's rpmbuild with %_rpmformat 6.
type RPM6Options struct {
	// V4Format keeps RPMFORMAT out and writes a v4 signature header (SHA1,
	// SHA256, sizes, MD5, RESERVEDSPACE) while still leaving out
	// PAYLOADDIGESTALGO and adding rpm 6's payload digests.
	V4Format bool
	// Reserved is the size of the reserved space; 0 means rpm's 4128.
	Reserved int
	// EditMain runs on the main header's tags after RPM6 set them and
	// before the header digests are computed, so a malformed tag it plants
	// is the only thing wrong with the package.
	EditMain func([]Tag) []Tag
	// Sign, if set, gets the final main header and returns what goes in
	// the signature header: a v4 signature packet for RSAHEADER (268;
	// nil for none) and packets for tag 278 (base64-encoded here).
	Sign func(mainHeader []byte) (rsaHeader []byte, openpgp [][]byte, err error)
	// EditSig runs last on the signature header's tags.
	EditSig func([]Tag) []Tag
}

func hexSum(h interface {
	Write([]byte) (int, error)
	Sum([]byte) []byte
}, b []byte) string {
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// RPM6 rewrites the package b (rpmpack output or any valid package) the
// way rpm 6 would have built it. Every digest it writes is correct for
// the result.
func RPM6(b []byte, o RPM6Options) ([]byte, error) {
	p, err := Parse(b)
	if err != nil {
		return nil, err
	}
	raw, err := p.Uncompressed()
	if err != nil {
		return nil, err
	}
	pld := p.Payload
	p.Main = Without(p.Main, TagPayloadDigestAlgo, TagPayloadSHA256, TagPayloadSHA256Alt, TagPayloadSize,
		TagPayloadSizeAlt, TagRPMFormat, TagPayloadSHA512, TagPayloadSHA512Alt, TagPayloadSHA3, TagPayloadSHA3Alt)
	p.Main = append(p.Main,
		StringArrayTag(TagPayloadSHA256, hexSum(sha256.New(), pld)),
		StringArrayTag(TagPayloadSHA256Alt, hexSum(sha256.New(), raw)),
		StringTag(TagPayloadSHA512, hexSum(sha512.New(), pld)),
		StringTag(TagPayloadSHA512Alt, hexSum(sha512.New(), raw)),
		StringTag(TagPayloadSHA3, hexSum(sha3.New256(), pld)),
		StringTag(TagPayloadSHA3Alt, hexSum(sha3.New256(), raw)),
	)
	if !o.V4Format {
		p.Main = append(p.Main,
			Int64Tag(TagPayloadSize, uint64(len(pld))),
			Int64Tag(TagPayloadSizeAlt, uint64(len(raw))),
			Int32Tag(TagRPMFormat, 6),
		)
	}
	if o.EditMain != nil {
		p.Main = o.EditMain(p.Main)
	}
	main := BuildHeader(p.Main, regionMain)
	reserved := o.Reserved
	if reserved == 0 {
		reserved = 4128
	}
	if o.V4Format {
		md := md5.New()
		md.Write(main)
		md.Write(pld)
		p.Sig = []Tag{
			StringTag(SigTagSHA1, hexSum(sha1.New(), main)),
			StringTag(SigTagSHA256, hexSum(sha256.New(), main)),
			Int32Tag(SigTagSize, uint32(len(main)+len(pld))),
			BinTag(SigTagMD5, md.Sum(nil)),
			Int32Tag(SigTagPayload, uint32(len(raw))),
			BinTag(SigTagReserve4, make([]byte, reserved)),
		}
	} else {
		p.Sig = []Tag{
			StringTag(SigTagSHA256, hexSum(sha256.New(), main)),
			StringTag(SigTagSHA3, hexSum(sha3.New256(), main)),
			BinTag(SigTagReserved, make([]byte, reserved)),
		}
		// rpm 6 writes a v6 lead: version 4, no arch or OS.
		p.Lead[4] = 4
	}
	if o.Sign != nil {
		rsa, pgp, err := o.Sign(main)
		if err != nil {
			return nil, err
		}
		if rsa != nil {
			p.Sig = append(p.Sig, BinTag(SigTagRSAHeader, rsa))
		}
		if len(pgp) > 0 {
			var ss []string
			for _, pk := range pgp {
				ss = append(ss, base64.StdEncoding.EncodeToString(pk))
			}
			p.Sig = append(p.Sig, StringArrayTag(SigTagOpenPGP, ss...))
		}
	}
	if o.EditSig != nil {
		p.Sig = o.EditSig(p.Sig)
	}
	return p.Bytes(), nil
}
