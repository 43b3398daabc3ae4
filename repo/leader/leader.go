// Package leader elects one daemon among several that share an etcd:
// a campaign on an etcd session lease (go.etcd.io/etcd/client/v3/concurrency),
// whose winner gets a store.Fence, the election key and its create
// revision, to put on every store write (store.Fenced). A leader whose
// lease lapsed (it hung, was cut off or killed) is thereby deposed in the
// store itself: its late writes fail with store.ErrFenced, whatever it
// still believes.
//
// It is for choosing who writes. It is not the HA daemon (what a leader
// or a standby does, forwarding, takeover), not a lock on single records
// (the store's transactions are), and it does not import repo.
package leader

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/repoctl/repoctl/repo/store"
)

// Errors of the election.
var (
	// ErrNoLeader: nobody holds the election.
	ErrNoLeader = errors.New("leader: no leader")
	// ErrHeld: TryCampaign found another candidate leading.
	ErrHeld = errors.New("leader: another candidate leads")
)

// DefaultTTL is the session lease when Options.TTL is 0: how long a dead
// leader keeps the election before a standby can take over.
const DefaultTTL = 10 * time.Second

// Options tune a Candidate.
type Options struct {
	// TTL of the session lease, rounded up to whole seconds (etcd leases
	// are seconds); default DefaultTTL.
	TTL time.Duration
}

// Prefix is the election prefix for a store prefix: beside it, not
// under it ("/repoctl/" → "/repoctl.leader/"), so that the election's keys
// are never in the store's ranges.
func Prefix(storePrefix string) string {
	return strings.TrimSuffix(storePrefix, "/") + ".leader/"
}

// Candidate is one participant: a session (lease kept alive by the client)
// and an election on it.
type Candidate struct {
	sess   *concurrency.Session
	e      *concurrency.Election
	prefix string
	id     string
}

// New joins the election at prefix as id (what others see as the leader,
// e.g. the daemon's address). It does not campaign yet.
func New(ctx context.Context, cli *clientv3.Client, prefix, id string, o Options) (*Candidate, error) {
	if prefix == "" || !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("leader: election prefix %q must end with \"/\"", prefix)
	}
	if id == "" {
		return nil, errors.New("leader: empty candidate id")
	}
	ttl := o.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	secs := int((ttl + time.Second - 1) / time.Second)
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(secs), concurrency.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("leader: session on %q: %w", prefix, err)
	}
	return &Candidate{sess: sess, e: concurrency.NewElection(sess, prefix), prefix: prefix, id: id}, nil
}

// Term is one tenure as leader.
type Term struct {
	// Fence is the election key and its create revision: put it on every
	// store write of this term.
	Fence store.Fence
	// Lost is closed when the session's lease is gone (revoked, expired,
	// or the client closed): the term is over even if nobody said so.
	Lost <-chan struct{}
}

// Campaign blocks until this candidate leads, or ctx ends.
func (c *Candidate) Campaign(ctx context.Context) (Term, error) {
	if err := c.e.Campaign(ctx, c.id); err != nil {
		return Term{}, fmt.Errorf("leader: campaign of %q: %w", c.id, err)
	}
	return Term{Fence: store.Fence{Key: c.e.Key(), Rev: c.e.Rev()}, Lost: c.sess.Done()}, nil
}

// keyPrefix is where concurrency.Election keeps the candidates' keys
// (NewElection appends "/"): TryCampaign's key must be one of them, so
// that a Campaign of another candidate waits for it.
func (c *Candidate) keyPrefix() string { return c.prefix + "/" }

// TryCampaign leads at once if nobody else does, and otherwise fails with
// ErrHeld and returns the leader's id, without waiting or staying a candidate: for
// a short-lived writer (a command run without a daemon) that must not
// queue behind a daemon, nor write while one leads. It puts the same key
// Campaign would (the lease's, under the election prefix) and leads if
// that key is the oldest; otherwise it deletes it again. A Campaign of
// another candidate then waits for this one's Resign, Close or lease.
func (c *Candidate) TryCampaign(ctx context.Context) (Term, string, error) {
	cli := c.sess.Client()
	pfx := c.keyPrefix()
	k := fmt.Sprintf("%s%x", pfx, c.sess.Lease())
	first := clientv3.OpGet(pfx, clientv3.WithFirstCreate()...)
	resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, c.id, clientv3.WithLease(c.sess.Lease())), first).
		Else(clientv3.OpGet(k), first).Commit()
	if err != nil {
		return Term{}, "", fmt.Errorf("leader: campaign of %q: %w", c.id, err)
	}
	rev := resp.Header.Revision
	if !resp.Succeeded {
		rev = resp.Responses[0].GetResponseRange().Kvs[0].CreateRevision
	}
	oldest := resp.Responses[1].GetResponseRange().Kvs
	if len(oldest) == 0 || oldest[0].CreateRevision != rev {
		held := ""
		if len(oldest) > 0 {
			held = string(oldest[0].Value)
		}
		if _, err := cli.Delete(ctx, k); err != nil {
			return Term{}, "", fmt.Errorf("leader: withdrawing %q: %w", c.id, err)
		}
		return Term{}, held, fmt.Errorf("%w: %q leads, not %q", ErrHeld, held, c.id)
	}
	c.e = concurrency.ResumeElection(c.sess, pfx, k, rev)
	return Term{Fence: store.Fence{Key: k, Rev: rev}, Lost: c.sess.Done()}, c.id, nil
}

// Current is the id of whoever leads the election at prefix, without
// joining it (no session, no lease): ErrNoLeader if nobody does.
func Current(ctx context.Context, cli *clientv3.Client, prefix string) (string, error) {
	resp, err := cli.Get(ctx, prefix+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", fmt.Errorf("leader: asking who leads %q: %w", prefix, err)
	}
	if len(resp.Kvs) == 0 {
		return "", ErrNoLeader
	}
	return string(resp.Kvs[0].Value), nil
}

// Resign gives up leadership (a standby takes over at once, without
// waiting for the lease).
func (c *Candidate) Resign(ctx context.Context) error {
	if err := c.e.Resign(ctx); err != nil {
		return fmt.Errorf("leader: resign of %q: %w", c.id, err)
	}
	return nil
}

// Leader is the current leader's id; ErrNoLeader if there is none.
func (c *Candidate) Leader(ctx context.Context) (string, error) {
	resp, err := c.e.Leader(ctx)
	if errors.Is(err, concurrency.ErrElectionNoLeader) {
		return "", ErrNoLeader
	}
	if err != nil {
		return "", fmt.Errorf("leader: asking who leads: %w", err)
	}
	return string(resp.Kvs[0].Value), nil
}

// Observe sends every new leader's id until ctx ends.
func (c *Candidate) Observe(ctx context.Context) <-chan string {
	out := make(chan string)
	go func() {
		defer close(out)
		for resp := range c.e.Observe(ctx) {
			if len(resp.Kvs) == 0 {
				continue
			}
			select {
			case out <- string(resp.Kvs[0].Value):
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// Lease is the session's lease, for status.
func (c *Candidate) Lease() clientv3.LeaseID { return c.sess.Lease() }

// Close ends the session and revokes its lease: a term held ends now.
func (c *Candidate) Close() error { return c.sess.Close() }
