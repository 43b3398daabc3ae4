package sign

import (
	"bytes"
	"encoding/base64"
	"fmt"

	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/repoctl/repoctl/internal/rpmhdr"
)

// rpm 6 keeps its signatures in RPMSIGTAG_OPENPGP (278): a string array,
// one base64-encoded OpenPGP signature packet (v4 or v6) per element, each
// over the main header like RSAHEADER. rpm 6 reads 278 first and, when one
// element of it parses, skips RSAHEADER/DSAHEADER and the header+payload
// signatures (lib/rpmvs.cc); rpm 4.x does not know the tag.

// maxOpenPGPSigs bounds the elements of 278 we look at; rpm itself has no
// limit but the header's, and a hostile header could hold thousands.
const maxOpenPGPSigs = 64

// openPGPSigs decodes the packets of tag 278, or returns nil when the
// package has none. A tag that is not a string array, has too many
// elements, or holds an element that is not base64 of one OpenPGP signature
// packet is an ErrSignatureTag: rpm 6 reports it BAD and rpmsign refuses
// to sign such a package.
func openPGPSigs(p *pkg) ([][]byte, error) {
	e := p.sig.get(tagOpenPGP)
	if e == nil {
		return nil, nil
	}
	if e.typ != rpmhdr.TypeStringArray {
		return nil, &tagError{ErrSignatureTag, fmt.Sprintf("OpenPGP signatures (tag 278) have type %d, want %d", e.typ, rpmhdr.TypeStringArray)}
	}
	if e.count > maxOpenPGPSigs {
		return nil, &tagError{ErrSignatureTag, fmt.Sprintf("OpenPGP signatures (tag 278): %d of them (limit %d)", e.count, maxOpenPGPSigs)}
	}
	out := make([][]byte, 0, e.count)
	rest := e.data
	for i := range int(e.count) {
		s, r, _ := bytes.Cut(rest, []byte{0})
		rest = r
		pkt, err := decodeSig64(s)
		if err != nil {
			return nil, &tagError{ErrSignatureTag, fmt.Sprintf("OpenPGP signature %d of %d (tag 278): %v", i+1, e.count, err)}
		}
		out = append(out, pkt)
	}
	return out, nil
}

// decodeSig64 decodes one element of 278: base64 (rpm's decoder skips
// whitespace, so does this) of exactly one signature packet.
func decodeSig64(s []byte) ([]byte, error) {
	clean := bytes.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
	pkt := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
	n, err := base64.StdEncoding.Decode(pkt, clean)
	if err != nil || n == 0 {
		return nil, fmt.Errorf("invalid base64")
	}
	pkt = pkt[:n]
	rd := bytes.NewReader(pkt)
	pk, err := packet.Read(rd)
	if err != nil {
		return nil, fmt.Errorf("invalid OpenPGP signature")
	}
	if _, ok := pk.(*packet.Signature); !ok || rd.Len() != 0 {
		return nil, fmt.Errorf("not one OpenPGP signature packet")
	}
	return pkt, nil
}

// openPGPEntry is tag 278 holding pkts, as rpmsign writes it: standard
// base64 without line breaks.
func openPGPEntry(pkts ...[]byte) entry {
	var data []byte
	for _, p := range pkts {
		data = base64.StdEncoding.AppendEncode(data, p)
		data = append(data, 0)
	}
	return entry{tag: tagOpenPGP, typ: rpmhdr.TypeStringArray, count: uint32(len(pkts)), data: data}
}
