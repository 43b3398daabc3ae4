package metadata

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// PublishState carries what one publish of a repository directory
// computed (its packages in order, their blocks, the blocks' keys,
// compressed frames and uncompressed bytes) to the next publish of the
// same directory in the same process, so that a publish after k changed
// packages sorts, hashes block keys and fetches or compresses blocks for
// those k only. The published bytes are the same as without a state: a
// block is reused only when its members are those it was built from
// (same href and pkgid, and for a package given with its fragments, the
// same bytes).
//
// The uncompressed blocks live in an unlinked scratch file, not in
// memory: a package the state knows may then be given without its
// fragments (a light Entry: Primary, Filelists and Other nil), which is
// how a caller holding 100,000 packages keeps only their identities in
// memory. A caller that keeps its light entries between publishes and
// gives them by pointer (PublishRootRefs) is matched by pointer, its
// href and pkgid compared but not hashed; an entry changed in place is
// still seen. The state holds about 200 bytes a package plus the
// compressed frames.
//
// What is left proportional to the directory is the unavoidable part:
// open-checksum, the sha256 of each whole uncompressed document, and the
// sha256 of each compressed file, from the first changed block on only
// when a saved midstate fits (midstate.go), and writing the files. The
// scratch file is hashed through a read-only mapping whose pages leave
// the resident set after each pass.
//
// A state is safe for concurrent use (publishes through it are
// serialized); a dry run only reads it. Give each directory its own
// state, and Close it when done.
type PublishState struct {
	mu      sync.Mutex
	dir     string
	pack    *os.File // unlinked; nil until the first build
	packEnd int64
	// packMap maps pack read-only, further than its end (never read
	// there), so that hashing reads the page cache without copying it;
	// nil when mapping failed (reads go through pread then).
	packMap []byte
	live    int64
	codecID string
	// The last build, sorted: order[pos] is the slot in pkgs of the
	// package at pos, posOf[slot] its position, cutAt[pos] whether its
	// href ends a block by hash (partition). Slots are stable across
	// builds, so a build rewrites these small arrays, never the packages.
	pkgs   []statePkg
	free   []int32
	order  []int32
	posOf  []int32
	cutAt  []bool
	byHref map[string]int32
	// byPtr: the light entries of the last build given by pointer
	// (PublishRootRefs), slot by pointer, so that a caller handing over
	// the same pointers again is matched without hashing hrefs.
	byPtr  map[*Entry]int32
	blocks []pubBlock
	closed bool
	// compactions counts rewrites of the scratch file (for tests).
	compactions int
	// own: the last build's midstates; spec: the speculation for the
	// next single add (midstate.go).
	own  *midSet
	spec *spec
	// midHits and cmidHits count documents and compressed files hashed
	// from a saved midstate, ptrHits entries matched by pointer (for
	// tests).
	midHits, cmidHits int
	ptrHits           int
}

// stateMmap: hashing reads the scratch file through a mapping (false:
// through pread, the fallback when mapping fails). A variable for tests.
var stateMmap = true

// stateCompactSlack: the scratch file is rewritten once its dead part
// exceeds its live part by this much. A variable for tests.
var stateCompactSlack int64 = 64 << 20

// statePkg is one package of the last build. Its block and position are
// not kept here (they shift with every insertion): see order and blocks.
type statePkg struct {
	href, pkgid string
	ent         *Entry    // the pointer it was given by (byPtr), or nil
	off, lens   [3]uint32 // within its block's uncompressed document
}

type pubBlock struct {
	lo, hi int32
	keys   [3]string
	frames [3][]byte
	raw    [3]int64 // offset of each document's uncompressed block in pack
	rawLen [3]uint32
}

// NewPublishState returns an empty state whose scratch file goes into
// dir (which must exist; the file is unlinked at once, so nothing is
// left behind). The first publish through it does the full work and fills
// it.
func NewPublishState(dir string) *PublishState {
	return &PublishState{dir: dir}
}

// Close releases the scratch file. A closed state is not used: publishes
// through it do the full work.
func (s *PublishState) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.stopSpec()
	s.forget()
	s.own = nil
	s.unmapPack()
	if s.pack != nil {
		err := s.pack.Close()
		s.pack = nil
		return err
	}
	return nil
}

