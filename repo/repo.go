package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	kv "github.com/repoctl/repoctl/repo/store"

	"github.com/repoctl/repoctl/internal/fsutil"
	"github.com/repoctl/repoctl/metadata"
	"github.com/repoctl/repoctl/sign"
)

// Repo is an open repository root: it holds the ROOT lock, the store and the
// signing key until Close. It implements Service.
type Repo struct {
	cfg    *Config
	o      options
	lock   *rootLock
	st     *store
	tree   *tree
	key    *sign.Key
	signer *sign.Signer

	// mu serializes every change (ingest batches, promote, remove) so that
	// NEVRA checks, placement and publish of one batch see a stable store.
	mu sync.Mutex
	// dirs indexes what each repository directory (relative to ROOT/repo)
	// publishes: dir → NEVRA → entry. Built once at Open, kept in step with
	// the store under mu. Entries are light (no XML fragments: that is
	// most of a package's size): a publish takes the fragments from the
	// directory's PublishState, or from the store for packages it does not
	// know (fragmentLoader), so memory stays about 300 bytes a package.
	dirs map[string]map[string]*metadata.Entry
	// hrefs indexes the same by file name: dir → href → NEVRA, so that
	// checking one new package's file names costs O(1), not O(dir).
	hrefs map[string]map[string]string
	// pubStates (dir → *metadata.PublishState) carry each directory's
	// last build to its next publish, so that a publish after a few
	// changes hashes and compresses those only; their uncompressed blocks
	// sit in unlinked scratch files in the spool. Saved at Close and
	// restored, once checked against the served repomd.xml, by the first
	// publish of the directory after Open (pubstate_persist.go).
	pubStates sync.Map
	// noPubState makes every publish stateless (what it was before
	// PublishState), for benchmarks that compare the two.
	noPubState bool
	// loadedFrags counts fragments fragmentLoader read from the store
	// since the last publish: many means a big transient heap to give
	// back (freeAfterLoad).
	loadedFrags atomic.Int64
	// idxMu lets readers that do not take mu (RepoFile) read dirs while a
	// batch runs; writers hold both.
	idxMu  sync.RWMutex
	closed bool
	// isClosed mirrors closed for readers that must not wait for mu,
	// which an ingest batch holds for its whole run.
	isClosed atomic.Bool
	// keyMu guards key and signer for readers that do not hold mu; a key
	// rotation swaps them holding both.
	keyMu sync.RWMutex
	// rotSem admits one key rotation at a time (keyrotate.go);
	// lastRotation is the one this process finished last.
	rotSem       chan struct{}
	lastRotation *KeyRotation
	// pubHealth is the directories whose last publish failed (/readyz).
	pubHealth publishHealth
	// liveDropIns replaces cfg.DropIns once the daemon reloaded its
	// config (SIGHUP); nil until then. See dropIns.
	liveDropIns atomic.Pointer[[]DropIn]
	// deferred is what coalesced batches recorded but did not publish
	// (under mu; see mayDefer).
	deferred deferredPublish
	// stages times the batch in progress (under mu; see stageClock).
	stages stageClock
	// ha is the daemon's part in an HA pair (ha.go); nil outside one.
	ha *haState
	// offline is a command's part in the HA pair's election, on an etcd
	// store without a daemon (ha_offline.go); nil otherwise.
	offline *offlineTerm
}

var _ Service = (*Repo)(nil)

type options struct {
	configFile string
	lockWait   time.Duration
	notify     func(string)
	log        *slog.Logger
	who        string
	resume     bool
	workers    int
	keyAlgo    string
	progress   Progress
	metrics    Metrics // nil: noMetrics
	// pair: Open for a daemon, which with an etcd store may be one of an
	// HA pair: its key must be the pair's (checkPairKey).
	pair bool
}

// Option configures Open.
type Option func(*options) error

// WithConfigFile reads the config from file instead of ROOT/repoctl.toml.
func WithConfigFile(file string) Option {
	return func(o *options) error { o.configFile = file; return nil }
}

// WithLockWait sets how long Open waits for another process holding ROOT.
// Default 30s; 0 fails at once with ErrLocked.
func WithLockWait(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("repo: negative lock wait %v", d)
		}
		o.lockWait = d
		return nil
	}
}

// WithNotify receives human-readable notices such as "waiting for the lock".
// Default: discarded.
func WithNotify(f func(msg string)) Option {
	return func(o *options) error { o.notify = f; return nil }
}

