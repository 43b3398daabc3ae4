package repo

// The HA pair: daemons that share one etcd prefix ([store] backend =
// "etcd") elect one leader (repo/leader); only the leader ingests, signs,
// publishes, mirrors and records rollouts' events (rollouts run in the
// CLI, their state in etcd: rollout_store.go). The others are standbys:
// they serve the read-only requests from the shared store, refuse the
// others with ErrNotLeader, and leave their drop-ins waiting in their
// own incoming/.
//
// The gate is in two places, so that neither a request nor a forgotten
// code path can write as a standby: the control socket refuses every
// request not in readOnlyAPI (socket.go), and the store handle refuses
// every Update (gatedDB). A leader's Updates all carry its term's fence,
// so that a leader deposed without knowing it (hung past its lease, cut
// off from etcd) writes nothing: its late Update fails with
// store.ErrFenced.
//
// What a new leader needs is in the shared store, never only on another
// daemon's disk: package records carry their repodata entries, the S3
// mirror's state is in the store's "mirror." buckets, and a signed package
// goes up to the publish target before the store records it
// (uploadBeforeRecord). Taking over (takeOver) reloads the index from the
// store, fetches the package files its own tree lacks from the target,
// republishes every directory from the store and resumes its own journal.
// Journal items belong to the daemon that took the file (journalItem.
// Owner): their spool copy is on its disk, so only it finishes them, once
// it leads again.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/repoctl/repoctl/internal/fsutil"
	"github.com/repoctl/repoctl/metadata"
	"github.com/repoctl/repoctl/repo/leader"
	kv "github.com/repoctl/repoctl/repo/store"
	"github.com/repoctl/repoctl/repo/target"
	"github.com/repoctl/repoctl/sign"
)

// ErrNotLeader: a change was asked of a standby of an HA pair. The
// message names the leader, if there is one.
var ErrNotLeader = errors.New("not the leader")

// ErrLostLeadership: the leader's etcd session ended (its lease lapsed):
// the daemon stops, since a standby may already lead.
var ErrLostLeadership = errors.New("repo: lost the leadership of the HA pair")

// Roles in Status.HA.Role.
const (
	RoleLeader  = "leader"
	RoleStandby = "standby"
)

// HAStatus is the HA part of Status (nil outside an HA pair).
type HAStatus struct {
	Role   string `json:"role"`   // RoleLeader or RoleStandby
	Node   string `json:"node"`   // this daemon's id in the election
	Leader string `json:"leader"` // the leader's id; "" if nobody leads
	// LeaseTTL is the session lease's configured TTL, LeaseRemaining what
	// etcd says is left of it now (-1 if it could not be asked).
	LeaseTTL       string   `json:"lease_ttl"`
	LeaseRemaining int64    `json:"lease_remaining_seconds"`
	Endpoints      []string `json:"etcd_endpoints"`
	Prefix         string   `json:"prefix"`
}

// readOnlyAPI are the control requests a standby serves; every other one
// is refused with ErrNotLeader.
var readOnlyAPI = map[string]bool{
	apiPing: true, apiList: true, apiStatus: true, apiHistory: true, apiShow: true, apiRepoFile: true,
	apiAdvisoryList: true, apiAdvisoryShow: true, apiChannelLog: true, apiChannelShow: true, apiChannelDiff: true,
	apiCompsShow: true, apiKeyStatus: true, apiRejectedList: true, apiRejectedShow: true,
}

// gateWrites wraps the handler of a request that changes something: on a
// standby it fails with ErrNotLeader before anything is read.
func gateWrites(svc socketService, name string, fn func(ctx context.Context, body []byte) (any, error)) func(ctx context.Context, body []byte) (any, error) {
	r, ok := svc.(*Repo)
	if !ok || readOnlyAPI[name] {
		return fn
	}
	return func(ctx context.Context, body []byte) (any, error) {
		if err := r.notLeader(); err != nil {
			return nil, err
		}
		return fn(ctx, body)
	}
}

// gatedDB is the store handle of a daemon in an HA pair. Until the daemon
// joins the election (during Open) it passes Updates through unfenced:
// creating buckets, which every daemon does alike. Then it refuses them
// until a term begins, and fences them on the term while it lasts. A
// command run without a daemon takes the term at its first Update that
// writes (ha_offline.go).
type gatedDB struct {
	base  kv.DB
	state atomic.Pointer[gateState]
}

type gateState struct {
	fenced  kv.DB         // nil: standby
	who     func() string // the leader's id, for the refusal
	offline *offlineTerm  // a command's: takes the term when it writes
}

func (g *gatedDB) View(fn func(kv.Tx) error) error { return g.base.View(fn) }
func (g *gatedDB) Close() error                    { return g.base.Close() }

