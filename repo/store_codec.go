package repo

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/klauspost/compress/zstd"
	kv "github.com/repoctl/repoctl/repo/store"

	"github.com/repoctl/repoctl/metadata"
)

// How a package is stored (schema 3). The record (packages bucket) stays
// JSON, but without its Entry's fragments and without the Entry fields
// the record already says (pkgid = sha256, href = file name, size,
// name, epoch, version, release, arch): only its mtime is kept. The
// fragments, most of a package's bytes, go to the fragments bucket under
// the same key, zstd-compressed, so that the scans that need the records
// only (the index at Open, list, status, key rotation's cursor) read a
// fifth of what they did and leave the fragments' pages untouched.
//
// Schema 2 stored the whole Entry in the record, fragments base64-encoded
// in the JSON: 3.3 KB a package where schema 3 takes about 1.4 KB.

// bucketFragments: repo \x00 NEVRA → encodeFragments of the package's Entry.
var bucketFragments = []byte("fragments")

// fragCodecZstd is the first byte of a fragments value: the three
// uncompressed lengths follow as uvarints, then one zstd frame of the
// three fragments concatenated.
const fragCodecZstd = 1

// maxFragments caps what one package's decoded fragments may take, so
// that a hostile or broken value cannot make a decode allocate more: a
// package listing a million files renders filelists of about 60 MB.
const maxFragments = 256 << 20

// errBadFragments is a fragments value that does not decode.
var errBadFragments = errors.New("malformed fragments value")

// One encoder and one decoder for the process; records are written inside
// a bbolt write transaction, one at a time, so a single encoder with a
// 1 MiB window (a package's fragments rarely reach it) costs the daemon
// 1 MB of heap instead of the 8 MB the defaults hold.
var (
	fragEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(1<<20), zstd.WithLowerEncoderMem(true))
	fragDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(2), zstd.WithDecoderMaxMemory(maxFragments),
		zstd.WithDecoderMaxWindow(maxFragments), zstd.WithDecoderLowmem(true))
)

func encodeFragments(e *metadata.Entry) []byte {
	n := len(e.Primary) + len(e.Filelists) + len(e.Other)
	raw := make([]byte, 0, n)
	raw = append(append(append(raw, e.Primary...), e.Filelists...), e.Other...)
	out := make([]byte, 1, 1+3*binary.MaxVarintLen64+n/3)
	out[0] = fragCodecZstd
	for _, f := range [][]byte{e.Primary, e.Filelists, e.Other} {
		out = binary.AppendUvarint(out, uint64(len(f)))
	}
	return fragEncoder.EncodeAll(raw, out)
}

// decodeFragments fills in e's fragments from v. The three fragments
// share one allocation.
func decodeFragments(v []byte, e *metadata.Entry) error {
	if len(v) < 1 || v[0] != fragCodecZstd {
		return fmt.Errorf("%w: unknown codec", errBadFragments)
	}
	rest := v[1:]
	var lens [3]uint64
	var total uint64
	for i := range lens {
		l, n := binary.Uvarint(rest)
		if n <= 0 {
			return fmt.Errorf("%w: bad length", errBadFragments)
		}
		rest = rest[n:]
		lens[i] = l
		total += l
		if l > maxFragments || total > maxFragments {
			return fmt.Errorf("%w: %d bytes, more than the %d a package may have", errBadFragments, total, maxFragments)
		}
	}
	raw, err := fragDecoder.DecodeAll(rest, make([]byte, 0, total))
	if err != nil {
		return fmt.Errorf("%w: %v", errBadFragments, err)
	}
	if uint64(len(raw)) != total {
		return fmt.Errorf("%w: %d bytes where the header says %d", errBadFragments, len(raw), total)
	}
	a, b := lens[0], lens[0]+lens[1]
	e.Primary, e.Filelists, e.Other = raw[:a:a], raw[a:b:b], raw[b:]
	return nil
}

// recordFields is PackageRecord without its methods, so that
// storedPackage can embed it and shadow Entry.
type recordFields PackageRecord

