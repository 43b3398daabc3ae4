package metadata

// Entry is one package as repodata sees it: identity, where it lives, and
// its three rendered XML fragments. It is what repo's store keeps per
// package so that publishing never re-reads an RPM header, and what
// `createrepo --update` recovers from existing repodata.
type Entry struct {
	PkgID   string `json:"pkgid"` // sha256 hex of the whole package file
	Name    string `json:"name"`
	Arch    string `json:"arch"`
	Epoch   string `json:"epoch"` // "0" when the header has none
	Version string `json:"version"`
	Release string `json:"release"`

	Href  string `json:"href"`  // location href, relative to the repository directory
	Size  int64  `json:"size"`  // file size; with MTime and Href decides --update reuse
	MTime int64  `json:"mtime"` // file mtime, unix seconds

	// Uncompressed XML, each exactly one "<package ...>...</package>\n"
	// block as createrepo_c writes it (starting at column 0, inner
	// indentation included), so that documents are plain concatenations
	// between a header and a footer.
	Primary   []byte `json:"primary"`
	Filelists []byte `json:"filelists"`
	Other     []byte `json:"other"`
}