func (g *gatedDB) Update(fn func(kv.Tx) error) error {
	st := g.state.Load()
	switch {
	case st == nil:
		return g.base.Update(fn)
	case st.offline != nil:
		return st.offline.update(fn)
	case st.fenced == nil:
		return notLeaderErr(st.who())
	}
	return st.fenced.Update(fn)
}

func notLeaderErr(leaderID string) error {
	if leaderID == "" {
		leaderID = "none elected"
	}
	return fmt.Errorf("%w (leader: %s)", ErrNotLeader, leaderID)
}

// maxLeaderID caps a leader id read from etcd: whoever can write there
// could put anything under the election prefix.
const maxLeaderID = 300

// shownLeader is an election value as repoctl shows it: escaped, capped.
func shownLeader(id string) string {
	if len(id) > maxLeaderID {
		id = id[:maxLeaderID] + "…"
	}
	return escapeText(id)
}

// haState is a daemon's part in the HA pair.
type haState struct {
	cli     *clientv3.Client
	cand    *leader.Candidate
	gate    *gatedDB
	id      string
	ttl     time.Duration
	leading atomic.Bool
	log     *slog.Logger

	mu       sync.Mutex
	leaderID string // last seen
}

// haNode is the owner recorded on journal items and sign events: the
// node name with etcd, "" otherwise (one daemon owns everything).
func (r *Repo) haNode() string {
	if r.cfg.Store.Backend != StoreEtcd {
		return ""
	}
	return r.cfg.Store.Node
}

// inHA reports whether this Repo is a daemon of an HA pair.
func (r *Repo) inHA() bool { return r.ha != nil }

// standby reports whether this Repo is a daemon of an HA pair that does
// not lead now.
func (r *Repo) standby() bool { return r.ha != nil && !r.ha.leading.Load() }

// notLeader is ErrNotLeader naming the leader on a standby, nil otherwise.
func (r *Repo) notLeader() error {
	if !r.standby() {
		return nil
	}
	return notLeaderErr(r.ha.currentLeader())
}

func (h *haState) currentLeader() string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	id, err := h.cand.Leader(ctx)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil || errors.Is(err, leader.ErrNoLeader) {
		h.leaderID = shownLeader(id)
	}
	return h.leaderID
}

// joinHA makes r a standby of the HA pair of [store] prefix, as id (the
// node name and where it serves). Without an etcd store it does nothing
// and returns false.
func (r *Repo) joinHA(ctx context.Context, id string, log *slog.Logger) (bool, error) {
	g, ok := r.st.db.(*gatedDB)
	if !ok {
		return false, nil
	}
	// Opened as a command first (a test's daemon): whatever term that
	// took ends before the daemon campaigns.
	if err := r.leaveOffline(); err != nil {
		return false, err
	}
	cli := kv.Client(g.base)
	ttl, _ := time.ParseDuration(r.cfg.Store.LeaseTTL) // checked by storeDefaults
	cand, err := leader.New(ctx, cli, leader.Prefix(r.cfg.Store.Prefix), id, leader.Options{TTL: ttl})
	if err != nil {
		return false, fmt.Errorf("joining the HA pair as %q: %w", id, err)
	}
	h := &haState{cli: cli, cand: cand, gate: g, id: id, ttl: ttl, log: log}
	g.state.Store(&gateState{who: h.currentLeader})
	r.ha = h
	return true, nil
}

// leave ends the session (a standby takes over at once, without waiting
// for the lease) and refuses further writes.
func (r *Repo) leaveHA() {
	h := r.ha
	if h == nil {
		return
	}
	h.leading.Store(false)
	h.gate.state.Store(&gateState{who: func() string { return "" }})
	if err := h.cand.Close(); err != nil {
		h.log.Warn("leaving the HA pair", "err", err)
	}
}

