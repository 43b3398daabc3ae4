package metadata

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	// go-rpmutils checks the header digest with crypto.SHA1/SHA256.New,
	// which panics unless the implementations are linked in.
	_ "crypto/sha1"
	_ "crypto/sha256"

	rpmutils "github.com/sassoftware/go-rpmutils"

	"github.com/repoctl/repoctl/internal/rpmhdr"
)

// hdrErrors shows rpmhdr's verdicts as this package's sentinels; the
// errors still match rpmhdr's sentinels too.
var hdrErrors = map[error]error{
	rpmhdr.ErrNotRPM:    ErrNotRPM,
	rpmhdr.ErrTruncated: ErrTruncated,
	rpmhdr.ErrMalformed: ErrMalformed,
	rpmhdr.ErrTooLarge:  ErrTooLarge,
}

func (c *readConfig) hdrOptions() []rpmhdr.Option {
	return []rpmhdr.Option{rpmhdr.WithMaxData(c.maxStore), rpmhdr.WithMaxEntries(c.maxEntries)}
}

// decodeHeaders has go-rpmutils decode the validated headers and builds
// the Package from its values. go-rpmutils also checks the main header's
// SHA256 (else SHA1) digest from the signature header.
func decodeHeaders(raw *rpmhdr.Headers, cfg *readConfig) (p *Package, err error) {
	// Last line of defence: every offset and count go-rpmutils reads has
	// been validated, but a panic in it or in our extraction must never
	// escape to the caller.
	defer func() {
		if v := recover(); v != nil {
			p, err = nil, fmt.Errorf("%w: header reader panicked: %v", ErrMalformed, v)
		}
	}()
	b := raw.Bytes()
	if cfg.skipDigest {
		b = withFreshDigests(raw)
	}
	rh, err := rpmutils.ReadHeader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return packageFromHeader(hdr{rh}, raw)
}

// withFreshDigests returns a copy of the headers whose header digests
// match the main header, so that tests and the fuzz target can reach
// value extraction with mutated headers (cfg.skipDigest; no option sets
// it).
func withFreshDigests(raw *rpmhdr.Headers) []byte {
	b := bytes.Clone(raw.Bytes())
	main := b[raw.Main.Offset:]
	for _, d := range []struct {
		tag uint32
		sum func() []byte
	}{
		{sigTagSHA256, func() []byte { s := sha256.Sum256(main); return s[:] }},
		{sigTagSHA1, func() []byte { s := sha1.Sum(main); return s[:] }},
	} {
		e := raw.Sig.Get(d.tag)
		if e == nil || e.Type != rpmhdr.TypeString {
			continue
		}
		sum := hex.EncodeToString(d.sum())
		if len(e.Data) == len(sum)+1 {
			at := int(raw.Sig.Offset) + rpmhdr.IntroSize + len(raw.Sig.Entries)*rpmhdr.EntrySize + int(e.Offset)
			copy(b[at:], sum)
		}
	}
	return b
}

// Signature header tags.
const (
	sigTagSHA1 = 269 // hex SHA1 of the main header
	// go-rpmutils reads tags below 1000 from the signature header, and
	// signature tags from 1000 on as 16384+tag.
	sigTagSHA256      = 273
	sigTagLongArchive = 271
	sigTagPayloadSize = 16384 + 1007
)

// hdr wraps go-rpmutils' getters with rpm's headerGetString and
// headerGetNumber semantics, which createrepo_c relies on: a missing tag
// or one of another type reads as absent.
type hdr struct{ h *rpmutils.RpmHeader }

func (h hdr) has(tag int) bool { return h.h.HasTag(tag) }

func (h hdr) strs(tag int) ([]string, bool) {
	// HasTag first: GetStrings allocates an error for a missing tag.
	if !h.h.HasTag(tag) {
		return nil, false
	}
	v, err := h.h.GetStrings(tag)
	if err != nil {
		return nil, false
	}
	return v, true
}

// str is the first value: rpm reads an I18NSTRING as its first (C locale)
// string, and go-rpmutils returns them all.
func (h hdr) str(tag int) string {
	v, ok := h.strs(tag)
	if !ok || len(v) == 0 {
		return ""
	}
	return v[0]
}

// nums reads any integer type as unsigned, as rpm does.
func (h hdr) nums(tag int) ([]uint64, bool) {
	if !h.h.HasTag(tag) {
		return nil, false
	}
	v, err := h.h.GetUint64s(tag)
	if err != nil {
		return nil, false
	}
	return v, true
}

func (h hdr) num(tag int) (uint64, bool) {
	v, ok := h.nums(tag)
	if !ok || len(v) == 0 {
		return 0, false
	}
	return v[0], true
}
