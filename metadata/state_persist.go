package metadata

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/klauspost/compress/gzip"
	"hash"
	"io"
	"os"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"
)

// A PublishState can outlive its process: Save writes the layout of its
// last build (packages in order with their fragments' lengths, blocks
// with their keys), and LoadPublishState rebuilds the state from that
// layout and the block cache, which holds every block's compressed
// frame. The uncompressed blocks come from decompressing the frames, and
// the whole is checked against the directory's published repomd.xml:
// both checksums of every document must be those the repodata carries,
// so that a stale, truncated or edited file is refused, never trusted.

// ErrStaleState is a saved publish state that cannot be used: it does
// not describe the directory's published repodata, or does not decode.
var ErrStaleState = errors.New("metadata: saved publish state does not match the published repodata")

const pubStateMagic = "repoctl-publish-state-1\n"

// Caps on what a saved state may declare, checked before allocating.
const (
	maxPubStatePackages = 1 << 24
	maxPubStateString   = 4096
)

// Save writes s's last build to w (see LoadPublishState). A state without
// one (new, closed, or reset by an error) fails with ErrStaleState.
func (s *PublishState) Save(w io.Writer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.usable(s.codecID) {
		return fmt.Errorf("%w: nothing built", ErrStaleState)
	}
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(w, h), 1<<20)
	var tmp []byte
	num := func(v uint64) { tmp = binary.AppendUvarint(tmp[:0], v); bw.Write(tmp) }
	str := func(v string) { num(uint64(len(v))); bw.WriteString(v) }
	bw.WriteString(pubStateMagic)
	str(s.codecID)
	num(uint64(len(s.order)))
	num(uint64(len(s.blocks)))
	for i := range s.blocks {
		b := &s.blocks[i]
		num(uint64(b.hi - b.lo))
		for k := range 3 {
			str(b.keys[k])
			num(uint64(b.rawLen[k]))
		}
	}
	for _, id := range s.order {
		p := &s.pkgs[id]
		str(p.href)
		str(p.pkgid)
		for k := range 3 {
			num(uint64(p.lens[k]))
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("saving publish state: %w", err)
	}
	if _, err := w.Write(h.Sum(nil)); err != nil {
		return fmt.Errorf("saving publish state: %w", err)
	}
	return nil
}

// pubStateReader decodes a saved state with caps, hashing what it reads.
type pubStateReader struct {
	r   *bufio.Reader
	h   hash.Hash
	err error
}

func (r *pubStateReader) ReadByte() (byte, error) {
	b, err := r.r.ReadByte()
	if err == nil {
		r.h.Write([]byte{b})
	}
	return b, err
}

func (r *pubStateReader) num(limit uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(r)
	if err == nil && v > limit {
		err = fmt.Errorf("a count of %d, more than %d", v, limit)
	}
	if err != nil {
		r.err = err
		return 0
	}
	return v
}

func (r *pubStateReader) str() string {
	n := r.num(maxPubStateString)
	if r.err != nil {
		return ""
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.r, b); err != nil {
		r.err = err
		return ""
	}
	r.h.Write(b)
	return string(b)
}

// LoadPublishState rebuilds a state saved by Save from saved, for the
// repository directory whose published repomd.xml is repomd, taking the
// blocks' frames from cache. Its scratch file goes into scratchDir, as
// with NewPublishState. Anything that does not match (the codec, a
// block missing from the cache, a document's checksum or open-checksum,
// a fragment that is not one <package> element of its package) fails
// with ErrStaleState; the caller then starts from NewPublishState.
//
// The work is proportional to the directory's uncompressed repodata
// (decompressing and hashing it once), not to its packages' rendering.
//
// known, if not nil, returns the caller's own href and pkgid strings of
// a package it holds (ok false: not one of them), so that the state
// shares them instead of holding copies: 100 bytes a package.
func LoadPublishState(ctx context.Context, scratchDir string, saved io.Reader, repomd []byte, cache BlockCache,
	known func(href string) (h, pkgid string, ok bool)) (*PublishState, error) {
	s, err := loadPublishState(ctx, scratchDir, saved, repomd, cache, known)
	if err != nil {
		if errors.Is(err, ErrStaleState) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrStaleState, err)
	}
	return s, nil
}

