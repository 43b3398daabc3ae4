package metadata

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"
)

// CreateRepo's build streams: packages are read in their published order
// through a window of at most WithReadWindow packages, each package's XML
// is copied into its block as soon as the block before it is done, and
// every block is compressed, hashed and written to its document's file in
// the new generation directory as it is made. Nothing proportional to the
// repository stays in memory but the packages' identities (for the saved
// state) and the block keys.
//
// Two things need the package count, which is in each document's header:
// open-checksum (the header is hashed first) and the compressed file (the
// header is its first frame). The count is taken to be the number of
// files found; when some of them turn out not to be packages, the three
// files are rewritten with the right header once, as createrepo_c does.

// DefaultReadWindow is how many packages CreateRepo reads ahead of the
// block being assembled, per read worker.
const DefaultReadWindow = 32

// streamHeld, when set (tests), is told each time a package's fragments
// start or stop being held by the build: +1 when a read package is
// rendered, -1 when its fragments have been copied into its block.
var streamHeld func(delta int)

// streamWhole, when set (tests), is told of each saved block the build
// takes as it is (taken), whether the dispatch found it whole or its
// packages came one by one; and, taken false, of each block the dispatch
// found whole where the build's partition had drifted from the saved
// one, so that its packages went one by one.
var streamWhole func(taken bool)

// Tests: prefixWait makes the build wait for the early open-checksum
// streams to finish; prefixTook is told at which boundary the build took
// over each document's stream.
var (
	prefixWait bool
	prefixTook func(doc, boundary int)
)

type streamItem struct {
	f   scannedFile
	old *Entry // reused (--update), nil: read
	src int    // old's existingPackage.src
	pos int    // old's existingPackage.pos
}

// closedDone is the done channel of a slot that needs no reading.
var closedDone = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

type readSlot struct {
	f     scannedFile
	done  chan struct{}
	e     *Entry
	src   int
	pos   int
	err   error
	token bool
	// whole: the slot is these reused packages, which are block src-1
	// of the saved generation, all of it and in its order.
	whole []streamItem
}

// savedBlockAt says how many items from i on are, in order, all the
// members of the saved generation's block that items[i] comes from
// (first[b] is block b's first position), and end a block there as
// the partition draws them (or end the items); 0 if not. Such a run is
// the saved block as it is: the build takes it whole.
func savedBlockAt(items []streamItem, i int, saved *savedGen, first []int) int {
	it := &items[i]
	b := it.src - 1
	if it.old == nil || b < 0 || b >= len(saved.blocks) || it.pos != first[b]+1 {
		return 0
	}
	n := saved.blocks[b].n
	if n <= 0 || i+n > len(items) {
		return 0
	}
	for j := 1; j < n; j++ {
		if m := &items[i+j]; m.old == nil || m.src != it.src || m.pos != it.pos+j {
			return 0
		}
	}
	if i+n < len(items) && n < blockMax && !hashCut(items[i+n-1].f.href) {
		// It ended the saved generation, not the build's.
		return 0
	}
	return n
}

type streamBlock struct {
	raw    [3][]byte
	keys   [3]string
	frames [3][]byte
	fresh  [3]bool
	ready  chan struct{}
	saved  bool // raw is the saved state's (mapped) documents
}

type streamDoc struct {
	tmp      string
	f        *os.File
	bw       *bufio.Writer
	ch, oh   hash.Hash
	size     int64
	openSize int64
	hdrLen   int64
	keys     []string
}

func (d *streamDoc) write(b []byte) error {
	d.ch.Write(b)
	d.size += int64(len(b))
	_, err := d.bw.Write(b)
	return err
}

// streamResult is what the streaming build made.
type streamResult struct {
	docs    [3]builtDoc
	st      buildStats
	n       int
	skipped []SkippedFile
	blocks  []stateBlock
}

// blockSink batches blocks for a cache and puts them when enough bytes
// are waiting, so that they are not all held until the end.
type blockSink struct {
	mu    sync.Mutex
	c     BlockCache
	have  func(key string) (bool, error) // nil: put everything
	seen  map[string]bool
	batch map[string][]byte
	bytes int
}

