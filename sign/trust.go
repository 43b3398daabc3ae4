package sign

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// ErrBadSignature is a detached signature that does not verify: unreadable,
// made by a key that is not given, or not matching the data.
var ErrBadSignature = errors.New("sign: detached signature does not verify")

// maxKeyringKeys bounds how many keys one keyring file may hold; a served
// key file holds one or two (during a key rotation).
const maxKeyringKeys = 64

// ReadKeyring reads the public keys of a key file such as the served
// RPM-GPG-KEY-repoctl: one or more armored blocks one after another (what
// `cat a.asc b.asc` gives and what rpm --import and dnf accept), each
// holding one or more keys, or binary key packets. Private parts are
// dropped: a keyring is for verification only. A file with no key, or a
// key this package could not verify with, is an error.
func ReadKeyring(r io.Reader) ([]*Key, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxKeyFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("%w: keyring larger than %d bytes", ErrBadKey, maxKeyFileSize)
	}
	var bodies [][]byte
	if bytes.Contains(data, []byte("-----BEGIN PGP")) {
		// armor.Decode reads ahead, so each block is cut out first and
		// decoded on its own.
		const begin, end = "-----BEGIN PGP ", "-----END PGP "
		rest := data
		for {
			i := bytes.Index(rest, []byte(begin))
			if i < 0 {
				break
			}
			j := bytes.Index(rest[i:], []byte(end))
			if j < 0 {
				return nil, fmt.Errorf("%w: unterminated armor block", ErrBadKey)
			}
			j += i
			k := bytes.IndexByte(rest[j:], '\n')
			if k < 0 {
				k = len(rest) - j
			}
			blk, err := armor.Decode(bytes.NewReader(rest[i : j+k]))
			if err != nil {
				return nil, fmt.Errorf("%w: bad armor", ErrBadKey)
			}
			if blk.Type != openpgp.PublicKeyType && blk.Type != openpgp.PrivateKeyType {
				return nil, fmt.Errorf("%w: armor block of type %q", ErrBadKey, blk.Type)
			}
			b, err := io.ReadAll(io.LimitReader(blk.Body, maxKeyFileSize))
			if err != nil {
				return nil, fmt.Errorf("%w: bad armor", ErrBadKey)
			}
			bodies = append(bodies, b)
			rest = rest[j+k:]
		}
	} else {
		bodies = [][]byte{data}
	}
	var out []*Key
	for _, b := range bodies {
		el, err := openpgp.ReadKeyRing(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
		}
		for _, e := range el {
			e.PrivateKey = nil
			for i := range e.Subkeys {
				e.Subkeys[i].PrivateKey = nil
			}
			k, err := newKey(e, nil)
			if err != nil {
				return nil, err
			}
			out = append(out, k)
			if len(out) > maxKeyringKeys {
				return nil, fmt.Errorf("%w: keyring holds more than %d keys", ErrBadKey, maxKeyringKeys)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no key in keyring", ErrBadKey)
	}
	return out, nil
}

// VerifyDetached checks sig, an armored or binary detached signature such
// as repomd.xml.asc, over data with keys, as dnf's repo_gpgcheck does. It
// returns the id of the key that made the signature (also when that key is
// not among keys, so a caller can name it); any failure wraps
// ErrBadSignature.
func VerifyDetached(data, sig []byte, keys []*Key) (keyID string, err error) {
	if len(sig) > maxKeyFileSize {
		return "", fmt.Errorf("%w: larger than %d bytes", ErrBadSignature, maxKeyFileSize)
	}
	raw := sig
	if bytes.Contains(sig, []byte("-----BEGIN PGP")) {
		blk, err := armor.Decode(bytes.NewReader(sig))
		if err != nil {
			return "", fmt.Errorf("%w: bad armor", ErrBadSignature)
		}
		if blk.Type != openpgp.SignatureType {
			return "", fmt.Errorf("%w: armor block of type %q", ErrBadSignature, blk.Type)
		}
		if raw, err = io.ReadAll(io.LimitReader(blk.Body, maxKeyFileSize)); err != nil {
			return "", fmt.Errorf("%w: bad armor", ErrBadSignature)
		}
	}
	pk, err := packet.Read(bytes.NewReader(raw))
	if err != nil {
		return "", fmt.Errorf("%w: unparsable signature packet", ErrBadSignature)
	}
	s, ok := pk.(*packet.Signature)
	if !ok {
		return "", fmt.Errorf("%w: not a signature packet", ErrBadSignature)
	}
	if s.IssuerKeyId != nil {
		keyID = fmt.Sprintf("%016x", *s.IssuerKeyId)
	}
	if s.SigType != packet.SigTypeBinary {
		return keyID, fmt.Errorf("%w: signature type %d, want a binary signature", ErrBadSignature, s.SigType)
	}
	pub := findKey(s, keys)
	if pub == nil {
		return keyID, fmt.Errorf("%w: made by key %s, which is not a current key", ErrBadSignature, keyID)
	}
	if err := verifySig(s, pub, data); err != nil {
		return keyID, fmt.Errorf("%w: does not match the signed file (key %s)", ErrBadSignature, keyID)
	}
	return keyID, nil
}
