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
	"hash/crc32"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// BlockCache keeps compressed blocks between publishes so that a publish
// after a small change recompresses only the blocks that changed.
//
// A key is a lowercase sha256 hex string naming a block's uncompressed
// content together with the compression settings; the value stored under
// a key never changes. GetBlocks must return exactly the bytes given to
// PutBlocks (Publish trusts them: they go verbatim into repodata), or
// leave the key out. repo's bbolt store implements this; standalone
// createrepo uses DirCache.
type BlockCache interface {
	// GetBlocks returns the blocks it holds among keys. Absent keys are
	// misses, not errors. The returned slices must not be modified later
	// by the cache.
	GetBlocks(ctx context.Context, keys []string) (map[string][]byte, error)
	// PutBlocks stores new blocks.
	PutBlocks(ctx context.Context, blocks map[string][]byte) error
}

// BlockCacheRetainer is optionally implemented by a BlockCache that wants
// to forget blocks: after a successful publish, RetainBlocks receives
// every key the published generation uses. A cache shared by several
// repositories should not implement it (or should merge the sets).
type BlockCacheRetainer interface {
	RetainBlocks(ctx context.Context, keys []string) error
}

// CacheDirName is where standalone createrepo keeps its block cache,
// inside the repository directory but outside repodata/, which is what
// clients fetch.
const CacheDirName = ".repoctl-cache"

const (
	packName    = "blocks.pack"
	rawPackName = "raw.pack"
	packMagic   = "RCB1"
	// A record: magic, 32-byte key, 4-byte length, data, checksum(data).
	packRecHead = 4 + sha256.Size + 4
)

// DirCache is a BlockCache kept in one append-only pack file in a
// directory: one write per publish rather than one file per block. Every
// record carries a checksum of its data, so a torn or damaged record (the
// cache is not fsynced: it is only a cache) reads as a miss, never as wrong
// metadata. RetainBlocks compacts the pack when most of it is dead.
type DirCache struct {
	dir  string
	name string
	// root, when set, is dir opened by its owner (CreateRepo opens its
	// cache directory through the repository's root), which closes it.
	// Otherwise each operation opens dir. Either way the pack files are
	// reached only through a root on dir.
	root *os.Root
	// sum is sha256 for compressed blocks; CreateRepo's pack of
	// uncompressed blocks uses CRC-32C, since it is 8 times larger and
	// only needs to catch torn writes.
	sum     func([]byte) []byte
	sumSize int

	// forgetPuts: PutBlocks does not keep what it wrote in memory, only
	// where (spilled); GetBlocks and RetainBlocks read such blocks back
	// from the file. For CreateRepo, which writes every block of a large
	// repository once and rarely reads one back.
	forgetPuts bool

	// dropPages: the pack is mapped without populating it, and pages
	// are given back (madvise) once looked at, so that an update of a
	// large repository does not keep its whole uncompressed XML
	// resident. The mapping is of the file, so dropped pages read back
	// the same bytes. For CreateRepo's uncompressed pack.
	dropPages bool
	// keepBelow: a pack smaller than this is populated and kept even
	// with dropPages (dropPagesMin for CreateRepo's pack).
	keepBelow int64
	mapping   []byte
	offs      map[string]int // key → offset of its data in mapping
	// mapped is the pack's mapping, populated or not, for unmap.
	mapped []byte

	// lazySums: load indexes records without checking their checksums,
	// which are checked only for the blocks used (verify), in the same
	// pass that hashes them: CreateRepo's --update reads the few blocks it
	// rebuilds and hashes the others for open-checksum, so a separate
	// pass over the whole pack would touch every byte once more. GetBlocks,
	// has and compaction still check what they return or keep.
	lazySums bool
	sums     map[string][]byte // key → stored checksum (lazySums)

	mu      sync.Mutex
	loaded  bool
	index   map[string][]byte
	spilled map[string][2]int64 // key → offset and length of its data
	size    int64               // bytes of the pack file that index describes
}

// NewDirCache returns a DirCache in dir, creating the directory.
func NewDirCache(dir string) (*DirCache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating block cache %q: %w", dir, err)
	}
	return &DirCache{dir: dir, name: packName, sum: sha256Of, sumSize: sha256.Size}, nil
}

