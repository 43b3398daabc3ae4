package target

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	kv "github.com/repoctl/repoctl/repo/store"
)

// Object is one object of a manifest: its key, the size and sha256 the
// caller already knows (the package store's checksum, repomd.xml's
// records), and how to read its bytes when they must be uploaded.
type Object struct {
	Key    string
	Size   int64
	SHA256 string
	Open   func() (io.ReadCloser, error)
}

// DirManifest is everything one repository directory is made of, as it
// must be served: its packages, the files its repomd.xml names, the
// signature and repomd.xml itself. Every key lies below Dir.
type DirManifest struct {
	Dir      string // e.g. "main/prod/el/9/x86_64"
	Packages []Object
	Repodata []Object
	// Signature is repomd.xml.asc; nil when the directory is unsigned.
	Signature *Object
	Repomd    Object
}

// SyncResult counts what one sync did.
type SyncResult struct {
	Uploaded int   `json:"uploaded"` // objects whose bytes went up
	Copied   int   `json:"copied"`   // objects copied within the target
	Skipped  int   `json:"skipped"`  // objects already there (by size and sha256)
	Retired  int   `json:"retired"`  // objects that left the directory, kept for the grace period
	Deleted  int   `json:"deleted"`  // retired objects whose grace period ended
	Bytes    int64 `json:"bytes"`    // bytes uploaded
}

func (r *SyncResult) add(o *SyncResult) {
	r.Uploaded += o.Uploaded
	r.Copied += o.Copied
	r.Skipped += o.Skipped
	r.Retired += o.Retired
	r.Deleted += o.Deleted
	r.Bytes += o.Bytes
}

// Mirror keeps a Target equal to the directories it is given, uploading
// only what changed. What the target holds is known from a small local
// store (the state: key → size, sha256, and when it was retired: a bbolt
// file of its own, or buckets of a shared store),
// never by listing the target: a repository of 10,000 packages costs no
// request when nothing changed, and one upload when one package did.
//
// The state is written only after an upload succeeded, so it may claim
// less than the target holds (then an object goes up again), never more
// — unless someone deletes objects behind repoctl's back, which Check
// finds.
//
// Syncs are serialized; objects within one phase go up in parallel.
type Mirror struct {
	t  Target
	db kv.DB
	// pfx is put before every bucket name: "" in a state file of its
	// own, "mirror." in a store shared with other records (OpenMirrorStore).
	pfx string
	// owned: Close closes db (the state file); a shared store is the
	// caller's.
	owned bool
	o     mirrorOptions
	mu    sync.Mutex

	bytes    atomic.Int64
	uploads  atomic.Int64
	requests atomic.Int64
}

type mirrorOptions struct {
	grace      time.Duration
	parallel   int
	attempts   int
	backoffMin time.Duration
	backoffMax time.Duration
	copyMin    int64
	now        func() time.Time
}

// MirrorOption configures OpenMirror.
type MirrorOption func(*mirrorOptions) error

// WithGrace is how long an object that left its directory (superseded
// repodata, a removed package) stays for readers holding an older
// repomd.xml. Default 1h.
func WithGrace(d time.Duration) MirrorOption {
	return func(o *mirrorOptions) error {
		if d < 0 {
			return fmt.Errorf("%w: negative grace %v", ErrBadConfig, d)
		}
		o.grace = d
		return nil
	}
}

// WithParallel bounds the uploads (and deletions) in flight. Default 8.
func WithParallel(n int) MirrorOption {
	return func(o *mirrorOptions) error {
		if n < 1 || n > 256 {
			return fmt.Errorf("%w: parallel uploads %d: 1 to 256", ErrBadConfig, n)
		}
		o.parallel = n
		return nil
	}
}

// WithRetry sets how often a request is tried (default 5) and the
// back-off between tries, doubling from lo to hi (default 200ms to 5s).
func WithRetry(attempts int, lo, hi time.Duration) MirrorOption {
	return func(o *mirrorOptions) error {
		if attempts < 1 || lo < 0 || hi < lo {
			return fmt.Errorf("%w: retry %d times from %v to %v", ErrBadConfig, attempts, lo, hi)
		}
		o.attempts, o.backoffMin, o.backoffMax = attempts, lo, hi
		return nil
	}
}

