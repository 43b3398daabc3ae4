package metadata

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// RepomdRecord is one <data> element of repomd.xml.
type RepomdRecord struct {
	Type         string `json:"type"`          // "primary", "filelists", "other", ...
	Checksum     string `json:"checksum"`      // sha256 hex of the file as stored
	OpenChecksum string `json:"open_checksum"` // sha256 hex of its uncompressed content
	Href         string `json:"href"`          // location href, "repodata/<checksum>-primary.xml.zst"
	Timestamp    int64  `json:"timestamp"`     // file mtime, unix seconds
	Size         int64  `json:"size"`
	OpenSize     int64  `json:"open_size"`
}

// Repomd is what Publish writes to repodata/repomd.xml.
type Repomd struct {
	Revision string
	Records  []RepomdRecord
}

// maxRepomdSize caps how much of a repomd.xml we read; real ones are a few KiB.
const maxRepomdSize = 16 << 20

// Marshal renders repomd.xml byte for byte as createrepo_c 0.17.3 does
// (libxml2's pretty printer: two-space indent, self-closed <location/>,
// trailing newline) for records without sqlite or zchunk extras.
func (m *Repomd) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
	b.WriteString("<repomd xmlns=\"http://linux.duke.edu/metadata/repo\" xmlns:rpm=\"http://linux.duke.edu/metadata/rpm\">\n")
	if m.Revision == "" {
		b.WriteString("  <revision/>\n")
	} else {
		fmt.Fprintf(&b, "  <revision>%s</revision>\n", repomdEscapeText(m.Revision))
	}
	for _, r := range m.Records {
		fmt.Fprintf(&b, "  <data type=\"%s\">\n", repomdEscapeAttr(r.Type))
		fmt.Fprintf(&b, "    <checksum type=\"sha256\">%s</checksum>\n", repomdEscapeText(r.Checksum))
		if r.OpenChecksum != "" {
			fmt.Fprintf(&b, "    <open-checksum type=\"sha256\">%s</open-checksum>\n", repomdEscapeText(r.OpenChecksum))
		}
		fmt.Fprintf(&b, "    <location href=\"%s\"/>\n", repomdEscapeAttr(r.Href))
		fmt.Fprintf(&b, "    <timestamp>%d</timestamp>\n", r.Timestamp)
		fmt.Fprintf(&b, "    <size>%d</size>\n", r.Size)
		if r.OpenSize >= 0 {
			fmt.Fprintf(&b, "    <open-size>%d</open-size>\n", r.OpenSize)
		}
		b.WriteString("  </data>\n")
	}
	b.WriteString("</repomd>\n")
	return b.Bytes()
}

// Record returns the record of the given type, or nil.
func (m *Repomd) Record(typ string) *RepomdRecord {
	for i := range m.Records {
		if m.Records[i].Type == typ {
			return &m.Records[i]
		}
	}
	return nil
}

// repomdEscapeText escapes character data the way libxml2's serializer does.
func repomdEscapeText(s string) string {
	if !strings.ContainsAny(s, "&<>\r") {
		return s
	}
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "\r", "&#13;")
	return r.Replace(s)
}

// repomdEscapeAttr escapes an attribute value the way libxml2's serializer does.
func repomdEscapeAttr(s string) string {
	if !strings.ContainsAny(s, "&<>\"\r\n\t") {
		return s
	}
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "\"", "&quot;",
		"\r", "&#13;", "\n", "&#10;", "\t", "&#9;")
	return r.Replace(s)
}

// xmlRepomd mirrors repomd.xml for decoding; unknown elements are ignored.
type xmlRepomd struct {
	XMLName  xml.Name `xml:"repomd"`
	Revision string   `xml:"revision"`
	Data     []struct {
		Type     string `xml:"type,attr"`
		Checksum struct {
			Type  string `xml:"type,attr"`
			Value string `xml:",chardata"`
		} `xml:"checksum"`
		OpenChecksum struct {
			Type  string `xml:"type,attr"`
			Value string `xml:",chardata"`
		} `xml:"open-checksum"`
		Location struct {
			Href string `xml:"href,attr"`
			Base string `xml:"base,attr"`
		} `xml:"location"`
		Timestamp string `xml:"timestamp"`
		Size      string `xml:"size"`
		OpenSize  string `xml:"open-size"`
	} `xml:"data"`
}

// existingRepomd is a parsed repomd.xml with the checksum types kept, so
// that records with sha1 or other sums are recognized as not comparable.
type existingRepomd struct {
	Repomd
	raw       []byte
	sumTypes  map[string]string // type -> checksum type
	openTypes map[string]string
}

// ParseRepomd decodes a repomd.xml as written by createrepo_c or by us.
func ParseRepomd(raw []byte) (*Repomd, error) {
	e, err := parseRepomd(raw)
	if err != nil {
		return nil, err
	}
	return &e.Repomd, nil
}

func parseRepomd(raw []byte) (*existingRepomd, error) {
	var x xmlRepomd
	if err := xml.Unmarshal(raw, &x); err != nil {
		return nil, fmt.Errorf("%w: repomd.xml: %v", ErrBadRepodata, err)
	}
	e := &existingRepomd{raw: raw, sumTypes: map[string]string{}, openTypes: map[string]string{}}
	e.Revision = strings.TrimSpace(x.Revision)
	for _, d := range x.Data {
		r := RepomdRecord{
			Type:         d.Type,
			Checksum:     strings.TrimSpace(d.Checksum.Value),
			OpenChecksum: strings.TrimSpace(d.OpenChecksum.Value),
			Href:         d.Location.Href,
			OpenSize:     -1,
		}
		var err error
		if r.Timestamp, err = parseIntField(d.Timestamp, 0); err != nil {
			return nil, fmt.Errorf("%w: repomd.xml %s timestamp: %v", ErrBadRepodata, d.Type, err)
		}
		if r.Size, err = parseIntField(d.Size, -1); err != nil {
			return nil, fmt.Errorf("%w: repomd.xml %s size: %v", ErrBadRepodata, d.Type, err)
		}
		if r.OpenSize, err = parseIntField(d.OpenSize, -1); err != nil {
			return nil, fmt.Errorf("%w: repomd.xml %s open-size: %v", ErrBadRepodata, d.Type, err)
		}
		if d.Location.Base != "" {
			// A record living elsewhere is not ours to compare or reuse.
			r.Href = ""
		}
		e.sumTypes[d.Type] = d.Checksum.Type
		e.openTypes[d.Type] = d.OpenChecksum.Type
		e.Records = append(e.Records, r)
	}
	return e, nil
}

func parseIntField(s string, def int64) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return def, nil
	}
	return strconv.ParseInt(s, 10, 64)
}

// readRepomdFile reads and parses repoDir/repodata/repomd.xml. It returns
// (nil, nil) when there is none.
func readRepomdFile(path string) (*existingRepomd, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readRepomdFrom(f, path)
}

// readRepomdRoot is readRepomdFile for name inside root.
func readRepomdRoot(root *os.Root, name string) (*existingRepomd, error) {
	f, err := root.Open(name)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readRepomdFrom(f, rootPath(root, name))
}

func readRepomdFrom(f *os.File, path string) (*existingRepomd, error) {
	raw, err := io.ReadAll(io.LimitReader(f, maxRepomdSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %q: %w", path, err)
	}
	if len(raw) > maxRepomdSize {
		return nil, fmt.Errorf("%w: %q is larger than %d bytes", ErrBadRepodata, path, maxRepomdSize)
	}
	return parseRepomd(raw)
}