func sha256Of(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32cOf(b []byte) []byte {
	return binary.BigEndian.AppendUint32(nil, crc32.Checksum(b, castagnoli))
}

// newDirCacheIn returns CreateRepo's compressed-block cache in the open
// directory root (named dir in messages).
func newDirCacheIn(root *os.Root, dir string) *DirCache {
	return &DirCache{dir: dir, root: root, name: packName, sum: sha256Of, sumSize: sha256.Size}
}

// newRawCacheIn returns CreateRepo's uncompressed-block cache in root.
func newRawCacheIn(root *os.Root, dir string) *DirCache {
	return &DirCache{dir: dir, root: root, name: rawPackName, sum: crc32cOf, sumSize: 4, dropPages: true, keepBelow: dropPagesMin, lazySums: true}
}

// openRoot returns the cache directory and what to call when done.
func (c *DirCache) openRoot() (*os.Root, func(), error) {
	if c.root != nil {
		return c.root, func() {}, nil
	}
	r, err := os.OpenRoot(c.dir)
	if err != nil {
		return nil, nil, err
	}
	return r, func() { r.Close() }, nil
}

func (c *DirCache) load() error {
	if c.loaded {
		return nil
	}
	c.index = map[string][]byte{}
	var b []byte
	root, done, err := c.openRoot()
	if err == nil {
		var mapped bool
		var populated bool
		b, mapped, populated, err = readMapped(root, c.name, c.dropPages, c.keepBelow)
		done()
		if mapped {
			c.mapped = b
		}
		if c.dropPages && mapped && !populated {
			// Never advise memory that is not the file's mapping.
			c.mapping, c.offs = b, map[string]int{}
		}
	}
	dropped := 0
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reading block cache: %w", err)
	}
	pos := 0
	for len(b)-pos >= packRecHead+c.sumSize {
		if string(b[pos:pos+4]) != packMagic {
			break
		}
		key := hex.EncodeToString(b[pos+4 : pos+4+sha256.Size])
		n := int(binary.BigEndian.Uint32(b[pos+4+sha256.Size:]))
		start := pos + packRecHead
		if n < 0 || n > len(b)-start-c.sumSize {
			break
		}
		data := b[start : start+n : start+n]
		stored := b[start+n : start+n+c.sumSize : start+n+c.sumSize]
		if c.lazySums {
			if c.sums == nil {
				c.sums = map[string][]byte{}
			}
			c.sums[key] = stored
		} else if !bytes.Equal(c.sum(data), stored) {
			break
		}
		c.index[key] = data
		if c.offs != nil {
			c.offs[key] = start
		}
		pos = start + n + c.sumSize
		if c.mapping != nil && pos-dropped >= 8<<20 {
			dropped = c.dropRange(dropped, pos)
		}
	}
	if c.mapping != nil {
		c.dropRange(dropped, len(b))
	}
	// Anything after the first bad record is ignored and overwritten by
	// the next append.
	c.size = int64(pos)
	c.loaded = true
	return nil
}

// GetBlocks implements BlockCache.
func (c *DirCache) GetBlocks(ctx context.Context, keys []string) (map[string][]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.load(); err != nil {
		return nil, err
	}
	return c.getLocked(keys, true)
}

// getUnverified is GetBlocks without checking lazily indexed records:
// the caller checks each block it uses with verify.
func (c *DirCache) getUnverified(ctx context.Context, keys []string) (map[string][]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.load(); err != nil {
		return nil, err
	}
	return c.getLocked(keys, false)
}

// verify says whether data, which GetBlocks or getUnverified returned for
// key, matches the checksum stored with it.
func (c *DirCache) verify(key string, data []byte) bool {
	c.mu.Lock()
	stored, ok := c.sums[key]
	c.mu.Unlock()
	if !ok {
		return true // checked when loaded, or written by this process
	}
	return bytes.Equal(c.sum(data), stored)
}

// checkedLocked is whether an indexed record passes its checksum.
func (c *DirCache) checkedLocked(key string, data []byte) bool {
	stored, ok := c.sums[key]
	return !ok || bytes.Equal(c.sum(data), stored)
}

func (c *DirCache) getLocked(keys []string, check bool) (map[string][]byte, error) {
	out := make(map[string][]byte, len(keys))
	var back []string
	for _, k := range keys {
		if b, ok := c.index[k]; ok {
			if check && !c.checkedLocked(k, b) {
				continue // damaged: a miss
			}
			out[k] = b
		} else if _, ok := c.spilled[k]; ok {
			back = append(back, k)
		}
	}
	if len(back) > 0 {
		if err := c.readSpilled(back, out); err != nil {
			return nil, fmt.Errorf("reading block cache: %w", err)
		}
	}
	return out, nil
}