// WithClock replaces time.Now for the grace period (tests). Default
// time.Now.
func WithClock(now func() time.Time) MirrorOption {
	return func(o *mirrorOptions) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrBadConfig)
		}
		o.now = now
		return nil
	}
}

var (
	bucketMeta    = []byte("meta")
	bucketObjects = []byte("objects") // key → objectState JSON
	bucketRetired = []byte("retired") // key → "" (an index of retired objects)
	bucketSums    = []byte("sums")    // sha256 → a key holding that content
	bucketPending = []byte("pending") // directory → pendingState JSON: its last sync failed
	metaTarget    = []byte("target")
)

type objectState struct {
	Dir    string `json:"dir"` // "" for top-level files (SyncFiles)
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Retired is when (unix seconds) the object left its directory; 0
	// while it is part of it.
	Retired int64 `json:"retired,omitempty"`
}

// OpenMirror opens (creating it) the state file at statePath for t. A
// state written for another target (t.String() differs: another
// bucket, prefix or endpoint) is discarded, so that every object goes up
// to the new one at its next sync. The caller keeps the file private and
// single-writer (repoctl holds the ROOT lock).
func OpenMirror(t Target, statePath string, opts ...MirrorOption) (*Mirror, error) {
	db, err := kv.OpenBolt(statePath, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("opening mirror state %q: %w", statePath, err)
	}
	m, err := newMirror(t, db, "", opts)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("opening mirror state %q: %w", statePath, err)
	}
	m.owned = true
	return m, nil
}

// OpenMirrorStore keeps the state in db, a store other records share
// (its buckets are named "mirror.…"), so that every daemon of an HA pair
// knows what the bucket holds, whoever uploaded it. db's writes are the
// caller's to fence. Close leaves db open.
func OpenMirrorStore(t Target, db kv.DB, opts ...MirrorOption) (*Mirror, error) {
	m, err := newMirror(t, db, "mirror.", opts)
	if err != nil {
		return nil, fmt.Errorf("opening mirror state in the store: %w", err)
	}
	return m, nil
}