// WithLogger sets the structured logger. Default: discarded.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("repo: nil logger")
		}
		o.log = l
		return nil
	}
}

// WithWho sets the actor recorded in events when a call does not name one.
// Default: the OS user name. The daemon uses "daemon".
func WithWho(who string) Option {
	return func(o *options) error { o.who = who; return nil }
}

// WithResume(false) keeps Open from finishing journaled ingests; the caller
// then calls Resume itself. Default true.
func WithResume(b bool) Option {
	return func(o *options) error { o.resume = b; return nil }
}

// WithWorkers bounds the validate workers of a batch. Default: the config's
// publish.workers, else GOMAXPROCS.
func WithWorkers(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("repo: workers must be at least 1, not %d", n)
		}
		o.workers = n
		return nil
	}
}

// Progress receives coarse progress of ingest batches: the stage about to
// run ("validating", "signing", "placing", "publishing") and how many files
// (or, for publishing, directories) it covers. Calls come from the
// goroutine running the batch.
type Progress interface {
	Stage(stage string, n int)
}

// StepProgress is a Progress that also counts: after Stage(stage, n), Step
// reports files (or directories) of the stage as they are done, so that a
// bar can show "37/120", as metadata.Progress does for createrepo. Step may
// be called from several goroutines at once. A Progress without Step only
// sees the stages.
type StepProgress interface {
	Progress
	Step(n int)
}

type noProgress struct{}

func (noProgress) Stage(string, int) {}

// step reports one finished item of the current stage to a StepProgress.
func (o *options) step() {
	if p, ok := o.progress.(StepProgress); ok {
		p.Step(1)
	}
}

// WithProgress reports ingest progress to p. Default: nothing.
func WithProgress(p Progress) Option {
	return func(o *options) error {
		if p == nil {
			return errors.New("repo: nil progress")
		}
		o.progress = p
		return nil
	}
}

// WithKeyAlgo overrides signing.algo for a key generated on first start.
func WithKeyAlgo(algo string) Option {
	return func(o *options) error { o.keyAlgo = algo; return nil }
}

// Open loads the config of root, takes the ROOT lock (waiting up to the lock
// wait), opens the store, loads or generates the signing key and, unless
// WithResume(false), finishes what the ingest journal says was in flight.
func Open(ctx context.Context, root string, opts ...Option) (*Repo, error) {
	o := options{lockWait: 30 * time.Second, resume: true, log: slog.New(slog.DiscardHandler), progress: noProgress{}}
	for _, f := range opts {
		if err := f(&o); err != nil {
			return nil, err
		}
	}
	cfg, err := LoadConfig(root, o.configFile)
	if err != nil {
		return nil, err
	}
	if o.who == "" {
		o.who = currentUser()
	}
	if o.workers == 0 {
		o.workers = cfg.Publish.Workers
	}
	if o.workers <= 0 {
		o.workers = runtime.GOMAXPROCS(0)
	}
	if o.keyAlgo != "" {
		cfg.Signing.Algo = o.keyAlgo
	}
	if err := prepareRoot(cfg, o.log); err != nil {
		return nil, err
	}
	for _, d := range cfg.DropIns {
		if err := os.MkdirAll(d.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating drop-in dir %q: %w", d.Dir, err)
		}
	}
	lk, err := acquireLock(ctx, filepath.Join(cfg.Root, "repoctl.lock"), o.lockWait, o.notify)
	if err != nil {
		return nil, err
	}
	r := &Repo{cfg: cfg, o: o, lock: lk, rotSem: make(chan struct{}, 1)}
	fail := func(err error) (*Repo, error) {
		if r.st != nil {
			r.leaveOffline()
			r.st.close()
		}
		if r.tree != nil {
			r.tree.close()
		}
		lk.release()
		return nil, err
	}
	if r.st, err = openConfiguredStore(ctx, cfg); err != nil {
		return fail(err)
	}
	if !o.pair {
		if err := r.joinOffline(ctx); err != nil {
			return fail(err)
		}
	}
	if r.tree, err = openTree(cfg.Paths.Repo); err != nil {
		return fail(err)
	}
	r.tree.observe = r.observePublish
	r.tree.loader = r.fragmentLoader
	r.tree.fileMode, r.tree.dirMode = cfg.treeModes()
	if r.tree.mirror, err = r.openMirror(ctx); err != nil {
		return fail(err)
	}
	if err := writeTreeMarker(cfg); err != nil {
		return fail(err)
	}
	if err := r.ensureKey(ctx); err != nil {
		return fail(err)
	}
	if err := r.loadIndex(); err != nil {
		return fail(err)
	}
	// Decoding every record left garbage several times the size of
	// what the index keeps.
	debug.FreeOSMemory()
	if o.resume {
		if err := r.Resume(ctx); err != nil {
			return fail(err)
		}
	}
	return r, nil
}