func loadPublishState(ctx context.Context, scratchDir string, saved io.Reader, repomd []byte, cache BlockCache,
	known func(string) (string, string, bool)) (*PublishState, error) {
	if cache == nil {
		return nil, errors.New("no block cache")
	}
	r := &pubStateReader{r: bufio.NewReaderSize(saved, 1<<20), h: sha256.New()}
	magic := make([]byte, len(pubStateMagic))
	if _, err := io.ReadFull(r.r, magic); err != nil || string(magic) != pubStateMagic {
		return nil, errors.New("not a saved publish state")
	}
	r.h.Write(magic)
	codecID := r.str()
	var c codec
	for _, name := range []string{CompressZstd, CompressGzip} {
		if cc, err := newCodec(name); err == nil && cc.id() == codecID {
			c = cc
		}
	}
	if r.err == nil && c == nil {
		return nil, fmt.Errorf("unknown codec %q", codecID)
	}
	np := int(r.num(maxPubStatePackages))
	nb := int(r.num(uint64(max(np, 1))))
	if r.err != nil {
		return nil, fmt.Errorf("reading the header: %w", r.err)
	}
	if np == 0 || nb == 0 {
		return nil, errors.New("an empty build")
	}
	// Slices grow with what the file holds, not with what it declares.
	s := &PublishState{dir: scratchDir, codecID: codecID, blocks: make([]pubBlock, 0, min(nb, 1<<14))}
	lo := 0
	for i := range nb {
		s.blocks = append(s.blocks, pubBlock{})
		b := &s.blocks[i]
		n := int(r.num(blockMax))
		if r.err == nil && (n == 0 || lo+n > np) {
			return nil, fmt.Errorf("block %d of %d packages at %d does not fit %d packages", i, n, lo, np)
		}
		b.lo, b.hi = int32(lo), int32(lo+n)
		lo += n
		for k := range 3 {
			b.keys[k] = r.str()
			b.rawLen[k] = uint32(r.num(1<<32 - 1))
		}
		if r.err != nil {
			return nil, fmt.Errorf("reading block %d: %w", i, r.err)
		}
	}
	if lo != np {
		return nil, fmt.Errorf("blocks cover %d of %d packages", lo, np)
	}
	s.pkgs = make([]statePkg, 0, min(np, 1<<16))
	s.order = make([]int32, 0, min(np, 1<<16))
	s.posOf = make([]int32, 0, min(np, 1<<16))
	s.cutAt = make([]bool, 0, min(np, 1<<16))
	s.byHref = make(map[string]int32, min(np, 1<<16))
	var prevFile, prevDir string
	for bi := range s.blocks {
		b := &s.blocks[bi]
		var off [3]uint32
		for j := b.lo; j < b.hi; j++ {
			p := statePkg{}
			p.href, p.pkgid = r.str(), r.str()
			for k := range 3 {
				p.lens[k] = uint32(r.num(1<<32 - 1))
			}
			if r.err != nil {
				return nil, fmt.Errorf("reading package %d: %w", j, r.err)
			}
			if p.href == "" || p.pkgid == "" {
				return nil, fmt.Errorf("package %d without href or pkgid", j)
			}
			if known != nil {
				if h, id, ok := known(p.href); ok && h == p.href && id == p.pkgid {
					p.href, p.pkgid = h, id
				}
			}
			if _, dup := s.byHref[p.href]; dup {
				return nil, fmt.Errorf("href %q twice", p.href)
			}
			d, f := path.Split(p.href)
			if j > 0 {
				if comparePublished(prevFile, prevDir, f, d) >= 0 {
					return nil, fmt.Errorf("href %q out of order", p.href)
				}
			}
			prevFile, prevDir = f, d
			p.off = off
			for k := range 3 {
				if uint64(off[k])+uint64(p.lens[k]) > uint64(b.rawLen[k]) {
					return nil, fmt.Errorf("package %q overruns its block", p.href)
				}
				off[k] += p.lens[k]
			}
			// A block boundary by hash depends on the href alone, as
			// the build that saved the state decided it.
			id := int32(len(s.pkgs))
			s.pkgs = append(s.pkgs, p)
			s.order = append(s.order, id)
			s.posOf = append(s.posOf, j)
			s.cutAt = append(s.cutAt, hashCut(p.href))
			s.byHref[p.href] = id
		}
		if off != b.rawLen {
			return nil, fmt.Errorf("block %d: its packages' lengths %v do not add up to %v", bi, off, b.rawLen)
		}
	}
	sum := r.h.Sum(nil)
	tail := make([]byte, len(sum))
	if _, err := io.ReadFull(r.r, tail); err != nil || !bytes.Equal(tail, sum) {
		return nil, errors.New("the file's checksum does not match (truncated or edited)")
	}

	// What the published repodata says of each document.
	md, err := parseRepomd(repomd)
	if err != nil {
		return nil, err
	}
	var want [3]*RepomdRecord
	var base [3]int64
	var total int64
	for k, d := range docSpecs {
		rec := md.Record(d.typ)
		if rec == nil || !strings.HasSuffix(rec.Href, c.ext()) {
			return nil, fmt.Errorf("repomd.xml has no %s%s record", d.typ, c.ext())
		}
		want[k] = rec
		base[k] = total
		var n int64
		for i := range s.blocks {
			n += int64(s.blocks[i].rawLen[k])
		}
		if rec.OpenSize >= 0 && n+int64(len(d.header(np))+len(d.footer)) != rec.OpenSize {
			return nil, fmt.Errorf("%s: %d bytes of blocks where repomd.xml says open-size %d", d.typ, n, rec.OpenSize)
		}
		total += n
	}

	keys := make([]string, 0, 3*nb)
	seen := map[string]bool{}
	for i := range s.blocks {
		for _, k := range s.blocks[i].keys {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	frames, err := cache.GetBlocks(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("reading block cache: %w", err)
	}
	for i := range s.blocks {
		b := &s.blocks[i]
		for k := range 3 {
			if b.frames[k] = frames[b.keys[k]]; b.frames[k] == nil {
				return nil, fmt.Errorf("block %s is not in the cache", b.keys[k])
			}
		}
	}

	f, err := os.CreateTemp(scratchDir, ".publish-state-*")
	if err != nil {
		return nil, fmt.Errorf("creating publish state: %w", err)
	}
	os.Remove(f.Name())
	g, gctx := errgroup.WithContext(ctx)
	for k, d := range docSpecs {
		g.Go(func() error {
			return s.restoreDoc(gctx, f, c, k, d, base[k], want[k])
		})
	}
	if err := g.Wait(); err != nil {
		f.Close()
		return nil, err
	}
	s.pack, s.packEnd, s.live = f, total, total
	s.mapPack()
	return s, nil
}

// restoreDoc decompresses document k's blocks into f from offset at,
// checks each member's fragment, and compares the document's checksums
// with rec.
func (s *PublishState) restoreDoc(ctx context.Context, f *os.File, c codec, k int, d docSpec, at int64, rec *RepomdRecord) error {
	np := len(s.order)
	oh, ch := sha256.New(), sha256.New()
	oh.Write(d.header(np))
	ch.Write(c.encode(nil, d.header(np)))
	var zd *zstd.Decoder
	var gz *gzip.Reader
	if c.name() == CompressZstd {
		var err error
		if zd, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(maxOpenSize))); err != nil {
			return err
		}
		defer zd.Close()
	}
	var buf []byte
	for i := range s.blocks {
		if i%64 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		b := &s.blocks[i]
		frame := b.frames[k]
		n := int(b.rawLen[k])
		var err error
		if zd != nil {
			buf, err = zd.DecodeAll(frame, buf[:0])
		} else {
			buf, err = gunzipFrame(&gz, frame, buf[:0], n)
		}
		if err != nil {
			return fmt.Errorf("block %s: %w", b.keys[k], err)
		}
		if len(buf) != n {
			return fmt.Errorf("block %s: %d bytes, the state says %d", b.keys[k], len(buf), n)
		}
		for j := b.lo; j < b.hi; j++ {
			p := &s.pkgs[s.order[j]]
			fr := buf[p.off[k] : p.off[k]+p.lens[k]]
			head := fr[:min(len(fr), 4096)]
			if !bytes.HasPrefix(fr, []byte("<package")) || !bytes.HasSuffix(fr, []byte("</package>\n")) || !bytes.Contains(head, []byte(p.pkgid)) {
				return fmt.Errorf("the %s fragment of %q is not its <package> element", d.typ, p.href)
			}
		}
		oh.Write(buf)
		ch.Write(frame)
		if _, err := f.WriteAt(buf, at); err != nil {
			return fmt.Errorf("writing publish state: %w", err)
		}
		b.raw[k] = at
		at += int64(n)
	}
	oh.Write(d.footer)
	ch.Write(c.encode(nil, d.footer))
	if got := hex.EncodeToString(oh.Sum(nil)); got != rec.OpenChecksum {
		return fmt.Errorf("%s: open-checksum %s, repomd.xml says %s", d.typ, got, rec.OpenChecksum)
	}
	if got := hex.EncodeToString(ch.Sum(nil)); got != rec.Checksum {
		return fmt.Errorf("%s: checksum %s, repomd.xml says %s", d.typ, got, rec.Checksum)
	}
	return nil
}

// gunzipFrame appends the content of one gzip member to dst, reading at
// most n+1 bytes of it.
func gunzipFrame(zr **gzip.Reader, frame, dst []byte, n int) ([]byte, error) {
	var err error
	if *zr == nil {
		*zr, err = gzip.NewReader(bytes.NewReader(frame))
	} else {
		err = (*zr).Reset(bytes.NewReader(frame))
	}
	if err != nil {
		return dst, err
	}
	(*zr).Multistream(false)
	if cap(dst) < n+1 {
		dst = make([]byte, 0, n+1)
	}
	got, err := io.ReadFull(*zr, dst[:n+1])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return dst, err
	}
	return dst[:got], nil
}
