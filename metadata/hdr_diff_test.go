package metadata

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	rpmutils "github.com/sassoftware/go-rpmutils"

	"github.com/repoctl/repoctl/internal/rpmhdr"
	"github.com/repoctl/repoctl/internal/testrpm"
)

// The in-place decoder reads every tag of every fixture exactly as
// go-rpmutils v0.4.0 did (present or not, strings, numbers, which header,
// which of repeated entries), also for headers with entries retyped,
// recounted, retagged and duplicated, and refuses the same digest
// mismatches.
func TestHdrMatchesGoRPMUtils(t *testing.T) {
	var inputs [][]byte
	ms, err := filepath.Glob(filepath.Join(sharedCorpus(t), "*.rpm"))
	if err != nil {
		t.Fatal(err)
	}
	gen := t.TempDir()
	generatedCorpus(t, gen)
	gs, err := filepath.Glob(filepath.Join(gen, "*.rpm"))
	if err != nil {
		t.Fatal(err)
	}
	specs := buildSpecs(t)
	ss, err := filepath.Glob(filepath.Join(specs, "*.rpm"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range slices.Concat(ms, gs, ss) {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, b)
	}
	if len(inputs) < 30 {
		t.Fatalf("only %d fixtures", len(inputs))
	}
	b, err := testrpm.Build(testrpm.Small(1))
	if err != nil {
		t.Fatal(err)
	}
	inputs = append(inputs, b)

	rng := rand.New(rand.NewPCG(13, 13))
	var compared, mutated int
	for i, b := range inputs {
		compareHdr(t, i, b)
		compared++
		// Mutations of the main header's index (digests refreshed so both
		// readers get to the values).
		raw, err := rpmhdr.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		for range 40 {
			m := bytes.Clone(raw.Bytes())
			il := len(raw.Main.Entries)
			at := int(raw.Main.Offset) + rpmhdr.IntroSize + rng.IntN(il)*rpmhdr.EntrySize
			switch rng.IntN(4) {
			case 0: // retype
				binary.BigEndian.PutUint32(m[at+4:], uint32(rng.IntN(10)))
			case 1: // recount
				c := binary.BigEndian.Uint32(m[at+12:])
				binary.BigEndian.PutUint32(m[at+12:], max(1, c+uint32(rng.IntN(3))-1))
			case 2: // retag as another entry's tag: a repeated tag, out of order
				other := int(raw.Main.Offset) + rpmhdr.IntroSize + rng.IntN(il)*rpmhdr.EntrySize
				copy(m[at:at+4], m[other:other+4])
			case 3: // copy another whole entry over it
				other := int(raw.Main.Offset) + rpmhdr.IntroSize + rng.IntN(il)*rpmhdr.EntrySize
				copy(m[at:at+rpmhdr.EntrySize], m[other:other+rpmhdr.EntrySize])
			}
			mr, err := rpmhdr.Parse(m)
			if err != nil {
				continue // refused before decoding, by both paths alike
			}
			compareHdr(t, i, withFreshDigests(mr))
			mutated++
		}
		// A changed byte in the main header's data fails the digest check.
		m := bytes.Clone(raw.Bytes())
		ne := raw.Main.Get(tagName)
		m[int(raw.Main.Offset)+rpmhdr.IntroSize+len(raw.Main.Entries)*rpmhdr.EntrySize+int(ne.Offset)] ^= 1
		_, errRef := rpmutils.ReadHeader(bytes.NewReader(m))
		mr, err := rpmhdr.Parse(m)
		if err != nil {
			t.Fatal(err)
		}
		h := newHdr(mr)
		if errOurs := h.checkDigest(); (errOurs == nil) != (errRef == nil) || (errRef == nil && raw.Sig.Get(sigTagSHA256) != nil) {
			t.Errorf("input %d: digest check %v, go-rpmutils %v", i, errOurs, errRef)
		}
	}
	if mutated < 20*compared {
		t.Fatalf("only %d of %d mutations decoded", mutated, 40*compared)
	}
}

// compareHdr checks every tag either header holds, as repodata reads it.
func compareHdr(t *testing.T, i int, b []byte) {
	t.Helper()
	ref, errRef := rpmutils.ReadHeader(bytes.NewReader(b))
	raw, err := rpmhdr.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	h := newHdr(raw)
	errOurs := h.checkDigest()
	if (errRef == nil) != (errOurs == nil) {
		t.Fatalf("input %d: digest %v, go-rpmutils %v", i, errOurs, errRef)
	}
	if errRef != nil {
		return
	}
	old := oldHdr{ref}
	tags := []int{tagName, tagVersion, tagRelease, tagEpoch, tagArch, tagOldFilenames, sigTagLongArchive, sigTagPayloadSize, sigTagSHA1, sigTagSHA256}
	for _, e := range raw.Main.Entries {
		if e.Tag >= generalTagBase && e.Tag <= sigTagBase {
			tags = append(tags, int(e.Tag))
		}
	}
	for _, e := range raw.Sig.Entries {
		if e.Tag < generalTagBase {
			tags = append(tags, int(e.Tag))
		} else {
			tags = append(tags, int(e.Tag)+sigTagBase)
		}
	}
	for _, tag := range tags {
		if h.has(tag) != old.has(tag) {
			t.Fatalf("input %d tag %d: has %v, go-rpmutils %v", i, tag, h.has(tag), old.has(tag))
		}
		s1, ok1 := h.strs(tag)
		s2, ok2 := old.strs(tag)
		if ok1 != ok2 || !slices.Equal(s1, s2) {
			t.Fatalf("input %d tag %d: strs %q %v, go-rpmutils %q %v", i, tag, s1, ok1, s2, ok2)
		}
		if h.str(tag) != old.str(tag) {
			t.Fatalf("input %d tag %d: str %q, go-rpmutils %q", i, tag, h.str(tag), old.str(tag))
		}
		n1, ok1 := h.nums(tag)
		n2, ok2 := old.nums(tag)
		if ok1 != ok2 || !slices.Equal(n1, n2) {
			t.Fatalf("input %d tag %d: nums %v %v, go-rpmutils %v %v", i, tag, n1, ok1, n2, ok2)
		}
		v1, ok1 := h.num(tag)
		v2, ok2 := old.num(tag)
		if ok1 != ok2 || v1 != v2 {
			t.Fatalf("input %d tag %d: num %v %v, go-rpmutils %v %v", i, tag, v1, ok1, v2, ok2)
		}
	}
}

// oldHdr is the reader's former value layer: go-rpmutils' getters with
// rpm's headerGetString / headerGetNumber semantics.
type oldHdr struct{ h *rpmutils.RpmHeader }

func (h oldHdr) has(tag int) bool { return h.h.HasTag(tag) }

func (h oldHdr) strs(tag int) ([]string, bool) {
	if !h.h.HasTag(tag) {
		return nil, false
	}
	v, err := h.h.GetStrings(tag)
	if err != nil {
		return nil, false
	}
	return v, true
}

func (h oldHdr) str(tag int) string {
	v, ok := h.strs(tag)
	if !ok || len(v) == 0 {
		return ""
	}
	return v[0]
}

func (h oldHdr) nums(tag int) ([]uint64, bool) {
	if !h.h.HasTag(tag) {
		return nil, false
	}
	v, err := h.h.GetUint64s(tag)
	if err != nil {
		return nil, false
	}
	return v, true
}

func (h oldHdr) num(tag int) (uint64, bool) {
	v, ok := h.nums(tag)
	if !ok || len(v) == 0 {
		return 0, false
	}
	return v[0], true
}
