package repo

import (
	"reflect"
	"testing"

	"github.com/repoctl/repoctl/metadata"
)

// TestPackageCodecEntryFields: a record's Entry is stored as "derived"
// (only its mtime) only when every field the record implies is equal;
// an Entry that differs from the record in any one of them comes back as
// it was, not as the record says.
func TestPackageCodecEntryFields(t *testing.T) {
	base := func() *PackageRecord {
		return &PackageRecord{Name: "a", Epoch: "0", Version: "1", Release: "1.el9", Arch: "x86_64",
			FileName: "a-1-1.el9.x86_64.rpm", SHA256: "aa", Size: 100,
			Entry: &metadata.Entry{PkgID: "aa", Name: "a", Arch: "x86_64", Epoch: "0", Version: "1", Release: "1.el9",
				Href: "a-1-1.el9.x86_64.rpm", Size: 100, MTime: 7, Primary: []byte("<package/>\n")}}
	}
	for name, change := range map[string]func(e *metadata.Entry){
		"derived": func(e *metadata.Entry) {},
		"pkgid":   func(e *metadata.Entry) { e.PkgID = "bb" },
		"href":    func(e *metadata.Entry) { e.Href = "sub/" + e.Href },
		"size":    func(e *metadata.Entry) { e.Size = 99 },
		"name":    func(e *metadata.Entry) { e.Name = "b" },
		"epoch":   func(e *metadata.Entry) { e.Epoch = "1" },
		"version": func(e *metadata.Entry) { e.Version = "2" },
		"release": func(e *metadata.Entry) { e.Release = "2.el9" },
		"arch":    func(e *metadata.Entry) { e.Arch = "noarch" },
	} {
		p := base()
		change(p.Entry)
		rec, _, err := encodePackage(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeRecord([]byte("k"), rec)
		if err != nil {
			t.Fatal(err)
		}
		if want := lightEntry(p.Entry); !reflect.DeepEqual(got.Entry, want) {
			t.Errorf("%s: decoded Entry %+v, want %+v", name, got.Entry, want)
		}
	}
}
