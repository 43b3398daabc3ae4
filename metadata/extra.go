package metadata

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sync"
)

// ExtraRecord is a repomd.xml record that is not built from packages:
// comps groups ("group", "group_gz") or advisories ("updateinfo"). Publish
// writes it after primary, filelists and other, in the order given, as
// createrepo_c -g and modifyrepo_c do.
type ExtraRecord struct {
	// Type is the repomd data type, e.g. "group_gz" or "updateinfo".
	Type string
	// Name is the file's base name without a compression suffix, e.g.
	// "comps.xml"; the file is published as repodata/<checksum>-<Name>[.ext].
	Name string
	// Data is the uncompressed content.
	Data []byte
	// Compress writes Data with the publish compression (WithCompression,
	// or WithExtraCompression for extras alone) and records open-checksum
	// and open-size; false writes it as is, with neither (createrepo_c's
	// "group" record).
	Compress bool
	// Compression ("gz" or "zstd"), if set, compresses this record
	// instead of the publish or extras compression: a record whose type
	// names its compression ("group_gz") must keep it whatever the rest
	// of the repository uses. Default "": the extras compression.
	Compression string
}

// maxExtraSize caps one extra record's content: comps and updateinfo
// files of real distributions are a few MiB.
const maxExtraSize = 256 << 20

// Compiled on first use, as compsIDRE.
var (
	extraTypeRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`) })
	extraNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`) })
)

// WithExtraRecords adds records for comps groups or updateinfo to the
// repomd.xml that Publish writes. Default: none. Types must be distinct and
// not one of primary, filelists or other; names are plain file names.
func WithExtraRecords(recs ...ExtraRecord) PublishOption {
	return func(c *publishConfig) error {
		seen := map[string]bool{"primary": true, "filelists": true, "other": true}
		for _, r := range c.extras {
			seen[r.Type] = true
		}
		for _, r := range recs {
			if !extraTypeRE().MatchString(r.Type) || seen[r.Type] {
				return fmt.Errorf("%w: repomd record type %q", ErrBadOption, r.Type)
			}
			seen[r.Type] = true
			if !extraNameRE().MatchString(r.Name) || r.Name == "repomd.xml" {
				return fmt.Errorf("%w: extra record file name %q", ErrBadOption, r.Name)
			}
			if len(r.Data) > maxExtraSize {
				return fmt.Errorf("%w: %s record of %d bytes is over the %d byte limit", ErrBadOption, r.Type, len(r.Data), maxExtraSize)
			}
			if r.Compression != "" {
				if _, err := newCodec(r.Compression); err != nil {
					return fmt.Errorf("%s record: %w", r.Type, err)
				}
			}
		}
		c.extras = append(c.extras, recs...)
		return nil
	}
}

// WithExtraCompression compresses the extra records with name ("gz" or
// "zstd") instead of the publish compression. Default: the publish
// compression. modifyrepo_c compresses with gz unless told otherwise.
func WithExtraCompression(name string) PublishOption {
	return func(c *publishConfig) error {
		cd, err := newCodec(name)
		if err != nil {
			return err
		}
		c.extraCodec = cd
		return nil
	}
}

// buildExtras renders the extra records as documents with their file names.
func buildExtras(recs []ExtraRecord, ecd codec) ([]builtDoc, []string, error) {
	docs := make([]builtDoc, 0, len(recs))
	names := make([]string, 0, len(recs))
	for _, r := range recs {
		open := sha256.Sum256(r.Data)
		d := builtDoc{typ: r.Type, openSize: -1}
		data, name := r.Data, r.Name
		cd := ecd
		if r.Compression != "" {
			var err error
			if cd, err = newCodec(r.Compression); err != nil {
				return nil, nil, err
			}
		}
		if r.Compress {
			data = cd.encode(nil, r.Data)
			d.openSize = int64(len(r.Data))
			d.openChecksum = hex.EncodeToString(open[:])
			name += cd.ext()
		}
		sum := sha256.Sum256(data)
		d.checksum = hex.EncodeToString(sum[:])
		d.size = int64(len(data))
		d.frames = [][]byte{data}
		docs = append(docs, d)
		names = append(names, d.checksum+"-"+name)
	}
	return docs, names, nil
}

// WithExtraRecordsFunc is WithExtraRecords with the records computed when
// the options are applied, so that a caller whose records come from a
// store can report the store's error through Publish.
func WithExtraRecordsFunc(f func() ([]ExtraRecord, error)) PublishOption {
	return func(c *publishConfig) error {
		recs, err := f()
		if err != nil {
			return err
		}
		return WithExtraRecords(recs...)(c)
	}
}
