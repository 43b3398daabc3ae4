package sign

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	rpmutils "github.com/sassoftware/go-rpmutils"
)

// Check is one line of a verification report, like a line of rpmkeys -Kv.
type Check struct {
	Name   string `json:"name"`   // e.g. "Header SHA256 digest", "Header V4 RSA/SHA256 Signature"
	Status string `json:"status"` // "OK", "BAD", "NOKEY"
	KeyID  string `json:"key_id,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Reader is empty when rpm 4.x and rpm 6 both read this check's tag,
	// "rpm4" when only rpm 4.x does (rpm 6 skips RSAHEADER when tag 278 is
	// there, and MD5 and header+payload signatures in v6 packages), and
	// "rpm6" when only rpm 6 does (tag 278, SHA3-256 and SHA-512 digests).
	// Names follow the reader: rpm 4.18's "Header V4 RSA/SHA256 Signature",
	// rpm 6's "Header OpenPGP V4 RSA/SHA256 signature".
	Reader string `json:"reader,omitempty"`
}

// Report is the verification result for one package.
type Report struct {
	Path       string  `json:"path"`
	NEVRA      string  `json:"nevra,omitempty"`
	Digests    []Check `json:"digests"`
	Signatures []Check `json:"signatures"`
	// DigestsOK: every digest present matched. SignaturesOK: for rpm 4.x
	// and for rpm 6 alike, at least one signature that rpm version reads
	// verified with a given key and none was bad or from an unknown key.
	DigestsOK    bool `json:"digests_ok"`
	SignaturesOK bool `json:"signatures_ok"`
	OK           bool `json:"ok"`
	// RPM4OK and RPM6OK are the verdicts counting only the checks that
	// version reads (see Check.Reader); OK is both.
	RPM4OK bool `json:"rpm4_ok"`
	RPM6OK bool `json:"rpm6_ok"`
}

// Summary is rpmkeys -K's one-line verdict.
func (r *Report) Summary() string {
	d, s := "digests", "signatures"
	if !r.DigestsOK {
		d = "DIGESTS"
	}
	if !r.SignaturesOK {
		s = "SIGNATURES"
	}
	verdict := "OK"
	if !r.OK {
		verdict = "NOT OK"
	}
	return d + " " + s + " " + verdict
}

// VerifyFile checks the package's digests and its signatures against keys
// (public or private). Structural problems (not an RPM, truncated header)
// are returned as errors; digest and signature failures are in the Report.
func VerifyFile(ctx context.Context, path string, keys []*Key) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("verifying %q: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("verifying %q: %w", path, err)
	}
	br := bufio.NewReaderSize(f, 64<<10)
	p, err := readPkg(br, st.Size())
	if err != nil {
		return nil, fmt.Errorf("verifying %q: %w", path, err)
	}
	rep := &Report{Path: path, NEVRA: nevra(p)}

	var headerSigs []Check
	type legacy struct {
		check *Check
		sig   *packet.Signature
		h     hash.Hash
		key   *packet.PublicKey
	}
	var legacies []legacy
	var extras []io.Writer
	// rpm 6 reads 278 and, when it has a signature, nothing else; rpm 6
	// also skips the header+payload tags of a v6 signature header.
	old278, err278 := openPGPSigs(p)
	v4Reader, legacyReader := "", ""
	if len(old278) > 0 {
		v4Reader, legacyReader = readerRPM4, readerRPM4
	}
	if p.ignoresLegacy() {
		legacyReader = readerRPM4
	}
	if err278 != nil {
		var te *tagError
		detail := err278.Error()
		if errors.As(err278, &te) {
			detail = te.detail
		}
		headerSigs = append(headerSigs, Check{Name: "Header OpenPGP signature", Status: "BAD", Detail: detail, Reader: readerRPM6})
	}
	for _, pkt := range old278 {
		c := checkSig("Header ", pkt, keys, p.main.blob)
		c.Name = "Header OpenPGP " + strings.TrimSuffix(strings.TrimPrefix(c.Name, "Header "), "Signature") + "signature"
		c.Reader = readerRPM6
		headerSigs = append(headerSigs, c)
	}
	for _, e := range p.sig.entries {
		switch e.tag {
		case tagRSAHeader, tagDSAHeader:
			c := checkSig("Header ", e.data, keys, p.main.blob)
			c.Reader = v4Reader
			headerSigs = append(headerSigs, c)
		case tagPGP, tagGPG:
			c, sig, pub := prepareSig("", e.data, keys)
			c.Reader = legacyReader
			if sig == nil {
				legacies = append(legacies, legacy{check: &c})
				continue
			}
			h, err := sig.PrepareVerify()
			if err != nil {
				c.Status, c.Detail = "BAD", err.Error()
				legacies = append(legacies, legacy{check: &c})
				continue
			}
			legacies = append(legacies, legacy{&c, sig, h, pub})
			extras = append(extras, h)
		}
	}
	var extra io.Writer
	if len(extras) > 0 {
		extra = io.MultiWriter(extras...)
	}
	checks, err := checkDigests(ctx, p, br, extra, true)
	if err != nil {
		return nil, fmt.Errorf("verifying %q: %w", path, err)
	}
	for _, c := range checks {
		ck := Check{Name: c.name, Status: "OK", Reader: c.reader}
		if c.err != nil {
			ck.Status, ck.Detail = "BAD", c.err.Error()
			var te *tagError
			if errors.As(c.err, &te) {
				ck.Detail = te.detail
			}
		}
		rep.Digests = append(rep.Digests, ck)
	}
	rep.Signatures = headerSigs
	for _, l := range legacies {
		if l.sig != nil && l.key == nil {
			if packet.VerifyHashTag(l.h, l.sig) != nil {
				l.check.Status, l.check.Detail = "BAD", "signature does not match"
			}
		} else if l.sig != nil {
			if err := l.key.VerifySignature(l.h, l.sig); err != nil {
				l.check.Status, l.check.Detail = "BAD", "signature does not match"
			} else {
				l.check.Status = "OK"
			}
		}
		rep.Signatures = append(rep.Signatures, *l.check)
	}
	digests := func(reader string) bool {
		for _, c := range rep.Digests {
			if c.Status != "OK" && (c.Reader == "" || c.Reader == reader) {
				return false
			}
		}
		return true
	}
	sigs := func(reader string) bool {
		good, bad := 0, 0
		for _, c := range rep.Signatures {
			if c.Reader != "" && c.Reader != reader {
				continue
			}
			if c.Status == "OK" {
				good++
			} else {
				bad++
			}
		}
		return bad == 0 && (good > 0 || len(keys) == 0)
	}
	rep.DigestsOK = digests(readerRPM4) && digests(readerRPM6)
	rep.SignaturesOK = sigs(readerRPM4) && sigs(readerRPM6)
	rep.RPM4OK = digests(readerRPM4) && sigs(readerRPM4)
	rep.RPM6OK = digests(readerRPM6) && sigs(readerRPM6)
	rep.OK = rep.RPM4OK && rep.RPM6OK
	return rep, nil
}

// nevra reads name-epoch:version-release.arch with go-rpmutils, which must
// only ever see headers readPkg has validated; it panics on bad input, so a
// recover stays as the last line of defence.
func nevra(p *pkg) (s string) {
	defer func() {
		if recover() != nil {
			s = ""
		}
	}()
	var buf bytes.Buffer
	buf.Write(p.lead)
	buf.Write(p.sig.blob)
	buf.Write(p.sigPad)
	buf.Write(p.main.blob)
	h, err := rpmutils.ReadHeader(&buf)
	if err != nil {
		return ""
	}
	n, err := h.GetNEVRA()
	if err != nil {
		return ""
	}
	evr := n.Version + "-" + n.Release
	if n.Epoch != "" && n.Epoch != "0" {
		evr = n.Epoch + ":" + evr
	}
	return n.Name + "-" + evr + "." + n.Arch
}

func algoName(a packet.PublicKeyAlgorithm) string {
	switch a {
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSASignOnly:
		return "RSA"
	case packet.PubKeyAlgoEdDSA:
		return "EdDSA"
	case packet.PubKeyAlgoDSA:
		return "DSA"
	case packet.PubKeyAlgoECDSA:
		return "ECDSA"
	case packet.PubKeyAlgoEd25519:
		return "Ed25519"
	case packet.PubKeyAlgoEd448:
		return "Ed448"
	}
	return fmt.Sprintf("algo%d", a)
}

// prepareSig parses a signature packet and finds its key among keys.
func prepareSig(prefix string, data []byte, keys []*Key) (Check, *packet.Signature, *packet.PublicKey) {
	c := Check{Name: prefix + "Signature", Status: "BAD"}
	pk, err := packet.Read(bytes.NewReader(data))
	if err != nil {
		c.Detail = "unparsable signature packet"
		return c, nil, nil
	}
	sig, ok := pk.(*packet.Signature)
	if !ok {
		c.Detail = "not a signature packet"
		return c, nil, nil
	}
	hn := sig.Hash.String()
	if !strings.HasPrefix(hn, "SHA3") {
		hn = "SHA" + strings.TrimPrefix(hn, "SHA-")
	}
	c.Name = fmt.Sprintf("%sV%d %s/%s Signature", prefix, sig.Version, algoName(sig.PubKeyAlgo), hn)
	if sig.IssuerKeyId != nil {
		c.KeyID = fmt.Sprintf("%016x", *sig.IssuerKeyId)
	}
	pub := findKey(sig, keys)
	if pub == nil {
		c.Status = "NOKEY"
		return c, sig, nil
	}
	return c, sig, pub
}

func findKey(sig *packet.Signature, keys []*Key) *packet.PublicKey {
	if sig.IssuerKeyId == nil {
		return nil
	}
	for _, k := range keys {
		if k.entity.PrimaryKey.KeyId == *sig.IssuerKeyId {
			return k.entity.PrimaryKey
		}
		for _, sk := range k.entity.Subkeys {
			if sk.PublicKey.KeyId == *sig.IssuerKeyId {
				return sk.PublicKey
			}
		}
	}
	return nil
}

func checkSig(prefix string, data []byte, keys []*Key, signed []byte) Check {
	c, sig, pub := prepareSig(prefix, data, keys)
	if sig == nil {
		return c
	}
	if pub == nil {
		// rpm checks the digest's first 16 bits, which every signature
		// packet carries, before it looks for the key: a changed header
		// is BAD even with no key.
		if h, err := sig.PrepareVerify(); err == nil {
			h.Write(signed)
			if packet.VerifyHashTag(h, sig) != nil {
				c.Status, c.Detail = "BAD", "signature does not match"
			}
		}
		return c
	}
	if err := verifySig(sig, pub, signed); err != nil {
		c.Status, c.Detail = "BAD", "signature does not match"
		return c
	}
	c.Status = "OK"
	return c
}

func verifySig(sig *packet.Signature, pub *packet.PublicKey, signed []byte) error {
	h, err := sig.PrepareVerify()
	if err != nil {
		return err
	}
	h.Write(signed)
	return pub.VerifySignature(h, sig)
}

var errSigMismatch = errors.New("signature does not verify")

// verifyPacket reports whether data is a valid signature over signed by
// one of keys.
func verifyPacket(data []byte, keys []*Key, signed []byte) error {
	_, sig, pub := prepareSig("", data, keys)
	if sig == nil || pub == nil {
		return errSigMismatch
	}
	return verifySig(sig, pub, signed)
}
