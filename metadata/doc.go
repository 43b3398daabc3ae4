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
// entry against the data store (types, offsets, counts, alignment, string
// terminators) before any value is read, and caps every size read from a
// file (see WithMaxHeaderSize) so a hostile file cannot make it allocate
// gigabytes. It then decodes values from that validated index itself:
// go-rpmutils v0.4.0 trusts counts, panics on malformed headers (upstream
// #42) and decodes through reflection and a map, which made it most of
// the cost of a repository run. go-rpmutils stays the reference: tests
// check that both read identical values from every fixture.
package metadata
