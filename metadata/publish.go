package metadata

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Sentinel errors of the repodata writer.
var (
	// ErrLocked: another writer holds the repository's lock and
	// WithLockWait(false) was given.
	ErrLocked = errors.New("metadata: repository is locked by another writer")
	// ErrSomeSkipped: CreateRepo published the repository but skipped
	// files that are not valid RPMs; CreateResult.Skipped lists them.
	ErrSomeSkipped = errors.New("metadata: some files were skipped")
	// ErrBadOption: an option's value is invalid.
	ErrBadOption = errors.New("metadata: invalid option")
	// ErrBadEntry: an Entry given to Publish is unusable.
	ErrBadEntry = errors.New("metadata: invalid entry")
	// ErrBadRepodata: existing repodata could not be understood.
	ErrBadRepodata = errors.New("metadata: existing repodata is unreadable")
)

const (
	// RepodataDir is the directory clients fetch.
	RepodataDir = "repodata"
	// genDirName is where the next generation is built beside
	// repodata/, and where the previous one sits between the swap and its
	// removal. One fixed name: writers are serialized by the lock, and a
	// leftover from a crashed writer is found without listing repoDir
	// (which holds all the packages).
	genDirName = ".repodata.new"
	// retiredFileName records when each old metadata file stopped being
	// current, so that it is kept for the grace period and then removed.
	retiredFileName = ".repodata.retired"
	// DefaultGrace is how long superseded metadata files stay available
	// to clients holding an older repomd.xml.
	DefaultGrace = time.Hour
	// DefaultRetainOld is how many superseded generations are kept at
	// most (each for the grace period), as createrepo_c's
	// --retain-old-md N: clients holding the repomd.xml of the last one or
	// two generations still find their files, and a burst of publishes
	// cannot pile generations up.
	DefaultRetainOld = 2
)

// PublishOption configures Publish. Options return an error for invalid
// values instead of panicking.
type PublishOption func(*publishConfig) error

type publishConfig struct {
	codec    codec
	revision string
	signer   func(ctx context.Context, repomd []byte) ([]byte, error)
	grace    time.Duration
	retain   int
	lockWait bool
	progress Progress
	cache    BlockCache
	workers  int
	now      func() time.Time
	// refs: the entries are the caller's own (PublishRootRefs), kept by
	// it between publishes, so a state may match them by pointer.
	refs bool
	// Set by CreateRepo only: known block keys, and where to report the
	// layout of what was published.
	hints  keyHints
	dryRun bool
	// built, if set, is called once the documents are built and it is
	// known whether they change the repository, so that CreateRepo can
	// save its state while files are written and synced.
	built func(st buildStats, docs [3]builtDoc, changed bool)
	// fileMode and dirMode, if set (WithModes), are given to everything
	// the new generation holds.
	fileMode, dirMode os.FileMode
	// extras follow primary, filelists and other in repomd.xml
	// (WithExtraRecords); extraCodec compresses them if set.
	extras     []ExtraRecord
	extraCodec codec
	// state, if set (WithState), carries the last build of this
	// directory to the next.
	state *PublishState
	// loader supplies the fragments of light entries (WithFragmentLoader).
	loader func(ctx context.Context, entries []*Entry) error
}

func newPublishConfig(opts []PublishOption) (*publishConfig, error) {
	c := &publishConfig{grace: DefaultGrace, retain: DefaultRetainOld, lockWait: true, progress: NoProgress{}, now: time.Now}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(c); err != nil {
			return nil, err
		}
	}
	if c.codec == nil {
		var err error
		if c.codec, err = newCodec(CompressZstd); err != nil {
			return nil, err
		}
	}
	if c.workers <= 0 {
		c.workers = runtime.NumCPU()
	}
	return c, nil
}

// WithCompression selects the compression of primary, filelists and other:
// "zstd" (default; dnf 4 and later) or "gz" (also read by EL7's yum).
func WithCompression(name string) PublishOption {
	return func(c *publishConfig) error {
		cd, err := newCodec(name)
		c.codec = cd
		return err
	}
}

