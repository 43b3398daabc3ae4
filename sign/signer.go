package sign

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/repoctl/repoctl/internal/fsutil"
)

// Actions reported in Result.Action.
const (
	ActionSigned    = "signed"    // had no signature, now signed by our key
	ActionUnchanged = "unchanged" // already signed by our key; file not touched
	ActionReplaced  = "replaced"  // another key's signature was replaced by ours
)

// Result is the outcome for one file. Err is set (wrapping ErrCorrupt,
// ErrNotRPM, ...) when the file was refused; it was then left untouched.
type Result struct {
	Path   string `json:"path"`
	KeyID  string `json:"key_id"`
	Action string `json:"action,omitempty"`
	// InPlace is true when only the signature area was patched, false when
	// the file was rewritten (or not changed).
	InPlace bool  `json:"in_place"`
	Err     error `json:"-"`
}

// Progress receives per-file results as a batch completes. Implementations
// must be safe for concurrent use.
type Progress interface {
	Start(total int)
	Done(r Result)
}

type noProgress struct{}

func (noProgress) Start(int)   {}
func (noProgress) Done(Result) {}

// Signer signs RPM files with one key.
type Signer struct {
	key        *Key
	legacy     bool
	journalDir string
	workers    int
	progress   Progress
	batchSize  int
	dryRun     bool

	skipDigests bool   // benchmarks: measure signing without the digest check
	patchHook   func() // tests: runs between the two halves of an in-place write
}

// SignerOption configures a Signer.
type SignerOption func(*Signer) error

// WithLegacy also writes the header+payload signature (PGP 1002 for RSA,
// GPG 1005 for EdDSA) that rpm older than 4.14 wants. Default false: rpm
// ≥ 4.16 only writes header signatures and reads the payload digest.
func WithLegacy(on bool) SignerOption {
	return func(s *Signer) error { s.legacy = on; return nil }
}

// WithJournalDir puts crash journals in dir (created 0700 if missing).
// Default: a journal in the directory of the files being patched.
func WithJournalDir(dir string) SignerOption {
	return func(s *Signer) error {
		if dir == "" {
			return errors.New("sign: empty journal directory")
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return err
		}
		s.journalDir = abs
		return nil
	}
}

// WithWorkers sets how many packages are hashed and signed at once.
// Default: the number of CPUs (RSA signing is CPU bound).
func WithWorkers(n int) SignerOption {
	return func(s *Signer) error {
		if n < 1 {
			return fmt.Errorf("sign: workers must be at least 1, not %d", n)
		}
		s.workers = n
		return nil
	}
}

// WithProgress reports per-file results. Default: none.
func WithProgress(p Progress) SignerOption {
	return func(s *Signer) error {
		if p == nil {
			p = noProgress{}
		}
		s.progress = p
		return nil
	}
}

// WithDryRun checks and signs in memory but writes nothing; results say
// what would have happened. Default false.
func WithDryRun(on bool) SignerOption {
	return func(s *Signer) error { s.dryRun = on; return nil }
}

// WithBatchSize sets how many files share one journal and one sync pass.
// Default 512.
func WithBatchSize(n int) SignerOption {
	return func(s *Signer) error {
		if n < 1 {
			return fmt.Errorf("sign: batch size must be at least 1, not %d", n)
		}
		s.batchSize = n
		return nil
	}
}

