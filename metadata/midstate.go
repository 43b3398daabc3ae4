package metadata

import (
	"crypto/sha256"
	"encoding"
	"hash"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
)

// Midstates make open-checksum proportional to the change, not to the
// directory. open-checksum is one sha256 stream per document, and the
// document starts with a header carrying the package count, so a saved
// sha256 state (crypto/sha256 digests implement encoding.BinaryMarshaler)
// at a block boundary is only valid for that count. A PublishState keeps
// two sets, each "the state after the header for n packages and the first
// b blocks" for every boundary b of its last build:
//
//   - the last build's own (count n): a change that keeps the count (a
//     package replaced, or one added and one removed);
//   - a speculation for n+1, computed in the background after each
//     publish from the scratch file: the next single-package add, the
//     daemon's most common change.
//
// A publish whose first changed block is j and whose count matches one
// set restores the nearest saved state at or before j and hashes from
// there: on average half of each document instead of all of it.
//
// The compressed files' checksums are sha256 streams too, of the
// header's frame (which carries the count as well), the blocks' frames
// and the footer's: each set keeps their states at the same boundaries
// (cmids), valid for the codec of the build they were taken from, which
// is the state's (a codec switch starts afresh).

// midpoint is the sha256 state and open size at one block boundary.
type midpoint struct {
	state []byte
	size  int64
}

// midSet is one set of midstates: per document, per boundary b (the
// state before block b); a speculation fills them in order, so only the
// first avail boundaries may be used.
type midSet struct {
	n     int // package count of the header
	mids  [3][]midpoint
	cmids [3][]midpoint   // of the compressed files
	avail [3]atomic.Int64 // per document, boundaries filled (speculation); all for a build's own
}

// spec is a running speculation.
type spec struct {
	set    *midSet
	cancel atomic.Bool
	done   chan struct{}
}

func marshalHash(h hash.Hash) []byte {
	b, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil
	}
	return b
}

// restore returns a sha256 in state b, or nil.
func restoreHash(b []byte) hash.Hash {
	h := sha256.New()
	if b == nil || h.(encoding.BinaryUnmarshaler).UnmarshalBinary(b) != nil {
		return nil
	}
	return h
}

// firstChanged is the first block of the new build that is not the
// previous build's block of the same index: every boundary up to it has
// the same prefix in both.
func firstChanged(reusedFrom []int) int {
	for i, o := range reusedFrom {
		if o != i {
			return i
		}
	}
	return len(reusedFrom)
}

// midFor returns, for document k of a build of n packages whose first
// changed block is j, the nearest usable saved state at or before j: its
// boundary, sha256 and open size; ok false when none helps.
func (s *PublishState) midFor(n, k, j int, specSet *midSet) (set *midSet, b int, h hash.Hash, size int64) {
	return s.midOf(n, k, j, specSet, func(m *midSet) []midpoint { return m.mids[k] })
}

// cmidFor is midFor for compressed document k.
func (s *PublishState) cmidFor(n, k, j int, specSet *midSet) (set *midSet, b int, h hash.Hash, size int64) {
	return s.midOf(n, k, j, specSet, func(m *midSet) []midpoint { return m.cmids[k] })
}

func (s *PublishState) midOf(n, k, j int, specSet *midSet, of func(*midSet) []midpoint) (set *midSet, b int, h hash.Hash, size int64) {
	for _, set := range []*midSet{s.own, specSet} {
		if set == nil || set.n != n {
			continue
		}
		mids := of(set)
		avail := min(int(set.avail[k].Load()), len(mids))
		bb := min(j, avail-1)
		for ; bb > 0; bb-- {
			if h := restoreHash(mids[bb].state); h != nil {
				return set, bb, h, mids[bb].size
			}
		}
	}
	return nil, 0, nil, 0
}

// specSet stops the running speculation and returns what it computed.
func (s *PublishState) specSet() *midSet {
	sp := s.spec
	if sp == nil {
		return nil
	}
	sp.cancel.Store(true)
	<-sp.done
	return sp.set
}

// stopSpec ends the running speculation, if any, and forgets it.
func (s *PublishState) stopSpec() {
	if s.spec != nil {
		s.spec.cancel.Store(true)
		<-s.spec.done
		s.spec = nil
	}
}