// mapPack makes packMap cover the scratch file up to packEnd, mapping it
// anew (twice as far as needed, so that appends rarely remap) when it
// does not. Nothing reads packMap meanwhile: every caller stopped the
// speculation and holds mu.
func (s *PublishState) mapPack() {
	if s.pack == nil || s.packEnd == 0 || (s.packMap != nil && int64(len(s.packMap)) >= s.packEnd) {
		return
	}
	s.unmapPack()
	if !stateMmap {
		return
	}
	page := int64(os.Getpagesize())
	n := (max(2*s.packEnd, 64<<20) + page - 1) / page * page
	if m, err := unix.Mmap(int(s.pack.Fd()), 0, int(n), unix.PROT_READ, unix.MAP_SHARED); err == nil {
		s.packMap = m
	}
}

func (s *PublishState) unmapPack() {
	if s.packMap != nil {
		unix.Munmap(s.packMap)
		s.packMap = nil
	}
}

// dropMapped unmaps the pages a pass over packMap touched, which stay in
// the page cache: the process's resident set does not keep the scratch
// file (it would count a whole copy of the repodata).
func dropMapped(m []byte) {
	if m != nil {
		unix.Madvise(m, unix.MADV_DONTNEED)
	}
}

// pageDropper unmaps the pages of packMap a pass has read as it goes, a
// few MB at a time, so that the resident set never holds much of the
// scratch file even transiently. A span read may cover bytes another
// pass has yet to read: those are faulted in again from the page cache.
type pageDropper struct {
	m      []byte
	lo, hi int64
}

func (d *pageDropper) add(off, n int64) {
	if d == nil || d.m == nil {
		return
	}
	if d.hi > d.lo && (off < d.lo || off > d.hi+1<<20) {
		d.flush() // not next to the span: blocks of a later build
	}
	if d.hi == d.lo {
		d.lo = off
	}
	d.hi = max(d.hi, off+n)
	if d.hi-d.lo >= 4<<20 {
		d.flush()
	}
}

func (d *pageDropper) flush() {
	if d == nil || d.m == nil {
		return
	}
	page := int64(os.Getpagesize())
	lo, hi := (d.lo+page-1)/page*page, d.hi/page*page
	if hi > lo && hi <= int64(len(d.m)) {
		unix.Madvise(d.m[lo:hi], unix.MADV_DONTNEED)
	}
	d.lo, d.hi = 0, 0
}

// mapped is the scratch file's bytes [off, off+n) from m, or nil when m
// does not cover them.
func mapped(m []byte, end, off int64, n uint32) []byte {
	if m == nil || off < 0 || off+int64(n) > end || off+int64(n) > int64(len(m)) {
		return nil
	}
	return m[off : off+int64(n) : off+int64(n)]
}

// Knows says whether e's package (href and pkgid) was in the last build,
// so that it may be given as a light Entry next time.
func (s *PublishState) Knows(e *Entry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.byHref[e.Href]
	return ok && s.pkgs[id].pkgid == e.PkgID
}

// forget drops the last build's packages and blocks.
func (s *PublishState) forget() {
	s.pkgs, s.free, s.order, s.posOf, s.cutAt = nil, nil, nil, nil, nil
	s.byHref, s.byPtr, s.blocks = nil, nil, nil
}

// blockAt is the index of the last build's block holding position pos.
func (s *PublishState) blockAt(pos int32) int32 {
	return int32(sort.Search(len(s.blocks), func(b int) bool { return s.blocks[b].hi > pos }))
}

// PublishStateStats counts what publishes through a state skipped.
type PublishStateStats struct {
	// ByPointer: entries matched by the pointer the caller gave them by
	// in the last publish (PublishRootRefs), without hashing hrefs.
	ByPointer int
	// Midstates: uncompressed documents and compressed files whose
	// sha256 started from a saved midstate instead of the start.
	Midstates int
}

// Stats says what publishes through s have skipped so far.
func (s *PublishState) Stats() PublishStateStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return PublishStateStats{ByPointer: s.ptrHits, Midstates: s.midHits + s.cmidHits}
}

// WithState makes Publish reuse, and then update, what the previous
// publish through s computed (see PublishState). Default: none, every
// block key is hashed and every block fetched from the cache.
func WithState(s *PublishState) PublishOption {
	return func(c *publishConfig) error {
		c.state = s
		return nil
	}
}

// WithFragmentLoader supplies the fragments of light entries (Primary,
// Filelists and Other nil) that no state knows: load fills them in on
// the entries it is given (copies of the caller's). Default: none, and
// such an entry is invalid.
func WithFragmentLoader(load func(ctx context.Context, entries []*Entry) error) PublishOption {
	return func(c *publishConfig) error {
		c.loader = load
		return nil
	}
}

