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
	Status string `json:"status"` // "OK", "BAD", "NOKEY", "UNSUPPORTED"
	KeyID  string `json:"key_id,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Report is the verification result for one package.
type Report struct {
	Path       string  `json:"path"`
	NEVRA      string  `json:"nevra,omitempty"`
	Digests    []Check `json:"digests"`
	Signatures []Check `json:"signatures"`
	// DigestsOK: every digest present matched. SignaturesOK: at least one
	// signature verified with a given key and none was bad or from an
	// unknown key (rpm 4.18-unreadable v6 signatures are ignored).
	DigestsOK    bool `json:"digests_ok"`
	SignaturesOK bool `json:"signatures_ok"`
	OK           bool `json:"ok"`
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
	for _, e := range p.sig.entries {
		switch e.tag {
		case tagRSAHeader, tagDSAHeader:
			headerSigs = append(headerSigs, checkSig("Header ", e.data, keys, p.main.blob))
		case tagPGP, tagGPG:
			c, sig, pub := prepareSig("", e.data, keys)
			if sig == nil || pub == nil {
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
		case tagOpenPGP:
			headerSigs = append(headerSigs, Check{Name: "OpenPGP signatures (tag 278)", Status: "UNSUPPORTED",
				Detail: "rpm 6 multi-signature tag; rpm 4.18 ignores it"})
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
	rep.DigestsOK = true
	for _, c := range checks {
		ck := Check{Name: c.name, Status: "OK"}
		if c.err != nil {
			ck.Status, ck.Detail = "BAD", c.err.Error()
			rep.DigestsOK = false
		}
		rep.Digests = append(rep.Digests, ck)
	}
	rep.Signatures = headerSigs
	for _, l := range legacies {
		if l.sig != nil {
			if err := l.key.VerifySignature(l.h, l.sig); err != nil {
				l.check.Status, l.check.Detail = "BAD", "signature does not match"
			} else {
				l.check.Status = "OK"
			}
		}
		rep.Signatures = append(rep.Signatures, *l.check)
	}
	good, bad := 0, 0
	for _, c := range rep.Signatures {
		switch c.Status {
		case "OK":
			good++
		case "UNSUPPORTED":
		default:
			bad++
		}
	}
	rep.SignaturesOK = bad == 0 && (good > 0 || len(keys) == 0)
	rep.OK = rep.DigestsOK && rep.SignaturesOK
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
	hn := strings.TrimPrefix(sig.Hash.String(), "SHA-")
	c.Name = fmt.Sprintf("%sV%d %s/SHA%s Signature", prefix, sig.Version, algoName(sig.PubKeyAlgo), hn)
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
	if sig == nil || pub == nil {
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