func signJournalDir(cfg *Config) string { return filepath.Join(cfg.Paths.Spool, ".sign-journal") }

// Root is the absolute root directory.
func (r *Repo) Root() string { return r.cfg.Root }

// Config is the loaded configuration; callers must not modify it.
func (r *Repo) Config() *Config { return r.cfg }

// Key is the signing key in use.
func (r *Repo) Key() *sign.Key {
	r.keyMu.RLock()
	defer r.keyMu.RUnlock()
	return r.key
}

// Close releases the store and the ROOT lock.
func (r *Repo) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.isClosed.Store(true)
	// Only a cache: a state that cannot be saved costs the next
	// process one full publish.
	if err := r.savePubStates(); err != nil {
		r.o.log.Warn("not saving the publish state", "err", err)
	}
	r.pubStates.Range(func(_, s any) bool {
		s.(*metadata.PublishState).Close()
		return true
	})
	// Before the store closes (the election shares its client): a daemon
	// standing by leads at once.
	err := r.leaveOffline()
	if e := r.st.close(); err == nil {
		err = e
	}
	if e := r.tree.close(); err == nil {
		err = e
	}
	if e := r.lock.release(); err == nil {
		err = e
	}
	return err
}

func (r *Repo) who(w string) string {
	if w != "" {
		return w
	}
	return r.o.who
}

// ensureKey loads the configured key, or generates one into ROOT/keys on
// first start, and puts the public key into the served tree.
func (r *Repo) ensureKey(ctx context.Context) error {
	cfg := r.cfg
	if err := r.finishKeyInstall(); err != nil {
		return err
	}
	path := cfg.KeyPath()
	var pass []byte
	if cfg.Signing.PassphraseFile != "" {
		b, err := os.ReadFile(cfg.Signing.PassphraseFile)
		if err != nil {
			return fmt.Errorf("reading passphrase file %q: %w", cfg.Signing.PassphraseFile, err)
		}
		pass = bytes.TrimRight(b, "\r\n")
	} else if v := os.Getenv("REPOCTL_KEY_PASSPHRASE"); v != "" {
		pass = []byte(v)
	}
	key, err := sign.LoadKeyFile(path, pass)
	if r.o.pair {
		if perr := r.checkPairKey(key, err); perr != nil {
			return perr
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist) && cfg.Signing.Key == "":
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return fmt.Errorf("creating key dir: %w", err)
		}
		key, err = sign.GenerateKey(cfg.Signing.Algo, cfg.Signing.Name, cfg.Signing.Email)
		if err != nil {
			return fmt.Errorf("generating %s signing key: %w", cfg.Signing.Algo, err)
		}
		if err := key.WritePrivateFile(path); err != nil {
			return fmt.Errorf("writing signing key %q: %w", path, err)
		}
		pub, err := key.PublicArmored()
		if err != nil {
			return err
		}
		if err := fsutil.WriteFileAtomic(filepath.Join(filepath.Dir(path), "signing.pub.asc"), pub, 0o644); err != nil {
			return err
		}
		err = r.st.db.Update(func(tx kv.Tx) error {
			return appendEvent(tx, &Event{Who: r.o.who, Action: EventKey, Path: path,
				Details: map[string]string{"generated": key.Algorithm(), "key_id": key.KeyID(), "fingerprint": key.Fingerprint()}})
		})
		if err != nil {
			return fmt.Errorf("recording key generation: %w", err)
		}
		r.o.log.Info("generated signing key", "path", path, "key_id", key.KeyID(), "algo", key.Algorithm())
	default:
		return fmt.Errorf("loading signing key %q: %w", path, err)
	}
	if err := r.setKey(key); err != nil {
		return err
	}
	// RPM-GPG-KEY-repoctl holds every key of the keyring, not only this
	// one: served files signed by an older key must stay verifiable.
	return r.syncKeyring(ctx)
}

