package sign

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/repoctl/repoctl/internal/rpmhdr"
)

// maxPackageSigners bounds the elements of tag 278 looked at: a hostile
// header could hold thousands.
const maxPackageSigners = 64

// PackageSigners returns the ids (16 lowercase hex digits) of the keys that
// made the OpenPGP signatures in the signature header of the RPM read from
// r: header signatures (RSAHEADER, DSAHEADER), header+payload ones (PGP,
// GPG) and rpm 6's tag 278, in header order, each once. Nothing is
// verified and only the headers are read: it answers cheaply which keys a
// client needs for a package, e.g. whether a key can be retired. A
// signature packet that cannot be parsed, or names no issuer, is an
// ErrCorrupt: a client could not verify it with any key.
func PackageSigners(r io.Reader) ([]string, error) {
	h, err := rpmhdr.Read(r)
	if err != nil {
		return nil, rpmhdr.Reclassify(err, hdrErrors)
	}
	var out []string
	seen := map[string]bool{}
	add := func(pkt []byte) error {
		id, err := sigIssuer(pkt)
		if err != nil {
			return err
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
		return nil
	}
	for _, e := range h.Sig.Entries {
		switch e.Tag {
		case tagDSAHeader, tagRSAHeader, tagPGP, tagGPG, tagPGP5:
			if err := add(e.Data); err != nil {
				return nil, fmt.Errorf("signature tag %d: %w", e.Tag, err)
			}
		case tagOpenPGP:
			if e.Type != rpmhdr.TypeStringArray || e.Count > maxPackageSigners {
				return nil, fmt.Errorf("%w: signature tag 278 of type %d with %d elements", ErrCorrupt, e.Type, e.Count)
			}
			for _, s := range bytes.Split(bytes.TrimSuffix(e.Data, []byte{0}), []byte{0}) {
				pkt, err := base64.StdEncoding.DecodeString(string(bytes.Join(bytes.Fields(s), nil)))
				if err != nil {
					return nil, fmt.Errorf("%w: signature tag 278: invalid base64", ErrCorrupt)
				}
				if err := add(pkt); err != nil {
					return nil, fmt.Errorf("signature tag 278: %w", err)
				}
			}
		}
	}
	return out, nil
}

// sigIssuer is the key id a signature packet names: its issuer key id, or
// the id its issuer fingerprint implies (v4: the low 64 bits, v6: the
// high 64 bits).
func sigIssuer(pkt []byte) (string, error) {
	p, err := packet.Read(bytes.NewReader(pkt))
	if err != nil {
		return "", fmt.Errorf("%w: unparsable signature packet", ErrCorrupt)
	}
	s, ok := p.(*packet.Signature)
	if !ok {
		return "", fmt.Errorf("%w: not a signature packet", ErrCorrupt)
	}
	switch fp := s.IssuerFingerprint; {
	case s.IssuerKeyId != nil:
		return fmt.Sprintf("%016x", *s.IssuerKeyId), nil
	case len(fp) == 20:
		return hex.EncodeToString(fp[12:]), nil
	case len(fp) == 32:
		return hex.EncodeToString(fp[:8]), nil
	}
	return "", fmt.Errorf("%w: signature names no issuer", ErrCorrupt)
}
