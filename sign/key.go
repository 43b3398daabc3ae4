package sign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/repoctl/repoctl/internal/fsutil"
)

// maxKeyFileSize caps how much of a key file is read: real keys are a few KiB.
const maxKeyFileSize = 1 << 20

// Key is an OpenPGP v4 RSA or EdDSA key. A Key read from a public key file
// can verify but not sign.
type Key struct {
	entity *openpgp.Entity
	pub    *packet.PublicKey  // the key that makes signatures
	priv   *packet.PrivateKey // decrypted; nil for public-only keys
	// orig is the private key as it was given (possibly still
	// passphrase-protected) so that WritePrivateFile keeps the protection.
	orig []byte
	// protected: a passphrase-protected private key read without its
	// passphrase, for listing only.
	protected bool
}

// DefaultKeyPaths returns where repoctl keeps its signing key under root:
// the private key (mode 0600) and its public key.
func DefaultKeyPaths(root string) (priv, pub string) {
	return filepath.Join(root, "keys", "signing.asc"), filepath.Join(root, "keys", "signing.pub.asc")
}

// sigConfig is the only packet.Config used for signing: go-crypto panics on
// a zero hash, and rpm wants SHA-256.
func sigConfig() *packet.Config {
	return &packet.Config{DefaultHash: crypto.SHA256}
}

// GenerateKey makes a new v4 signing key without subkeys. algo is
// "rsa4096" (default when empty), "rsa3072" or "ed25519" (legacy EdDSA,
// which is what rpm 4.18 verifies).
func GenerateKey(algo, name, email string) (*Key, error) {
	if err := validateUserID(name, email); err != nil {
		return nil, err
	}
	cfg := &packet.Config{DefaultHash: crypto.SHA256, V6Keys: false}
	switch algo {
	case "", "rsa4096":
		cfg.Algorithm, cfg.RSABits = packet.PubKeyAlgoRSA, 4096
	case "rsa3072":
		cfg.Algorithm, cfg.RSABits = packet.PubKeyAlgoRSA, 3072
	case "ed25519":
		cfg.Algorithm, cfg.Curve = packet.PubKeyAlgoEdDSA, packet.Curve25519
	default:
		return nil, fmt.Errorf("generating %q key: %w", algo, ErrUnsupportedKey)
	}
	e, err := openpgp.NewEntity(name, "", email, cfg)
	if err != nil {
		return nil, fmt.Errorf("generating %s key: %w", algo, err)
	}
	// The encryption subkey NewEntity adds is useless for signing packages
	// and rpm 4.18 would have to parse an ECDH subkey for ed25519 keys.
	e.Subkeys = nil
	var buf bytes.Buffer
	if err := e.SerializePrivate(&buf, cfg); err != nil {
		return nil, fmt.Errorf("serializing new key: %w", err)
	}
	return newKey(e, buf.Bytes())
}

// validateUserID rejects what go-crypto would silently turn into a nil user
// ID, with a message that says why.
func validateUserID(name, email string) error {
	if strings.TrimSpace(name) == "" {
		return fmt.Errorf("%w: name is empty", ErrBadUserID)
	}
	for _, f := range []struct{ what, v string }{{"name", name}, {"email", email}} {
		if i := strings.IndexAny(f.v, "()<>\x00\n\r"); i >= 0 {
			return fmt.Errorf("%w: %s %q contains %q, which OpenPGP user IDs cannot hold", ErrBadUserID, f.what, f.v, f.v[i])
		}
	}
	if email != "" && (!strings.Contains(email, "@") || strings.ContainsAny(email, " \t")) {
		return fmt.Errorf("%w: email %q is not an address", ErrBadUserID, email)
	}
	return nil
}

// LoadKeyFile reads a key file. A file holding a private key must not be
// accessible by group or others (as ssh insists), else ErrKeyPermissions.
func LoadKeyFile(path string, passphrase []byte) (*Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("loading key %q: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("loading key %q: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("loading key %q: %w: not a regular file", path, ErrBadKey)
	}
	k, err := ReadKey(f, passphrase)
	// Check permissions before reporting anything about the private part
	// (even a wrong passphrase), so a leaked file is flagged first.
	if k != nil && k.orig != nil || errors.Is(err, ErrBadPassphrase) {
		if st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("loading key %q (mode %04o): %w", path, st.Mode().Perm(), ErrKeyPermissions)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("loading key %q: %w", path, err)
	}
	return k, nil
}

// ReadKey reads one armored or binary OpenPGP key (public or private, e.g.
// `gpg --export-secret-keys` output). A protected private key is decrypted
// with passphrase; a wrong or missing passphrase gives ErrBadPassphrase.
func ReadKey(r io.Reader, passphrase []byte) (*Key, error) {
	return readKey(r, passphrase, true)
}