func newMirror(t Target, db kv.DB, pfx string, opts []MirrorOption) (*Mirror, error) {
	o := mirrorOptions{grace: time.Hour, parallel: 8, attempts: 5, backoffMin: 200 * time.Millisecond,
		backoffMax: 5 * time.Second, copyMin: 32 << 10, now: time.Now}
	for _, f := range opts {
		if err := f(&o); err != nil {
			return nil, err
		}
	}
	m := &Mirror{t: t, db: db, o: o, pfx: pfx}
	// A state that is already there and for t is not written to: a
	// standby of an HA pair opens it read-only.
	ready := false
	err := db.View(func(tx kv.Tx) error {
		meta := tx.Bucket(m.bk(bucketMeta))
		if meta == nil || string(meta.Get(metaTarget)) != t.String() {
			return nil
		}
		for _, b := range [][]byte{bucketObjects, bucketRetired, bucketSums, bucketPending} {
			if tx.Bucket(m.bk(b)) == nil {
				return nil
			}
		}
		ready = true
		return nil
	})
	if err != nil || ready {
		return m, err
	}
	err = db.Update(func(tx kv.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(m.bk(bucketMeta))
		if err != nil {
			return err
		}
		if id := meta.Get(metaTarget); id != nil && string(id) != t.String() {
			for _, b := range [][]byte{bucketObjects, bucketRetired, bucketSums, bucketPending} {
				if err := tx.DeleteBucket(m.bk(b)); err != nil && !errors.Is(err, kv.ErrBucketNotFound) {
					return err
				}
			}
		}
		for _, b := range [][]byte{bucketObjects, bucketRetired, bucketSums, bucketPending} {
			if _, err := tx.CreateBucketIfNotExists(m.bk(b)); err != nil {
				return err
			}
		}
		return meta.Put(metaTarget, []byte(t.String()))
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// bk is the bucket named b in this mirror's store.
func (m *Mirror) bk(b []byte) []byte { return append([]byte(m.pfx), b...) }

// Close closes the state file (not the target).
func (m *Mirror) Close() error {
	if !m.owned {
		return nil
	}
	return m.db.Close()
}

// Target is what the mirror writes to.
func (m *Mirror) Target() Target { return m.t }

// Uploaded is how many bytes and objects this Mirror uploaded since it
// was opened, copies not counted.
func (m *Mirror) Uploaded() (bytes, objects int64) { return m.bytes.Load(), m.uploads.Load() }

// Requests is how many requests (put, copy, delete, stat, get) this
// Mirror made since it was opened, retries included.
func (m *Mirror) Requests() int64 { return m.requests.Load() }

// check validates a manifest: every key valid and below Dir, none twice.
func (man *DirManifest) check() error {
	if err := CheckKey(man.Dir); err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	seen := map[string]bool{}
	for _, o := range man.all() {
		if err := CheckKey(o.Key); err != nil {
			return err
		}
		if !strings.HasPrefix(o.Key, man.Dir+"/") {
			return fmt.Errorf("%w: %q is not below %q", ErrBadKey, o.Key, man.Dir)
		}
		if seen[o.Key] {
			return fmt.Errorf("%w: %q twice in the manifest of %q", ErrBadKey, o.Key, man.Dir)
		}
		seen[o.Key] = true
		if o.Size < 0 || len(o.SHA256) != 64 || o.Open == nil {
			return fmt.Errorf("%w: %q: size %d, sha256 %q", ErrBadKey, o.Key, o.Size, o.SHA256)
		}
	}
	if man.Repomd.Key != man.Dir+"/repodata/repomd.xml" {
		return fmt.Errorf("%w: repomd.xml of %q is %q", ErrBadKey, man.Dir, man.Repomd.Key)
	}
	return nil
}

func (man DirManifest) all() []Object {
	out := append(append([]Object(nil), man.Packages...), man.Repodata...)
	if man.Signature != nil {
		out = append(out, *man.Signature)
	}
	return append(out, man.Repomd)
}

// SyncDir makes the target hold man. Objects go up in phases, each
// complete before the next starts: packages, then the repodata files,
// then repomd.xml.asc, then repomd.xml, so that a reader never sees a
// repomd.xml that names a missing object, nor a package list naming a
// missing package. Within a phase only the objects whose size or sha256
// differs from the state go up, in parallel, each retried with back-off;
// an object the target already holds under another key (a promoted
// package) is copied there instead.
//
// Objects of Dir that the manifest no longer names are retired once the
// new repomd.xml is up, and deleted when their grace period has passed
// (at this or a later sync, or Sweep). On error the phases done are
// recorded and the rest is left for the next sync of the directory.
func (m *Mirror) SyncDir(ctx context.Context, man DirManifest) (*SyncResult, error) {
	if err := man.check(); err != nil {
		return nil, fmt.Errorf("mirroring %q: %w", man.Dir, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	res, err := m.syncDir(ctx, man)
	if err != nil {
		// Best effort: the error is what the caller needs to hear.
		m.markPending(man.Dir, err)
		return res, err
	}
	return res, m.db.Update(func(tx kv.Tx) error { return tx.Bucket(m.bk(bucketPending)).Delete([]byte(man.Dir)) })
}

func (m *Mirror) syncDir(ctx context.Context, man DirManifest) (*SyncResult, error) {
	res := &SyncResult{}
	cur, err := m.dirState(man.Dir)
	if err != nil {
		return nil, err
	}
	sigKey := man.Dir + "/repodata/repomd.xml.asc"
	if man.Signature == nil {
		// Never a new repomd.xml beside an old signature.
		if _, ok := cur[sigKey]; ok {
			if err := m.deleteNow(ctx, []string{sigKey}); err != nil {
				return res, fmt.Errorf("mirroring %q: %w", man.Dir, err)
			}
			delete(cur, sigKey)
		}
	}
	phases := [][]Object{man.Packages, man.Repodata, nil, {man.Repomd}}
	if man.Signature != nil {
		phases[2] = []Object{*man.Signature}
	}
	for _, objs := range phases {
		if err := m.putPhase(ctx, man.Dir, objs, cur, res); err != nil {
			return res, fmt.Errorf("mirroring %q to %s: %w", man.Dir, m.t, err)
		}
	}
	want := map[string]bool{}
	for _, o := range man.all() {
		want[o.Key] = true
	}
	var gone []string
	for k, st := range cur {
		if !want[k] && st.Retired == 0 {
			gone = append(gone, k)
		}
	}
	if err := m.retire(gone); err != nil {
		return res, err
	}
	res.Retired = len(gone)
	n, err := m.sweepLocked(ctx)
	res.Deleted = n
	if err != nil {
		return res, fmt.Errorf("mirroring %q: %w", man.Dir, err)
	}
	return res, nil
}

// Pending is a directory whose last sync failed, with when it first
// failed and the last error.
type Pending struct {
	Dir   string    `json:"dir"`
	Since time.Time `json:"since"`
	Error string    `json:"error"`
}

// MarkPending notes that dir must be synced again: a sync of it failed,
// or its manifest could not be made.
func (m *Mirror) MarkPending(dir string, cause error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.markPending(dir, cause)
}

func (m *Mirror) markPending(dir string, cause error) error {
	return m.db.Update(func(tx kv.Tx) error {
		b := tx.Bucket(m.bk(bucketPending))
		p := Pending{Dir: dir, Since: m.o.now().UTC(), Error: cause.Error()}
		var old Pending
		if v := b.Get([]byte(dir)); v != nil && json.Unmarshal(v, &old) == nil {
			p.Since = old.Since
		}
		v, err := json.Marshal(p)
		if err != nil {
			return err
		}
		return b.Put([]byte(dir), v)
	})
}

// ClearPending forgets that dir must be synced again (it is gone).
func (m *Mirror) ClearPending(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.db.Update(func(tx kv.Tx) error { return tx.Bucket(m.bk(bucketPending)).Delete([]byte(dir)) })
}

// Pending lists the directories whose last sync failed, by name.
func (m *Mirror) Pending() ([]Pending, error) {
	var out []Pending
	err := m.db.View(func(tx kv.Tx) error {
		return tx.Bucket(m.bk(bucketPending)).ForEach(func(k, v []byte) error {
			var p Pending
			if json.Unmarshal(v, &p) != nil {
				p = Pending{Error: "unreadable pending record"}
			}
			p.Dir = string(k)
			out = append(out, p)
			return nil
		})
	})
	return out, err
}

// Holds says whether the state has key as a current object of this size
// and sha256: whether a sync of its directory would skip it.
func (m *Mirror) Holds(key string, size int64, sum string) (bool, error) {
	var ok bool
	err := m.db.View(func(tx kv.Tx) error {
		var st objectState
		if v := tx.Bucket(m.bk(bucketObjects)).Get([]byte(key)); v != nil && json.Unmarshal(v, &st) == nil {
			ok = st.Retired == 0 && st.Size == size && st.SHA256 == sum
		}
		return nil
	})
	return ok, err
}

// SyncFiles puts top-level objects (RPM-GPG-KEY-repoctl) that changed.
// They belong to no directory and are never retired.
func (m *Mirror) SyncFiles(ctx context.Context, objs []Object) (*SyncResult, error) {
	for _, o := range objs {
		if err := CheckKey(o.Key); err != nil {
			return nil, err
		}
		if o.Open == nil || len(o.SHA256) != 64 {
			return nil, fmt.Errorf("%w: %q: no content or sha256", ErrBadKey, o.Key)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := map[string]objectState{}
	err := m.db.View(func(tx kv.Tx) error {
		b := tx.Bucket(m.bk(bucketObjects))
		for _, o := range objs {
			if v := b.Get([]byte(o.Key)); v != nil {
				var st objectState
				if json.Unmarshal(v, &st) == nil {
					cur[o.Key] = st
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	res := &SyncResult{}
	if err := m.putPhase(ctx, "", objs, cur, res); err != nil {
		return res, fmt.Errorf("mirroring to %s: %w", m.t, err)
	}
	return res, nil
}

// SyncPackages puts objects of dir (package files) that the state does
// not hold as they are, ahead of any sync of dir: an HA leader uploads a
// signed package before the store records it, so that whoever publishes
// dir next (another daemon, without the file) finds it there. A later
// SyncDir whose manifest lacks them retires them as usual.
func (m *Mirror) SyncPackages(ctx context.Context, dir string, objs []Object) (*SyncResult, error) {
	for _, o := range objs {
		if err := CheckKey(o.Key); err != nil {
			return nil, err
		}
		if !strings.HasPrefix(o.Key, dir+"/") || o.Open == nil || len(o.SHA256) != 64 {
			return nil, fmt.Errorf("%w: %q: not in %q, or no content or sha256", ErrBadKey, o.Key, dir)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, err := m.dirState(dir)
	if err != nil {
		return nil, err
	}
	res := &SyncResult{}
	if err := m.putPhase(ctx, dir, objs, cur, res); err != nil {
		return res, fmt.Errorf("mirroring packages of %q to %s: %w", dir, m.t, err)
	}
	return res, nil
}

// dirState is the state of every object of dir, retired ones included.
func (m *Mirror) dirState(dir string) (map[string]objectState, error) {
	cur := map[string]objectState{}
	err := m.db.View(func(tx kv.Tx) error {
		c := tx.Bucket(m.bk(bucketObjects)).Cursor()
		pfx := []byte(dir + "/")
		for k, v := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx); k, v = c.Next() {
			var st objectState
			if err := json.Unmarshal(v, &st); err != nil {
				return fmt.Errorf("mirror state of %q: %w", k, err)
			}
			// A directory whose name is a prefix of another's
			// (release "a" and "a/x86_64") must not claim its objects.
			if st.Dir == dir {
				cur[string(k)] = st
			}
		}
		return nil
	})
	return cur, err
}

// putPhase uploads (or copies) the objects of one phase that the state
// does not have as they are, and records each one that went up, also
// when another failed.
func (m *Mirror) putPhase(ctx context.Context, dir string, objs []Object, cur map[string]objectState, res *SyncResult) error {
	var todo []Object
	var revive []string
	for _, o := range objs {
		st, ok := cur[o.Key]
		switch {
		case ok && st.Size == o.Size && st.SHA256 == o.SHA256 && st.Retired == 0:
			res.Skipped++
		case ok && st.Size == o.Size && st.SHA256 == o.SHA256:
			// Back within its grace period: still there.
			revive = append(revive, o.Key)
			res.Skipped++
		default:
			todo = append(todo, o)
		}
	}
	if len(revive) > 0 {
		if err := m.revive(revive); err != nil {
			return err
		}
		for _, k := range revive {
			st := cur[k]
			st.Retired = 0
			cur[k] = st
		}
	}
	if len(todo) == 0 {
		return nil
	}
	sources, err := m.copySources(todo)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var done []Object
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(m.o.parallel)
	for _, o := range todo {
		g.Go(func() error {
			copied, n, err := m.putOne(gctx, o, sources[o.Key])
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			done = append(done, o)
			if copied {
				res.Copied++
			} else {
				res.Uploaded++
				res.Bytes += n
			}
			return nil
		})
	}
	werr := g.Wait()
	if err := m.record(dir, done); err != nil {
		return errors.Join(werr, err)
	}
	for _, o := range done {
		cur[o.Key] = objectState{Dir: dir, Size: o.Size, SHA256: o.SHA256}
	}
	return werr
}

// copySources finds, for objects large enough to be worth it, another
// key the target holds with the same content.
func (m *Mirror) copySources(objs []Object) (map[string]string, error) {
	if _, ok := m.t.(Copier); !ok {
		return nil, nil
	}
	out := map[string]string{}
	err := m.db.View(func(tx kv.Tx) error {
		sums, objects := tx.Bucket(m.bk(bucketSums)), tx.Bucket(m.bk(bucketObjects))
		for _, o := range objs {
			if o.Size < m.o.copyMin {
				continue
			}
			src := sums.Get([]byte(o.SHA256))
			if src == nil || string(src) == o.Key {
				continue
			}
			var st objectState
			if v := objects.Get(src); v == nil || json.Unmarshal(v, &st) != nil || st.Size != o.Size || st.SHA256 != o.SHA256 {
				continue
			}
			out[o.Key] = string(src)
		}
		return nil
	})
	return out, err
}

// putOne puts one object, by copy from src when given (falling back to
// an upload if the copy fails), retrying with back-off.
func (m *Mirror) putOne(ctx context.Context, o Object, src string) (copied bool, n int64, err error) {
	po := PutOptions{ContentType: contentType(o.Key)}
	if strings.HasSuffix(o.Key, "/repomd.xml") || strings.HasSuffix(o.Key, "/repomd.xml.asc") || !strings.Contains(o.Key, "/") {
		// Changed in place: a cache must ask again.
		po.CacheControl = "no-cache"
	}
	if c, ok := m.t.(Copier); ok && src != "" {
		err := retry(ctx, m.o.attempts, m.o.backoffMin, m.o.backoffMax, func() error {
			m.requests.Add(1)
			return c.Copy(ctx, src, o.Key, po)
		})
		if err == nil {
			return true, 0, nil
		}
		if ctx.Err() != nil {
			return false, 0, err
		}
	}
	err = retry(ctx, m.o.attempts, m.o.backoffMin, m.o.backoffMax, func() error {
		rc, err := o.Open()
		if err != nil {
			// The local tree is what is published: a file that cannot be
			// read now will not be readable in a second either.
			return fmt.Errorf("%w: reading %q: %v", ErrMismatch, o.Key, err)
		}
		defer rc.Close()
		m.requests.Add(1)
		return m.t.Put(ctx, o.Key, rc, o.Size, o.SHA256, po)
	})
	if err != nil {
		return false, 0, err
	}
	m.bytes.Add(o.Size)
	m.uploads.Add(1)
	return false, o.Size, nil
}

func (m *Mirror) record(dir string, objs []Object) error {
	if len(objs) == 0 {
		return nil
	}
	// Each object's state is its own: in parts when an etcd's limits
	// want it (a burst of new packages), the first parts then recorded.
	return kv.UpdateInParts(m.db, len(objs), func(tx kv.Tx, lo, hi int) error {
		b, sums, ret := tx.Bucket(m.bk(bucketObjects)), tx.Bucket(m.bk(bucketSums)), tx.Bucket(m.bk(bucketRetired))
		for _, o := range objs[lo:hi] {
			v, err := json.Marshal(objectState{Dir: dir, Size: o.Size, SHA256: o.SHA256})
			if err != nil {
				return err
			}
			if err := b.Put([]byte(o.Key), v); err != nil {
				return err
			}
			if err := ret.Delete([]byte(o.Key)); err != nil {
				return err
			}
			if err := sums.Put([]byte(o.SHA256), []byte(o.Key)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (m *Mirror) revive(keys []string) error {
	return kv.UpdateInParts(m.db, len(keys), func(tx kv.Tx, lo, hi int) error {
		b, ret := tx.Bucket(m.bk(bucketObjects)), tx.Bucket(m.bk(bucketRetired))
		for _, k := range keys[lo:hi] {
			var st objectState
			if v := b.Get([]byte(k)); v == nil || json.Unmarshal(v, &st) != nil {
				continue
			}
			st.Retired = 0
			v, err := json.Marshal(st)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
			if err := ret.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (m *Mirror) retire(keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	now := m.o.now().Unix()
	return kv.UpdateInParts(m.db, len(keys), func(tx kv.Tx, lo, hi int) error {
		b, ret := tx.Bucket(m.bk(bucketObjects)), tx.Bucket(m.bk(bucketRetired))
		for _, k := range keys[lo:hi] {
			var st objectState
			if v := b.Get([]byte(k)); v == nil || json.Unmarshal(v, &st) != nil {
				continue
			}
			st.Retired = now
			v, err := json.Marshal(st)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
			if err := ret.Put([]byte(k), nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// Sweep deletes the retired objects whose grace period has passed, of
// every directory, and returns how many. Every SyncDir sweeps too; a
// daemon calls Sweep when nothing is published for a while.
func (m *Mirror) Sweep(ctx context.Context) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sweepLocked(ctx)
}

func (m *Mirror) sweepLocked(ctx context.Context) (int, error) {
	now := m.o.now()
	var due []string
	err := m.db.View(func(tx kv.Tx) error {
		b := tx.Bucket(m.bk(bucketObjects))
		return tx.Bucket(m.bk(bucketRetired)).ForEach(func(k, _ []byte) error {
			var st objectState
			if v := b.Get(k); v == nil || json.Unmarshal(v, &st) != nil || st.Retired == 0 {
				due = append(due, string(k)) // a stale index entry: drop it
				return nil
			}
			if !now.Before(time.Unix(st.Retired, 0).Add(m.o.grace)) {
				due = append(due, string(k))
			}
			return nil
		})
	})
	if err != nil || len(due) == 0 {
		return 0, err
	}
	sort.Strings(due)
	if err := m.deleteNow(ctx, due); err != nil {
		return 0, err
	}
	return len(due), nil
}

// deleteNow deletes keys from the target, in parallel, then forgets them.
func (m *Mirror) deleteNow(ctx context.Context, keys []string) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(m.o.parallel)
	for _, k := range keys {
		g.Go(func() error {
			return retry(gctx, m.o.attempts, m.o.backoffMin, m.o.backoffMax, func() error {
				m.requests.Add(1)
				return m.t.Delete(gctx, k)
			})
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("deleting from %s: %w", m.t, err)
	}
	return m.forget(keys)
}

// Forget drops keys from the state, so that the next sync of their
// directory puts them again: the repair for objects Check found missing
// or modified.
func (m *Mirror) Forget(keys []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.forget(keys)
}

func (m *Mirror) forget(keys []string) error {
	return kv.UpdateInParts(m.db, len(keys), func(tx kv.Tx, lo, hi int) error {
		b, sums, ret := tx.Bucket(m.bk(bucketObjects)), tx.Bucket(m.bk(bucketSums)), tx.Bucket(m.bk(bucketRetired))
		for _, k := range keys[lo:hi] {
			var st objectState
			if v := b.Get([]byte(k)); v != nil && json.Unmarshal(v, &st) == nil {
				if s := sums.Get([]byte(st.SHA256)); s != nil && string(s) == k {
					if err := sums.Delete([]byte(st.SHA256)); err != nil {
						return err
					}
				}
			}
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
			if err := ret.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Problem is an object of a manifest that the target lacks or holds
// with other content.
type Problem struct {
	Key string `json:"key"`
	// Kind is "missing" or "modified".
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// Check asks the target about every object of the manifests (a stat
// each, in parallel; repomd.xml and its signature are read and compared
// whole) and returns what is missing or differs in size or sha256. It
// reads the target, never the state, so it finds what was deleted or
// changed behind repoctl's back.
func (m *Mirror) Check(ctx context.Context, mans []DirManifest, files []Object) ([]Problem, error) {
	var objs []Object
	for i := range mans {
		if err := mans[i].check(); err != nil {
			return nil, fmt.Errorf("checking %q: %w", mans[i].Dir, err)
		}
		objs = append(objs, mans[i].all()...)
	}
	objs = append(objs, files...)
	var mu sync.Mutex
	var out []Problem
	report := func(p Problem) {
		mu.Lock()
		out = append(out, p)
		mu.Unlock()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2 * m.o.parallel)
	for _, o := range objs {
		g.Go(func() error {
			whole := strings.HasSuffix(o.Key, "/repomd.xml") || strings.HasSuffix(o.Key, "/repomd.xml.asc") || !strings.Contains(o.Key, "/")
			var info Info
			err := retry(gctx, m.o.attempts, m.o.backoffMin, m.o.backoffMax, func() error {
				m.requests.Add(1)
				var err error
				if whole {
					info, err = m.readWhole(gctx, o.Key)
				} else {
					info, err = m.t.Stat(gctx, o.Key)
				}
				if errors.Is(err, ErrNotExist) {
					return nil
				}
				return err
			})
			switch {
			case err != nil:
				return err
			case info.Key == "":
				report(Problem{Key: o.Key, Kind: "missing", Message: fmt.Sprintf("%s lacks %q", m.t, o.Key)})
			case info.Size != o.Size || info.SHA256 != o.SHA256:
				report(Problem{Key: o.Key, Kind: "modified", Message: fmt.Sprintf("%s holds %q with %d bytes, sha256 %q; want %d bytes, sha256 %s",
					m.t, o.Key, info.Size, info.SHA256, o.Size, o.SHA256)})
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("checking %s: %w", m.t, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// maxWholeRead caps what Check reads of one object (repomd.xml and its
// signature are a few KiB).
const maxWholeRead = 16 << 20

func (m *Mirror) readWhole(ctx context.Context, key string) (Info, error) {
	rc, err := m.t.Get(ctx, key)
	if err != nil {
		return Info{}, err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(rc, maxWholeRead))
	if err != nil {
		return Info{}, err
	}
	return Info{Key: key, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}