func isLight(e *Entry) bool { return e.Primary == nil && e.Filelists == nil && e.Other == nil }

// stateReuse is what buildDocs may take from a state: for each sorted
// entry, its index in the state's previous order (-1 when new or changed)
// and the pointer the caller gave for it (sorted may hold copies); for
// each previous position, whether it is kept (> 0), gone (0) or replaced
// by new content (-1).
type stateReuse struct {
	s      *PublishState
	oldPos []int32
	given  []*Entry
	used   []int32
}

func (s *PublishState) usable(codecID string) bool {
	return s != nil && !s.closed && s.codecID == codecID && len(s.order) > 0 && s.pack != nil
}

// readAt reads n bytes of the scratch file at off.
func (s *PublishState) readAt(off int64, n uint32) ([]byte, error) {
	b := make([]byte, n)
	if _, err := s.pack.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("reading publish state: %w", err)
	}
	return b, nil
}

// frags reads what the last build held for the package at pos.
func (s *PublishState) frags(pos int32) ([3][]byte, error) {
	var out [3][]byte
	p := &s.pkgs[s.order[pos]]
	b := &s.blocks[s.blockAt(pos)]
	for k := range 3 {
		f, err := s.readAt(b.raw[k]+int64(p.off[k]), p.lens[k])
		if err != nil {
			return out, err
		}
		out[k] = f
	}
	return out, nil
}

// loadLight gives every light entry among es its fragments through
// load, on copies: the caller's entries are not modified.
func loadLight(ctx context.Context, es []*Entry, load func(context.Context, []*Entry) error) error {
	var light []*Entry
	for i, e := range es {
		if isLight(e) {
			c := *e
			es[i] = &c
			light = append(light, &c)
		}
	}
	if len(light) == 0 {
		return nil
	}
	if load == nil {
		return fmt.Errorf("%w: %q has no fragments and nothing can supply them", ErrBadEntry, light[0].Href)
	}
	if err := load(ctx, light); err != nil {
		return fmt.Errorf("loading the fragments of %d packages: %w", len(light), err)
	}
	return nil
}

func validFrags(e *Entry) error {
	for _, d := range docSpecs {
		f := d.frag(e)
		if !bytes.HasPrefix(f, []byte("<package")) || !bytes.HasSuffix(f, []byte("</package>\n")) {
			return fmt.Errorf("%w: %s fragment of %q is not one <package> element", ErrBadEntry, d.typ, e.Href)
		}
	}
	return nil
}