func readKey(r io.Reader, passphrase []byte, decrypt bool) (*Key, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxKeyFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadKey, maxKeyFileSize)
	}
	raw := data
	if bytes.Contains(data, []byte("-----BEGIN PGP")) {
		blk, err := armor.Decode(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%w: bad armor", ErrBadKey)
		}
		if raw, err = io.ReadAll(io.LimitReader(blk.Body, maxKeyFileSize)); err != nil {
			return nil, fmt.Errorf("%w: bad armor", ErrBadKey)
		}
	}
	el, err := openpgp.ReadKeyRing(bytes.NewReader(raw))
	if err != nil {
		// go-crypto's messages describe packets, never secrets.
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	if len(el) != 1 {
		return nil, fmt.Errorf("%w: file holds %d keys, want exactly one", ErrBadKey, len(el))
	}
	e := el[0]
	var orig []byte
	protected := false
	if e.PrivateKey != nil && !decrypt {
		// Listing a protected key: describe its public part only.
		protected = true
		e.PrivateKey = nil
		for i := range e.Subkeys {
			e.Subkeys[i].PrivateKey = nil
		}
	}
	if e.PrivateKey != nil {
		orig = raw
		if err := decryptEntity(e, passphrase); err != nil {
			return nil, err
		}
	}
	k, err := newKey(e, orig)
	if k != nil {
		k.protected = protected
	}
	return k, err
}

func decryptEntity(e *openpgp.Entity, passphrase []byte) error {
	encrypted := e.PrivateKey.Encrypted
	for _, sk := range e.Subkeys {
		if sk.PrivateKey != nil && sk.PrivateKey.Encrypted {
			encrypted = true
		}
	}
	if !encrypted {
		return nil
	}
	if len(passphrase) == 0 {
		return fmt.Errorf("%w: the key is passphrase-protected and no passphrase was given", ErrBadPassphrase)
	}
	if err := e.DecryptPrivateKeys(passphrase); err != nil {
		return ErrBadPassphrase
	}
	return nil
}

func newKey(e *openpgp.Entity, orig []byte) (*Key, error) {
	if e.PrimaryKey.Version != 4 {
		return nil, fmt.Errorf("%w: OpenPGP v%d key", ErrUnsupportedKey, e.PrimaryKey.Version)
	}
	k := &Key{entity: e, orig: orig}
	if e.PrivateKey != nil {
		sk, ok := e.SigningKey(time.Now())
		if !ok || sk.PrivateKey == nil || sk.PrivateKey.Dummy() {
			return nil, fmt.Errorf("%w: no usable signing key", ErrBadKey)
		}
		k.pub, k.priv = sk.PublicKey, sk.PrivateKey
		if rk, ok := k.priv.PrivateKey.(*rsa.PrivateKey); ok {
			// Precomputed CRT values make each RSA signature several times
			// cheaper; parsing may not have done it.
			rk.Precompute()
		}
	} else {
		// Verify-only key: signatures may come from the primary or a subkey;
		// report the primary.
		k.pub = e.PrimaryKey
	}
	if err := supported(k.pub); err != nil {
		return nil, err
	}
	return k, nil
}

func supported(p *packet.PublicKey) error {
	if p.Version != 4 {
		return fmt.Errorf("%w: OpenPGP v%d key", ErrUnsupportedKey, p.Version)
	}
	switch p.PubKeyAlgo {
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSASignOnly:
		// Distribution crypto policies reject signatures from smaller keys.
		if n, err := p.BitLength(); err != nil || n < 2048 {
			return fmt.Errorf("%w: RSA key of %d bits (need at least 2048)", ErrUnsupportedKey, n)
		}
		return nil
	case packet.PubKeyAlgoEdDSA:
		return nil
	}
	return fmt.Errorf("%w: public key algorithm %d", ErrUnsupportedKey, p.PubKeyAlgo)
}

// CanSign reports whether the key holds a usable private part.
func (k *Key) CanSign() bool { return k.priv != nil }

// KeyID is the signing key's 64-bit key ID as 16 lowercase hex digits.
func (k *Key) KeyID() string { return fmt.Sprintf("%016x", k.pub.KeyId) }

// Fingerprint is the primary key's fingerprint in lowercase hex.
func (k *Key) Fingerprint() string { return hex.EncodeToString(k.entity.PrimaryKey.Fingerprint) }

// Created is the primary key's creation time.
func (k *Key) Created() time.Time { return k.entity.PrimaryKey.CreationTime }

// UserID is the primary identity, e.g. "Infra <infra@example.com>".
func (k *Key) UserID() string {
	if id := k.entity.PrimaryIdentity(); id != nil {
		return id.Name
	}
	return ""
}

// Algorithm names the signing key's algorithm: "rsa4096", "rsa3072",
// "ed25519", ...
func (k *Key) Algorithm() string {
	switch k.pub.PubKeyAlgo {
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSASignOnly:
		n, _ := k.pub.BitLength()
		return fmt.Sprintf("rsa%d", n)
	case packet.PubKeyAlgoEdDSA:
		return "ed25519"
	}
	return fmt.Sprintf("algo%d", k.pub.PubKeyAlgo)
}

