package metadata

import (
	"bytes"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// FuzzReadPackage feeds arbitrary bytes to the whole reader: rpmhdr's
// checks (fuzzed on their own by internal/rpmhdr's FuzzParse), then
// the in-place value decoding and the extraction on top. It must never panic,
// must fail only with one of the package's sentinels, and whatever it
// accepts must render.
func FuzzReadPackage(f *testing.F) {
	ms, err := filepath.Glob(filepath.Join(sharedCorpus(f), "*.rpm"))
	if err != nil {
		f.Fatal(err)
	}
	for _, m := range ms {
		b, err := os.ReadFile(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for i := range 3 {
		b, err := testrpm.Build(testrpm.Small(i))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// Hostile layouts from the malformed table, as starting points.
	good := samplePackage(f)
	l := parseLayout(f, good)
	name := findEntry(f, good, l, tagName)
	for _, m := range []struct{ at, v int }{
		{l.hdrIntro + 8, 1 << 20},     // huge index count
		{l.hdrIntro + 12, 0x7fffffff}, // huge store
		{name + 8, l.hdrSize + 100},   // offset past store
		{name + 4, typeStringArray},   // type change
		{name + 12, 0x7fffffff},       // huge count
		{l.sigIntro + 8, 0xffffffff},  // huge signature count
	} {
		b := append([]byte(nil), good...)
		binary.BigEndian.PutUint32(b[m.at:], uint32(m.v))
		f.Add(b)
	}
	f.Add(good[:l.hdrData+l.hdrSize/2])
	f.Add([]byte{})
	f.Add([]byte{0xed, 0xab, 0xee, 0xdb})
	f.Fuzz(func(t *testing.T, data []byte) {
		// A small cap keeps each run's allocations bounded. The header
		// digests are refreshed so that mutations reach value extraction.
		cfg, err := newReadConfig([]ReadOption{WithMaxHeaderSize(1 << 20), WithMaxEntries(1 << 12)})
		if err != nil {
			t.Fatal(err)
		}
		cfg.skipDigest = true
		p, err := readPackage(bytes.NewReader(data), cfg)
		if err != nil {
			if !errors.Is(err, ErrNotRPM) && !errors.Is(err, ErrTruncated) &&
				!errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error without sentinel: %v", err)
			}
			if strings.Contains(err.Error(), "panicked") {
				t.Fatalf("recovered panic: %v", err)
			}
			return
		}
		p.PkgID = "0000"
		for _, o := range []RenderOptions{{}, {ChangelogLimit: -1, BaseURL: "/x"}} {
			e, err := p.Entry("p.rpm", o)
			if err != nil {
				if !errors.Is(err, ErrControlChars) {
					t.Fatalf("Entry: %v", err)
				}
				continue
			}
			if !bytes.HasPrefix(e.Primary, []byte("<package type=\"rpm\">\n")) || !bytes.HasSuffix(e.Other, []byte("</package>\n")) {
				t.Fatalf("odd fragments:\n%s\n%s", e.Primary, e.Other)
			}
			// Whatever the header held, each fragment is well-formed XML
			// that a client's parser reads to the end.
			for name, frag := range map[string][]byte{"primary": e.Primary, "filelists": e.Filelists, "other": e.Other} {
				if err := wellFormed(frag); err != nil {
					t.Fatalf("%s fragment is not well-formed XML: %v\n%s", name, err, frag)
				}
			}
		}
	})
}

// wellFormed parses an entry fragment inside a root that declares the
// namespaces repodata uses, to the end.
func wellFormed(frag []byte) error {
	doc := append([]byte(`<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm">`), frag...)
	doc = append(doc, "</metadata>"...)
	d := xml.NewDecoder(bytes.NewReader(doc))
	for {
		if _, err := d.Token(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}