// sortWithState is sortEntries for a directory whose previous build s
// knows: packages it knows unchanged keep their relative order, and only
// the new or changed ones are validated and sorted, then merged in (each
// at the place a binary search of the previous order finds). A light
// entry given by the same pointer as in the last build is found by that
// pointer; its href and pkgid are still compared (strings are immutable,
// so an entry changed in place is seen), and an entry with fragments is
// always compared by content: a pointer proves nothing about mutable
// bytes. It returns nil reuse when s cannot help (none, other codec,
// empty).
func sortWithState(ctx context.Context, entries []*Entry, s *PublishState, codecID string, load func(context.Context, []*Entry) error) ([]*Entry, *stateReuse, error) {
	if !s.usable(codecID) {
		ptrs := slices.Clone(entries)
		if err := loadLight(ctx, ptrs, load); err != nil {
			return nil, nil, err
		}
		sorted, err := sortEntryPtrs(ptrs)
		return sorted, nil, err
	}
	used := make([]int32, len(s.order)) // old position → entry index + 1; -1 changed
	type keyed struct {
		file, dir string
		e, given  *Entry
	}
	var fresh []keyed
	var freshSeen map[string]bool
	var unknownLight []*Entry
	ptrHits := 0
	for i, e := range entries {
		if e.Href == "" {
			return nil, nil, fmt.Errorf("%w: entry %d has no href", ErrBadEntry, i)
		}
		light := isLight(e)
		id, ok := int32(0), false
		if light && s.byPtr != nil {
			if id, ok = s.byPtr[e]; ok {
				if p := &s.pkgs[id]; p.href != e.Href || p.pkgid != e.PkgID {
					ok = false
				}
			}
			if ok {
				ptrHits++
			}
		}
		if !ok {
			id, ok = s.byHref[e.Href]
		}
		if ok {
			pos := s.posOf[id]
			if used[pos] != 0 {
				return nil, nil, fmt.Errorf("%w: href %q appears twice", ErrBadEntry, e.Href)
			}
			p := &s.pkgs[id]
			same := p.pkgid == e.PkgID
			if same && !light {
				same = uint32(len(e.Primary)) == p.lens[0] && uint32(len(e.Filelists)) == p.lens[1] && uint32(len(e.Other)) == p.lens[2]
				if same {
					f, err := s.frags(pos)
					if err != nil {
						return nil, nil, err
					}
					same = bytes.Equal(f[0], e.Primary) && bytes.Equal(f[1], e.Filelists) && bytes.Equal(f[2], e.Other)
				}
			}
			if same {
				used[pos] = int32(i) + 1
				continue
			}
			used[pos] = -1 // the href is taken, by new content
		} else {
			if freshSeen == nil {
				freshSeen = map[string]bool{}
			}
			if freshSeen[e.Href] {
				return nil, nil, fmt.Errorf("%w: href %q appears twice", ErrBadEntry, e.Href)
			}
			freshSeen[e.Href] = true
		}
		if light {
			unknownLight = append(unknownLight, e)
		}
		fresh = append(fresh, keyed{e: e, given: e})
	}
	s.ptrHits += ptrHits
	if len(unknownLight) > 0 {
		loaded := slices.Clone(unknownLight)
		if err := loadLight(ctx, loaded, load); err != nil {
			return nil, nil, err
		}
		repl := make(map[*Entry]*Entry, len(loaded))
		for j, e := range unknownLight {
			repl[e] = loaded[j]
		}
		for j := range fresh {
			if c, ok := repl[fresh[j].e]; ok {
				fresh[j].e = c
			}
		}
	}
	for j := range fresh {
		if err := validFrags(fresh[j].e); err != nil {
			return nil, nil, err
		}
		fresh[j].dir, fresh[j].file = path.Split(fresh[j].e.Href)
	}
	cmp := func(af, ad, bf, bd string) int {
		if c := strings.Compare(af, bf); c != 0 {
			return c
		}
		return strings.Compare(ad, bd)
	}
	slices.SortFunc(fresh, func(a, b keyed) int { return cmp(a.file, a.dir, b.file, b.dir) })
	// Where each new one goes: before the first old package sorting
	// after it (the old order is sorted, gone ones included).
	ins := make([]int, len(fresh))
	for j, k := range fresh {
		ins[j] = sort.Search(len(s.order), func(o int) bool {
			od, of := path.Split(s.pkgs[s.order[o]].href)
			return cmp(k.file, k.dir, of, od) < 0
		})
	}

	out := make([]*Entry, 0, len(entries))
	given := make([]*Entry, 0, len(entries))
	oldPos := make([]int32, 0, len(entries))
	j := 0
	for o, u := range used {
		for j < len(fresh) && ins[j] == o {
			out, given, oldPos = append(out, fresh[j].e), append(given, fresh[j].given), append(oldPos, -1)
			j++
		}
		if u > 0 {
			e := entries[u-1]
			out, given, oldPos = append(out, e), append(given, e), append(oldPos, int32(o))
		}
	}
	for ; j < len(fresh); j++ {
		out, given, oldPos = append(out, fresh[j].e), append(given, fresh[j].given), append(oldPos, -1)
	}
	return out, &stateReuse{s: s, oldPos: oldPos, given: given, used: used}, nil
}

// sortEntryPtrs is sortEntries on pointers.
func sortEntryPtrs(ptrs []*Entry) ([]*Entry, error) {
	vals := make([]Entry, len(ptrs))
	for i, e := range ptrs {
		vals[i] = *e
	}
	return sortEntries(vals)
}

// reusable returns the previous build's block that block sp of the new
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
	b := r.s.blockAt(o)
	if ob := &r.s.blocks[b]; ob.lo != o || int(ob.hi-ob.lo) != sp.hi-sp.lo {
		return -1
	}
	return int(b)
}

