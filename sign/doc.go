// Package sign holds repoctl's OpenPGP signing keys and writes RPM
// signatures that rpm 4.18 and later accept.
//
// It is for: generating, importing and guarding v4 RSA and EdDSA keys;
// adding header-only signatures (RSAHEADER 268 / DSAHEADER 267, SHA-256) to
// RPM files in place with a crash journal, or by atomic rewrite when the
// reserved space is too small; checking a package's own digests before it is
// signed; verifying packages like `rpmkeys -K`; and detached armored
// signatures for repomd.xml.
//
// It is NOT for: reading package metadata for repodata (package metadata),
// deciding which files to sign or where they live (package repo), or key
// distribution. It never prints; progress goes through the Progress
// interface.
//
// Signatures rpm 4.18 cannot read are treated as foreign signatures: the v6
// multi-signature tag RPMSIGTAG_OPENPGP (278) is dropped together with any
// old RSA/DSA/PGP/GPG signature when a package is signed, because signing
// means "replace the package's signature with ours". rpm 6 falls back to the
// v4 header signature when 278 is absent.
//
// File metadata: a rewrite (temp file, fsync, rename) keeps mode, owner
// and mtime, and in practice always changes the size (it adds reserved space for the
// next signature). An in-place patch keeps the size, so it lets the mtime
// move on like rpmsign does: size+mtime is how createrepo_c --update decides
// whether a package must be re-read.
//
// Digest policy: before signing, the header SHA-256 (273) and SHA-1 (269)
// digests, the payload digest (5092, main header) and the header+payload
// size (1000/270) are checked. The legacy header+payload MD5 (1004) is only
// checked when the package has no payload digest: it covers the same bytes
// as the stronger SHA-256 payload digest plus the header digests, and
// hashing a large payload twice would halve throughput.
package sign
