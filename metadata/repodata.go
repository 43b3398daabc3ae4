package metadata

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"hash/fnv"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
)

// The three documents of repodata, in createrepo_c's repomd record order.
type docSpec struct {
	typ    string
	header func(n int) []byte
	footer []byte
	frag   func(e *Entry) []byte
}

var docSpecs = [3]docSpec{
	{"primary", PrimaryHeader, PrimaryFooter(), func(e *Entry) []byte { return e.Primary }},
	{"filelists", FilelistsHeader, FilelistsFooter(), func(e *Entry) []byte { return e.Filelists }},
	{"other", OtherHeader, OtherFooter(), func(e *Entry) []byte { return e.Other }},
}

// Blocks group consecutive packages (in sort order). A package ends a block
// when a hash of its href says so, so block boundaries depend only on the
// neighbouring hrefs: adding or changing one package changes one block (or
// splits one in two), and every other block keeps its cached compressed
// frame. blockMax bounds the work of recompressing one block.
const (
	blockAvg = 64
	blockMax = 256
)

type span struct{ lo, hi int }

func partition(entries []*Entry) []span {
	return partitionBy(len(entries), func(i int) bool { return hashCut(entries[i].Href) })
}

// comparePublished orders packages as the repodata lists them: by file
// name, then by directory (createrepo_c's order), given each href split
// into its file name and directory.
func comparePublished(file1, dir1, file2, dir2 string) int {
	if c := strings.Compare(file1, file2); c != 0 {
		return c
	}
	return strings.Compare(dir1, dir2)
}

// hashCut says whether a package with this href ends a block by hash.
func hashCut(href string) bool {
	h := fnv.New64a()
	h.Write([]byte(href))
	return h.Sum64()%blockAvg == 0
}

// partitionBy is partition of n packages whose hashCut is cut(i) (a
// state knows it for the packages of its last build).
func partitionBy(n int, cut func(i int) bool) []span {
	spans := make([]span, 0, n/blockAvg+16)
	lo := 0
	for i := range n {
		if i+1-lo >= blockMax || cut(i) {
			spans = append(spans, span{lo, i + 1})
			lo = i + 1
		}
	}
	if lo < n {
		spans = append(spans, span{lo, n})
	}
	return spans
}

// sortEntries orders packages as createrepo_c does: by file name, then by
// directory. It validates what Publish relies on.
func sortEntries(entries []Entry) ([]*Entry, error) {
	out := make([]*Entry, len(entries))
	seen := make(map[string]bool, len(entries))
	for i := range entries {
		e := &entries[i]
		if e.Href == "" {
			return nil, fmt.Errorf("%w: entry %d has no href", ErrBadEntry, i)
		}
		if seen[e.Href] {
			return nil, fmt.Errorf("%w: href %q appears twice", ErrBadEntry, e.Href)
		}
		seen[e.Href] = true
		for _, d := range docSpecs {
			f := d.frag(e)
			if !bytes.HasPrefix(f, []byte("<package")) || !bytes.HasSuffix(f, []byte("</package>\n")) {
				return nil, fmt.Errorf("%w: %s fragment of %q is not one <package> element", ErrBadEntry, d.typ, e.Href)
			}
		}
		out[i] = e
	}
	// Split once, not in every comparison.
	type keyed struct {
		file, dir string
		e         *Entry
	}
	ks := make([]keyed, len(out))
	for i, e := range out {
		d, f := path.Split(e.Href)
		ks[i] = keyed{f, d, e}
	}
	slices.SortFunc(ks, func(a, b keyed) int { return comparePublished(a.file, a.dir, b.file, b.dir) })
	for i := range ks {
		out[i] = ks[i].e
	}
	return out, nil
}

// builtDoc is one compressed document, kept as its frames.
type builtDoc struct {
	typ    string
	frames [][]byte
	// tmp, instead of frames: the file (relative to the repository root)
	// the document was streamed to.
	tmp          string
	size         int64
	checksum     string
	openSize     int64
	openChecksum string
}