// loadIndex builds the per-directory entry index from the store.
func (r *Repo) loadIndex() error {
	r.dirs = map[string]map[string]*metadata.Entry{}
	r.hrefs = map[string]map[string]string{}
	return r.st.db.View(func(tx kv.Tx) error {
		return eachPackageLight(tx, "", func(p *PackageRecord) error {
			r.indexAdd(p, p.Placements)
			return nil
		})
	})
}

// publishState is dir's PublishState, created on first use.
func (r *Repo) publishState(dir string) *metadata.PublishState {
	if s, ok := r.pubStates.Load(dir); ok {
		return s.(*metadata.PublishState)
	}
	ns := r.restorePubState(context.Background(), dir)
	if ns == nil {
		ns = metadata.NewPublishState(r.cfg.Paths.Spool)
	}
	s, loaded := r.pubStates.LoadOrStore(dir, ns)
	if loaded {
		ns.Close()
	}
	return s.(*metadata.PublishState)
}

// fragmentLoader fills in the fragments of light index entries of dir
// from the store, for the packages dir's PublishState does not know (the
// first publish after Open, a package promoted in).
func (r *Repo) fragmentLoader(dir string) func(ctx context.Context, es []*metadata.Entry) error {
	repoName, _, _ := strings.Cut(dir, "/")
	return func(ctx context.Context, es []*metadata.Entry) error {
		r.loadedFrags.Add(int64(len(es)))
		return r.st.db.View(func(tx kv.Tx) error {
			for i, e := range es {
				if i%1024 == 0 {
					if err := ctx.Err(); err != nil {
						return err
					}
				}
				nevra := formatNEVRA(e.Name, e.Epoch, e.Version, e.Release, e.Arch)
				p, err := getPackage(tx, repoName, nevra)
				if err != nil {
					return err
				}
				if p == nil || p.Entry == nil || p.Entry.Href != e.Href || p.Entry.PkgID != e.PkgID {
					return fmt.Errorf("%w: %s (%q) of %q is not in the store as indexed", ErrNotFound, nevra, e.Href, dir)
				}
				e.Primary, e.Filelists, e.Other = p.Entry.Primary, p.Entry.Filelists, p.Entry.Other
			}
			return nil
		})
	}
}

// freeAfterLoad returns the heap of a publish that read many fragments
// from the store (the first publish of a big directory after Open) to
// the system at once, rather than leaving the daemon's RSS at that peak
// until the runtime's scavenger gets to it.
// The store pages the publish read (and the ones its record writes
// will read) leave the RSS after every publish: the call costs a walk
// of page tables that are mostly empty.
func (r *Repo) freeAfterLoad() {
	r.st.db.View(func(tx kv.Tx) error { kv.DropResident(tx); return nil })
	if r.loadedFrags.Swap(0) > 10000 {
		debug.FreeOSMemory()
	}
}

// lightEntry is e without its fragments, as the index keeps it.
func lightEntry(e *metadata.Entry) *metadata.Entry {
	c := *e
	c.Primary, c.Filelists, c.Other = nil, nil, nil
	return &c
}

func (r *Repo) indexAdd(p *PackageRecord, pls []Placement) {
	if p.Entry == nil {
		return
	}
	light := lightEntry(p.Entry)
	r.idxMu.Lock()
	defer r.idxMu.Unlock()
	for _, pl := range pls {
		m := r.dirs[pl.Dir]
		if m == nil {
			m = map[string]*metadata.Entry{}
			r.dirs[pl.Dir] = m
		}
		if old := m[p.NEVRA]; old != nil && old.Href != p.Entry.Href {
			delete(r.hrefs[pl.Dir], old.Href)
		}
		m[p.NEVRA] = light
		h := r.hrefs[pl.Dir]
		if h == nil {
			h = map[string]string{}
			r.hrefs[pl.Dir] = h
		}
		h[p.Entry.Href] = p.NEVRA
	}
}

func (r *Repo) indexRemove(p *PackageRecord, pls []Placement) {
	r.idxMu.Lock()
	defer r.idxMu.Unlock()
	for _, pl := range pls {
		if e := r.dirs[pl.Dir][p.NEVRA]; e != nil && r.hrefs[pl.Dir][e.Href] == p.NEVRA {
			delete(r.hrefs[pl.Dir], e.Href)
		}
		delete(r.dirs[pl.Dir], p.NEVRA)
	}
}