// has says whether the cache holds key, without reading it.
func (c *DirCache) has(ctx context.Context, key string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.load(); err != nil {
		return false, err
	}
	b, ok := c.index[key]
	if ok {
		ok = c.checkedLocked(key, b)
	} else {
		_, ok = c.spilled[key]
	}
	return ok, nil
}

// readSpilled reads spilled blocks back from the pack file into out.
func (c *DirCache) readSpilled(keys []string, out map[string][]byte) error {
	root, done, err := c.openRoot()
	if err != nil {
		return err
	}
	defer done()
	f, err := root.Open(c.name)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, k := range keys {
		loc := c.spilled[k]
		b := make([]byte, loc[1])
		if _, err := f.ReadAt(b, loc[0]); err != nil {
			return err
		}
		out[k] = b
	}
	return nil
}

// writeRecord writes one pack record.
func (c *DirCache) writeRecord(w io.Writer, key string, data []byte) error {
	raw, err := hex.DecodeString(key)
	if err != nil || len(raw) != sha256.Size {
		return fmt.Errorf("block cache: invalid key %q", key)
	}
	head := make([]byte, 0, packRecHead)
	head = append(head, packMagic...)
	head = append(head, raw...)
	head = binary.BigEndian.AppendUint32(head, uint32(len(data)))
	if _, err := w.Write(head); err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	_, err = w.Write(c.sum(data))
	return err
}