type buildStats struct {
	reused, compressed int
	keys               []string // distinct keys in use
	// The layout: packages (sorted) in blocks, and each block's key per
	// document. CreateRepo keeps it to skip work on the next --update.
	entries   []*Entry
	spans     []span
	blockKeys [3][]string
	frames    [3][][]byte // each block's compressed frame, per document
	// reusedFrom: for each block, the state's block it is (-1: built now).
	reusedFrom []int
	// mids: this build's midstates (with a state); midHits: documents
	// whose open-checksum started from a saved one.
	mids              *midSet
	midHits, cmidHits int
}

// keyHints lets a caller that knows a block's content is unchanged supply
// its keys instead of having them hashed again. A hint is looked up by
// the block's member hrefs (hintID); the caller vouches that the members'
// fragments are byte-identical to those the keys were computed from.
type keyHints map[string][3]string

func hintID(entries []*Entry) string {
	n := 0
	for _, e := range entries {
		n += len(e.Href) + 1
	}
	b := make([]byte, 0, n)
	for _, e := range entries {
		b = append(b, e.Href...)
		b = append(b, 0)
	}
	return string(b)
}

// buildDocs renders and compresses the three documents. Every block is
// looked up in the cache by the sha256 of its uncompressed bytes; only
// misses are compressed. open-checksum is a sha256 over the whole
// uncompressed document, which cannot be composed from per-block sums, so
// the uncompressed bytes are always hashed (about 2 GB/s with SHA-NI).
// With reuse (a PublishState's previous build), blocks identical to one
// of that build keep its key and frame: neither hashed nor fetched.
func buildDocs(ctx context.Context, entries []*Entry, c codec, cache BlockCache, workers int, p Progress, hints keyHints, reuse *stateReuse, recordMids bool) ([3]builtDoc, buildStats, error) {
	var docs [3]builtDoc
	var st buildStats
	var spans []span
	if reuse != nil {
		spans = partitionBy(len(entries), func(i int) bool {
			if o := reuse.oldPos[i]; o >= 0 {
				return reuse.s.cutAt[o]
			}
			return hashCut(entries[i].Href)
		})
	} else {
		spans = partition(entries)
	}
	keys := make([][]string, 3)
	for k := range keys {
		keys[k] = make([]string, len(spans))
	}
	var frames [3][][]byte
	for k := range frames {
		frames[k] = make([][]byte, len(spans))
	}
	hinted := make([]bool, len(spans))
	reusedFrom := make([]int, len(spans))
	for i := range reusedFrom {
		reusedFrom[i] = -1
	}
	reusedSpans := 0
	if reuse != nil {
		for i, s := range spans {
			if o := reuse.reusable(s); o >= 0 {
				hinted[i] = true
				reusedFrom[i] = o
				reusedSpans++
				ob := &reuse.s.blocks[o]
				for k := range keys {
					keys[k][i] = ob.keys[k]
					frames[k][i] = ob.frames[k]
				}
			} else if err := reuse.materialize(entries, s); err != nil {
				return docs, st, err
			}
		}
	} else if len(hints) > 0 {
		for i, s := range spans {
			if h, ok := hints[hintID(entries[s.lo:s.hi])]; ok {
				hinted[i] = true
				for k := range keys {
					keys[k][i] = h[k]
				}
			}
		}
	}

	// open-checksum (one sequential stream per document) runs beside
	// everything else: it is the one part proportional to the directory.
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	// With a state, open-checksum starts from a saved sha256 state at the
	// first changed block when one matches the package count
	// (midstate.go), and this build's states are recorded for the next.
	var own [3][]midpoint
	var srcSet [3]*midSet
	var srcB [3]int
	var srcH [3]hash.Hash
	var srcSize [3]int64
	var specS *midSet
	firstJ := 0
	if reuse != nil {
		specS = reuse.s.specSet()
		firstJ = firstChanged(reusedFrom)
		for k := range docSpecs {
			srcSet[k], srcB[k], srcH[k], srcSize[k] = reuse.s.midFor(len(entries), k, firstJ, specS)
		}
	}
	openG, openCtx := errgroup.WithContext(ctx)
	for k := range docSpecs {
		openG.Go(func() error {
			d := docSpecs[k]
			doc := &docs[k]
			doc.typ = d.typ
			var mids []midpoint
			if recordMids {
				mids = make([]midpoint, len(spans))
			}
			start := 0
			oh := srcH[k]
			if oh != nil {
				start, doc.openSize = srcB[k], srcSize[k]
				copy(mids, srcSet[k].mids[k][:start])
			} else {
				oh = sha256.New()
				hdr := d.header(len(entries))
				oh.Write(hdr)
				doc.openSize = int64(len(hdr))
			}
			var buf []byte
			var drop *pageDropper
			if reuse != nil {
				drop = &pageDropper{m: reuse.s.packMap}
				defer drop.flush()
			}
			for i := start; i < len(spans); i++ {
				s := spans[i]
				if i%16 == 0 && openCtx.Err() != nil {
					return openCtx.Err()
				}
				if mids != nil {
					mids[i] = midpoint{marshalHash(oh), doc.openSize}
				}
				if o := reusedFrom[i]; o >= 0 {
					// Unchanged: its bytes come from the state's file,
					// in one sequential read.
					if buf == nil {
						buf = make([]byte, 256<<10)
					}
					n, err := reuse.s.hashOld(oh, o, k, buf, drop)
					if err != nil {
						return err
					}
					doc.openSize += n
					continue
				}
				for _, e := range entries[s.lo:s.hi] {
					f := d.frag(e)
					oh.Write(f)
					doc.openSize += int64(len(f))
				}
			}
			own[k] = mids
			oh.Write(d.footer)
			doc.openSize += int64(len(d.footer))
			doc.openChecksum = hex.EncodeToString(oh.Sum(nil))
			return nil
		})
	}
	waitOpen := func() error {
		err := openG.Wait()
		if reuse != nil {
			dropMapped(reuse.s.packMap)
		}
		return err
	}
	fail := func(err error) ([3]builtDoc, buildStats, error) {
		waitOpen()
		return docs, st, err
	}

	// Block keys of the blocks not known, spread over the workers.
	g, gctx := errgroup.WithContext(ctx)
	next := make(chan [2]int)
	g.Go(func() error {
		defer close(next)
		for i := range spans {
			if hinted[i] {
				continue
			}
			for k := range docSpecs {
				select {
				case next <- [2]int{k, i}:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
		}
		return nil
	})
	for range min(workers, max(1, 3*(len(spans)-reusedSpans))) {
		g.Go(func() error {
			for j := range next {
				d := docSpecs[j[0]]
				s := spans[j[1]]
				kh := sha256.New()
				kh.Write([]byte("repoctl-block-v1\x00" + c.id() + "\x00" + d.typ + "\x00"))
				for _, e := range entries[s.lo:s.hi] {
					kh.Write(d.frag(e))
				}
				keys[j[0]][j[1]] = hex.EncodeToString(kh.Sum(nil))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fail(err)
	}

	var all []string
	seen := make(map[string]bool, 3*len(spans))
	for k := range keys {
		for _, key := range keys[k] {
			if !seen[key] {
				seen[key] = true
				all = append(all, key)
			}
		}
	}
	st.keys = all
	// Only blocks without a frame yet are looked up.
	var want []string
	asked := map[string]bool{}
	for k := range keys {
		for i, key := range keys[k] {
			if frames[k][i] == nil && !asked[key] {
				asked[key] = true
				want = append(want, key)
			}
		}
	}
	have := map[string][]byte{}
	if cache != nil && len(want) > 0 {
		var err error
		if have, err = cache.GetBlocks(ctx, want); err != nil {
			return fail(fmt.Errorf("reading block cache: %w", err))
		}
	}

	// Compress the misses with bounded workers.
	type job struct{ k, i int }
	var jobs []job
	queued := map[string]bool{}
	for k := range keys {
		for i, key := range keys[k] {
			if frames[k][i] != nil {
				continue
			}
			if b, ok := have[key]; ok {
				frames[k][i] = b
				continue
			}
			if queued[key] {
				continue
			}
			queued[key] = true
			jobs = append(jobs, job{k, i})
		}
	}
	st.compressed = len(jobs)
	st.reused = len(all) - len(jobs)
	p.Stage("compress", len(jobs))
	var mu sync.Mutex
	fresh := make(map[string][]byte, len(jobs))
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for _, j := range jobs {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			d := docSpecs[j.k]
			s := spans[j.i]
			n := 0
			for _, e := range entries[s.lo:s.hi] {
				n += len(d.frag(e))
			}
			buf := make([]byte, 0, n)
			for _, e := range entries[s.lo:s.hi] {
				buf = append(buf, d.frag(e)...)
			}
			out := c.encode(make([]byte, 0, n/4+64), buf)
			mu.Lock()
			fresh[keys[j.k][j.i]] = out
			mu.Unlock()
			p.Step(1)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	for k := range keys {
		for i, key := range keys[k] {
			if frames[k][i] == nil {
				frames[k][i] = fresh[key]
			}
		}
	}

	// The compressed files' checksums, one document per goroutine, from
	// a saved state at the first changed block when one matches
	// (midstate.go), recording this build's.
	var cown [3][]midpoint
	var chits [3]bool
	g, _ = errgroup.WithContext(ctx)
	for k, d := range docSpecs {
		g.Go(func() error {
			doc := &docs[k]
			hdr := c.encode(nil, d.header(len(entries)))
			doc.frames = make([][]byte, 0, len(spans)+2)
			doc.frames = append(doc.frames, hdr)
			doc.frames = append(doc.frames, frames[k]...)
			doc.frames = append(doc.frames, c.encode(nil, d.footer))
			var mids []midpoint
			if recordMids {
				mids = make([]midpoint, len(spans))
			}
			start := 0
			var h hash.Hash
			if reuse != nil {
				var set *midSet
				if set, start, h, doc.size = reuse.s.cmidFor(len(entries), k, firstJ, specS); h != nil {
					copy(mids, set.cmids[k][:start])
					chits[k] = true
				}
			}
			if h == nil {
				h, start = sha256.New(), 0
				h.Write(hdr)
				doc.size = int64(len(hdr))
			}
			for i := start; i < len(spans); i++ {
				if mids != nil {
					mids[i] = midpoint{marshalHash(h), doc.size}
				}
				f := frames[k][i]
				h.Write(f)
				doc.size += int64(len(f))
			}
			foot := doc.frames[len(doc.frames)-1]
			h.Write(foot)
			doc.size += int64(len(foot))
			doc.checksum = hex.EncodeToString(h.Sum(nil))
			cown[k] = mids
			return nil
		})
	}
	g.Wait()
	if err := waitOpen(); err != nil {
		return docs, st, err
	}
	if cache != nil && len(fresh) > 0 {
		if err := cache.PutBlocks(ctx, fresh); err != nil {
			return docs, st, fmt.Errorf("writing block cache: %w", err)
		}
	}
	st.entries, st.spans = entries, spans
	for k := range keys {
		st.blockKeys[k] = keys[k]
	}
	st.frames = frames
	st.reusedFrom = reusedFrom
	if recordMids {
		st.mids = &midSet{n: len(entries), mids: own, cmids: cown}
		for k := range st.mids.avail {
			st.mids.avail[k].Store(int64(len(spans)))
		}
		for k := range srcH {
			if srcH[k] != nil {
				st.midHits++
			}
			if chits[k] {
				st.cmidHits++
			}
		}
	}
	return docs, st, nil
}
