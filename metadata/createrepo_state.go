package metadata

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"unsafe"
)

// CreateRepo keeps, beside its block cache, the layout of the generation
// it last published: every package's href, size, mtime and fragment
// lengths, and every block's members and keys; the uncompressed blocks
// live in raw.pack. With it, --update neither decompresses nor parses the
// published XML, and does not hash again blocks whose members are all
// unchanged. It is trusted only while repodata/repomd.xml still names the
// files it was written for, with the same compression and render options;
// otherwise the existing repodata is read as createrepo_c's would be.

const (
	stateFileName = "state"
	// rawPackNew is the uncompressed pack a run that reuses no state
	// writes; it replaces raw.pack when the publish succeeded.
	rawPackNew = "raw.pack.new"
	stateMagic = "RCS1"
	// Caps for a damaged state file, far above any real repository.
	maxStateEntries = 1 << 24
	maxStateString  = 1 << 16
)

type stateEntry struct {
	href, pkgid, name, arch, epoch, version, release string
	size, mtime                                      int64
	lens                                             [3]uint64
}

type stateBlock struct {
	n    int
	keys [3]string
}

type repoState struct {
	checksums [3]string
	codecID   string
	base      string
	changelog int64
	entries   []stateEntry
	blocks    []stateBlock
	// Read from a file (unmarshalState): the entries' encoding, and
	// where each block's entries start in it (one more for the end),
	// so that a block kept whole is saved again by copying its bytes.
	entryBytes string
	blockOff   []int
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func (s *repoState) marshal() []byte {
	b := make([]byte, 0, 256+len(s.entries)*192+len(s.blocks)*200)
	b = append(b, stateMagic...)
	for _, c := range s.checksums {
		b = appendStr(b, c)
	}
	b = appendStr(b, s.codecID)
	b = appendStr(b, s.base)
	b = binary.AppendVarint(b, s.changelog)
	b = binary.AppendUvarint(b, uint64(len(s.entries)))
	for i := range s.entries {
		b = appendStateEntry(b, &s.entries[i])
	}
	b = s.appendBlocks(b)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// marshalHead is marshal up to the entries, which the caller appends
// (appendStateEntry) after it, then appendBlocks, then the CRC.
func (s *repoState) marshalHead(nEntries int) []byte {
	b := append([]byte(nil), stateMagic...)
	for _, c := range s.checksums {
		b = appendStr(b, c)
	}
	b = appendStr(b, s.codecID)
	b = appendStr(b, s.base)
	b = binary.AppendVarint(b, s.changelog)
	return binary.AppendUvarint(b, uint64(nEntries))
}

func appendStateEntry(b []byte, e *stateEntry) []byte {
	for _, f := range [...]string{e.href, e.pkgid, e.name, e.arch, e.epoch, e.version, e.release} {
		b = appendStr(b, f)
	}
	b = binary.AppendVarint(b, e.size)
	b = binary.AppendVarint(b, e.mtime)
	for _, l := range e.lens {
		b = binary.AppendUvarint(b, l)
	}
	return b
}

func (s *repoState) appendBlocks(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s.blocks)))
	for _, bl := range s.blocks {
		b = binary.AppendUvarint(b, uint64(bl.n))
		for _, k := range bl.keys {
			b = appendStr(b, k)
		}
	}
	return b
}

var (
	errBadState = errors.New("damaged createrepo state")
	// errStateDamaged is what a build that reused the saved state
	// returns when a block it used turns out damaged: CreateRepo builds
	// again without the state.
	errStateDamaged = errors.New("damaged createrepo state blocks")
)

type stateReader struct {
	b   []byte
	err error
	// whole is the bytes being read as one string, ending where b
	// ends: strings are cut out of it rather than each copied (a state
	// holds seven per package).
	whole string
}

func (r *stateReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errBadState
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *stateReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errBadState
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *stateReader) str() string {
	n := r.uvarint()
	if r.err != nil || n > maxStateString || n > uint64(len(r.b)) {
		r.err = errBadState
		return ""
	}
	start := len(r.whole) - len(r.b)
	s := r.whole[start : start+int(n)]
	r.b = r.b[n:]
	return s
}