// PutBlocks implements BlockCache: one append to the pack file.
func (c *DirCache) PutBlocks(ctx context.Context, blocks map[string][]byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.load(); err != nil {
		return err
	}
	var added []string
	for k := range blocks {
		_, spilled := c.spilled[k]
		if b, ok := c.index[k]; ok && !c.checkedLocked(k, b) {
			// A damaged record is written again (and found first
			// from now on: see the index update below).
			delete(c.index, k)
		}
		if _, ok := c.index[k]; !ok && !spilled {
			if !validKey(k) {
				return fmt.Errorf("block cache: invalid key %q", k)
			}
			added = append(added, k)
		}
	}
	if len(added) == 0 {
		return ctx.Err()
	}
	root, done, err := c.openRoot()
	if err != nil {
		return fmt.Errorf("writing block cache: %w", err)
	}
	defer done()
	f, err := root.OpenFile(c.name, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("writing block cache: %w", err)
	}
	// Append at the end of the valid part, dropping a torn tail.
	cw := &countingWriter{w: f}
	bw := bufio.NewWriterSize(cw, 256<<10)
	_, err = f.Seek(c.size, io.SeekStart)
	offs := make([]int64, len(added))
	for i, k := range added {
		if err != nil {
			break
		}
		offs[i] = c.size + cw.n + int64(bw.Buffered()) + packRecHead
		err = c.writeRecord(bw, k, blocks[k])
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Truncate(c.size + cw.n)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing block cache: %w", err)
	}
	c.size += cw.n
	for i, k := range added {
		delete(c.sums, k) // written by this process: good
		if c.forgetPuts {
			if c.spilled == nil {
				c.spilled = map[string][2]int64{}
			}
			c.spilled[k] = [2]int64{offs[i], int64(len(blocks[k]))}
		} else {
			c.index[k] = blocks[k]
		}
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func validKey(k string) bool {
	if len(k) != 2*sha256.Size {
		return false
	}
	for _, r := range k {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// RetainBlocks implements BlockCacheRetainer: blocks not in keys are
// forgotten, and the pack is rewritten when they make up most of it.
func (c *DirCache) RetainBlocks(ctx context.Context, keys []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.load(); err != nil {
		return err
	}
	keep := make(map[string]bool, len(keys))
	live := int64(0)
	for _, k := range keys {
		if keep[k] {
			continue
		}
		if b, ok := c.index[k]; ok {
			keep[k] = true
			live += int64(packRecHead + len(b) + c.sumSize)
		} else if loc, ok := c.spilled[k]; ok {
			keep[k] = true
			live += packRecHead + loc[1] + int64(c.sumSize)
		}
	}
	if c.size <= 2*live+(1<<20) {
		return nil
	}
	root, done, err := c.openRoot()
	if err != nil {
		return fmt.Errorf("compacting block cache: %w", err)
	}
	defer done()
	// A leftover temp file (or a symbolic link in its place) is removed,
	// never written through.
	tmp := c.name + ".tmp"
	if err := root.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("compacting block cache: %w", err)
	}
	f, err := root.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666) // as os.Create
	if err != nil {
		return fmt.Errorf("compacting block cache: %w", err)
	}
	cw := &countingWriter{w: f}
	bw := bufio.NewWriterSize(cw, 256<<10)
	var old *os.File
	moved := map[string][2]int64{}
	for k := range keep {
		data, ok := c.index[k]
		if ok && !c.checkedLocked(k, data) {
			// Lazily indexed and damaged: not copied (a checksum
			// computed afresh would make it look good).
			delete(keep, k)
			continue
		}
		if !ok {
			// Spilled: copied from the old file, still not kept.
			if old == nil {
				if old, err = root.Open(c.name); err != nil {
					break
				}
				defer old.Close()
			}
			loc := c.spilled[k]
			data = make([]byte, loc[1])
			if _, err = old.ReadAt(data, loc[0]); err != nil {
				break
			}
			moved[k] = [2]int64{cw.n + int64(bw.Buffered()) + packRecHead, loc[1]}
		}
		if err = c.writeRecord(bw, k, data); err != nil {
			break
		}
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, c.name)
	}
	if err != nil {
		root.Remove(tmp)
		return fmt.Errorf("compacting block cache: %w", err)
	}
	for k := range c.index {
		if !keep[k] {
			delete(c.index, k)
		}
	}
	if c.spilled != nil {
		c.spilled = moved
	}
	c.size = cw.n
	return nil
}

// dropRange gives back the whole pages of mapping[from:to] and returns
// where the next range should start.
func (c *DirCache) dropRange(from, to int) int {
	ps := os.Getpagesize()
	lo := (from + ps - 1) / ps * ps
	hi := to / ps * ps
	if to >= len(c.mapping) {
		hi = len(c.mapping) // the mapping's last page, partial or not
	}
	if hi > lo && c.mapping != nil {
		// Only advice: if it fails, the pages simply stay.
		_ = unix.Madvise(c.mapping[lo:hi], unix.MADV_DONTNEED)
	}
	return max(lo, hi)
}

// dropPagesMin is the smallest pack whose pages dropPages gives back: a
// smaller one is populated at once and kept, since faulting its pages in
// one at a time, up to three times (records checked, state checked,
// documents hashed), and an madvise per block cost more than its memory
// (64 MiB at most: about 25,000 packages with their appended updates).
const dropPagesMin = 64 << 20

// unmap forgets the loaded blocks and unmaps the pack, once nothing
// reads the blocks any more (every slice GetBlocks or getUnverified
// returned is gone with it): CreateRepo does it while the publish waits
// for its fsyncs, instead of leaving it to the process's exit, which the
// caller waits for. Later look-ups miss.
func (c *DirCache) unmap() {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.mapped
	c.index, c.sums, c.offs = map[string][]byte{}, nil, nil
	c.mapping, c.mapped, c.loaded = nil, nil, true
	if m != nil {
		unix.Munmap(m)
	}
}

// drop gives back the pages of the block key (see dropPages).
func (c *DirCache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if off, ok := c.offs[key]; ok {
		c.dropRange(off, off+len(c.index[key]))
	}
}

// readMapped maps a pack file read-only instead of copying it: the
// uncompressed pack is as large as the repository's XML, and an update
// only needs to look at it. Packs are never changed in place below their
// recorded size (appends go after it, compaction writes a new file), so the
// mapping stays valid for the life of the process. Falls back to reading.
//
// With dropPages, a pack of keepBelow bytes or more is mapped without
// populating it (populated reports which).
func readMapped(root *os.Root, name string, dropPages bool, keepBelow int64) (b []byte, mapped, populated bool, err error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, false, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, false, err
	}
	n := fi.Size()
	if n == 0 {
		return nil, false, false, nil
	}
	if n > 1<<40 {
		return nil, false, false, fmt.Errorf("pack %q is %d bytes", rootPath(root, name), n)
	}
	flags := unix.MAP_SHARED
	populate := !dropPages || n < keepBelow
	if populate {
		flags |= unix.MAP_POPULATE
	}
	if b, err := unix.Mmap(int(f.Fd()), 0, int(n), unix.PROT_READ, flags); err == nil {
		return b, true, populate, nil
	}
	b, err = io.ReadAll(f)
	return b, false, true, err
}