// materialize gives the light members of block sp their fragments from
// the scratch file (one read per document of each old block involved),
// replacing them in sorted with copies.
func (r *stateReuse) materialize(sorted []*Entry, sp span) error {
	s := r.s
	cache := map[int32][3][]byte{}
	for i := sp.lo; i < sp.hi; i++ {
		e := sorted[i]
		if !isLight(e) {
			continue
		}
		o := r.oldPos[i]
		if o < 0 {
			return fmt.Errorf("%w: %q has no fragments", ErrBadEntry, e.Href)
		}
		p := &s.pkgs[s.order[o]]
		bi := s.blockAt(o)
		raw, ok := cache[bi]
		if !ok {
			b := &s.blocks[bi]
			for k := range 3 {
				d, err := s.readAt(b.raw[k], b.rawLen[k])
				if err != nil {
					return err
				}
				raw[k] = d
			}
			cache[bi] = raw
		}
		c := *e
		var f [3][]byte
		for k := range 3 {
			lo, hi := p.off[k], p.off[k]+p.lens[k]
			if hi > uint32(len(raw[k])) {
				return errors.New("publish state: fragment outside its block")
			}
			f[k] = raw[k][lo:hi:hi]
		}
		c.Primary, c.Filelists, c.Other = f[0], f[1], f[2]
		sorted[i] = &c
	}
	return nil
}

// hashOld feeds block b's uncompressed document k from the scratch file
// to w, through buf.
func (s *PublishState) hashOld(w io.Writer, b, k int, buf []byte, drop *pageDropper) (int64, error) {
	bl := &s.blocks[b]
	if d := mapped(s.packMap, s.packEnd, bl.raw[k], bl.rawLen[k]); d != nil {
		w.Write(d)
		drop.add(bl.raw[k], int64(len(d)))
		return int64(len(d)), nil
	}
	n := int64(bl.rawLen[k])
	r := io.NewSectionReader(s.pack, bl.raw[k], n)
	got, err := io.CopyBuffer(w, r, buf)
	if err == nil && got != n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return got, fmt.Errorf("reading publish state: %w", err)
	}
	return got, nil
}

// update records a finished build: reused blocks keep their place in
// the scratch file, new ones (raw, their uncompressed documents) are
// appended; the file is compacted when mostly dead.
func (s *PublishState) update(codecID string, entries []*Entry, spans []span, keys [][]string, frames [3][][]byte,
	reusedFrom []int, reuse *stateReuse, refs bool) error {
	if s.closed {
		return nil
	}
	s.stopSpec() // it reads the blocks and the file about to change
	defer s.mapPack()
	if reuse == nil && s.order != nil {
		// Not built on the last build (a codec switch, or nothing to
		// reuse): no package of it carries over.
		s.forget()
	}
	if s.pack == nil || s.codecID != codecID {
		// Another codec: the old blocks are no use; start afresh.
		if s.pack != nil {
			s.reset()
		}
		f, err := os.CreateTemp(s.dir, ".publish-state-*")
		if err != nil {
			return fmt.Errorf("creating publish state: %w", err)
		}
		os.Remove(f.Name())
		s.pack, s.packEnd = f, 0
		for i := range reusedFrom {
			reusedFrom[i] = -1
		}
		reuse = nil
		s.forget()
	}
	blocks := make([]pubBlock, len(spans))
	buf := make([]byte, 0, 1<<20)
	end := s.packEnd
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		_, err := s.pack.WriteAt(buf, end-int64(len(buf)))
		buf = buf[:0]
		return err
	}
	live := int64(0)
	for i, sp := range spans {
		b := &blocks[i]
		b.lo, b.hi = int32(sp.lo), int32(sp.hi)
		for k := range 3 {
			b.keys[k], b.frames[k] = keys[k][i], frames[k][i]
		}
		if o := reusedFrom[i]; o >= 0 {
			ob := &s.blocks[o]
			b.raw, b.rawLen = ob.raw, ob.rawLen
		} else {
			for k, d := range docSpecs {
				b.raw[k] = end
				for _, e := range entries[sp.lo:sp.hi] {
					f := d.frag(e)
					buf = append(buf, f...)
					end += int64(len(f))
					b.rawLen[k] += uint32(len(f))
				}
			}
			if len(buf) >= 1<<20 {
				if err := flush(); err != nil {
					s.reset()
					return fmt.Errorf("writing publish state: %w", err)
				}
			}
		}
		for k := range 3 {
			live += int64(b.rawLen[k])
		}
	}
	if err := flush(); err != nil {
		s.reset()
		return fmt.Errorf("writing publish state: %w", err)
	}
	s.packEnd = end
	if s.byHref == nil {
		s.byHref = make(map[string]int32, len(entries))
	}
	if !refs && s.byPtr != nil {
		// Pointers are tracked for callers that keep them (refs) only.
		for i := range s.pkgs {
			s.pkgs[i].ent = nil
		}
		s.byPtr = nil
	} else if refs && s.byPtr == nil {
		s.byPtr = make(map[*Entry]int32, len(entries))
	}
	// Packages of the last build that are gone, or whose href now holds
	// new content, free their slots first.
	if reuse != nil {
		for o, u := range reuse.used {
			if u > 0 {
				continue
			}
			id := s.order[o]
			p := &s.pkgs[id]
			if q, ok := s.byHref[p.href]; ok && q == id {
				delete(s.byHref, p.href)
			}
			if p.ent != nil {
				if q, ok := s.byPtr[p.ent]; ok && q == id {
					delete(s.byPtr, p.ent)
				}
			}
			*p = statePkg{}
			s.free = append(s.free, id)
		}
	}
	order := make([]int32, len(entries))
	cutAt := make([]bool, len(entries))
	for i, sp := range spans {
		var off [3]uint32
		for j := sp.lo; j < sp.hi; j++ {
			e := entries[j]
			var id int32
			if reuse != nil && reuse.oldPos[j] >= 0 {
				o := reuse.oldPos[j]
				id, cutAt[j] = s.order[o], s.cutAt[o]
			} else {
				cutAt[j] = hashCut(e.Href)
				if n := len(s.free); n > 0 {
					id, s.free = s.free[n-1], s.free[:n-1]
				} else {
					id = int32(len(s.pkgs))
					s.pkgs = append(s.pkgs, statePkg{})
					s.posOf = append(s.posOf, 0)
				}
				s.pkgs[id] = statePkg{href: e.Href, pkgid: e.PkgID}
				s.byHref[e.Href] = id
			}
			p := &s.pkgs[id]
			if reusedFrom[i] < 0 {
				p.lens = [3]uint32{uint32(len(e.Primary)), uint32(len(e.Filelists)), uint32(len(e.Other))}
				p.off = off
				for k := range 3 {
					off[k] += p.lens[k]
				}
			}
			if refs {
				g := e
				if reuse != nil {
					g = reuse.given[j]
				}
				// A tracked pointer given with fragments this time may
				// stay tracked: the pointer path takes light ones only.
				if p.ent != g && !isLight(g) {
					g = nil // matched by content, not by pointer
				}
				if p.ent != g {
					if p.ent != nil {
						if q, ok := s.byPtr[p.ent]; ok && q == id {
							delete(s.byPtr, p.ent)
						}
					}
					p.ent = g
					if g != nil {
						s.byPtr[g] = id
					}
				}
			}
			s.posOf[id] = int32(j)
			order[j] = id
		}
	}
	s.codecID, s.order, s.cutAt, s.blocks, s.live = codecID, order, cutAt, blocks, live
	if s.packEnd > 2*s.live+stateCompactSlack {
		s.compactions++
		return s.compact()
	}
	return nil
}

