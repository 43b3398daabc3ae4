package metadata

import (
	"bytes"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
)

// PublishState carries what one publish of a repository directory
// computed (its packages in order, their blocks, the blocks' keys and
// compressed frames) to the next publish of the same directory in the
// same process, so that a publish after k changed packages sorts, hashes
// block keys and fetches or compresses blocks for those k only. The
// published bytes are the same as without a state: a block is reused only
// when its members are byte-identical to those it was built from (an
// unchanged fragment is recognised in O(1) when the caller passes the
// same slice again, and compared byte for byte otherwise).
//
// What is left proportional to the directory is the unavoidable part:
// open-checksum, the sha256 of each whole uncompressed document, whose
// header carries the package count (so no saved midstate survives an
// add or a remove), the sha256 of each compressed file, and writing them.
//
// A state is safe for concurrent use (publishes through it are
// serialized) and holds about 100 bytes a package plus the compressed
// frames, which share memory with nothing else. A state is only ever
// read by a dry run. Give each directory its own state.
type PublishState struct {
	mu      sync.Mutex
	codecID string
	// The last build, in sort order.
	pkgs   []statePkg
	pos    map[string]int32 // href → index in pkgs
	spans  []span
	keys   [3][]string
	frames [3][][]byte
}

type statePkg struct {
	href  string
	frags [3][]byte
}

// NewPublishState returns an empty state: the first publish through it
// does the full work and fills it.
func NewPublishState() *PublishState { return &PublishState{} }

// WithState makes Publish reuse, and then update, what the previous
// publish through s computed (see PublishState). Default: none, every
// block key is hashed and every block fetched from the cache.
func WithState(s *PublishState) PublishOption {
	return func(c *publishConfig) error {
		c.state = s
		return nil
	}
}

// stateReuse is what buildDocs may take from a state: for each sorted
// entry, its index in the state's previous order (-1 when new or changed).
type stateReuse struct {
	s      *PublishState
	oldPos []int32
}

// sortWithState is sortEntries for a directory whose previous build s
// knows: packages it knows unchanged keep their relative order, and only
// the new or changed ones are validated and sorted, then merged in. It
// returns nil reuse when s cannot help (other codec, nothing known).
func sortWithState(entries []Entry, s *PublishState, codecID string) ([]*Entry, *stateReuse, error) {
	if s == nil || s.codecID != codecID || len(s.pkgs) == 0 {
		sorted, err := sortEntries(entries)
		return sorted, nil, err
	}
	oldOf := make([]int32, len(entries)) // entry index → old position or -1
	used := make([]int32, len(s.pkgs))   // old position → entry index + 1
	var fresh []int
	var freshSeen map[string]bool
	for i := range entries {
		e := &entries[i]
		if e.Href == "" {
			return nil, nil, fmt.Errorf("%w: entry %d has no href", ErrBadEntry, i)
		}
		o, ok := s.pos[e.Href]
		if ok {
			if used[o] != 0 {
				return nil, nil, fmt.Errorf("%w: href %q appears twice", ErrBadEntry, e.Href)
			}
			p := &s.pkgs[o]
			if bytes.Equal(p.frags[0], e.Primary) && bytes.Equal(p.frags[1], e.Filelists) && bytes.Equal(p.frags[2], e.Other) {
				used[o] = int32(i) + 1
				oldOf[i] = o
				continue
			}
			// Changed content: it takes its place as new, and its old
			// position counts as used (the href is taken).
			used[o] = -1
		}
		oldOf[i] = -1
		for _, d := range docSpecs {
			f := d.frag(e)
			if !bytes.HasPrefix(f, []byte("<package")) || !bytes.HasSuffix(f, []byte("</package>\n")) {
				return nil, nil, fmt.Errorf("%w: %s fragment of %q is not one <package> element", ErrBadEntry, d.typ, e.Href)
			}
		}
		if !ok {
			if freshSeen == nil {
				freshSeen = map[string]bool{}
			}
			if freshSeen[e.Href] {
				return nil, nil, fmt.Errorf("%w: href %q appears twice", ErrBadEntry, e.Href)
			}
			freshSeen[e.Href] = true
		}
		fresh = append(fresh, i)
	}
	type keyed struct {
		file, dir string
		i         int
	}
	ks := make([]keyed, len(fresh))
	for j, i := range fresh {
		d, f := path.Split(entries[i].Href)
		ks[j] = keyed{f, d, i}
	}
	cmp := func(af, ad, bf, bd string) int {
		if c := strings.Compare(af, bf); c != 0 {
			return c
		}
		return strings.Compare(ad, bd)
	}
	slices.SortFunc(ks, func(a, b keyed) int { return cmp(a.file, a.dir, b.file, b.dir) })

	out := make([]*Entry, 0, len(entries))
	oldPos := make([]int32, 0, len(entries))
	j := 0
	for o := range s.pkgs {
		u := used[o]
		if u <= 0 {
			continue
		}
		od, of := path.Split(s.pkgs[o].href)
		for j < len(ks) && cmp(ks[j].file, ks[j].dir, of, od) < 0 {
			out = append(out, &entries[ks[j].i])
			oldPos = append(oldPos, -1)
			j++
		}
		out = append(out, &entries[u-1])
		oldPos = append(oldPos, int32(o))
	}
	for ; j < len(ks); j++ {
		out = append(out, &entries[ks[j].i])
		oldPos = append(oldPos, -1)
	}
	return out, &stateReuse{s: s, oldPos: oldPos}, nil
}

// reusable returns the previous build's span that block sp of the new
// order is identical to, or -1: every member unchanged, consecutive in
// the old order, and exactly one old block.
func (r *stateReuse) reusable(sp span) int {
	if r == nil {
		return -1
	}
	o := r.oldPos[sp.lo]
	if o < 0 {
		return -1
	}
	for t := sp.lo + 1; t < sp.hi; t++ {
		if r.oldPos[t] != o+int32(t-sp.lo) {
			return -1
		}
	}
	spans := r.s.spans
	k := sort.Search(len(spans), func(i int) bool { return spans[i].lo >= int(o) })
	if k == len(spans) || spans[k].lo != int(o) || spans[k].hi-spans[k].lo != sp.hi-sp.lo {
		return -1
	}
	return k
}

// update records a finished build as the state's new previous one.
func (s *PublishState) update(codecID string, entries []*Entry, spans []span, keys [][]string, frames [3][][]byte) {
	pkgs := make([]statePkg, len(entries))
	pos := make(map[string]int32, len(entries))
	for i, e := range entries {
		pkgs[i] = statePkg{href: e.Href, frags: [3][]byte{e.Primary, e.Filelists, e.Other}}
		pos[e.Href] = int32(i)
	}
	s.codecID, s.pkgs, s.pos, s.spans = codecID, pkgs, pos, spans
	for k := range 3 {
		s.keys[k] = keys[k]
		s.frames[k] = frames[k]
	}
}
