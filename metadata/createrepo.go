package metadata

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// CreateOption configures CreateRepo.
type CreateOption func(*createConfig) error

type createConfig struct {
	update    bool
	skipStat  bool
	workers   int
	render    RenderOptions
	publish   []PublishOption
	cacheDir  *string
	groupFile string
	window    int
}

// WithUpdate reuses what the existing repodata (ours or createrepo_c's)
// says about every package whose href, size and mtime are unchanged, so
// only new or changed files are read. Default false: every file is read.
func WithUpdate(update bool) CreateOption {
	return func(c *createConfig) error { c.update = update; return nil }
}

// WithSkipStat, with WithUpdate, trusts the existing repodata (or our
// state of it) outright, as createrepo_c's --skip-stat: a file whose path
// it lists is taken as unchanged without a stat, so only files it does
// not list are stat'ed and read. A file replaced in place under the same
// name is then not noticed. Default false: every file is stat'ed once.
func WithSkipStat(skip bool) CreateOption {
	return func(c *createConfig) error { c.skipStat = skip; return nil }
}

// WithReadWorkers bounds how many packages are read at once (and how many
// blocks are compressed at once, unless WithWorkers says otherwise).
// Default runtime.NumCPU().
func WithReadWorkers(n int) CreateOption {
	return func(c *createConfig) error {
		if n < 0 {
			return fmt.Errorf("%w: negative workers %d", ErrBadOption, n)
		}
		c.workers = n
		return nil
	}
}

// WithReadWindow bounds how many packages are held rendered at once: read
// ahead of the block being assembled, in the published order. Memory
// stays proportional to it (and to the blocks being compressed), not to
// the repository. Default DefaultReadWindow per read worker.
func WithReadWindow(n int) CreateOption {
	return func(c *createConfig) error {
		if n < 0 {
			return fmt.Errorf("%w: negative read window %d", ErrBadOption, n)
		}
		c.window = n
		return nil
	}
}

// WithRenderOptions sets the changelog limit and base URL of the XML.
// Default: RenderOptions{} (10 changelog entries, no xml:base).
func WithRenderOptions(o RenderOptions) CreateOption {
	return func(c *createConfig) error { c.render = o; return nil }
}

// WithPublishOptions passes options to the publishing step (compression,
// revision, signer, grace, lock waiting, progress, block cache, workers).
// CreateRepo reports its own stages to the same Progress.
func WithPublishOptions(opts ...PublishOption) CreateOption {
	return func(c *createConfig) error { c.publish = append(c.publish, opts...); return nil }
}

// WithCacheDir sets where the compressed-block cache lives when no
// WithBlockCache publish option is given. Default DIR/.repoctl-cache
// (outside repodata/, so clients never fetch it); "" disables it. A cache
// directory inside DIR is reached through DIR's os.Root like everything
// else CreateRepo writes there, so it cannot be a symbolic link out of DIR.
func WithCacheDir(dir string) CreateOption {
	return func(c *createConfig) error { c.cacheDir = &dir; return nil }
}

// WithGroupFile publishes the comps file at path as createrepo_c -g does:
// the "group" record (the file as it is, named after its base name) and
// "group_gz" (the same, gzip-compressed, whatever WithCompression says;
// see CompsRecords), after primary, filelists and other. The file must
// pass ReadCompsFile; an invalid one fails CreateRepo with ErrBadComps
// before anything is read. Default "": no group records, and, as with
// createrepo_c --update without -g, none kept from existing repodata.
func WithGroupFile(path string) CreateOption {
	return func(c *createConfig) error { c.groupFile = path; return nil }
}

// SkippedFile is a file CreateRepo left out, and why.
type SkippedFile struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
	Err    error  `json:"-"`
}

