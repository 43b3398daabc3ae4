package leader_test

import (
	"context"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/etcdtest"
	"github.com/repoctl/repoctl/repo/leader"
)

// TestLeaseTTLRoundsUp: etcd leases are whole seconds; a TTL between two
// is rounded up, never down (a 2.5s TTL is not a 2s lease), and 0 is
// DefaultTTL. What the server granted is asked of the server.
func TestLeaseTTLRoundsUp(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client()
	ctx := context.Background()
	for _, c := range []struct {
		ttl  time.Duration
		want int64
	}{
		// Above etcd's own minimum (which it raises a shorter lease to).
		{2500 * time.Millisecond, 3},
		{3 * time.Second, 3},
		{3001 * time.Millisecond, 4},
		{0, int64(leader.DefaultTTL / time.Second)},
	} {
		cand, err := leader.New(ctx, cli, "/ttl.leader/", "a", leader.Options{TTL: c.ttl})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := cli.TimeToLive(ctx, cand.Lease())
		if err != nil {
			t.Fatal(err)
		}
		if resp.GrantedTTL != c.want {
			t.Errorf("TTL %v: lease of %ds, want %ds", c.ttl, resp.GrantedTTL, c.want)
		}
		if err := cand.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