// WithRevision sets repomd.xml's <revision>. Default: the current unix
// time when the content changed, the existing revision when it did not.
// A revision different from the published one is a change in itself.
func WithRevision(rev string) PublishOption {
	return func(c *publishConfig) error {
		if strings.TrimSpace(rev) != rev || rev == "" {
			return fmt.Errorf("%w: revision %q must be non-empty without surrounding space", ErrBadOption, rev)
		}
		c.revision = rev
		return nil
	}
}

// WithSigner makes Publish write repomd.xml.asc, the detached signature
// sign returns for the exact repomd.xml bytes, in the same atomic step as
// repomd.xml. Without a signer no repomd.xml.asc is published (an old one
// is never left beside a new repomd.xml). An unchanged repository that
// already has a signature is not re-signed; after a key rotation, pass a
// new WithRevision to force it.
func WithSigner(sign func(ctx context.Context, repomd []byte) (asc []byte, err error)) PublishOption {
	return func(c *publishConfig) error {
		c.signer = sign
		return nil
	}
}

// WithGrace sets how long superseded metadata files remain in repodata/
// for clients that fetched an older repomd.xml. Default DefaultGrace (1h).
func WithGrace(d time.Duration) PublishOption {
	return func(c *publishConfig) error {
		if d < 0 {
			return fmt.Errorf("%w: negative grace %v", ErrBadOption, d)
		}
		c.grace = d
		return nil
	}
}

// WithRetainOld keeps at most n superseded generations of metadata files
// in repodata/ (each still only for the grace period, WithGrace): the n
// most recently superseded. 0 removes superseded files at once. Default
// DefaultRetainOld (2).
func WithRetainOld(n int) PublishOption {
	return func(c *publishConfig) error {
		if n < 0 {
			return fmt.Errorf("%w: negative retain-old-md %d", ErrBadOption, n)
		}
		c.retain = n
		return nil
	}
}

// WithLockWait decides what happens when another writer holds the lock:
// wait (default; Progress.Notice says for whom, ctx cancels) or fail at
// once with ErrLocked.
func WithLockWait(wait bool) PublishOption {
	return func(c *publishConfig) error {
		c.lockWait = wait
		return nil
	}
}

// WithProgress receives stage and step reports. Default: NoProgress.
func WithProgress(p Progress) PublishOption {
	return func(c *publishConfig) error {
		if p == nil {
			p = NoProgress{}
		}
		c.progress = p
		return nil
	}
}

// WithBlockCache supplies compressed blocks from earlier publishes, so
// that only changed blocks are compressed. Default: none (everything is
// compressed).
func WithBlockCache(cache BlockCache) PublishOption {
	return func(c *publishConfig) error {
		c.cache = cache
		return nil
	}
}

// WithWorkers bounds how many blocks are compressed at once. Default
// runtime.NumCPU().
func WithWorkers(n int) PublishOption {
	return func(c *publishConfig) error {
		if n < 0 {
			return fmt.Errorf("%w: negative workers %d", ErrBadOption, n)
		}
		c.workers = n
		return nil
	}
}

// WithDryRun makes Publish build and compare everything but write
// nothing: no repodata, no cache, no pruning. PublishResult.Changed then
// says whether a real run would change the repository, and Records carry
// the would-be checksums (timestamps 0). Default false.
func WithDryRun(dry bool) PublishOption {
	return func(c *publishConfig) error {
		c.dryRun = dry
		return nil
	}
}

// readOnlyCache hides a cache's writes during a dry run.
type readOnlyCache struct{ c BlockCache }

func (r readOnlyCache) GetBlocks(ctx context.Context, keys []string) (map[string][]byte, error) {
	return r.c.GetBlocks(ctx, keys)
}
func (readOnlyCache) PutBlocks(context.Context, map[string][]byte) error { return nil }