// CreateResult says what CreateRepo did.
type CreateResult struct {
	Dir      string `json:"dir"`
	Packages int    `json:"packages"` // packages in the published repodata
	Read     int    `json:"read"`     // headers read from files
	Reused   int    `json:"reused"`   // taken from existing repodata (--update)
	// ReusedFrom says where --update found the existing packages:
	// "state" (our cache of the current generation), "repodata" (the
	// published XML, ours or createrepo_c's) or "" (nothing reused).
	ReusedFrom string         `json:"reused_from,omitempty"`
	Skipped    []SkippedFile  `json:"skipped"`
	Publish    *PublishResult `json:"publish"`
}

type scannedFile struct {
	href  string // slash-separated, relative to the repository
	dir   string // the repository directory, as given (shared, not one per file)
	size  int64
	mtime int64
	old   *existingPackage // the existing package of this href (attachOld), or nil
}

// path is the file's path: dir joined with href.
func (f scannedFile) path() string { return filepath.Join(f.dir, filepath.FromSlash(f.href)) }

// CreateRepo is a standalone createrepo: it finds every *.rpm under dir
// (recursively; not in repodata/ nor in dot directories), reads them with
// bounded workers (or, WithUpdate, reuses existing repodata for unchanged
// files), and publishes dir/repodata as Publish does. The lock is held
// from scan to publish. Like PublishRoot, it writes inside dir only
// through an os.Root opened on dir (the packages are read by path).
//
// A file that is not a valid RPM is skipped: it is listed in the result's
// Skipped with the reason, reported through Progress.Notice, the rest is
// published, and the returned error wraps ErrSomeSkipped (the result is
// returned too).
func CreateRepo(ctx context.Context, dir string, opts ...CreateOption) (*CreateResult, error) {
	cfg := &createConfig{}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(cfg); err != nil {
			return nil, err
		}
	}
	pubOpts := cfg.publish
	if cfg.groupFile != "" {
		data, _, err := ReadCompsFile(cfg.groupFile)
		if err != nil {
			return nil, err
		}
		// First among the extras, as createrepo_c lists them.
		pubOpts = append([]PublishOption{WithExtraRecords(CompsRecords(filepath.Base(cfg.groupFile), data)...)}, pubOpts...)
	}
	if cfg.workers > 0 {
		// Publish options given later override this default.
		pubOpts = append([]PublishOption{WithWorkers(cfg.workers)}, pubOpts...)
	}
	pcfg, err := newPublishConfig(pubOpts)
	if err != nil {
		return nil, err
	}
	workers := cfg.workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("createrepo %q: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("createrepo %q: not a directory", dir)
	}
	// Everything written inside dir goes through root (see PublishRoot).
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("createrepo %q: %w", dir, err)
	}
	defer root.Close()
	cacheDir := filepath.Join(dir, CacheDirName)
	if cfg.cacheDir != nil {
		cacheDir = *cfg.cacheDir
	}
	// A cache directory inside dir (the default) is reached through root.
	cacheRel, cacheInside := "", false
	if cacheDir != "" {
		cacheRel, cacheInside = insideDir(dir, cacheDir)
	}
	var raw *DirCache
	var cacheRoot *os.Root
	if pcfg.dryRun && cacheDir != "" {
		exists := pathExists(cacheDir)
		if cacheInside {
			_, err := root.Stat(cacheRel)
			exists = err == nil
		}
		if !exists {
			cacheDir = "" // a dry run creates nothing
		}
	}
	if cacheDir != "" {
		if cacheRoot, err = openCacheDir(root, cacheDir, cacheRel, cacheInside); err != nil {
			return nil, fmt.Errorf("creating block cache %q: %w", cacheDir, err)
		}
		defer cacheRoot.Close()
		if pcfg.cache == nil {
			pcfg.cache = newDirCacheIn(cacheRoot, cacheDir)
		}
		raw = newRawCacheIn(cacheRoot, cacheDir)
	}
	p := pcfg.progress
	lock, err := acquireLockRoot(ctx, root, pcfg.lockWait, p)
	if err != nil {
		return nil, err
	}
	defer lock.release()

	p.Stage("scan", 0)
	// With --update, our saved state is read while the directory is
	// scanned.
	var stateCh chan *loadedState
	if cfg.update && raw != nil {
		stateCh = make(chan *loadedState, 1)
		go func() {
			ls, err := readState(ctx, raw, root, cacheRoot)
			if err != nil {
				ls = nil
			}
			stateCh <- ls
		}()
	}
	base := cfg.render.BaseURL
	if base != "" && base[0] == '/' {
		base = "file://" + base
	}
	var ls *loadedState
	var old map[string]*existingPackage
	res := &CreateResult{Dir: dir}
	// --skip-stat: what the existing repodata lists is known before the
	// scan, which then stats only the other files.
	var known map[string][2]int64
	if cfg.update && cfg.skipStat {
		if stateCh != nil {
			ls, stateCh = <-stateCh, nil
		}
		if ls != nil && stateMatches(ls, pcfg.codec.id(), base, cfg.render.ChangelogLimit) == nil {
			known = make(map[string][2]int64, len(ls.s.entries))
			for _, se := range ls.s.entries {
				known[se.href] = [2]int64{se.size, se.mtime}
			}
		} else if old, err = loadExistingRoot(ctx, root); err == nil && old != nil {
			res.ReusedFrom = "repodata"
			known = make(map[string][2]int64, len(old))
			for h, o := range old {
				if o.base == base {
					known[h] = [2]int64{o.Size, o.MTime}
				}
			}
		} else if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	files, err := scanRPMs(ctx, dir, workers, known)
	if stateCh != nil {
		ls = <-stateCh
	}
	if err != nil {
		return nil, err
	}
	// The open-checksum streams start now that the count is known (see
	// prefixHash), beside the look-up and the sort.
	var prefix *prefixHashes
	if cfg.update && old == nil && ls != nil && !pcfg.dryRun &&
		stateMatches(ls, pcfg.codec.id(), base, cfg.render.ChangelogLimit) == nil {
		prefix = startPrefixHashes(&savedGen{blocks: ls.s.blocks, data: ls.blocks, check: ls.check, drop: ls.drop}, len(files))
		defer prefix.halt()
	}
	if cfg.update && old == nil {
		if ls != nil {
			// Our own layout of the current generation, when it still
			// describes it: no decompressing, parsing or rehashing.
			// Key hints are for the dry run's build in memory: a
			// streaming build finds the unchanged blocks itself.
			old, pcfg.hints, err = loadStateReuse(ls, pcfg.codec.id(), base, cfg.render.ChangelogLimit, files, pcfg.dryRun)
			if err == nil && pcfg.dryRun {
				// A dry run builds in memory from the fragments, not
				// through streamBuild's checks: all are checked here.
				err = checkSaved(ls, old)
			}
			if err != nil {
				old, pcfg.hints = nil, nil
			} else {
				res.ReusedFrom = "state"
			}
		}
		if old == nil {
			if old, err = reuseRepodata(ctx, root, p, res); err != nil {
				return nil, err
			}
		}
	}
	if !pcfg.dryRun {
		// The uncompressed blocks of the state's generation stay for
		// the blocks this run reuses.
		var retain []string
		if res.ReusedFrom == "state" {
			retain = []string{}
			for _, bl := range ls.s.blocks {
				retain = append(retain, bl.keys[:]...)
			}
		}
		var saved *savedGen
		if res.ReusedFrom == "state" {
			saved = &savedGen{blocks: ls.s.blocks, data: ls.blocks, check: ls.check, prefix: prefix,
				entryBytes: ls.s.entryBytes, blockOff: ls.s.blockOff}
		}
		ls = nil
		return createStreaming(ctx, root, dir, files, old, res, cfg, pcfg, workers, base, raw, cacheRoot, retain, saved)
	}
	// A dry run writes nothing, so it builds in memory.
	entries := make([]Entry, len(files))
	have := make([]bool, len(files))
	var toRead []int
	attachOld(files, old)
	for i, f := range files {
		if o := f.old; o != nil && o.Size == f.size && o.MTime == f.mtime && o.base == base {
			entries[i] = o.Entry
			have[i] = true
			res.Reused++
			continue
		}
		toRead = append(toRead, i)
	}
	old = nil

	p.Stage("read", len(toRead))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	work := make(chan int)
	g.Go(func() error {
		defer close(work)
		for _, i := range toRead {
			select {
			case work <- i:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for range workers {
		g.Go(func() error {
			var ar arena
			for {
				var i int
				var ok bool
				select {
				case i, ok = <-work:
					if !ok {
						return nil
					}
				case <-gctx.Done():
					return gctx.Err()
				}
				f := files[i]
				e, err := readEntry(gctx, f, cfg.render)
				if err != nil {
					if gctx.Err() != nil {
						return gctx.Err()
					}
					s := SkippedFile{Path: f.path(), Reason: err.Error(), Err: err}
					mu.Lock()
					res.Skipped = append(res.Skipped, s)
					mu.Unlock()
					p.Notice("skipped: " + s.Reason)
				} else {
					// Packed tightly: the renderer's buffers have
					// room to spare, and 10,000 packages add up.
					e.Primary, e.Filelists, e.Other = ar.put(e.Primary), ar.put(e.Filelists), ar.put(e.Other)
					entries[i] = *e
					have[i] = true
				}
				p.Step(1)
			}
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	kept := entries[:0]
	for i := range entries {
		if have[i] {
			kept = append(kept, entries[i])
		}
	}
	res.Read = len(toRead) - len(res.Skipped)
	res.Packages = len(kept)
	// Skipped order follows the scan, not the workers.
	sortSkipped(res.Skipped)

	// The state for the next --update is written while the publish
	// writes and syncs its files, and put in place only if it succeeds.
	var saved chan error
	pcfg.built = func(st buildStats, docs [3]builtDoc, changed bool) {
		// An unchanged publish from a valid state leaves that state valid.
		if cacheDir == "" || (!changed && res.ReusedFrom == "state") {
			return
		}
		var sums [3]string
		for k := range docs {
			sums[k] = docs[k].checksum
		}
		saved = make(chan error, 1)
		go func() {
			saved <- writeState(ctx, raw, cacheRoot, &st, sums, pcfg.codec.id(), base, cfg.render.ChangelogLimit)
		}()
	}
	pub, err := publishLocked(ctx, root, entryPtrs(kept), pcfg)
	res.Publish = pub
	if saved != nil {
		serr := <-saved
		if err == nil && serr == nil {
			serr = commitState(cacheRoot)
		}
		if err == nil && serr != nil {
			// Only a cache: the next --update reads the repodata instead.
			p.Notice(fmt.Sprintf("not saving createrepo state: %v", serr))
		}
		discardState(cacheRoot)
	}
	if err != nil {
		return res, err
	}
	if len(res.Skipped) > 0 {
		return res, fmt.Errorf("createrepo %q: %w: %d of %d files are not valid packages",
			dir, ErrSomeSkipped, len(res.Skipped), len(files))
	}
	return res, nil
}

// reuseRepodata reads the published repodata for --update (setting
// res.ReusedFrom when there is some). Only a cancelled ctx is an error:
// unreadable repodata is reported and nothing is reused.
func reuseRepodata(ctx context.Context, root *os.Root, p Progress, res *CreateResult) (map[string]*existingPackage, error) {
	old, err := loadExistingRoot(ctx, root)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		p.Notice(fmt.Sprintf("not reusing existing repodata: %v", err))
		return nil, nil
	}
	if old != nil {
		res.ReusedFrom = "repodata"
	}
	return old, nil
}

// insideDir says whether p lies inside dir by name (after making both
// absolute and cleaning them), and returns it relative to dir.
func insideDir(dir, p string) (string, bool) {
	ad, err := filepath.Abs(dir)
	if err != nil {
		return "", false
	}
	ap, err := filepath.Abs(p)
	if err != nil {
		return "", false
	}
	rel, err := filepath.Rel(ad, ap)
	if err != nil || !filepath.IsLocal(rel) {
		return "", false
	}
	return filepath.ToSlash(rel), true
}

// openCacheDir creates and opens the block cache directory: through the
// repository's root when it lies inside it, so that a symbolic link
// planted at .repoctl-cache cannot send the cache's writes elsewhere; by
// its path when the caller put it outside the repository.
func openCacheDir(root *os.Root, cacheDir, rel string, inside bool) (*os.Root, error) {
	if inside {
		if err := root.MkdirAll(rel, 0o755); err != nil {
			return nil, err
		}
		return root.OpenRoot(rel)
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	return os.OpenRoot(cacheDir)
}

func readEntry(ctx context.Context, f scannedFile, ro RenderOptions) (*Entry, error) {
	p := f.path()
	pkg, err := ReadFile(ctx, p)
	if err != nil {
		return nil, err
	}
	e, err := pkg.Entry(f.href, ro)
	if err != nil {
		return nil, fmt.Errorf("rendering %q: %w", p, err)
	}
	return e, nil
}

func sortSkipped(s []SkippedFile) {
	sort.Slice(s, func(i, j int) bool { return s[i].Path < s[j].Path })
}

// scanRPMs lists dir's *.rpm files. repodata/ at the top and directories
// whose name starts with a dot (our generation and cache directories among
// them) are not entered. Symlinks to regular files are followed, as
// createrepo_c does. Directory listings are not sorted here: Publish sorts
// packages createrepo_c's way. The stat calls, one per package, are spread
// over workers, which start on the first entries read while the rest of
// the directory is still being read.
//
// A file whose href known lists is not stat'ed: it takes known's size and
// mtime (--skip-stat).
func scanRPMs(ctx context.Context, dir string, workers int, known map[string][2]int64) ([]scannedFile, error) {
	type cand struct {
		d   fs.DirEntry
		rel string
		dir *os.File // open on the file's directory, or nil
	}
	// Candidates go to the stat workers in chunks, each chunk's results
	// in slices of the same length (ok false: not a package).
	type chunk struct {
		cands []cand
		out   []scannedFile
		ok    []bool
	}
	const chunkSize = 1024
	// Directories stay open for the stats, relative to them (no path
	// walk per file), up to a bound on descriptors.
	const maxOpenDirs = 64
	var dirs []*os.File
	var chunks []*chunk
	work := make(chan *chunk, 64)
	g, gctx := errgroup.WithContext(ctx)
	workers = max(1, workers)
	for range workers {
		g.Go(func() error {
			for ch := range work {
				if err := gctx.Err(); err != nil {
					return err
				}
				for i, c := range ch.cands {
					if k, ok := known[c.rel]; ok {
						ch.out[i] = scannedFile{href: c.rel, dir: dir, size: k[0], mtime: k[1]}
						ch.ok[i] = true
						continue
					}
					size, mtime, regular, err := statCand(c.dir, c.d, dir, c.rel)
					if err != nil {
						if errors.Is(err, fs.ErrNotExist) {
							continue // dangling symlink, or removed meanwhile
						}
						return fmt.Errorf("scanning %q: %w", dir, err)
					}
					if !regular {
						continue
					}
					ch.out[i] = scannedFile{href: c.rel, dir: dir, size: size, mtime: mtime}
					ch.ok[i] = true
				}
			}
			return nil
		})
	}
	var cur []cand
	send := func() error {
		if len(cur) == 0 {
			return nil
		}
		ch := &chunk{cands: cur, out: make([]scannedFile, len(cur)), ok: make([]bool, len(cur))}
		chunks = append(chunks, ch)
		cur = nil
		select {
		case work <- ch:
			return nil
		case <-gctx.Done():
			return gctx.Err()
		}
	}
	var walk func(abs, rel string) error
	walk = func(abs, rel string) error {
		if err := gctx.Err(); err != nil {
			return err
		}
		f, err := os.Open(abs)
		if err != nil {
			return err
		}
		// Kept open for the stats when within the bound (closed once
		// the workers are done), else closed after reading.
		var dirf *os.File
		if len(dirs) < maxOpenDirs {
			dirf = f
			dirs = append(dirs, f)
		}
		var subdirs [][2]string
		for {
			ents, err := f.ReadDir(chunkSize)
			for _, d := range ents {
				name := d.Name()
				r := name
				if rel != "" {
					r = rel + "/" + name
				}
				if d.IsDir() {
					if !strings.HasPrefix(name, ".") && (rel != "" || name != RepodataDir) {
						subdirs = append(subdirs, [2]string{filepath.Join(abs, name), r})
					}
					continue
				}
				if strings.HasSuffix(name, ".rpm") {
					if cur == nil {
						cur = make([]cand, 0, chunkSize)
					}
					cur = append(cur, cand{d, r, dirf})
					if len(cur) == chunkSize {
						if err := send(); err != nil {
							return err
						}
					}
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				if dirf == nil {
					f.Close()
				}
				return err
			}
		}
		if dirf == nil {
			f.Close()
		}
		// Subdirectories after this directory's own files, as before.
		for _, sd := range subdirs {
			if err := walk(sd[0], sd[1]); err != nil {
				return err
			}
		}
		return nil
	}
	werr := walk(dir, "")
	if werr == nil {
		werr = send()
	}
	close(work)
	gerr := g.Wait()
	for _, f := range dirs {
		f.Close()
	}
	if gerr != nil {
		return nil, gerr // a worker's (which is why the walk stopped, if it did)
	}
	if werr != nil {
		return nil, fmt.Errorf("scanning %q: %w", dir, werr)
	}
	n := 0
	for _, ch := range chunks {
		n += len(ch.cands)
	}
	kept := make([]scannedFile, 0, n)
	for _, ch := range chunks {
		for i := range ch.out {
			if ch.ok[i] {
				kept = append(kept, ch.out[i])
			}
		}
	}
	return kept, nil
}

// statCand stats a directory entry, following a symbolic link as
// createrepo_c does: relative to its open directory when there is one.
func statCand(dir *os.File, d fs.DirEntry, repoDir, rel string) (size, mtime int64, regular bool, err error) {
	follow := d.Type()&fs.ModeSymlink != 0
	if dir == nil {
		p := scannedFile{dir: repoDir, href: rel}.path()
		var fi fs.FileInfo
		if follow {
			fi, err = os.Stat(p)
		} else {
			fi, err = d.Info()
		}
		if err != nil {
			return 0, 0, false, err
		}
		return fi.Size(), fi.ModTime().Unix(), fi.Mode().IsRegular(), nil
	}
	flags := unix.AT_SYMLINK_NOFOLLOW
	if follow {
		flags = 0
	}
	var st unix.Stat_t
	for {
		err = unix.Fstatat(int(dir.Fd()), d.Name(), &st, flags)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return 0, 0, false, &fs.PathError{Op: "stat", Path: scannedFile{dir: repoDir, href: rel}.path(), Err: err}
	}
	return st.Size, st.Mtim.Sec, st.Mode&unix.S_IFMT == unix.S_IFREG, nil
}

// arena packs many small byte slices into few large allocations.
type arena struct{ buf []byte }

func (a *arena) put(b []byte) []byte {
	if cap(a.buf)-len(a.buf) < len(b) {
		a.buf = make([]byte, 0, max(1<<20, len(b)))
	}
	start := len(a.buf)
	a.buf = append(a.buf, b...)
	return a.buf[start:len(a.buf):len(a.buf)]
}
