// Package sign holds repoctl's OpenPGP signing keys and writes RPM
// signatures that rpm 4.16 to 4.19 and rpm 6 accept.
//
// It is for: generating, importing and guarding v4 RSA and EdDSA keys;
// adding header-only signatures (RSAHEADER 268 / DSAHEADER 267, SHA-256,
// and rpm 6's tag 278 on v6 packages) to RPM files in place with a crash
// journal, or by atomic rewrite when the reserved space is too small; checking a package's own digests before it is
// signed; verifying packages like `rpmkeys -K`; and detached armored
// signatures for repomd.xml.
//
// It is NOT for: reading package metadata for repodata (package metadata),
// deciding which files to sign or where they live (package repo), or key
// distribution. It never prints; progress goes through the Progress
// interface.
//
// Hosts with rpm 4.16–4.19 and with rpm 6 must both verify what this
// package signs, and it must sign what rpm 6 builds (v6 packages by
// default, %_rpmformat 6). Signing replaces every signature in the package
// with ours (as rpmsign --resign does), and what it writes depends on the
// package format:
//
//   - Every package gets the v4 header signature in RSAHEADER (268) or
//     DSAHEADER (267). rpm 4.x reads only these; rpm 6 reads them when
//     tag 278 is absent.
//   - A v6 package (RPMFORMAT 5114 ≥ 6 in the main header, or a signature
//     header with rpm 6's RESERVED 999 and SHA3-256 279) also gets the same
//     signature packet, base64-encoded, as the only element of
//     RPMSIGTAG_OPENPGP (278), exactly as rpm 6's rpmsign signs such a
//     package. rpm 6 reads 278 and then ignores 267/268; rpm 4 ignores 278.
//     Its reserved space stays in RESERVED (999), and it never gets a
//     header+payload signature (1002/1005), not even WithLegacy: rpm 6
//     skips tags from 1000 on in v6 packages.
//   - A v4 package gets no 278 (rpm 6's rpmsign adds none either), and any
//     278 it had is dropped with the other foreign signatures: rpm 6 would
//     otherwise check those and never look at ours.
//
// Foreign signatures are never kept next to ours, so that no host meets
// one from a key it does not have (rpm reports NOKEY and refuses). A
// malformed 278 (not a string array, not base64 of one signature packet)
// is refused with ErrSignatureTag, as rpm 6's rpmsign refuses it.
//
// Digests are checked as rpm's verifier (lib/rpmvs.cc) checks them: the
// header digests SHA-256 (273), SHA-1 (269) and rpm 6's SHA3-256 (279);
// the payload digests PAYLOADSHA256 (5092) and its ALT (5097) that rpm
// ≥ 4.14 reads, and rpm 6's SHA-512 (5121/5122) and SHA3-256 (5123/5124).
// 5092 is SHA-256 whether or not PAYLOADDIGESTALGO (5093) is present and
// whatever it says: no rpm since 4.14 reads 5093, and rpm 6 stopped
// writing it. The payload is hashed as stored: an ALT digest (over the
// uncompressed payload) that does not match is ignored when the other
// digest of its pair matches, as rpm ignores it. A digest tag of the wrong
// type, with more than one value, or whose value is not hex of the
// algorithm's length is an ErrDigestTag (rpm reports it BAD). Verify
// reports which rpm reads each check (Check.Reader) and gives a verdict
// for rpm 4 and rpm 6 (Report.RPM4OK, RPM6OK).
//
// File metadata: a rewrite (temp file, fsync, rename) keeps mode, owner
// and mtime, and in practice always changes the size (it adds reserved space for the
// next signature). An in-place patch keeps the size, so it lets the mtime
// move on like rpmsign does: size+mtime is how createrepo_c --update decides
// whether a package must be re-read.
//
// Digest policy: before signing, every header and payload digest above
// and the header+payload size (1000/270) are checked. The legacy
// header+payload MD5 (1004) is only checked when the package has no
// payload digest: it covers the same bytes as the stronger SHA-256 payload
// digest plus the header digests, and hashing a large payload twice would
// halve throughput.
package sign