// PublishResult says what Publish did.
type PublishResult struct {
	// Changed is false when the repository already had exactly this
	// content: then nothing in repodata/ was rewritten.
	Changed  bool           `json:"changed"`
	Packages int            `json:"packages"`
	Revision string         `json:"revision"`
	Records  []RepomdRecord `json:"records"`
	// Kept are superseded files still served for the grace period;
	// Removed are those whose grace period ended.
	Kept    []string `json:"kept,omitempty"`
	Removed []string `json:"removed,omitempty"`
	// Blocks taken from the cache and blocks compressed now.
	BlocksReused     int `json:"blocks_reused"`
	BlocksCompressed int `json:"blocks_compressed"`
	// InPlace is true when the filesystem could not exchange directories
	// and the in-place fallback was used (see Publish).
	InPlace bool `json:"in_place,omitempty"`
	// DryRun: nothing was written (WithDryRun).
	DryRun bool `json:"dry_run,omitempty"`
}

// Publish writes repoDir/repodata for entries: primary, filelists and other
// (no sqlite databases: dnf and yum use the XML), and repomd.xml last, as a
// new generation that replaces the old one atomically.
//
// The new generation is built in repoDir/.repodata.new: new files, hard
// links to superseded files still in their grace period, repomd.xml and
// repomd.xml.asc, all fsynced. It is then swapped with repodata/ in one
// renameat2(RENAME_EXCHANGE), so a reader sees either the old or the new
// directory, each complete and consistent with its repomd.xml(.asc). On a
// filesystem without RENAME_EXCHANGE, data files are renamed into
// repodata/ first, repomd.xml.asc is removed, then repomd.xml and the new
// repomd.xml.asc are renamed in: never a repomd.xml naming a missing file
// nor a stale signature, but for a moment no signature.
//
// Writers are serialized by flock on repoDir/.repodata.lock. When the
// content is already published, nothing is rewritten and repomd.xml stays
// byte-identical (Changed is false). Beside repodata/, Publish keeps only
// dot files: the lock, .repodata.retired (when each superseded file was
// superseded) and, while it runs, .repodata.new.
//
// Publish creates repoDir if needed, opens it with os.OpenRoot and does
// the rest with PublishRoot: no file operation can leave repoDir.
func Publish(ctx context.Context, repoDir string, entries []Entry, opts ...PublishOption) (*PublishResult, error) {
	cfg, err := newPublishConfig(opts)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(repoDir, 0o755); err != nil {
		return nil, fmt.Errorf("publishing %q: %w", repoDir, err)
	}
	root, err := os.OpenRoot(repoDir)
	if err != nil {
		return nil, fmt.Errorf("publishing %q: %w", repoDir, err)
	}
	defer root.Close()
	return publishRoot(ctx, root, entryPtrs(entries), cfg)
}

func entryPtrs(entries []Entry) []*Entry {
	out := make([]*Entry, len(entries))
	for i := range entries {
		out[i] = &entries[i]
	}
	return out
}

// PublishRoot is Publish for the repository directory dir, which the
// caller opened and closes. Every file operation (lock, reads, writes,
// links, renames, removals, fsyncs and the directory exchange) goes
// through dir with names relative to it, so a symbolic link planted at
// repodata, .repodata.new, the lock or any file inside them cannot make
// it read, write, link or delete anything outside dir: such an operation
// fails instead. Symbolic links that stay inside dir are followed as
// os.Root follows them, except that a superseded or reused metadata file
// must be a regular file to be carried into the new generation.
func PublishRoot(ctx context.Context, dir *os.Root, entries []Entry, opts ...PublishOption) (*PublishResult, error) {
	cfg, err := newPublishConfig(opts)
	if err != nil {
		return nil, err
	}
	if dir == nil {
		return nil, errors.New("metadata: PublishRoot: nil root")
	}
	return publishRoot(ctx, dir, entryPtrs(entries), cfg)
}

// PublishRootRefs is PublishRoot for entries the caller holds by pointer
// (a daemon's index of 100,000 packages need not be copied for each
// publish). The entries are only read.
func PublishRootRefs(ctx context.Context, dir *os.Root, entries []*Entry, opts ...PublishOption) (*PublishResult, error) {
	cfg, err := newPublishConfig(opts)
	if err != nil {
		return nil, err
	}
	if dir == nil {
		return nil, errors.New("metadata: PublishRootRefs: nil root")
	}
	for i, e := range entries {
		if e == nil {
			return nil, fmt.Errorf("%w: entry %d is nil", ErrBadEntry, i)
		}
	}
	cfg.refs = true
	return publishRoot(ctx, dir, entries, cfg)
}