// storedPackage is a PackageRecord as the packages bucket holds it.
type storedPackage struct {
	*recordFields
	// Entry is there only when it says something the record does not
	// (derivedEntry false); never with fragments.
	Entry *metadata.Entry `json:"entry,omitempty"`
	// EntryMTime is set when the Entry is the one the record implies,
	// with this file mtime.
	EntryMTime *int64 `json:"entry_mtime,omitempty"`
}

// derivedEntry says whether e is what p's own fields imply, but for
// MTime and the fragments.
func derivedEntry(p *PackageRecord, e *metadata.Entry) bool {
	return e.PkgID == p.SHA256 && e.Href == p.FileName && e.Size == p.Size && e.Name == p.Name &&
		e.Epoch == p.Epoch && e.Version == p.Version && e.Release == p.Release && e.Arch == p.Arch
}

// encodePackage returns the packages and fragments values of p (frags
// nil: p has no Entry).
func encodePackage(p *PackageRecord) (rec, frags []byte, err error) {
	sp := storedPackage{recordFields: (*recordFields)(p)}
	if e := p.Entry; e != nil {
		if derivedEntry(p, e) {
			mt := e.MTime
			sp.EntryMTime = &mt
		} else {
			sp.Entry = lightEntry(e)
		}
		if e.Primary != nil || e.Filelists != nil || e.Other != nil {
			frags = encodeFragments(e)
		}
	}
	rec, err = json.Marshal(&sp)
	return rec, frags, err
}

// decodeRecord decodes a packages value (schema 3) without fragments:
// the Entry, if any, is light.
func decodeRecord(k, v []byte) (*PackageRecord, error) {
	var p PackageRecord
	sp := storedPackage{recordFields: (*recordFields)(&p)}
	if err := json.Unmarshal(v, &sp); err != nil {
		return nil, fmt.Errorf("decoding package %q: %w", k, err)
	}
	switch {
	case sp.Entry != nil:
		p.Entry = sp.Entry
		p.Entry.Primary, p.Entry.Filelists, p.Entry.Other = nil, nil, nil
	case sp.EntryMTime != nil:
		p.Entry = &metadata.Entry{PkgID: p.SHA256, Name: p.Name, Arch: p.Arch, Epoch: p.Epoch, Version: p.Version,
			Release: p.Release, Href: p.FileName, Size: p.Size, MTime: *sp.EntryMTime}
	default:
		p.Entry = nil
	}
	return &p, nil
}

// decodePackage is decodeRecord with the fragments, read from tx.
func decodePackage(tx kv.Tx, k, v []byte) (*PackageRecord, error) {
	p, err := decodeRecord(k, v)
	if err != nil || p.Entry == nil {
		return p, err
	}
	fv := tx.Bucket(bucketFragments).Get(k)
	if fv == nil {
		return nil, fmt.Errorf("decoding package %q: %w: none stored", k, errBadFragments)
	}
	if err := decodeFragments(fv, p.Entry); err != nil {
		return nil, fmt.Errorf("decoding package %q: %w", k, err)
	}
	return p, nil
}

// rawBucket is what putPackageRaw needs of a bucket: a kv.Bucket, or a
// *bolt.Bucket of the migration's copy.
type rawBucket interface {
	Get(key []byte) []byte
	Put(key, value []byte) error
	Delete(key []byte) error
}

// putPackageRaw stores p under k in the packages and fragments buckets
// of tx.
// A record read light (eachPackageLight) keeps the fragments stored.
func putPackageRaw(pk, fb rawBucket, k []byte, p *PackageRecord) error {
	light := p.Entry != nil && p.Entry.Primary == nil && p.Entry.Filelists == nil && p.Entry.Other == nil
	if light && fb.Get(k) == nil {
		return fmt.Errorf("encoding package %q: %w: its Entry has none and none are stored", k, errBadFragments)
	}
	rec, frags, err := encodePackage(p)
	if err != nil {
		return fmt.Errorf("encoding package %q: %w", k, err)
	}
	if err := pk.Put(k, rec); err != nil {
		return err
	}
	switch {
	case light:
		return nil
	case frags == nil:
		return fb.Delete(k)
	}
	return fb.Put(k, frags)
}