// isRSA decides RSAHEADER/PGP vs DSAHEADER/GPG tags.
func (k *Key) isRSA() bool {
	return k.pub.PubKeyAlgo == packet.PubKeyAlgoRSA || k.pub.PubKeyAlgo == packet.PubKeyAlgoRSASignOnly
}

// PublicArmored returns the armored public key, the form rpm --import and
// dnf's gpgkey= take.
func (k *Key) PublicArmored() ([]byte, error) {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		return nil, err
	}
	if err := k.entity.Serialize(w); err != nil {
		return nil, fmt.Errorf("serializing public key: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// privateArmored returns the private key as given (still protected if it
// was protected).
func (k *Key) privateArmored() ([]byte, error) {
	if k.orig == nil {
		return nil, ErrNoPrivateKey
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PrivateKeyType, nil)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(k.orig); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// WritePrivateFile writes the armored private key to path with mode 0600,
// atomically, and refuses to replace an existing file (ErrKeyExists): losing
// a signing key is not something to do by accident. A key that was
// passphrase-protected when read stays protected.
func (k *Key) WritePrivateFile(path string) error {
	b, err := k.privateArmored()
	if err != nil {
		return fmt.Errorf("writing key %q: %w", path, err)
	}
	return writeNewFile(path, b, 0o600)
}

// WritePublicFile writes the armored public key to path (mode 0644),
// replacing an existing file.
func (k *Key) WritePublicFile(path string) error {
	b, err := k.PublicArmored()
	if err != nil {
		return fmt.Errorf("writing public key %q: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("writing public key %q: %w", path, err)
	}
	tmp, err := writeTemp(filepath.Dir(path), b, 0o644)
	if err != nil {
		return fmt.Errorf("writing public key %q: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing public key %q: %w", path, err)
	}
	return fsutil.SyncDir(filepath.Dir(path))
}

func writeNewFile(path string, b []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("writing key %q: %w", path, err)
	}
	tmp, err := writeTemp(dir, b, mode)
	if err != nil {
		return fmt.Errorf("writing key %q: %w", path, err)
	}
	defer os.Remove(tmp)
	// link fails if path exists: atomic create-or-refuse.
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("writing key %q: %w", path, ErrKeyExists)
		}
		return fmt.Errorf("writing key %q: %w", path, err)
	}
	return fsutil.SyncDir(dir)
}

func writeTemp(dir string, b []byte, mode os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, ".repoctl-key-*.tmp")
	if err != nil {
		return "", err
	}
	name := f.Name()
	if err := f.Chmod(mode); err == nil {
		if _, err = f.Write(b); err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			return name, nil
		}
		os.Remove(name)
		return "", err
	}
	f.Close()
	os.Remove(name)
	return "", err
}

// signParts makes a binary OpenPGP v4 signature packet (SHA-256) over the
// concatenation of parts.
func (k *Key) signParts(now time.Time, parts ...[]byte) ([]byte, error) {
	sig, h, err := k.newSig(now)
	if err != nil {
		return nil, err
	}
	for _, p := range parts {
		h.Write(p)
	}
	return k.finishSig(sig, h)
}

func (k *Key) newSig(now time.Time) (*packet.Signature, hash.Hash, error) {
	if k.priv == nil {
		return nil, nil, ErrNoPrivateKey
	}
	id := k.pub.KeyId
	sig := &packet.Signature{
		Version:           4,
		SigType:           packet.SigTypeBinary,
		PubKeyAlgo:        k.pub.PubKeyAlgo,
		Hash:              crypto.SHA256,
		CreationTime:      now.Truncate(time.Second),
		IssuerKeyId:       &id,
		IssuerFingerprint: k.pub.Fingerprint,
		IssuerKeyVersion:  4,
	}
	h, err := sig.PrepareSign(sigConfig())
	if err != nil {
		return nil, nil, err
	}
	return sig, h, nil
}

func (k *Key) finishSig(sig *packet.Signature, h hash.Hash) ([]byte, error) {
	if err := sig.Sign(h, k.priv, sigConfig()); err != nil {
		return nil, fmt.Errorf("signing with key %s: %w", k.KeyID(), err)
	}
	var buf bytes.Buffer
	if err := sig.Serialize(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DetachSignArmored returns an armored detached signature of data, as
// repomd.xml.asc. ctx is checked before the (cheap) work starts.
func (k *Key) DetachSignArmored(ctx context.Context, data []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sig, err := k.signParts(time.Now(), data)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.SignatureType, nil)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(sig); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

func readKeyBytes(b []byte) (*Key, error) { return ReadKey(bytes.NewReader(b), nil) }