func publishRoot(ctx context.Context, root *os.Root, entries []*Entry, cfg *publishConfig) (*PublishResult, error) {
	lock, err := acquireLockRoot(ctx, root, cfg.lockWait, cfg.progress)
	if err != nil {
		return nil, err
	}
	defer lock.release()
	return publishLocked(ctx, root, entries, cfg)
}

// forceInPlace makes tests exercise the no-RENAME_EXCHANGE fallback.
var forceInPlace = false

// publishLocked publishes into root, whose lock the caller holds. All
// names below are relative to root, slash-separated.
func publishLocked(ctx context.Context, root *os.Root, entries []*Entry, cfg *publishConfig) (*PublishResult, error) {
	repoDir := root.Name() // for messages only
	if s := cfg.state; s != nil {
		// Held for the whole build: the reused blocks must stay those
		// of the state's previous build until this one replaces it.
		s.mu.Lock()
		defer s.mu.Unlock()
		// The speculation stops now, not when the build needs it: this
		// publish wants every core (what it computed so far is kept).
		s.specSet()
	}
	sorted, reuse, err := sortWithState(ctx, entries, cfg.state, cfg.codec.id(), cfg.loader)
	if err != nil {
		return nil, err
	}
	const gen = genDirName
	if cfg.dryRun {
		if cfg.cache != nil {
			c := *cfg
			c.cache = readOnlyCache{cfg.cache}
			cfg = &c
		}
	} else if err := root.RemoveAll(gen); err != nil {
		return nil, fmt.Errorf("removing leftover %q: %w", rootPath(root, gen), err)
	}

	docs, st, err := buildDocs(ctx, sorted, cfg.codec, cfg.cache, cfg.workers, cfg.progress, cfg.hints, reuse, cfg.state != nil && !cfg.dryRun)
	if err != nil {
		return nil, fmt.Errorf("publishing %q: %w", repoDir, err)
	}
	if cfg.state != nil && !cfg.dryRun {
		// Whether or not the rest of the publish succeeds, the build is
		// a valid basis: reuse depends only on the blocks' content.
		if err := cfg.state.update(cfg.codec.id(), st.entries, st.spans, st.blockKeys[:], st.frames, st.reusedFrom, reuse, cfg.refs); err != nil {
			// Only a cache: the next publish starts afresh.
			cfg.progress.Notice(fmt.Sprintf("not keeping the publish state: %v", err))
		} else {
			cfg.state.own = st.mids
			cfg.state.midHits += st.midHits
			cfg.state.cmidHits += st.cmidHits
			cfg.state.speculate(len(st.entries), cfg.codec)
		}
	}

	return publishDocs(ctx, root, docs, st, len(sorted), cfg, false)
}