const sinkFlushBytes = 2 << 20

func newBlockSink(c BlockCache, have func(string) (bool, error)) *blockSink {
	return &blockSink{c: c, have: have, seen: map[string]bool{}, batch: map[string][]byte{}}
}

func (s *blockSink) add(ctx context.Context, key string, data []byte) error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[key] {
		return nil
	}
	s.seen[key] = true
	if s.have != nil {
		ok, err := s.have(key)
		if err != nil || ok {
			return err
		}
	}
	s.batch[key] = data
	s.bytes += len(data)
	if s.bytes >= sinkFlushBytes {
		return s.flushLocked(ctx)
	}
	return nil
}

func (s *blockSink) flushLocked(ctx context.Context) error {
	if len(s.batch) == 0 {
		return nil
	}
	err := s.c.PutBlocks(ctx, s.batch)
	s.batch, s.bytes = map[string][]byte{}, 0
	return err
}

// drop gives back the memory pages of a block the sink's cache maps.
func (s *blockSink) drop(key string) {
	if s == nil {
		return
	}
	if dc, ok := s.c.(*DirCache); ok {
		dc.drop(key)
	}
}

func (s *blockSink) flush(ctx context.Context) error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushLocked(ctx)
}

// sortScanned orders files as sortEntries orders packages: by file name,
// then by directory.
func sortScanned(files []scannedFile) {
	type keyed struct {
		file, dir string
		i         int
	}
	ks := make([]keyed, len(files))
	for i, f := range files {
		d, n := path.Split(f.href)
		ks[i] = keyed{n, d, i}
	}
	slices.SortFunc(ks, func(a, b keyed) int { return comparePublished(a.file, a.dir, b.file, b.dir) })
	sorted := make([]scannedFile, len(files))
	for j, k := range ks {
		sorted[j] = files[k.i]
	}
	copy(files, sorted)
}

// attachOld looks each file up in old (scannedFile.old), once for the
// sort and the build.
func attachOld(files []scannedFile, old map[string]*existingPackage) {
	for i := range files {
		files[i].old = old[files[i].href]
	}
}

// sortScannedAs is sortScanned, knowing that old's packages with a
// saved place (existingPackage.pos, from the state) were published in
// that order: those files are put in it without comparisons, the others
// sorted among themselves and merged in. The saved order is checked on
// the way (one comparison per file, not a sort's log n); should it not
// hold, the files are sorted from scratch. Each file is looked up in old
// on the way (attachOld).
func sortScannedAs(files []scannedFile, old map[string]*existingPackage) {
	slot := make([]int32, len(old)) // 1 + index in files, by saved place
	var rest []scannedFile
	for i := range files {
		p := old[files[i].href]
		files[i].old = p
		f := files[i]
		if p != nil && p.pos > 0 && p.pos <= len(slot) && slot[p.pos-1] == 0 {
			slot[p.pos-1] = int32(i + 1)
		} else {
			rest = append(rest, f)
		}
	}
	known := make([]scannedFile, 0, len(files)-len(rest))
	for _, s := range slot {
		if s > 0 {
			known = append(known, files[s-1])
		}
	}
	cmp := func(a, b scannedFile) int {
		ad, af := path.Split(a.href)
		bd, bf := path.Split(b.href)
		return comparePublished(af, ad, bf, bd)
	}
	for i := 1; i < len(known); i++ {
		if cmp(known[i-1], known[i]) >= 0 {
			sortScanned(files)
			return
		}
	}
	slices.SortFunc(rest, cmp)
	out := make([]scannedFile, 0, len(files))
	for _, r := range rest {
		i, _ := slices.BinarySearchFunc(known, r, cmp)
		out = append(out, known[:i]...)
		out = append(out, r)
		known = known[i:]
	}
	out = append(out, known...)
	copy(files, out)
}