// NewSigner returns a Signer for key, which must hold a private key.
func NewSigner(key *Key, opts ...SignerOption) (*Signer, error) {
	if key == nil || !key.CanSign() {
		return nil, ErrNoPrivateKey
	}
	s := &Signer{key: key, workers: runtime.NumCPU(), progress: noProgress{}, batchSize: 512}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Key returns the signer's key.
func (s *Signer) Key() *Key { return s.key }

// SignFile signs one file. The returned error is the file's own error if
// it was refused.
func (s *Signer) SignFile(ctx context.Context, path string) (Result, error) {
	rs, err := s.SignFiles(ctx, []string{path})
	if err != nil {
		return Result{Path: path, KeyID: s.key.KeyID(), Err: err}, err
	}
	return rs[0], rs[0].Err
}

// SignFiles signs paths in batches. Per-file failures (corrupt, not an
// RPM, unreadable) are in each Result.Err and leave that file untouched;
// the error return is for failures of the whole batch (context cancelled,
// journal not writable) and means files not yet reported were left as they
// were. Files of one batch become durable together: one journal sync before
// patching and one sync pass after.
func (s *Signer) SignFiles(ctx context.Context, paths []string) ([]Result, error) {
	results := make([]Result, len(paths))
	abs := make([]string, len(paths))
	dirs := map[string]bool{}
	for i, p := range paths {
		a, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("signing %q: %w", p, err)
		}
		// Sign the file a symlink points to; a rewrite must not replace
		// the link itself with a regular file.
		if r, err := filepath.EvalSymlinks(a); err == nil {
			a = r
		}
		abs[i] = a
		results[i] = Result{Path: p, KeyID: s.key.KeyID()}
		dirs[filepath.Dir(a)] = true
	}
	// Finish whatever a crashed run left behind before looking at the
	// files: journals, and temp files of interrupted rewrites (those are
	// always beside the files).
	if s.journalDir != "" {
		dirs[s.journalDir] = true
	}
	for d := range dirs {
		if err := Recover(ctx, d); err != nil {
			return nil, err
		}
	}
	s.progress.Start(len(paths))
	// A file named twice, or reached through two hard links, is signed
	// once; patching it twice in one batch would trip over our own first
	// write.
	firstOf := map[fileID]int{}
	first := make([]int, len(abs))
	var uniq []int
	for i, a := range abs {
		id := identify(a)
		if f, dup := firstOf[id]; dup {
			first[i] = f
			continue
		}
		firstOf[id] = i
		first[i] = i
		uniq = append(uniq, i)
	}
	for lo := 0; lo < len(uniq); lo += s.batchSize {
		idx := uniq[lo:min(lo+s.batchSize, len(uniq))]
		bp := make([]string, len(idx))
		br := make([]Result, len(idx))
		for j, i := range idx {
			bp[j], br[j] = abs[i], results[i]
		}
		err := s.signBatch(ctx, bp, br)
		for j, i := range idx {
			results[i] = br[j]
		}
		if err != nil {
			return results, err
		}
	}
	for i := range abs {
		if f := first[i]; f != i {
			r := results[f]
			r.Path = paths[i]
			results[i] = r
			s.progress.Done(r)
		}
	}
	return results, nil
}

// plan is what signing one file will do.
type plan struct {
	path     string
	p        *pkg
	action   string
	inPlace  bool
	newArea  []byte // for in place: exactly len(origArea) bytes
	origArea []byte
	mode     os.FileMode
	mtime    time.Time
	uid, gid int
	dev      uint64
	tmp      string   // rewrite: the temp file
	fd       *os.File // kept open for a per-file sync in small batches
	mainLen  int      // the main header identifies the package in the journal
	mainSum  string
}

// errNeedsRecovery: an in-place write failed and could not be undone; the
// journal is kept so that Recover (run by the next SignFiles) repairs it.
var errNeedsRecovery = errors.New("in-place write failed")

// smallBatch is how many files are synced one by one; above it one
// syncfs(2) per filesystem is cheaper.
const smallBatch = 8