// publishDocs is the second half of publishLocked: it compares the built
// documents with what is published and, if they differ, writes the new
// generation and swaps it in. A document whose tmp is set was already
// written (by CreateRepo's streaming build) to that file inside gen, which
// then exists (genReady); it is renamed to its name.
func publishDocs(ctx context.Context, root *os.Root, docs [3]builtDoc, st buildStats, packages int, cfg *publishConfig, genReady bool) (*PublishResult, error) {
	repoDir := root.Name() // for messages only
	const gen = genDirName
	cfg.progress.Stage("publish", 0)
	res := &PublishResult{Packages: packages, BlocksReused: st.reused, BlocksCompressed: st.compressed}
	const repodata = RepodataDir
	// An unreadable repomd.xml is simply replaced.
	old, _ := readRepomdRoot(root, repodata+"/repomd.xml")

	names := make([]string, 3)
	for k, d := range docs {
		names[k] = d.checksum + "-" + d.typ + ".xml" + cfg.codec.ext()
	}
	ecodec := cfg.extraCodec
	if ecodec == nil {
		ecodec = cfg.codec
	}
	extraDocs, extraNames, err := buildExtras(cfg.extras, ecodec)
	if err != nil {
		return nil, fmt.Errorf("publishing %q: %w", repoDir, err)
	}
	all := append(docs[:], extraDocs...)
	names = append(names, extraNames...)
	same := old != nil && len(old.Records) == len(all)
	for k, d := range all {
		if !same {
			break
		}
		r := &old.Records[k]
		same = r.Type == d.typ && old.sumTypes[d.typ] == "sha256" && r.Checksum == d.checksum &&
			r.OpenChecksum == d.openChecksum && r.Size == d.size && sameOpenSize(r.OpenSize, d.openSize) &&
			r.Href == RepodataDir+"/"+names[k] && fileMatches(root, repodata+"/"+names[k], d.size, d.checksum)
	}
	rev := cfg.revision
	if rev == "" {
		if same {
			rev = old.Revision
		} else {
			rev = strconv.FormatInt(cfg.now().Unix(), 10)
		}
	}
	res.Revision = rev
	unchanged := same && rev == old.Revision && (cfg.signer == nil || regularExists(root, repodata+"/repomd.xml.asc"))
	if cfg.dryRun {
		res.DryRun, res.Changed = true, !unchanged
		for k, d := range all {
			res.Records = append(res.Records, RepomdRecord{
				Type: d.typ, Checksum: d.checksum, OpenChecksum: d.openChecksum,
				Href: RepodataDir + "/" + names[k], Size: d.size, OpenSize: d.openSize,
			})
		}
		return res, nil
	}
	if cfg.built != nil {
		cfg.built(st, docs, !unchanged)
	}
	if unchanged {
		res.Records = append([]RepomdRecord(nil), old.Records...)
		kept, removed, err := pruneInPlace(root, old, cfg)
		res.Kept, res.Removed = kept, removed
		if err != nil {
			return res, err
		}
		if r, ok := cfg.cache.(BlockCacheRetainer); ok && cfg.cache != nil {
			if err := r.RetainBlocks(ctx, st.keys); err != nil {
				return res, err
			}
		}
		return res, nil
	}
	res.Changed = true

	if !genReady {
		if err := root.Mkdir(gen, 0o755); err != nil {
			return nil, fmt.Errorf("publishing %q: %w", repoDir, err)
		}
	}
	defer func() {
		// Before the swap gen is the unfinished new generation; after it,
		// gen holds the old one. Either way it goes.
		root.RemoveAll(gen)
	}()
	if err := root.Chmod(gen, cfg.genDirMode()); err != nil {
		return nil, err
	}
	now := cfg.now()
	newNames := map[string]bool{}
	// Files are written first and fsynced together just before the swap.
	// The documents are written side by side (copying into the page
	// cache is most of it).
	var toSync []string
	written := make([]bool, len(all))
	recs := make([]RepomdRecord, len(all))
	werrs := make([]error, len(all))
	var wg sync.WaitGroup
	for k, d := range all {
		newNames[names[k]] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := gen + "/" + names[k]
			switch {
			case linkIfSame(root, repodata+"/"+names[k], dst, d.size, d.checksum):
				if d.tmp != "" {
					root.Remove(d.tmp)
				}
			case d.tmp != "":
				// Streamed to disk as it was built (createrepo).
				if err := root.Rename(d.tmp, dst); err != nil {
					werrs[k] = fmt.Errorf("publishing %q: %w", repoDir, err)
					return
				}
				written[k] = true
			default:
				if err := writeFileRoot(root, dst, d.frames, false); err != nil {
					werrs[k] = fmt.Errorf("publishing %q: %w", repoDir, err)
					return
				}
				written[k] = true
			}
			fi, err := root.Stat(dst)
			if err != nil {
				werrs[k] = err
				return
			}
			recs[k] = RepomdRecord{
				Type: d.typ, Checksum: d.checksum, OpenChecksum: d.openChecksum,
				Href: RepodataDir + "/" + names[k], Timestamp: fi.ModTime().Unix(),
				Size: d.size, OpenSize: d.openSize,
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(werrs...); err != nil {
		return nil, err
	}
	for k := range all {
		if written[k] {
			toSync = append(toSync, gen+"/"+names[k])
		}
	}
	res.Records = append(res.Records, recs...)

	// Carry superseded files over for the grace period, the newest
	// cfg.retain generations only. What was current becomes the newest
	// superseded generation.
	retired := loadRetired(root)
	current := map[string]bool{}
	if old != nil {
		for _, r := range old.Records {
			current[strings.TrimPrefix(r.Href, RepodataDir+"/")] = true
		}
	}
	newRetired := map[string]retiredFile{}
	var dropped []string
	if ents, err := readDirRoot(root, repodata); err == nil {
		cand := map[string]retiredFile{}
		for _, e := range ents {
			n := e.Name()
			if !e.Type().IsRegular() || newNames[n] || n == "repomd.xml" || n == "repomd.xml.asc" {
				continue
			}
			if strings.HasPrefix(n, "repomd.xml") {
				// e.g. repomd.xml.key: not ours, keep it.
				if err := linkOrCopy(root, repodata+"/"+n, gen+"/"+n); err != nil {
					return nil, err
				}
				continue
			}
			cand[n] = retired[n]
		}
		keep, drop := retainRetired(cand, current, now, cfg)
		dropped = drop
		for _, n := range sortedNames(keep) {
			if err := linkOrCopy(root, repodata+"/"+n, gen+"/"+n); err != nil {
				return nil, err
			}
			newRetired[n] = keep[n]
			res.Kept = append(res.Kept, n)
		}
	} else if !os.IsNotExist(err) {
		return nil, fmt.Errorf("publishing %q: %w", repoDir, err)
	}

	md := &Repomd{Revision: rev, Records: res.Records}
	raw := md.Marshal()
	if err := writeFileRoot(root, gen+"/repomd.xml", [][]byte{raw}, false); err != nil {
		return nil, err
	}
	toSync = append(toSync, gen+"/repomd.xml")
	if cfg.signer != nil {
		asc, err := cfg.signer(ctx, raw)
		if err != nil {
			return nil, fmt.Errorf("signing repomd.xml of %q: %w", repoDir, err)
		}
		if err := writeFileRoot(root, gen+"/repomd.xml.asc", [][]byte{asc}, false); err != nil {
			return nil, err
		}
		toSync = append(toSync, gen+"/repomd.xml.asc")
	}
	if err := applyFileMode(root, gen, cfg.fileMode); err != nil {
		return nil, fmt.Errorf("publishing %q: %w", repoDir, err)
	}
	if err := syncFiles(root, toSync); err != nil {
		return nil, err
	}
	if err := syncDirRoot(root, gen); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// Record retirement times before the swap, so that a crash right
	// after it never forgets when a file was superseded.
	if err := saveRetired(root, newRetired); err != nil {
		return nil, err
	}
	inPlace, err := swapGeneration(root, gen, repodata)
	if err != nil {
		return nil, fmt.Errorf("publishing %q: %w", repoDir, err)
	}
	res.InPlace = inPlace
	if inPlace {
		for _, n := range dropped {
			root.Remove(repodata + "/" + n)
		}
	}
	res.Removed = dropped
	if r, ok := cfg.cache.(BlockCacheRetainer); ok && cfg.cache != nil {
		if err := r.RetainBlocks(ctx, st.keys); err != nil {
			return res, err
		}
	}
	return res, nil
}

// sameOpenSize compares a parsed open-size (-1 when absent, see
// parseRepomd) with a built one (-1 for an uncompressed extra).
func sameOpenSize(parsed, built int64) bool {
	if built < 0 {
		return parsed < 0
	}
	return parsed == built
}

// swapGeneration makes gen the published repodata. It returns true when
// it had to fall back to renaming files into place. gen and repodata are
// names in root's top directory.
func swapGeneration(root *os.Root, gen, repodata string) (bool, error) {
	// The exchange and the fsync that makes it durable go through a
	// descriptor of root's directory, never through a path.
	top, err := root.Open(".")
	if err != nil {
		return false, err
	}
	defer top.Close()
	if _, err := root.Lstat(repodata); os.IsNotExist(err) {
		if err := root.Rename(gen, repodata); err != nil {
			return false, err
		}
		// gen no longer exists; recreate nothing.
		return false, syncDirFile(top)
	}
	if !forceInPlace {
		fd := int(top.Fd())
		err := unix.Renameat2(fd, gen, fd, repodata, unix.RENAME_EXCHANGE)
		if err == nil {
			return false, syncDirFile(top)
		}
		if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EOPNOTSUPP) {
			return false, fmt.Errorf("exchanging %q and %q: %w", rootPath(root, gen), rootPath(root, repodata), err)
		}
	}
	// Fallback: data first, then the signature away, then repomd.xml and
	// the new signature.
	ents, err := readDirRoot(root, gen)
	if err != nil {
		return true, err
	}
	for _, e := range ents {
		n := e.Name()
		if n == "repomd.xml" || n == "repomd.xml.asc" {
			continue
		}
		// A file of that name is already there (its name is its
		// checksum); a symbolic link is replaced, never trusted.
		if fi, err := root.Lstat(repodata + "/" + n); err == nil && fi.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		if err := root.Rename(gen+"/"+n, repodata+"/"+n); err != nil {
			return true, err
		}
	}
	if err := syncDirRoot(root, repodata); err != nil {
		return true, err
	}
	if err := root.Remove(repodata + "/repomd.xml.asc"); err != nil && !os.IsNotExist(err) {
		return true, err
	}
	if err := root.Rename(gen+"/repomd.xml", repodata+"/repomd.xml"); err != nil {
		return true, err
	}
	if regularExists(root, gen+"/repomd.xml.asc") {
		if err := root.Rename(gen+"/repomd.xml.asc", repodata+"/repomd.xml.asc"); err != nil {
			return true, err
		}
	}
	return true, syncDirRoot(root, repodata)
}

// pruneInPlace removes superseded files whose grace period ended from a
// repodata/ that is otherwise left untouched. Removing a file that no
// current repomd.xml names cannot hurt a reader within the grace period.
func pruneInPlace(root *os.Root, cur *existingRepomd, cfg *publishConfig) (kept, removed []string, err error) {
	const repodata = RepodataDir
	retired := loadRetired(root)
	ents, err := readDirRoot(root, repodata)
	if err != nil {
		return nil, nil, err
	}
	current := map[string]bool{}
	for _, r := range cur.Records {
		current[strings.TrimPrefix(r.Href, RepodataDir+"/")] = true
	}
	cand := map[string]retiredFile{}
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || current[n] || strings.HasPrefix(n, "repomd.xml") {
			continue
		}
		cand[n] = retired[n]
	}
	keep, drop := retainRetired(cand, nil, cfg.now(), cfg)
	for _, n := range drop {
		if err := root.Remove(repodata + "/" + n); err != nil && !os.IsNotExist(err) {
			return kept, removed, err
		}
		removed = append(removed, n)
	}
	kept = sortedNames(keep)
	if !equalRetired(retired, keep) {
		err = saveRetired(root, keep)
	}
	return kept, removed, err
}

