package repo

// A command run without a daemon (Connect found no socket and opened the
// repository itself) on an etcd store shares that store with whatever
// daemons lead the prefix's HA pair. It must not write beside a leader,
// nor unfenced: it joins the election (repo/leader) the way a daemon does,
// but only to write, and only for as long as it runs.
//
// Reads stay what they were: no session, no lease, no campaign. The
// first Update that has something to commit (an Update that only read,
// such as Open's keyring check on a steady store, commits nothing and
// stays unfenced) tries for the term: with nobody leading, the command
// leads, every Update from then on is fenced on its term (the gatedDB
// path a daemon's term uses) and Close resigns, so that a daemon standing
// by leads at once; with another node leading, the Update fails with
// ErrNotLeader naming it, and nothing of it is written. A command killed
// while it leads holds the pair until its lease (lease_ttl) lapses.
//
// Resume (at Open and before every ingest batch: finishing this node's
// journal, republishing dirty directories, catching up the mirror) is a
// leader's work: it is left to the leader when another node leads.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/repoctl/repoctl/repo/leader"
	kv "github.com/repoctl/repoctl/repo/store"
)

// ErrStoreChanged: a command run without a daemon on an etcd store won
// the HA pair's term, but another node had written to the store after the
// command read it; it wrote nothing, and may simply be run again.
var ErrStoreChanged = errors.New("repo: the store changed under the command")

// errNeedTerm aborts the unfenced try of an Update that would write.
var errNeedTerm = errors.New("repo: the update needs the pair's term")

// offlineTerm is the election part of a command run without a daemon on
// an etcd store.
type offlineTerm struct {
	gate   *gatedDB
	prefix string // the election's
	id     string
	ttl    time.Duration
	wait   time.Duration // bounds each election request

	// seen is the store's last change (kv.LastChange) when the command
	// joined, before Open read the index: a term won after someone else
	// wrote would publish from an index that lacks their writes.
	seen int64

	mu   sync.Mutex
	cand *leader.Candidate // while the term is held
}

// joinOffline gates r's store writes on the HA pair's election, for a
// command run without a daemon. Without an etcd store it does nothing.
// It comes before Open reads the index.
func (r *Repo) joinOffline(ctx context.Context) error {
	g, ok := r.st.db.(*gatedDB)
	if !ok {
		return nil
	}
	ttl, _ := time.ParseDuration(r.cfg.Store.LeaseTTL)     // checked by storeDefaults
	wait, _ := time.ParseDuration(r.cfg.Store.DialTimeout) // checked by storeDefaults
	o := &offlineTerm{gate: g, prefix: leader.Prefix(r.cfg.Store.Prefix), ttl: ttl, wait: max(wait, 5*time.Second),
		id: fmt.Sprintf("%s (command, pid %d)", r.cfg.Store.Node, os.Getpid())}
	var err error
	if o.seen, err = kv.LastChange(ctx, g.base); err != nil {
		return err
	}
	g.state.Store(&gateState{offline: o, who: func() string { return "" }})
	r.offline = o
	return nil
}

// update runs fn unfenced if it commits nothing; otherwise it takes the
// term (or fails with ErrNotLeader) and runs fn again, fenced.
func (o *offlineTerm) update(fn func(kv.Tx) error) error {
	err := o.gate.base.Update(func(tx kv.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		if kv.Writes(tx) {
			return errNeedTerm
		}
		return nil
	})
	if !errors.Is(err, errNeedTerm) {
		return err
	}
	fenced, err := o.acquire()
	if err != nil {
		return err
	}
	return fenced.Update(fn)
}

// acquire takes the pair's term if nobody holds it. It is kept until
// release; a term lost meanwhile (the lease revoked or lapsed) makes the
// fenced Updates fail with store.ErrFenced.
func (o *offlineTerm) acquire() (kv.DB, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if st := o.gate.state.Load(); st.fenced != nil {
		return st.fenced, nil // another Update took it meanwhile
	}
	// The session's context keeps its lease alive: it lives until release.
	cand, err := leader.New(context.Background(), kv.Client(o.gate.base), o.prefix, o.id, leader.Options{TTL: o.ttl})
	if err != nil {
		return nil, fmt.Errorf("joining the HA pair as %q: %w", o.id, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.wait)
	defer cancel()
	term, held, err := cand.TryCampaign(ctx)
	if err != nil {
		cand.Close()
		if errors.Is(err, leader.ErrHeld) {
			return nil, notLeaderErr(shownLeader(held))
		}
		return nil, fmt.Errorf("campaigning as %q: %w", o.id, err)
	}
	// Nobody led when asked, but a leader may have written since this
	// command read the store (and resigned or died since).
	last, err := kv.LastChange(ctx, o.gate.base)
	if err == nil && last > o.seen {
		err = fmt.Errorf("%w: the store changed after this command read it (revision %d, read at %d): another node wrote meanwhile; nothing was written, run the command again",
			ErrStoreChanged, last, o.seen)
	}
	if err != nil {
		cand.Close()
		return nil, err
	}
	fenced, err := kv.Fenced(o.gate.base, term.Fence)
	if err != nil {
		cand.Close()
		return nil, err
	}
	o.cand = cand
	o.gate.state.Store(&gateState{fenced: fenced, who: func() string { return o.id }})
	return fenced, nil
}

// leader is who leads the pair now ("" if nobody), asked without joining.
func (o *offlineTerm) leader(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, o.wait)
	defer cancel()
	id, err := leader.Current(ctx, kv.Client(o.gate.base), o.prefix)
	if errors.Is(err, leader.ErrNoLeader) {
		return "", nil
	}
	return id, err
}

// othersLead reports whether a node other than this command leads.
func (o *offlineTerm) othersLead(ctx context.Context) (string, bool, error) {
	id, err := o.leader(ctx)
	if err != nil || id == "" || id == o.id {
		return "", false, err
	}
	return shownLeader(id), true, nil
}

// release resigns the term, if held (a standby leads at once), and
// refuses further writes.
func (o *offlineTerm) release() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.gate.state.Store(&gateState{who: func() string { return "" }})
	if o.cand == nil {
		return nil
	}
	err := o.cand.Close()
	o.cand = nil
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		err = nil // the term was lost already (the lease lapsed or was revoked)
	}
	if err != nil {
		return fmt.Errorf("resigning the HA pair's term of %q: %w", o.id, err)
	}
	return nil
}

// leaveOffline releases r's command term, if any.
func (r *Repo) leaveOffline() error {
	if r.offline == nil {
		return nil
	}
	err := r.offline.release()
	r.offline = nil
	return err
}

// ledElsewhere reports whether r is a command on an etcd store while
// another node leads the pair: then Resume is the leader's work (its
// writes would be refused, and its publishing and mirroring, which come
// before them, would race the leader's). This node's own journal items
// wait until it writes again.
func (r *Repo) ledElsewhere(ctx context.Context) (bool, error) {
	if r.offline == nil {
		return false, nil
	}
	id, led, err := r.offline.othersLead(ctx)
	if err != nil || !led {
		return false, err
	}
	r.o.log.Info("not resuming the journal: another node leads the HA pair", "leader", id)
	return true, nil
}