// unmarshalState parses a state file. The strings of the result share
// b's memory: b must not be changed afterwards.
func unmarshalState(b []byte) (*repoState, error) {
	if len(b) < len(stateMagic)+4 || string(b[:4]) != stateMagic {
		return nil, errBadState
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[len(b)-4:]) {
		return nil, errBadState
	}
	// The strings are cut out of b itself, not out of a copy: the state
	// is read once and not changed (readState's buffer), and a copy
	// would be as large again in fresh memory.
	r := &stateReader{b: body[4:], whole: unsafe.String(unsafe.SliceData(body[4:]), len(body)-4)}
	s := &repoState{}
	for i := range s.checksums {
		s.checksums[i] = r.str()
	}
	s.codecID, s.base, s.changelog = r.str(), r.str(), r.varint()
	n := r.uvarint()
	if n > maxStateEntries {
		return nil, errBadState
	}
	s.entries = make([]stateEntry, 0, n)
	entryOff := make([]int, 0, n+1)
	entriesAt := len(r.whole) - len(r.b)
	for i := uint64(0); i < n && r.err == nil; i++ {
		entryOff = append(entryOff, len(r.whole)-len(r.b)-entriesAt)
		var e stateEntry
		e.href, e.pkgid, e.name, e.arch, e.epoch, e.version, e.release = r.str(), r.str(), r.str(), r.str(), r.str(), r.str(), r.str()
		e.size, e.mtime = r.varint(), r.varint()
		for k := range e.lens {
			e.lens[k] = r.uvarint()
		}
		s.entries = append(s.entries, e)
	}
	entryOff = append(entryOff, len(r.whole)-len(r.b)-entriesAt)
	if r.err == nil {
		s.entryBytes = r.whole[entriesAt : entriesAt+entryOff[len(entryOff)-1]]
	}
	nb := r.uvarint()
	if nb > n+1 {
		return nil, errBadState
	}
	total := 0
	for i := uint64(0); i < nb && r.err == nil; i++ {
		var bl stateBlock
		bl.n = int(r.uvarint())
		for k := range bl.keys {
			bl.keys[k] = r.str()
		}
		total += bl.n
		s.blocks = append(s.blocks, bl)
	}
	if r.err != nil || len(r.b) != 0 || total != len(s.entries) {
		return nil, errBadState
	}
	s.blockOff = make([]int, 0, len(s.blocks)+1)
	pos := 0
	for _, bl := range s.blocks {
		s.blockOff = append(s.blockOff, entryOff[pos])
		pos += bl.n
	}
	s.blockOff = append(s.blockOff, entryOff[pos])
	return s, nil
}

// loadedState is the saved state as --update reads it, beside the scan:
// the layout, the published repomd.xml it was written for, and the
// uncompressed blocks.
type loadedState struct {
	s      *repoState
	md     *existingRepomd
	blocks map[string][]byte
	// drop gives back the memory pages of a block once looked at (the
	// blocks are the mapped pack: see DirCache.dropPages).
	drop func(key string)
	// check says whether a block matches the checksum stored with it:
	// blocks are read unchecked (DirCache.lazySums) and checked where
	// they are used.
	check func(key string, data []byte) bool
}

// savedGen is what a build reusing the saved state needs of it: the
// saved generation's blocks, in order, their documents, and how to check
// them.
type savedGen struct {
	blocks []stateBlock
	data   map[string][]byte
	check  func(key string, data []byte) bool
	// prefix, when set, is hashing the documents ahead of the build.
	prefix *prefixHashes
	// drop gives back a block's pages once hashed (loadedState.drop),
	// or is nil.
	drop func(key string)
	// entryBytes and blockOff are the state's (repoState): a block
	// taken whole is saved again from its encoded entries.
	entryBytes string
	blockOff   []int
}

// checkBlock checks block i's three documents.
func (g *savedGen) checkBlock(i int) bool {
	for _, k := range g.blocks[i].keys {
		if !g.check(k, g.data[k]) {
			return false
		}
	}
	return true
}

// readState reads the state, the current repomd.xml and the uncompressed
// blocks; it runs while the directory is scanned.
func readState(ctx context.Context, raw *DirCache, root, cache *os.Root) (*loadedState, error) {
	b, err := cache.ReadFile(stateFileName)
	if err != nil {
		return nil, err
	}
	s, err := unmarshalState(b)
	if err != nil {
		return nil, err
	}
	md, err := readRepomdRoot(root, RepodataDir+"/repomd.xml")
	if err != nil {
		return nil, err
	}
	if md == nil {
		return nil, errors.New("no repodata")
	}
	var keys []string
	for _, bl := range s.blocks {
		keys = append(keys, bl.keys[:]...)
	}
	blocks, err := raw.getUnverified(ctx, keys)
	if err != nil {
		return nil, err
	}
	return &loadedState{s: s, md: md, blocks: blocks, drop: raw.drop, check: raw.verify}, nil
}

// stateMatches says whether the state was written with these options
// for the repodata now published.
func stateMatches(ls *loadedState, codecID, base string, changelog int) error {
	s, md := ls.s, ls.md
	if s.codecID != codecID || s.base != base || s.changelog != int64(changelog) {
		return errors.New("state does not match the options")
	}
	for k, d := range docSpecs {
		r := md.Record(d.typ)
		if r == nil || r.Checksum != s.checksums[k] {
			return errors.New("state does not describe the current repodata")
		}
	}
	return nil
}