// retiredFile is when a superseded file stopped being current, and the
// generation number of that publish (newer generations, higher numbers).
type retiredFile struct {
	T   int64 `json:"t"`
	Gen int64 `json:"gen"`
}

// retainRetired decides which superseded files stay: those of the
// cfg.retain newest generations whose grace period has not ended. cand
// are the superseded files found with what .repodata.retired says of
// them (zero when it says nothing); names in nowRetired (what was current
// until this publish) are superseded now, as the newest generation, and
// so is a file nothing is known of.
func retainRetired(cand map[string]retiredFile, nowRetired map[string]bool, now time.Time, cfg *publishConfig) (keep map[string]retiredFile, drop []string) {
	top := int64(0)
	for _, r := range cand {
		top = max(top, r.Gen)
	}
	for n, r := range cand {
		if nowRetired[n] {
			r = retiredFile{T: now.Unix(), Gen: top + 1}
		} else if r.T == 0 {
			// Unknown: superseded now, but not a generation of its own
			// when one is being superseded (it sorts with it).
			r = retiredFile{T: now.Unix(), Gen: max(top, 1)}
			if len(nowRetired) > 0 {
				r.Gen = top + 1
			}
		}
		cand[n] = r
	}
	gens := map[int64]bool{}
	for _, r := range cand {
		gens[r.Gen] = true
	}
	order := make([]int64, 0, len(gens))
	for g := range gens {
		order = append(order, g)
	}
	sort.Slice(order, func(i, j int) bool { return order[i] > order[j] })
	newest := map[int64]bool{}
	for i, g := range order {
		if i < cfg.retain {
			newest[g] = true
		}
	}
	keep = map[string]retiredFile{}
	for _, n := range sortedNames(cand) {
		r := cand[n]
		if !newest[r.Gen] || now.Sub(time.Unix(r.T, 0)) >= cfg.grace {
			drop = append(drop, n)
			continue
		}
		keep[n] = r
	}
	return keep, drop
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func equalRetired(a, b map[string]retiredFile) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// loadRetired reads .repodata.retired: name → {t, gen}. The format
// before generations were counted (name → unix time) is read too: each
// distinct time is taken for one generation, older times lower.
func loadRetired(root *os.Root) map[string]retiredFile {
	m := map[string]retiredFile{}
	b, err := root.ReadFile(retiredFileName)
	if err != nil || len(b) > maxRepomdSize {
		return m
	}
	var raw map[string]json.RawMessage
	if json.Unmarshal(b, &raw) != nil {
		return m
	}
	var legacy []string
	for n, v := range raw {
		var r retiredFile
		if json.Unmarshal(v, &r) == nil && r.T > 0 && r.Gen > 0 {
			m[n] = r
			continue
		}
		var t int64
		if json.Unmarshal(v, &t) == nil && t > 0 {
			m[n] = retiredFile{T: t}
			legacy = append(legacy, n)
		}
	}
	if len(legacy) > 0 {
		times := map[int64]bool{}
		for _, n := range legacy {
			times[m[n].T] = true
		}
		order := make([]int64, 0, len(times))
		for t := range times {
			order = append(order, t)
		}
		sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })
		gen := map[int64]int64{}
		for i, t := range order {
			gen[t] = int64(i + 1)
		}
		for _, n := range legacy {
			r := m[n]
			r.Gen = gen[r.T]
			m[n] = r
		}
	}
	return m
}