// lead campaigns until this daemon leads, takes over, runs started (the
// drop-in watcher) and returns when the term ends: ErrLostLeadership if
// the lease lapsed, nil when ctx ended.
func (r *Repo) lead(ctx context.Context, started func() error) error {
	h := r.ha
	h.log.Info("HA: standby, campaigning", "node", h.id, "leader", h.currentLeader(), "lease_ttl", h.ttl)
	asked := time.Now()
	term, err := h.cand.Campaign(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	h.log.Info("HA: elected leader; taking over", "node", h.id, "campaigned_for", time.Since(asked).Round(time.Millisecond))
	if err := r.takeOver(ctx, term); err != nil {
		return fmt.Errorf("taking over as leader: %w", err)
	}
	if err := started(); err != nil {
		return err
	}
	select {
	case <-term.Lost:
		h.leading.Store(false)
		h.gate.state.Store(&gateState{who: h.currentLeader})
		return ErrLostLeadership
	case <-ctx.Done():
		return nil
	}
}

// takeOver makes r the leader of term: every Update from now on is
// fenced on it; the index is rebuilt from the store (the previous leader
// changed it); package files its tree lacks are fetched from the publish
// target; every directory is marked dirty, so that Resume republishes it
// from the store (the local repodata is a stale copy); and its own
// journal is resumed.
func (r *Repo) takeOver(ctx context.Context, term leader.Term) error {
	h := r.ha
	fenced, err := kv.Fenced(h.gate.base, term.Fence)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	h.gate.state.Store(&gateState{fenced: fenced, who: func() string { return h.id }})
	h.leading.Store(true)
	if err := r.reloadIndex(); err != nil {
		return err
	}
	r.pubStates.Range(func(k, s any) bool {
		s.(*metadata.PublishState).Close()
		r.pubStates.Delete(k)
		return true
	})
	fetched, err := r.fetchMissing(ctx)
	if err != nil {
		return err
	}
	r.idxMu.RLock()
	dirs := make([]string, 0, len(r.dirs))
	for d := range r.dirs {
		dirs = append(dirs, d)
	}
	r.idxMu.RUnlock()
	dirs = append(dirs, r.servedRepoDirs()...)
	if err := r.st.db.Update(func(tx kv.Tx) error { return markDirty(tx, dirs) }); err != nil {
		return fmt.Errorf("marking %d directories for a republish: %w", len(dirs), err)
	}
	h.log.Info("HA: index reloaded from the store", "dirs", len(dirs), "fetched_from_target", fetched)
	return r.resumeLocked(ctx)
}

// reloadIndex rebuilds the index from the store, swapping it in whole.
func (r *Repo) reloadIndex() error {
	old, oldHrefs := r.dirs, r.hrefs
	r.idxMu.Lock()
	r.dirs, r.hrefs = map[string]map[string]*metadata.Entry{}, map[string]map[string]string{}
	r.idxMu.Unlock()
	err := r.st.db.View(func(tx kv.Tx) error {
		return eachPackage(tx, "", func(p *PackageRecord) error {
			r.indexAdd(p, p.Placements)
			return nil
		})
	})
	if err != nil {
		r.idxMu.Lock()
		r.dirs, r.hrefs = old, oldHrefs
		r.idxMu.Unlock()
		return fmt.Errorf("reloading the index from the store: %w", err)
	}
	return nil
}

// maxFetch caps one package file fetched from the target (the store's
// size is what is expected; this guards against a wrong record).
const maxFetch = 4 << 30

// fetchMissing downloads from the publish target every placed package
// file the local tree lacks (signed by another daemon of the pair), each
// checked against the store's size and sha256, so that the tree, its
// HTTP server, promotion and fsck see what the store says. It returns how
// many files it fetched.
func (r *Repo) fetchMissing(ctx context.Context) (int, error) {
	tm := r.tree.mirror
	if tm == nil {
		return 0, nil
	}
	type want struct {
		file, sum string
		size      int64
		pls       []Placement
	}
	var todo []want
	err := r.st.db.View(func(tx kv.Tx) error {
		return eachPackage(tx, "", func(p *PackageRecord) error {
			var missing []Placement
			src := ""
			for _, pl := range p.Placements {
				if r.tree.exists(pl.File) {
					src = pl.File
				} else {
					missing = append(missing, pl)
				}
			}
			if len(missing) > 0 {
				todo = append(todo, want{file: src, sum: p.SHA256, size: p.Size, pls: missing})
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, w := range todo {
		if w.file != "" {
			for _, pl := range w.pls {
				if err := r.tree.linkWithin(w.file, pl); err != nil {
					return n, fmt.Errorf("placing %q as %q: %w", w.file, pl.File, err)
				}
			}
			continue
		}
		if w.size < 0 || w.size > maxFetch {
			return n, fmt.Errorf("fetching %q: the store says %d bytes", w.pls[0].File, w.size)
		}
		tmp := filepath.Join(r.cfg.Paths.Spool, newID()+".fetch.rpm")
		err := fetchObject(ctx, tm, w.pls[0].File, tmp, w.size, w.sum)
		if err == nil {
			err = os.Chmod(tmp, r.tree.filePerm())
		}
		for _, pl := range w.pls {
			if err != nil {
				break
			}
			err = r.tree.linkIn(tmp, pl)
		}
		os.Remove(tmp)
		if err != nil {
			return n, fmt.Errorf("%w: fetching %q from %s: %v", ErrTransient, w.pls[0].File, tm.tgt, err)
		}
		n++
	}
	return n, nil
}

// fetchObject copies the object key into the new file dst, checking its
// size and sha256.
func fetchObject(ctx context.Context, tm *treeMirror, key, dst string, size int64, sum string) error {
	rc, err := tm.tgt.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rc, size+1))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && (n != size || hex.EncodeToString(h.Sum(nil)) != sum) {
		err = fmt.Errorf("got %d bytes with sha256 %x, the store says %d bytes, %s", n, h.Sum(nil), size, sum)
	}
	if err != nil {
		os.Remove(dst)
		return err
	}
	return fsutil.SyncDir(filepath.Dir(dst))
}

// uploadBeforeRecord puts the signed package files of items to the
// publish target before the store records them, on an etcd store (an HA
// pair, or a command run without a daemon on its prefix): a record is a
// claim every daemon may publish from, so what it names must be where a
// daemon without this disk finds it. A failure keeps the items journaled
// (ErrTransient), to be finished by the next Resume.
func (r *Repo) uploadBeforeRecord(ctx context.Context, items []*journalItem) error {
	tm := r.tree.mirror
	if r.cfg.Store.Backend != StoreEtcd || tm == nil {
		return nil
	}
	byDir := map[string][]target.Object{}
	for _, it := range items {
		rec := it.Record
		for _, pl := range rec.Placements {
			file := pl.File
			byDir[pl.Dir] = append(byDir[pl.Dir], target.Object{Key: file, Size: rec.Size, SHA256: rec.SHA256,
				Open: func() (io.ReadCloser, error) { return r.tree.root.Open(file) }})
		}
	}
	for _, d := range sortedKeys(dirSet(byDir)) {
		if _, err := tm.m.SyncPackages(ctx, d, byDir[d]); err != nil {
			return fmt.Errorf("%w: uploading the packages of %q before recording them: %v", ErrTransient, d, err)
		}
	}
	return nil
}

func dirSet[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

// haStatus is the HA part of Status.
func (r *Repo) haStatus(ctx context.Context) *HAStatus {
	h := r.ha
	if h == nil {
		return nil
	}
	st := &HAStatus{Role: RoleStandby, Node: h.id, LeaseTTL: h.ttl.String(), LeaseRemaining: -1,
		Endpoints: r.cfg.Store.Endpoints, Prefix: r.cfg.Store.Prefix}
	if h.leading.Load() {
		st.Role = RoleLeader
	}
	st.Leader = h.currentLeader()
	tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if resp, err := h.cli.TimeToLive(tctx, h.cand.Lease()); err == nil {
		st.LeaseRemaining = resp.TTL
	}
	return st
}

// signDetails are the details of a sign event; in an HA pair they name
// the daemon that signed (the item's owner).
func signDetails(rec *PackageRecord, owner string) map[string]string {
	d := map[string]string{"key_id": rec.KeyID, "sha256": rec.SHA256}
	if owner != "" {
		d["node"] = owner
	}
	return d
}

// haID is this daemon's id in the election: its node name and, when it
// serves HTTP, the address bound, so that a refusal says where the leader
// is.
func haID(cfg *Config, hln net.Listener) string {
	if hln == nil {
		return cfg.Store.Node
	}
	return cfg.Store.Node + "@" + hln.Addr().String()
}

// withPair marks Open as a daemon's (checkPairKey).
func withPair() Option { return func(o *options) error { o.pair = true; return nil } }

// ErrPairKey: a daemon of an HA pair does not hold the pair's signing
// key. It must not generate one or start a rotation to its own: that
// would change the shared store while another daemon leads.
var ErrPairKey = fmt.Errorf("%w: not the HA pair's signing key", ErrBadConfig)

// checkPairKey refuses, with an etcd store that already has a key ring
// (another daemon made the pair's key), a daemon whose key file is
// missing (it would generate its own) or holds another key than the
// ring's active one or the one a rotation installs. loadErr is the
// outcome of loading the key file.
func (r *Repo) checkPairKey(key *sign.Key, loadErr error) error {
	if r.cfg.Store.Backend != StoreEtcd {
		return nil
	}
	var ring *keyRing
	var rot *KeyRotation
	err := r.st.db.View(func(tx kv.Tx) error {
		var err error
		if ring, err = getKeyRing(tx); err != nil {
			return err
		}
		rot, err = getRotation(tx)
		return err
	})
	if err != nil || ring == nil {
		return err
	}
	copyIt := fmt.Sprintf("copy ROOT/keys of the daemon that leads to %q (cp -a)", r.cfg.Paths.Keys)
	switch {
	case errors.Is(loadErr, fs.ErrNotExist):
		return fmt.Errorf("%w: no signing key at %q, and the pair signs with %s: %s", ErrPairKey, r.cfg.KeyPath(), ring.Active, copyIt)
	case loadErr != nil:
		return nil // reported by the caller
	case key.KeyID() == ring.Active, rot != nil && key.KeyID() == rot.NewKeyID:
		return nil
	}
	return fmt.Errorf("%w: %q holds key %s, the pair signs with %s: %s", ErrPairKey, r.cfg.KeyPath(), key.KeyID(), ring.Active, copyIt)
}
