// Package rpmhdr is repoctl's one structural check of RPM files: it reads
// the lead, the signature header and the main header, and validates every
// size, count and offset they declare before anything decodes a value.
//
// It exists because go-rpmutils v0.4.0, which repoctl uses to decode header
// values, trusts the counts and offsets it reads and panics on malformed
// headers (upstream issue #42). Callers run Read or Parse first and hand
// go-rpmutils only bytes that passed (Headers.Bytes). It also tells the
// signer where each part of the file starts, so that a signature header can
// be patched in place.
//
// What it checks: the lead (96 bytes, magic, version, signature type), each
// header's magic and its entry count and data size against rpm's limits
// (signature header at most 32 entries and 64 MiB, main header 65535
// entries and 256 MiB, lower caps by option), every index entry's type,
// offset, count and alignment against the data store, NUL terminators of
// string values inside the store, the region tag and its trailer, and the
// 8-byte padding after the signature header. A hostile file costs at most
// its own size in memory (plus one read chunk), never what it declares.
//
// What it is not: a value decoder (metadata decodes with go-rpmutils; the
// only values read here are the first scalar of an entry, for digests and
// sizes the signer checks), a digest or signature verifier, a payload
// reader, or a header writer (the signer builds signature headers).
package rpmhdr