func saveRetired(root *os.Root, m map[string]retiredFile) error {
	b, err := json.Marshal(m) // sorted by name
	if err != nil {
		return err
	}
	if err := replaceFileRoot(root, retiredFileName, [][]byte{b, []byte("\n")}); err != nil {
		return fmt.Errorf("saving %q: %w", rootPath(root, retiredFileName), err)
	}
	return nil
}

// syncFiles fsyncs files concurrently: fsync latency, not CPU, is what a
// small update waits for, and the filesystem can commit them together.
func syncFiles(root *os.Root, names []string) error {
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := root.OpenFile(n, os.O_WRONLY, 0)
			if err == nil {
				err = f.Sync()
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			if err != nil {
				errs[i] = fmt.Errorf("syncing %q: %w", rootPath(root, n), err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// pathExists says whether p exists (following symbolic links).
func pathExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// linkIfSame hard-links an existing file whose content is exactly what
// we would write (same size and sha256): its name says what it should
// contain, but a damaged file must not be published again.
func linkIfSame(root *os.Root, src, dst string, size int64, sum string) bool {
	return fileMatches(root, src, size, sum) && root.Link(src, dst) == nil
}

// fileMatches says whether name is a regular file (not a symbolic link)
// of this size and sha256.
func fileMatches(root *os.Root, name string, size int64, sum string) bool {
	fi, err := root.Lstat(name)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != size {
		return false
	}
	f, err := root.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	// What was opened must be what was looked at.
	if ofi, err := f.Stat(); err != nil || !os.SameFile(fi, ofi) {
		return false
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	return err == nil && n == size && hex.EncodeToString(h.Sum(nil)) == sum
}

// linkOrCopy hard-links src to dst, or copies it where links fail.
func linkOrCopy(root *os.Root, src, dst string) error {
	if err := root.Link(src, dst); err == nil {
		return nil
	}
	b, err := root.ReadFile(src)
	if err != nil {
		return err
	}
	return writeFileRoot(root, dst, [][]byte{b}, true)
}
