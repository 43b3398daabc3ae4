// Package metadata turns RPM headers into repodata and writes repodata
// directories.
//
// It is for: reading the header of a package file without trusting it
// (ReadFile, ReadPackage), rendering the per-package primary, filelists and
// other XML fragments byte for byte as createrepo_c 0.17.3 does
// ((*Package).Entry, PrimaryHeader and friends), and publishing repodata.
//
// It is not for: installing, verifying signatures or unpacking payloads (the
// payload is never decompressed), nor for deciding which packages belong in
// a repository; callers pass the files or Entries they want published.
//
// The header reader validates the lead, both header intros and every index
// entry against the data store before go-rpmutils sees a byte, because
// go-rpmutils trusts counts and offsets and panics on malformed headers.
// Sizes read from a file are capped (see WithMaxHeaderSize) so a hostile
// file cannot make the reader allocate gigabytes.
package metadata