func (s *Signer) signBatch(ctx context.Context, paths []string, results []Result) error {
	plans := make([]*plan, len(paths))
	// Phase 1: check digests and make signatures, in parallel.
	err := forEach(ctx, len(paths), s.workers, func(ctx context.Context, i int) {
		pl, err := s.prepare(ctx, paths[i])
		if err != nil {
			results[i].Err = fmt.Errorf("signing %q: %w", results[i].Path, err)
			return
		}
		plans[i] = pl
	})
	if err != nil {
		return err
	}

	if s.dryRun {
		for i, pl := range plans {
			if pl != nil {
				results[i].Action = pl.action
				results[i].InPlace = pl.inPlace && pl.action != ActionUnchanged
			}
			s.progress.Done(results[i])
		}
		return nil
	}

	// Phase 2: journal the bytes in-place patches will overwrite.
	byDir := map[string][]journalRecord{}
	for _, pl := range plans {
		if pl == nil || !pl.inPlace || pl.action == ActionUnchanged {
			continue
		}
		d := s.journalDir
		if d == "" {
			d = filepath.Dir(pl.path)
		}
		byDir[d] = append(byDir[d], journalRecord{
			Path: pl.path, Off: leadSize, Size: pl.p.size, MTime: pl.mtime.UnixNano(),
			Orig: pl.origArea, OrigSum: sum256(pl.origArea), NewSum: sum256(pl.newArea),
			MainLen: pl.mainLen, MainSum: pl.mainSum,
		})
	}
	var journals []*journal
	defer func() {
		for _, j := range journals {
			j.f.Close() // releases the lock; the file stays for Recover if not finished
		}
	}()
	for d, recs := range byDir {
		j, err := writeJournal(d, recs)
		if err != nil {
			return err
		}
		journals = append(journals, j)
	}

	// Phase 3: patch in place or write temp files.
	nWrite := 0
	for _, pl := range plans {
		if pl != nil && pl.action != ActionUnchanged {
			nWrite++
		}
	}
	keepFD := nWrite <= smallBatch
	werr := forEach(context.WithoutCancel(ctx), len(plans), s.workers, func(_ context.Context, i int) {
		pl := plans[i]
		if pl == nil || pl.action == ActionUnchanged {
			return
		}
		var err error
		if pl.inPlace {
			err = s.patch(pl, keepFD)
		} else {
			err = s.writeTemp(pl, keepFD)
		}
		if err != nil {
			results[i].Err = fmt.Errorf("signing %q: %w", results[i].Path, err)
			plans[i] = nil
		}
	})
	if werr != nil {
		return werr
	}

	// Phase 4: one sync pass.
	if err := syncPlans(plans, keepFD); err != nil {
		for _, pl := range plans {
			if pl != nil && pl.tmp != "" {
				os.Remove(pl.tmp)
			}
		}
		return err
	}

	// Phase 5: publish rewrites, then drop the journals.
	syncDirs := map[string]bool{}
	for i, pl := range plans {
		if pl == nil || pl.tmp == "" {
			continue
		}
		if err := commitRewrite(pl); err != nil {
			results[i].Err = fmt.Errorf("signing %q: %w", results[i].Path, err)
			plans[i] = nil
			continue
		}
		syncDirs[filepath.Dir(pl.path)] = true
	}
	for d := range syncDirs {
		if err := fsutil.SyncDir(d); err != nil {
			return err
		}
	}
	for i := range plans {
		if errors.Is(results[i].Err, errNeedsRecovery) {
			return fmt.Errorf("signing %q: %w; run again to recover", results[i].Path, results[i].Err)
		}
	}
	for _, j := range journals {
		if err := j.finish(); err != nil {
			return fmt.Errorf("removing journal: %w", err)
		}
	}
	journals = nil
	for i, pl := range plans {
		if pl != nil {
			results[i].Action = pl.action
			results[i].InPlace = pl.inPlace && pl.action != ActionUnchanged
		}
		s.progress.Done(results[i])
	}
	return nil
}

// fileID names a file by device and inode, so hard links compare equal;
// a file that cannot be stat'ed is named by its path (prepare reports why).
type fileID struct {
	dev, ino uint64
	path     string
}

func identify(path string) fileID {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileID{path: path}
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino}
}

