// Package metadata turns RPM headers into repodata and writes repodata
// directories.
//
// It is for: reading the header of a package file without trusting it
// (ReadFile, ReadPackage), rendering the per-package primary, filelists and
// other XML fragments byte for byte as createrepo_c 0.17.3 does
// ((*Package).Entry, PrimaryHeader and friends), writing and reading
// advisories as createrepo_c's updateinfo.xml (MarshalUpdateInfo,
// ParseUpdateInfo), and publishing repodata.
//
// It is not for: installing, verifying signatures or unpacking payloads (the
// payload is never decompressed), nor for deciding which packages belong in
// a repository; callers pass the files or Entries they want published.
//
// The header reader first has internal/rpmhdr validate the lead, both
// header intros and every index entry against the data store (types,
// offsets, counts, alignment, string terminators, region tag), with every
// size read from a file capped (see WithMaxHeaderSize) so a hostile file
// cannot make it allocate gigabytes. Only then are the values read, in
// place from those validated entries, with the semantics of go-rpmutils
// v0.4.0 (which parity with createrepo_c was first established with, and
// which TestHdrMatchesGoRPMUtils still compares against). A recover() maps
// any panic that still gets through to ErrMalformed.
//
// Publish (through PublishRoot) and CreateRepo work inside one repository
// directory opened as an os.Root: every write, rename, link, removal, the
// lock and the renameat2 exchange use names relative to it, so a symbolic
// link planted at repodata, .repodata.new, the lock, the cache or a file
// inside them makes the operation fail instead of touching anything
// outside the directory. This is a second wall behind the callers' own
// path checks, since the process holding the signing key does the writing.
package metadata