// speculate starts computing the midstates of the next single-package add
// (count n+1) over the current blocks (compressed with c), from a
// duplicate of the scratch file's descriptor.
func (s *PublishState) speculate(n int, c codec) {
	s.stopSpec()
	if s.pack == nil || len(s.blocks) == 0 {
		return
	}
	fd, err := syscall.Dup(int(s.pack.Fd()))
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "publish-state")
	type loc struct {
		off int64
		n   uint32
	}
	blocks := make([][3]loc, len(s.blocks))
	frames := make([][3][]byte, len(s.blocks)) // immutable once built
	for i := range s.blocks {
		for k := range 3 {
			blocks[i][k] = loc{s.blocks[i].raw[k], s.blocks[i].rawLen[k]}
			frames[i][k] = s.blocks[i].frames[k]
		}
	}
	var hdrFrames [3][]byte
	if c != nil && c.id() == s.codecID {
		for k, d := range docSpecs {
			hdrFrames[k] = c.encode(nil, d.header(n+1))
		}
	}
	sp := &spec{set: &midSet{n: n + 1}, done: make(chan struct{})}
	for k := range 3 {
		sp.set.mids[k] = make([]midpoint, len(blocks))
		if hdrFrames[k] != nil {
			sp.set.cmids[k] = make([]midpoint, len(blocks))
		}
	}
	s.spec = sp
	m, end := s.packMap, s.packEnd // unmapped only once this is stopped
	go func() {
		defer close(sp.done)
		defer f.Close()
		defer dropMapped(m)
		// One document after the other, primary (the biggest, so the
		// longest hash of the next publish) first: a speculation cut
		// short still shortens what the next publish waits for most.
		buf := make([]byte, 256<<10)
		drop := &pageDropper{m: m}
		defer drop.flush()
		for k, d := range docSpecs {
			h := sha256.New()
			hdr := d.header(n + 1)
			h.Write(hdr)
			size := int64(len(hdr))
			ch := sha256.New()
			ch.Write(hdrFrames[k])
			csize := int64(len(hdrFrames[k]))
			for i, bl := range blocks {
				if sp.cancel.Load() {
					return
				}
				sp.set.mids[k][i] = midpoint{marshalHash(h), size}
				if sp.set.cmids[k] != nil {
					sp.set.cmids[k][i] = midpoint{marshalHash(ch), csize}
					ch.Write(frames[i][k])
					csize += int64(len(frames[i][k]))
				}
				sp.set.avail[k].Store(int64(i + 1))
				if d := mapped(m, end, bl[k].off, bl[k].n); d != nil {
					h.Write(d)
					size += int64(len(d))
					drop.add(bl[k].off, int64(len(d)))
					continue
				}
				got, err := io.CopyBuffer(h, io.NewSectionReader(f, bl[k].off, int64(bl[k].n)), buf)
				if err != nil || got != int64(bl[k].n) {
					return
				}
				size += got
			}
		}
	}()
}

// A standalone --update cannot keep midstates from one run to the next
// as the daemon does: adding a package changes the header's count, so
// the saved states would be of the wrong stream. What it can do is start
// the open-checksum streams early: as soon as the scan has counted the
// packages (and so fixed the header), a prefixHash hashes the header and
// the saved generation's blocks, in order, while the reuse look-up, the
// sort and the start of the build run. Every block before the first one
// the build changes is the same in both generations, so the build's
// hashing takes over from the sha256 state at that boundary instead of
// hashing from the start. The work is the same; it is done while a core
// would otherwise wait for the single-threaded steps before the build.

// prefixHash is one document's early open-checksum stream.
type prefixHash struct {
	n     int      // the header's package count
	mids  [][]byte // mids[b]: the state after the header and b blocks
	sizes []int64  // open size at each boundary
	avail atomic.Int64
	stop  atomic.Bool
}

// prefixHashes is the early streams of the three documents, computed
// by as many goroutines as there are processors beside the one the
// look-up and the sort need (one at least, three at most), each taking
// the largest document left, so that the longest stream starts first.
// On two cores that is one goroutine: a second one measured no faster,
// since it takes its core from the steps the build waits for.
type prefixHashes struct {
	docs [3]*prefixHash
	done chan struct{}
}

// startPrefixHashes starts hashing header(n) and g's blocks of each
// document. Each block is checked (g.check) before it is hashed; the
// stream of a document stops at a damaged or missing block.
func startPrefixHashes(g *savedGen, n int) *prefixHashes {
	ph := &prefixHashes{done: make(chan struct{})}
	var sizes [3]int
	for k := range ph.docs {
		ph.docs[k] = &prefixHash{n: n, mids: make([][]byte, len(g.blocks)+1), sizes: make([]int64, len(g.blocks)+1)}
		for _, bl := range g.blocks {
			sizes[k] += len(g.data[bl.keys[k]])
		}
	}
	order := make(chan int, len(ph.docs))
	for _, k := range largestFirst(sizes) {
		order <- k
	}
	close(order)
	workers := min(len(ph.docs), max(1, runtime.GOMAXPROCS(0)-1))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range order {
				ph.docs[k].run(g, k, n)
			}
		}()
	}
	go func() {
		wg.Wait()
		close(ph.done)
	}()
	return ph
}

// largestFirst is the documents' indexes by decreasing size.
func largestFirst(sizes [3]int) []int {
	ks := []int{0, 1, 2}
	slices.SortStableFunc(ks, func(a, b int) int { return sizes[b] - sizes[a] })
	return ks
}

// run hashes document k's header and saved blocks until stopped.
func (p *prefixHash) run(g *savedGen, k, n int) {
	h := sha256.New()
	hdr := docSpecs[k].header(n)
	h.Write(hdr)
	size := int64(len(hdr))
	p.mids[0], p.sizes[0] = marshalHash(h), size
	p.avail.Store(1)
	for i, bl := range g.blocks {
		if p.stop.Load() {
			return
		}
		key := bl.keys[k]
		data, ok := g.data[key]
		if !ok || !g.check(key, data) {
			return
		}
		h.Write(data)
		if g.drop != nil {
			// A pack too large to keep resident: running
			// ahead must not fault all of it in.
			g.drop(key)
		}
		size += int64(len(data))
		p.mids[i+1], p.sizes[i+1] = marshalHash(h), size
		p.avail.Store(int64(i + 2))
	}
}

// halt stops every stream and waits for the goroutine: afterwards mids
// and sizes below each avail may be read.
func (ph *prefixHashes) halt() {
	if ph == nil {
		return
	}
	for _, p := range ph.docs {
		p.stop.Store(true)
	}
	<-ph.done
}