// streamBuild reads and renders the items (in published order), builds
// the three documents into files inside gen (which exists), puts new
// compressed blocks into the publish cache and, with rawSink, every
// block's uncompressed bytes into it for the saved state.
//
// With saved (the state's generation, when the items reuse it), blocks
// taken whole from it are checked as they are hashed, and the fragments
// copied out of it when they are first copied; a damaged one fails the
// build with errStateDamaged.
func streamBuild(ctx context.Context, root *os.Root, items []streamItem, cfg *createConfig, pcfg *publishConfig,
	workers, window int, rawSink *blockSink, spool *stateSpool, saved *savedGen) (*streamResult, error) {
	c := pcfg.codec
	p := pcfg.progress
	nSpec := len(items)
	out := &streamResult{}
	var docs [3]*streamDoc
	closeAll := func() {
		for _, d := range docs {
			if d != nil && d.f != nil {
				d.f.Close()
				d.f = nil
			}
		}
	}
	defer closeAll()
	for k, spec := range docSpecs {
		d := &streamDoc{tmp: genDirName + "/." + spec.typ + ".stream", ch: sha256.New(), oh: sha256.New()}
		f, err := root.OpenFile(d.tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return nil, fmt.Errorf("writing %q: %w", rootPath(root, d.tmp), err)
		}
		d.f, d.bw = f, bufio.NewWriterSize(f, 256<<10)
		docs[k] = d
		hdr := spec.header(nSpec)
		d.oh.Write(hdr)
		d.openSize = int64(len(hdr))
		hf := c.encode(nil, hdr)
		d.hdrLen = int64(len(hf))
		if err := d.write(hf); err != nil {
			return nil, fmt.Errorf("writing %q: %w", rootPath(root, d.tmp), err)
		}
	}
	var cacheSink *blockSink
	if pcfg.cache != nil {
		cacheSink = newBlockSink(pcfg.cache, nil)
	}

	toRead := 0
	for _, it := range items {
		if it.old == nil {
			toRead++
		}
	}
	p.Stage("read", toRead)
	depth := 2*workers + 2
	g, gctx := errgroup.WithContext(ctx)
	tokens := make(chan struct{}, window)
	ordered := make(chan *readSlot, window+256)
	work := make(chan *readSlot)
	blockWork := make(chan *streamBlock, depth)
	var docCh [3]chan *streamBlock
	for k := range docCh {
		docCh[k] = make(chan *streamBlock, depth)
	}

	var first []int // saved block b's first position
	if saved != nil {
		first = make([]int, len(saved.blocks))
		pos := 0
		for b, bl := range saved.blocks {
			first[b] = pos
			pos += bl.n
		}
	}

	// Dispatch in order: a package to read first takes a token.
	g.Go(func() error {
		defer close(ordered)
		defer close(work)
		for i := 0; i < len(items); i++ {
			it := &items[i]
			if first != nil && saved.blockOff != nil {
				if n := savedBlockAt(items, i, saved, first); n > 0 {
					s := &readSlot{done: closedDone, src: it.src, whole: items[i : i+n]}
					select {
					case ordered <- s:
					case <-gctx.Done():
						return gctx.Err()
					}
					i += n - 1
					continue
				}
			}
			s := &readSlot{f: it.f, done: closedDone}
			reused := it.old != nil
			if reused {
				s.e, s.src, s.pos = it.old, it.src, it.pos
			} else {
				s.done = make(chan struct{})
			}
			*it = streamItem{} // the slot has it now
			if !reused {
				select {
				case tokens <- struct{}{}:
				case <-gctx.Done():
					return gctx.Err()
				}
				s.token = true
				select {
				case work <- s:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			select {
			case ordered <- s:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for range workers {
		g.Go(func() error {
			for s := range work {
				e, err := readEntry(gctx, s.f, cfg.render)
				if err != nil {
					if gctx.Err() != nil {
						return gctx.Err()
					}
					s.err = err
				} else {
					if streamHeld != nil {
						streamHeld(1)
					}
					s.e = e
				}
				close(s.done)
			}
			return nil
		})
	}

	// Assemble blocks in order, as partition draws them.
	var skippedMu sync.Mutex
	g.Go(func() error {
		defer close(blockWork)
		defer func() {
			for k := range docCh {
				close(docCh[k])
			}
		}()
		cur := &streamBlock{ready: make(chan struct{})}
		members := 0
		// Block sizes vary widely (a block ends where an href hashes to
		// 0 mod blockAvg), so a new block's buffers start at the mean
		// size so far plus a quarter, and append grows the few larger
		// ones: sizing every block for the largest yet allocated (and
		// zeroed) three times the XML.
		var sizeSum [3]int
		nBlocks := 0
		// Reused packages are copied into the block only once it is
		// known to be changed: a block that turns out to be all of a
		// saved block, in order, is that block's documents as they are.
		type pendingEntry struct {
			e        *Entry
			src, pos int
		}
		var pending []pendingEntry
		copied := false
		var checked []bool // saved blocks whose documents were checked
		if saved != nil {
			checked = make([]bool, len(saved.blocks))
		}
		// put copies a package's fragments into the block, once they
		// are known to be one <package> element each; a reused one's
		// block of the saved state is checked first.
		put := func(e *Entry, src int) error {
			if src > 0 && saved != nil && !checked[src-1] {
				if !saved.checkBlock(src - 1) {
					return fmt.Errorf("%w: block %d", errStateDamaged, src-1)
				}
				checked[src-1] = true
			}
			for _, d := range docSpecs {
				f := d.frag(e)
				if !bytes.HasPrefix(f, pkgOpen) || !bytes.HasSuffix(f, pkgClose) {
					if src > 0 {
						return fmt.Errorf("%w: %s fragment of %q", errStateDamaged, d.typ, e.Href)
					}
					return fmt.Errorf("%w: %s fragment of %q is not one <package> element", ErrBadEntry, d.typ, e.Href)
				}
			}
			for k, d := range docSpecs {
				if cur.raw[k] == nil {
					c := 64 << 10
					if nBlocks > 0 {
						c = sizeSum[k] / nBlocks
						c += c / 4
					}
					cur.raw[k] = make([]byte, 0, max(c, len(d.frag(e))))
				}
				cur.raw[k] = append(cur.raw[k], d.frag(e)...)
			}
			return nil
		}
		materialize := func() error {
			for _, p := range pending {
				if err := put(p.e, p.src); err != nil {
					return err
				}
			}
			pending, copied = pending[:0], true
			return nil
		}
		// useSaved makes the current block saved block b, as it is.
		useSaved := func(b int) {
			bl := saved.blocks[b]
			cur.keys, cur.saved = bl.keys, true
			for k := range cur.raw {
				cur.raw[k] = saved.data[bl.keys[k]]
			}
		}
		// savedPending says whether the block's members, all pending,
		// are one saved block, all of it and in its order.
		savedPending := func() (int, bool) {
			if copied || first == nil || len(pending) != members || members == 0 {
				return 0, false
			}
			b := pending[0].src - 1
			if b < 0 || b >= len(saved.blocks) || saved.blocks[b].n != members {
				return 0, false
			}
			for j, pe := range pending {
				if pe.src != b+1 || pe.pos != first[b]+1+j {
					return 0, false
				}
			}
			return b, true
		}
		emit := func() error {
			if b, ok := savedPending(); ok {
				if streamWhole != nil {
					streamWhole(true)
				}
				useSaved(b)
				pending = pending[:0]
			}
			if err := materialize(); err != nil {
				return err
			}
			out.blocks = append(out.blocks, stateBlock{n: members})
			for k := range sizeSum {
				sizeSum[k] += len(cur.raw[k])
			}
			nBlocks++
			select {
			case blockWork <- cur:
			case <-gctx.Done():
				return gctx.Err()
			}
			for k := range docCh {
				select {
				case docCh[k] <- cur:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			cur = &streamBlock{ready: make(chan struct{})}
			members, copied = 0, false
			return nil
		}
		// one adds the package of slot s to the block.
		var one func(s *readSlot) error
		// wholeBlock adds a saved block taken whole: at a block's start
		// it is that block, as saved; elsewhere (the build's partition
		// has drifted from the saved one) its packages go one by one.
		wholeBlock := func(s *readSlot) error {
			drifted := members > 0 || len(pending) > 0 || copied
			if streamWhole != nil {
				streamWhole(!drifted)
			}
			if drifted {
				for _, m := range s.whole {
					if err := one(&readSlot{f: m.f, done: closedDone, e: m.old, src: m.src, pos: m.pos}); err != nil {
						return err
					}
				}
				return nil
			}
			b := s.src - 1
			n := saved.blocks[b].n
			useSaved(b)
			copied = true
			spool.addEncoded(saved.entryBytes[saved.blockOff[b]:saved.blockOff[b+1]], n)
			out.n += n
			members = n
			return emit()
		}
		one = func(s *readSlot) error {
			if s.err != nil {
				sk := SkippedFile{Path: s.f.path(), Reason: s.err.Error(), Err: s.err}
				skippedMu.Lock()
				out.skipped = append(out.skipped, sk)
				skippedMu.Unlock()
				p.Notice("skipped: " + sk.Reason)
				<-tokens
				p.Step(1)
				return nil
			}
			e := s.e
			var err error
			switch {
			case s.token:
				if err = materialize(); err == nil {
					err = put(e, 0)
				}
			case copied:
				err = put(e, s.src)
			default:
				pending = append(pending, pendingEntry{e, s.src, s.pos})
			}
			if err != nil {
				return err
			}
			spool.add(&stateEntry{href: e.Href, pkgid: e.PkgID, name: e.Name, arch: e.Arch,
				epoch: e.Epoch, version: e.Version, release: e.Release, size: e.Size, mtime: e.MTime,
				lens: [3]uint64{uint64(len(e.Primary)), uint64(len(e.Filelists)), uint64(len(e.Other))}})
			out.n++
			members++
			if s.token {
				s.e = nil
				if streamHeld != nil {
					streamHeld(-1)
				}
				<-tokens
				p.Step(1)
			}
			if members >= blockMax || hashCut(e.Href) {
				return emit()
			}
			return nil
		}
		for s := range ordered {
			select {
			case <-s.done:
			case <-gctx.Done():
				return gctx.Err()
			}
			var err error
			if s.whole != nil {
				err = wholeBlock(s)
				clear(s.whole)
			} else {
				err = one(s)
			}
			if err != nil {
				return err
			}
		}
		if members > 0 {
			return emit()
		}
		return nil
	})

	// Keys, cache look-ups and compression, over the workers.
	var statMu sync.Mutex
	for range workers {
		g.Go(func() error {
			for b := range blockWork {
				for k, d := range docSpecs {
					if b.keys[k] == "" {
						kh := sha256.New()
						kh.Write([]byte("repoctl-block-v1\x00" + c.id() + "\x00" + d.typ + "\x00"))
						kh.Write(b.raw[k])
						b.keys[k] = hex.EncodeToString(kh.Sum(nil))
					}
					if pcfg.cache != nil {
						have, err := pcfg.cache.GetBlocks(gctx, []string{b.keys[k]})
						if err != nil {
							return fmt.Errorf("reading block cache: %w", err)
						}
						if f, ok := have[b.keys[k]]; ok {
							b.frames[k] = f
						}
					}
					if b.frames[k] == nil {
						b.frames[k] = c.encode(make([]byte, 0, len(b.raw[k])/4+64), b.raw[k])
						b.fresh[k] = true
					}
				}
				statMu.Lock()
				for k := range docSpecs {
					if b.fresh[k] {
						out.st.compressed++
					} else {
						out.st.reused++
					}
				}
				statMu.Unlock()
				close(b.ready)
			}
			return nil
		})
	}

	// Each document's file, in order.
	for k := range docSpecs {
		g.Go(func() error {
			d := docs[k]
			// While the build's blocks are the saved generation's, in
			// the same places, the early stream (if any) has hashed
			// them: the build's hashing starts where they stop being.
			var ph *prefixHash
			if saved != nil && saved.prefix != nil && saved.prefix.docs[k].n == nSpec {
				ph = saved.prefix.docs[k]
			}
			i := 0
			if ph != nil && prefixWait {
				<-saved.prefix.done
			}
			takeOver := func() error {
				ph.stop.Store(true)
				if prefixTook != nil {
					prefixTook(k, i)
				}
				if i > 0 {
					h := restoreHash(ph.mids[i])
					if h == nil {
						return fmt.Errorf("restoring the %s checksum state", docSpecs[k].typ)
					}
					d.oh, d.openSize = h, ph.sizes[i]
				}
				ph = nil
				return nil
			}
			for b := range docCh[k] {
				select {
				case <-b.ready:
				case <-gctx.Done():
					return gctx.Err()
				}
				ahead := ph != nil && b.saved && i < len(saved.blocks) && b.keys[k] == saved.blocks[i].keys[k] &&
					ph.avail.Load() > int64(i+1)
				if !ahead && ph != nil {
					if err := takeOver(); err != nil {
						return err
					}
				}
				if !ahead {
					if b.saved && saved != nil && !saved.check(b.keys[k], b.raw[k]) {
						return fmt.Errorf("%w: %s block %s", errStateDamaged, docSpecs[k].typ, b.keys[k])
					}
					d.oh.Write(b.raw[k])
					d.openSize += int64(len(b.raw[k]))
				}
				i++
				if err := d.write(b.frames[k]); err != nil {
					return fmt.Errorf("writing %q: %w", rootPath(root, d.tmp), err)
				}
				d.keys = append(d.keys, b.keys[k])
				if b.fresh[k] {
					if err := cacheSink.add(gctx, b.keys[k], b.frames[k]); err != nil {
						return fmt.Errorf("writing block cache: %w", err)
					}
				}
				if b.saved {
					// Already in the pack (and just checked).
					rawSink.drop(b.keys[k])
				} else if err := rawSink.add(gctx, b.keys[k], b.raw[k]); err != nil {
					return err
				}
				b.raw[k], b.frames[k] = nil, nil
			}
			if ph != nil {
				// Every block was the saved one in its place.
				return takeOver()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := cacheSink.flush(ctx); err != nil {
		return nil, fmt.Errorf("writing block cache: %w", err)
	}
	if err := rawSink.flush(ctx); err != nil {
		return nil, err
	}
	sortSkipped(out.skipped)
	for k, spec := range docSpecs {
		d := docs[k]
		d.oh.Write(spec.footer)
		d.openSize += int64(len(spec.footer))
		err := d.write(c.encode(nil, spec.footer))
		if err == nil {
			err = d.bw.Flush()
		}
		if cerr := d.f.Close(); err == nil {
			err = cerr
		}
		d.f = nil
		if err != nil {
			return nil, fmt.Errorf("writing %q: %w", rootPath(root, d.tmp), err)
		}
		doc := builtDoc{typ: spec.typ, tmp: d.tmp, size: d.size, openSize: d.openSize,
			checksum: hex.EncodeToString(d.ch.Sum(nil)), openChecksum: hex.EncodeToString(d.oh.Sum(nil))}
		if out.n != nSpec {
			if err := rewriteCount(root, &doc, c, spec, d.hdrLen, nSpec, out.n); err != nil {
				return nil, fmt.Errorf("writing %q: %w", rootPath(root, d.tmp), err)
			}
		}
		out.docs[k] = doc
		out.st.blockKeys[k] = d.keys
	}
	for k := range out.st.blockKeys {
		out.st.keys = append(out.st.keys, out.st.blockKeys[k]...)
	}
	for i := range out.blocks {
		for k := range docSpecs {
			out.blocks[i].keys[k] = out.st.blockKeys[k][i]
		}
	}
	return out, nil
}

// rewriteCount replaces the header of a document streamed with nSpec
// packages by the header for n: the compressed body is copied after the
// new header frame, and the uncompressed document is read back for
// open-checksum.
func rewriteCount(root *os.Root, doc *builtDoc, c codec, spec docSpec, hdrLen int64, nSpec, n int) error {
	tmp2 := doc.tmp + ".count"
	if err := root.Remove(tmp2); err != nil && !os.IsNotExist(err) {
		return err
	}
	dst, err := root.OpenFile(tmp2, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer dst.Close()
	src, err := root.Open(doc.tmp)
	if err != nil {
		return err
	}
	defer src.Close()
	ch := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(dst, ch), 256<<10)
	hf := c.encode(nil, spec.header(n))
	w.Write(hf)
	body, err := io.Copy(w, io.NewSectionReader(src, hdrLen, doc.size-hdrLen))
	if err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	// The uncompressed document after its old header.
	dr, err := decompressedReader("x.xml"+c.ext(), io.NewSectionReader(src, 0, doc.size))
	if err != nil {
		return err
	}
	defer dr.Close()
	oldHdr := int64(len(spec.header(nSpec)))
	if _, err := io.CopyN(io.Discard, dr, oldHdr); err != nil {
		return err
	}
	oh := sha256.New()
	hdr := spec.header(n)
	oh.Write(hdr)
	rest, err := io.Copy(oh, dr)
	if err != nil {
		return err
	}
	if err := root.Rename(tmp2, doc.tmp); err != nil {
		return err
	}
	doc.size = int64(len(hf)) + body
	doc.checksum = hex.EncodeToString(ch.Sum(nil))
	doc.openSize = int64(len(hdr)) + rest
	doc.openChecksum = hex.EncodeToString(oh.Sum(nil))
	return nil
}

// createStreaming is the rest of CreateRepo (after the scan and the
// look-up of what --update reuses) for a run that writes: the streaming
// build, the saved state, and the publish. saved is the state's
// generation when old comes from it: if one of its blocks
// turns out damaged, the build is done again from the published
// repodata instead (or from the packages), as if there were no state.
func createStreaming(ctx context.Context, root *os.Root, dir string, files []scannedFile, old map[string]*existingPackage,
	res *CreateResult, cfg *createConfig, pcfg *publishConfig, workers int, base string,
	raw *DirCache, cacheRoot *os.Root, retain []string, saved *savedGen) (*CreateResult, error) {
	p := pcfg.progress
	sortScannedAs(files, old)
	nFiles := len(files)
	if dc, ok := pcfg.cache.(*DirCache); ok {
		// New frames are written once and not read back by this run.
		dc.forgetPuts = true
	}
	const gen = genDirName
	// Whatever happens, the unfinished generation goes (publishDocs
	// removes it too once it is swapped out).
	defer root.RemoveAll(gen)
	window := cfg.window
	if window <= 0 {
		window = DefaultReadWindow * workers
	}
	var sr *streamResult
	var spool *stateSpool
	defer func() { spool.close() }()
	if saved != nil {
		defer saved.prefix.halt()
	}
	freshRaw, toRead := false, 0
	for {
		var err error
		sr, spool, freshRaw, toRead, err = buildAttempt(ctx, root, dir, files, res, cfg, pcfg, workers, window,
			base, raw, cacheRoot, retain, saved)
		if err == nil {
			break
		}
		spool.close()
		if !errors.Is(err, errStateDamaged) || saved == nil {
			return nil, err
		}
		// Only a cache: build as if there were none.
		p.Notice(fmt.Sprintf("not reusing createrepo state: %v", err))
		saved.prefix.halt()
		old, retain, saved, pcfg.hints = nil, nil, nil, nil
		res.Reused, res.ReusedFrom = 0, ""
		if old, err = reuseRepodata(ctx, root, p, res); err != nil {
			return nil, err
		}
		attachOld(files, old)
	}
	if saved != nil {
		// Built: the saved generation's blocks (the mapped raw.pack) are
		// read no more, once the early streams have stopped. Unmapping
		// 38 MB at 10,000 packages takes about 2 ms; done here it runs
		// while the publish waits for its fsyncs.
		saved.prefix.halt()
		go raw.unmap()
	}
	res.Skipped = sr.skipped
	res.Read = toRead - len(res.Skipped)
	res.Packages = sr.n

	// The state is written (not yet put in place) while the publish
	// writes and waits for its fsyncs: a core is free then.
	var stateWritten chan error
	if cacheRoot != nil {
		var sums [3]string
		for k := range sr.docs {
			sums[k] = sr.docs[k].checksum
		}
		s := &repoState{checksums: sums, codecID: pcfg.codec.id(), base: base,
			changelog: int64(cfg.render.ChangelogLimit), blocks: sr.blocks}
		sr.blocks = nil
		stateWritten = make(chan error, 1)
		go func() { stateWritten <- spool.finish(s) }()
	}
	pub, err := publishDocs(ctx, root, sr.docs, sr.st, sr.n, pcfg, true)
	res.Publish = pub
	if cacheRoot != nil {
		stateSaved := false
		if serr := <-stateWritten; serr != nil {
			p.Notice(fmt.Sprintf("not saving createrepo state: %v", serr))
		} else {
			stateSaved = true
		}
		if err == nil && stateSaved {
			var serr error
			if freshRaw {
				serr = cacheRoot.Rename(rawPackNew, rawPackName)
				if errors.Is(serr, fs.ErrNotExist) {
					// No block was put (no packages): the new
					// pack is empty, and an older one is stale.
					if serr = cacheRoot.Remove(rawPackName); errors.Is(serr, fs.ErrNotExist) {
						serr = nil
					}
				}
			}
			if serr == nil {
				serr = commitState(cacheRoot)
			}
			if serr != nil {
				// Only a cache: the next --update reads the repodata instead.
				p.Notice(fmt.Sprintf("not saving createrepo state: %v", serr))
			}
		}
		discardState(cacheRoot)
		if freshRaw {
			cacheRoot.Remove(rawPackNew)
		}
	}
	if err != nil {
		return res, err
	}
	if len(res.Skipped) > 0 {
		return res, fmt.Errorf("createrepo %q: %w: %d of %d files are not valid packages",
			dir, ErrSomeSkipped, len(res.Skipped), nFiles)
	}
	return res, nil
}

// buildAttempt is one streaming build of createStreaming into a fresh
// generation directory, with its state spool and pack of uncompressed
// blocks.
func buildAttempt(ctx context.Context, root *os.Root, dir string, files []scannedFile,
	res *CreateResult, cfg *createConfig, pcfg *publishConfig, workers, window int, base string,
	raw *DirCache, cacheRoot *os.Root, retain []string, saved *savedGen) (sr *streamResult, spool *stateSpool, freshRaw bool, toRead int, err error) {
	items := make([]streamItem, len(files))
	for i, f := range files {
		items[i].f = f
		if o := f.old; o != nil && o.Size == f.size && o.MTime == f.mtime && o.base == base {
			items[i].old, items[i].src, items[i].pos = &o.Entry, o.src, o.pos
			res.Reused++
		}
	}
	toRead = len(files) - res.Reused
	const gen = genDirName
	if err := root.RemoveAll(gen); err != nil {
		return nil, nil, false, 0, fmt.Errorf("removing leftover %q: %w", rootPath(root, gen), err)
	}
	if err := root.Mkdir(gen, 0o755); err != nil {
		return nil, nil, false, 0, fmt.Errorf("createrepo %q: %w", dir, err)
	}

	// The uncompressed blocks for the next --update: appended to the
	// current pack when this run reuses its state (after forgetting
	// what older generations left), else written to a fresh pack that
	// replaces it once the publish succeeded.
	var rawSink *blockSink
	if cacheRoot != nil {
		if spool, err = newStateSpool(cacheRoot); err != nil {
			return nil, nil, false, 0, fmt.Errorf("saving createrepo state: %w", err)
		}
		if raw != nil && retain != nil {
			if err := raw.RetainBlocks(ctx, retain); err != nil {
				return nil, spool, false, 0, err
			}
			raw.forgetPuts = true
			rawSink = newBlockSink(raw, func(k string) (bool, error) { return raw.has(ctx, k) })
		} else {
			if err := cacheRoot.Remove(rawPackNew); err != nil && !os.IsNotExist(err) {
				return nil, spool, false, 0, fmt.Errorf("saving createrepo state: %w", err)
			}
			fresh := &DirCache{dir: raw.dir, root: cacheRoot, name: rawPackNew, sum: crc32cOf, sumSize: 4, forgetPuts: true}
			rawSink = newBlockSink(fresh, nil)
			freshRaw = true
		}
	}
	sr, err = streamBuild(ctx, root, items, cfg, pcfg, workers, window, rawSink, spool, saved)
	if err != nil {
		if freshRaw {
			cacheRoot.Remove(rawPackNew)
		}
		return nil, spool, false, 0, fmt.Errorf("createrepo %q: %w", dir, err)
	}
	return sr, spool, freshRaw, toRead, nil
}
