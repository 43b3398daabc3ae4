package sign

import "errors"

// Sentinel errors, compared with errors.Is. Messages never contain key
// material or passphrases.
var (
	ErrNotRPM         = errors.New("sign: not an RPM package")
	ErrCorrupt        = errors.New("sign: package is corrupt")
	ErrTooLarge       = errors.New("sign: header exceeds size limits")
	ErrKeyPermissions = errors.New("sign: private key file is accessible by group or others")
	ErrUnsupportedKey = errors.New("sign: key type not supported by rpm 4.18 (need OpenPGP v4 RSA or EdDSA)")
	ErrBadPassphrase  = errors.New("sign: wrong or missing passphrase for private key")
	ErrNoPrivateKey   = errors.New("sign: key has no private part")
	ErrKeyExists      = errors.New("sign: key file already exists")
	ErrBadKey         = errors.New("sign: not a usable OpenPGP key")
	ErrBadUserID      = errors.New("sign: invalid key user ID")
	ErrJournal        = errors.New("sign: crash journal could not be applied")
	// ErrDigestTag and ErrSignatureTag: a digest tag (header or payload,
	// rpm 4 or rpm 6) or rpm 6's signature tag 278 is of the wrong type or
	// count, or its value is not hex / base64 / an OpenPGP signature. Such
	// errors match ErrCorrupt as well.
	ErrDigestTag    = errors.New("sign: malformed digest tag")
	ErrSignatureTag = errors.New("sign: malformed signature tag")
)