// reset forgets everything: the next build starts afresh.
func (s *PublishState) reset() {
	s.stopSpec()
	s.own = nil
	s.unmapPack()
	if s.pack != nil {
		s.pack.Close()
	}
	s.pack, s.packEnd, s.live = nil, 0, 0
	s.forget()
}

// compact rewrites the scratch file with the current blocks only.
func (s *PublishState) compact() error {
	f, err := os.CreateTemp(s.dir, ".publish-state-*")
	if err != nil {
		s.reset()
		return fmt.Errorf("compacting publish state: %w", err)
	}
	os.Remove(f.Name())
	// Blocks in offset order make the copy sequential.
	idx := make([]int, len(s.blocks))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return s.blocks[idx[a]].raw[0] < s.blocks[idx[b]].raw[0] })
	var end int64
	buf := make([]byte, 0, 1<<20)
	flush := func() error {
		_, err := f.WriteAt(buf, end-int64(len(buf)))
		buf = buf[:0]
		return err
	}
	for _, i := range idx {
		b := &s.blocks[i]
		for k := range 3 {
			d, err := s.readAt(b.raw[k], b.rawLen[k])
			if err != nil {
				f.Close()
				s.reset()
				return err
			}
			b.raw[k] = end
			buf = append(buf, d...)
			end += int64(len(d))
		}
		if len(buf) >= 1<<20 {
			if err := flush(); err != nil {
				f.Close()
				s.reset()
				return fmt.Errorf("compacting publish state: %w", err)
			}
		}
	}
	if err := flush(); err != nil {
		f.Close()
		s.reset()
		return fmt.Errorf("compacting publish state: %w", err)
	}
	s.unmapPack()
	s.pack.Close()
	s.pack, s.packEnd = f, end
	return nil
}