// loadStateReuse turns a state that matches the options and the
// published repodata into the packages of the current generation, with
// their fragments (in the mapped pack), by href. With hints, it also
// returns key hints for the blocks all of whose packages are among files,
// unchanged (for the dry run's build in memory: the streaming build
// recognises such blocks itself).
func loadStateReuse(ls *loadedState, codecID, base string, changelog int,
	files []scannedFile, hints bool) (map[string]*existingPackage, keyHints, error) {
	s, blocks := ls.s, ls.blocks
	if err := stateMatches(ls, codecID, base, changelog); err != nil {
		return nil, nil, err
	}
	old := make(map[string]*existingPackage, len(s.entries))
	pkgs := make([]existingPackage, len(s.entries)) // one allocation, not one per package
	pos := 0
	for bi, bl := range s.blocks {
		var datas [3][]byte
		for k := range docSpecs {
			d, ok := blocks[bl.keys[k]]
			if !ok {
				return nil, nil, errors.New("uncompressed block missing from cache")
			}
			datas[k] = d
		}
		for j, se := range s.entries[pos : pos+bl.n] {
			p := &pkgs[pos+j]
			p.base, p.src, p.pos = base, bi+1, pos+j+1
			p.Href, p.PkgID, p.Name, p.Arch, p.Epoch, p.Version, p.Release = se.href, se.pkgid, se.name, se.arch, se.epoch, se.version, se.release
			p.Size, p.MTime = se.size, se.mtime
			var frags [3][]byte
			for k := range docSpecs {
				l := se.lens[k]
				if l > uint64(len(datas[k])) {
					return nil, nil, errBadState
				}
				frags[k], datas[k] = datas[k][:l:l], datas[k][l:]
			}
			// The fragments are checked only where they are copied
			// (streamBuild): most go on in their saved block, whole.
			p.Primary, p.Filelists, p.Other = frags[0], frags[1], frags[2]
			old[p.Href] = p
		}
		for k := range datas {
			if len(datas[k]) != 0 {
				return nil, nil, errBadState
			}
		}
		pos += bl.n
	}
	if !hints {
		return old, nil, nil
	}
	// A block whose packages are all still there, unchanged, is kept
	// whole (hinted) if the build draws it again.
	for _, f := range files {
		if p := old[f.href]; p != nil && p.Size == f.size && p.MTime == f.mtime {
			p.same = true
		}
	}
	kh := keyHints{}
	pos = 0
	for _, bl := range s.blocks {
		members := make([]*Entry, 0, bl.n)
		unchanged := true
		for j := range bl.n {
			p := &pkgs[pos+j]
			unchanged = unchanged && p.same
			members = append(members, &p.Entry)
		}
		if unchanged {
			kh[hintID(members)] = bl.keys
		}
		pos += bl.n
	}
	return old, kh, nil
}

// checkSaved checks every block of the state against its checksum and
// every reused fragment: what streamBuild checks where it uses them.
func checkSaved(ls *loadedState, old map[string]*existingPackage) error {
	g := &savedGen{blocks: ls.s.blocks, data: ls.blocks, check: ls.check}
	for i := range g.blocks {
		if !g.checkBlock(i) {
			return errStateDamaged
		}
	}
	for _, p := range old {
		for _, d := range docSpecs {
			if f := d.frag(&p.Entry); !bytes.HasPrefix(f, pkgOpen) || !bytes.HasSuffix(f, pkgClose) {
				return errStateDamaged
			}
		}
	}
	return nil
}

