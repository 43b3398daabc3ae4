package repo

import (
	"encoding/binary"
	"errors"
	"runtime"
	"testing"

	"github.com/repoctl/repoctl/metadata"
)

// TestFragmentsSumCapped: three lengths each under maxFragments but
// together over it fail before the decode allocates what they declare
// (a hostile value must not make the daemon take 600 MB).
func TestFragmentsSumCapped(t *testing.T) {
	good := encodeFragments(&metadata.Entry{Primary: []byte("<package>p</package>\n")})
	v := []byte{fragCodecZstd}
	for range 3 {
		v = binary.AppendUvarint(v, 200<<20)
	}
	v = append(v, good[4:]...) // the frame after good's three one-byte lengths
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var e metadata.Entry
	err := decodeFragments(v, &e)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, errBadFragments) {
		t.Fatalf("got %v, want errBadFragments", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 128<<20 { // the mutant takes 600; leave room for a background goroutine
		t.Fatalf("decoding took %d MB for a value of %d bytes", n>>20, len(v))
	}
}