// forEach runs fn for 0..n-1 on a bounded pool: one producer, workers
// consumers, all stopping when ctx is done.
func forEach(ctx context.Context, n, workers int, fn func(context.Context, int)) error {
	g, gctx := errgroup.WithContext(ctx)
	ch := make(chan int)
	g.Go(func() error {
		defer close(ch)
		for i := 0; i < n; i++ {
			select {
			case ch <- i:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for w := 0; w < min(workers, max(n, 1)); w++ {
		g.Go(func() error {
			for {
				select {
				case i, ok := <-ch:
					if !ok {
						return nil
					}
					fn(gctx, i)
				case <-gctx.Done():
					return gctx.Err()
				}
			}
		})
	}
	return g.Wait()
}

// prepare reads and checks one package and computes its new signature area.
func (s *Signer) prepare(ctx context.Context, path string) (pl *plan, err error) {
	// Parsing is bounds-checked throughout; this only keeps one hostile
	// file from taking the whole batch down if a check was missed.
	defer func() {
		if r := recover(); r != nil {
			pl, err = nil, fmt.Errorf("%w: unparsable package (internal error: %v)", ErrCorrupt, r)
		}
	}()
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file", ErrNotRPM)
	}
	br := bufio.NewReaderSize(f, 64<<10)
	p, err := readPkg(br, st.Size())
	if err != nil {
		return nil, err
	}
	pl = &plan{path: path, p: p, mode: st.Mode(), mtime: st.ModTime(), origArea: p.origArea()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		pl.uid, pl.gid, pl.dev = int(sys.Uid), int(sys.Gid), uint64(sys.Dev)
	}

	k := s.key
	hdrTag, legacyTag := uint32(tagDSAHeader), uint32(tagGPG)
	if k.isRSA() {
		hdrTag, legacyTag = tagRSAHeader, tagPGP
	}
	// Like rpmsign: a package without a payload digest (built by rpm <
	// 4.14) needs the header+payload signature, or rpm cannot verify its
	// payload under a header-only signature. A v6 package never gets one:
	// rpm 6 ignores it there and the v6 format has no tags above 999.
	v6 := p.v6()
	legacy := !v6 && (s.legacy || !p.hasPayloadDigest())
	old278, err := openPGPSigs(p)
	if err != nil {
		return nil, err
	}
	hadSig := false
	for _, e := range p.sig.entries {
		if sigTags[e.tag] {
			hadSig = true
		}
	}
	ours := s.isOurs(p, hdrTag, legacyTag, legacy, v6, old278)

	now := time.Now()
	var legacySig func() ([]byte, error)
	var extra io.Writer
	if legacy && !ours {
		sig, h, err := k.newSig(now)
		if err != nil {
			return nil, err
		}
		extra = h
		legacySig = func() ([]byte, error) { return k.finishSig(sig, h) }
	}
	if !s.skipDigests || extra != nil {
		checks, err := checkDigests(ctx, p, br, extra, false)
		if err != nil {
			return nil, err
		}
		if !s.skipDigests {
			if err := firstDigestError(checks); err != nil {
				return nil, err
			}
		}
	}
	if ours {
		// Valid signature of ours, nothing else: leave the file alone. (A
		// legacy signature is only trusted because the digests above passed.)
		pl.action = ActionUnchanged
		return pl, nil
	}

	hdrSig, err := k.signParts(now, p.main.blob)
	if err != nil {
		return nil, err
	}
	var entries []entry
	for _, e := range p.sig.entries {
		if !sigTags[e.tag] && e.tag != tagSigRegion && e.tag != tagReservedSpace {
			entries = append(entries, e)
		}
	}
	entries = append(entries, entry{tag: hdrTag, typ: typeBin, count: uint32(len(hdrSig)), data: hdrSig})
	if v6 {
		// rpm 6 reads 278 and skips RSAHEADER/DSAHEADER when it has one;
		// rpm 4 reads only those. The same packet serves both.
		entries = append(entries, openPGPEntry(hdrSig))
	}
	if legacySig != nil {
		ls, err := legacySig()
		if err != nil {
			return nil, err
		}
		entries = append(entries, entry{tag: legacyTag, typ: typeBin, count: uint32(len(ls)), data: ls})
	}
	pl.action = ActionSigned
	if hadSig {
		pl.action = ActionReplaced
	}
	// A batch holds many plans: keep only what the write needs, not the
	// main header (which can be megabytes).
	pl.mainLen, pl.mainSum = len(p.main.blob), sum256(p.main.blob)
	defer func() { p.main, p.sig = nil, nil }()
	if area, ok := fitSigHeader(entries, p.sigArea, p.reserveTag()); ok {
		pl.inPlace, pl.newArea = true, area
	} else {
		pl.newArea = newSigArea(entries, p.reserveTag())
	}
	return pl, nil
}

// isOurs reports whether p already carries exactly the signatures signing
// would write: a valid header signature by our key in hdrTag, the
// header+payload one when legacy, the same signature in 278 for a v6
// package, and no other signature tag.
func (s *Signer) isOurs(p *pkg, hdrTag, legacyTag uint32, legacy, v6 bool, old278 [][]byte) bool {
	keys := []*Key{s.key}
	e := p.sig.get(hdrTag)
	if e == nil || verifyPacket(e.data, keys, p.main.blob) != nil {
		return false
	}
	for _, o := range p.sig.entries {
		switch {
		case !sigTags[o.tag], o.tag == hdrTag:
		case o.tag == legacyTag && legacy:
		case o.tag == tagOpenPGP && v6:
		default:
			return false // something foreign or unwanted besides ours
		}
	}
	// A legacy signature is only trusted because the digests are checked
	// before the file is left alone.
	if legacy && p.sig.get(legacyTag) == nil {
		return false
	}
	if v6 && (len(old278) != 1 || verifyPacket(old278[0], keys, p.main.blob) != nil) {
		return false
	}
	return true
}

// patch overwrites the signature area of pl.path in place, after checking
// that the file still holds what prepare read.
func (s *Signer) patch(pl *plan, keepFD bool) error {
	f, err := os.OpenFile(pl.path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err == nil && st.Size() != pl.p.size {
		err = errors.New("file changed while signing")
	}
	if err == nil {
		cur := make([]byte, len(pl.origArea))
		if _, err = f.ReadAt(cur, leadSize); err == nil && !bytes.Equal(cur, pl.origArea) {
			err = errors.New("file changed while signing")
		}
	}
	if err == nil {
		if s.patchHook != nil {
			half := len(pl.newArea) / 2
			if _, err = f.WriteAt(pl.newArea[:half], leadSize); err == nil {
				s.patchHook()
				_, err = f.WriteAt(pl.newArea[half:], leadSize+int64(half))
			}
		} else {
			_, err = f.WriteAt(pl.newArea, leadSize)
		}
		if err != nil {
			// Put the original back now; if even that fails the journal
			// stays for Recover.
			if _, rerr := f.WriteAt(pl.origArea, leadSize); rerr != nil || f.Sync() != nil {
				err = fmt.Errorf("%w (original bytes not restored: %v)", errNeedsRecovery, err)
			}
		}
	}
	if err != nil {
		f.Close()
		return err
	}
	// The mtime moves on, as with rpmsign: size is unchanged, so mtime is
	// what tells createrepo_c --update (and anything like it) that the
	// file's checksum changed.
	if keepFD {
		pl.fd = f
		return nil
	}
	return f.Close()
}

// writeTemp writes the re-signed package to a temp file beside the
// original: lead, new signature area, then the original main header and
// payload copied by the kernel (copy_file_range).
func (s *Signer) writeTemp(pl *plan, keepFD bool) error {
	src, err := os.Open(pl.path)
	if err != nil {
		return err
	}
	defer src.Close()
	dir, base := filepath.Split(pl.path)
	tmp, err := os.CreateTemp(dir, "."+base+tempMarker+strconv.Itoa(os.Getpid())+"-*.tmp")
	if err != nil {
		return err
	}
	pl.tmp = tmp.Name()
	fail := func(err error) error {
		tmp.Close()
		os.Remove(pl.tmp)
		pl.tmp = ""
		return err
	}
	if _, err := tmp.Write(append(append([]byte(nil), pl.p.lead...), pl.newArea...)); err != nil {
		return fail(err)
	}
	if _, err := src.Seek(pl.p.mainOff, io.SeekStart); err != nil {
		return fail(err)
	}
	n, err := io.Copy(tmp, src)
	if err != nil {
		return fail(err)
	}
	if n != pl.p.size-pl.p.mainOff {
		return fail(errors.New("file changed while signing"))
	}
	if err := tmp.Chmod(pl.mode.Perm()); err != nil {
		return fail(err)
	}
	if os.Geteuid() == 0 {
		if err := tmp.Chown(pl.uid, pl.gid); err != nil {
			return fail(err)
		}
	}
	if err := os.Chtimes(pl.tmp, pl.mtime, pl.mtime); err != nil {
		return fail(err)
	}
	if keepFD {
		pl.fd = tmp
		return nil
	}
	return tmp.Close()
}

func commitRewrite(pl *plan) error {
	st, err := os.Stat(pl.path)
	if err == nil && (st.Size() != pl.p.size || !st.ModTime().Equal(pl.mtime)) {
		err = errors.New("file changed while signing")
	}
	if err == nil {
		err = os.Rename(pl.tmp, pl.path)
	}
	if err != nil {
		os.Remove(pl.tmp)
	}
	return err
}

// syncPlans makes every written file durable: one fsync per file for small
// batches, else one syncfs per filesystem.
func syncPlans(plans []*plan, keepFD bool) error {
	if keepFD {
		var errs []error
		for _, pl := range plans {
			if pl == nil || pl.fd == nil {
				continue
			}
			if err := pl.fd.Sync(); err != nil {
				errs = append(errs, fmt.Errorf("syncing %q: %w", pl.path, err))
			}
			pl.fd.Close()
			pl.fd = nil
		}
		return errors.Join(errs...)
	}
	devs := map[uint64]string{}
	for _, pl := range plans {
		if pl != nil && pl.action != ActionUnchanged {
			devs[pl.dev] = filepath.Dir(pl.path)
		}
	}
	for _, d := range devs {
		f, err := os.Open(d)
		if err != nil {
			return err
		}
		err = unix.Syncfs(int(f.Fd()))
		f.Close()
		if err != nil {
			return fmt.Errorf("syncing filesystem of %q: %w", d, err)
		}
	}
	return nil
}