// writeState writes the layout of the generation being published to
// state.tmp (commitState puts it in place once the publish succeeded) and
// makes sure every block's uncompressed bytes are in raw.pack.
func writeState(ctx context.Context, raw *DirCache, cache *os.Root, layout *buildStats, sums [3]string,
	codecID, base string, changelog int) error {
	var all []string
	for k := range layout.blockKeys {
		all = append(all, layout.blockKeys[k]...)
	}
	have, err := raw.GetBlocks(ctx, all)
	if err != nil {
		return err
	}
	// Forget blocks of older generations first (compaction copies only
	// what is loaded), then append the new ones, which are not kept in
	// memory: a first run stores as many bytes as the uncompressed XML.
	if err := raw.RetainBlocks(ctx, all); err != nil {
		return err
	}
	raw.forgetPuts = true
	// In batches, each block built at its exact size.
	missing := map[string][]byte{}
	flush := func() error {
		err := raw.PutBlocks(ctx, missing)
		clear(missing)
		return err
	}
	for k, d := range docSpecs {
		for i, sp := range layout.spans {
			key := layout.blockKeys[k][i]
			if _, ok := have[key]; ok {
				continue
			}
			if _, ok := missing[key]; ok {
				continue
			}
			n := 0
			for _, e := range layout.entries[sp.lo:sp.hi] {
				n += len(d.frag(e))
			}
			buf := make([]byte, 0, n)
			for _, e := range layout.entries[sp.lo:sp.hi] {
				buf = append(buf, d.frag(e)...)
			}
			missing[key] = buf
			if len(missing) >= 64 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	s := &repoState{checksums: sums, codecID: codecID, base: base, changelog: int64(changelog)}
	s.entries = make([]stateEntry, len(layout.entries))
	for i, e := range layout.entries {
		s.entries[i] = stateEntry{href: e.Href, pkgid: e.PkgID, name: e.Name, arch: e.Arch, epoch: e.Epoch,
			version: e.Version, release: e.Release, size: e.Size, mtime: e.MTime,
			lens: [3]uint64{uint64(len(e.Primary)), uint64(len(e.Filelists)), uint64(len(e.Other))}}
	}
	for i, sp := range layout.spans {
		s.blocks = append(s.blocks, stateBlock{n: sp.hi - sp.lo,
			keys: [3]string{layout.blockKeys[0][i], layout.blockKeys[1][i], layout.blockKeys[2][i]}})
	}
	return writeStateFile(cache, s)
}

// writeStateFile writes s to state.tmp.
func writeStateFile(cache *os.Root, s *repoState) error {
	// A leftover state.tmp (or a symbolic link in its place) is removed,
	// never written through.
	tmp := stateFileName + ".tmp"
	if err := cache.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("saving createrepo state: %w", err)
	}
	if err := writeFileRoot(cache, tmp, [][]byte{s.marshal()}, false); err != nil {
		return fmt.Errorf("saving createrepo state: %w", err)
	}
	return nil
}

// stateSpool collects a streaming build's entries, encoded, in a file
// beside the state rather than in memory; finish writes state.tmp from it.
type stateSpool struct {
	cache *os.Root
	f     *os.File
	w     *bufio.Writer
	n     int
	buf   []byte
	err   error
}

const stateSpoolName = stateFileName + ".entries.tmp"

func newStateSpool(cache *os.Root) (*stateSpool, error) {
	if err := cache.Remove(stateSpoolName); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	f, err := cache.OpenFile(stateSpoolName, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	return &stateSpool{cache: cache, f: f, w: bufio.NewWriterSize(f, 256<<10)}, nil
}

func (sp *stateSpool) add(e *stateEntry) {
	if sp == nil || sp.err != nil {
		return
	}
	sp.buf = appendStateEntry(sp.buf[:0], e)
	_, sp.err = sp.w.Write(sp.buf)
	sp.n++
}

// addEncoded spools n entries already encoded (appendStateEntry) as b.
func (sp *stateSpool) addEncoded(b string, n int) {
	if sp == nil || sp.err != nil {
		return
	}
	_, sp.err = sp.w.WriteString(b)
	sp.n += n
}

// finish writes state.tmp: s's head, the spooled entries, s's blocks.
func (sp *stateSpool) finish(s *repoState) error {
	err := sp.err
	if err == nil {
		err = sp.w.Flush()
	}
	if err == nil {
		_, err = sp.f.Seek(0, io.SeekStart)
	}
	tmp := stateFileName + ".tmp"
	if err == nil {
		if rerr := sp.cache.Remove(tmp); rerr != nil && !os.IsNotExist(rerr) {
			err = rerr
		}
	}
	var out *os.File
	if err == nil {
		out, err = sp.cache.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	}
	if err == nil {
		crc := crc32.New(castagnoli)
		w := bufio.NewWriterSize(io.MultiWriter(out, crc), 256<<10)
		w.Write(s.marshalHead(sp.n))
		_, err = io.Copy(w, sp.f)
		if err == nil {
			w.Write(s.appendBlocks(nil))
			err = w.Flush()
		}
		if err == nil {
			_, err = out.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32()))
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			sp.cache.Remove(tmp)
		}
	}
	sp.close()
	if err != nil {
		return fmt.Errorf("saving createrepo state: %w", err)
	}
	return nil
}

func (sp *stateSpool) close() {
	if sp == nil || sp.f == nil {
		return
	}
	sp.f.Close()
	sp.f = nil
	sp.cache.Remove(stateSpoolName)
}

func commitState(cache *os.Root) error {
	if err := cache.Rename(stateFileName+".tmp", stateFileName); err != nil {
		return fmt.Errorf("saving createrepo state: %w", err)
	}
	return nil
}

// discardState removes an uncommitted state.
func discardState(cache *os.Root) {
	cache.Remove(stateFileName + ".tmp")
}
