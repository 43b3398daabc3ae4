package repo

import (
	"context"
	"strings"
	"testing"

	"github.com/repoctl/repoctl/internal/etcdtest"
)

// TestHALeaderGoneShown: once the leader leaves, a standby's status and
// refusals say that nobody leads, not the last leader it saw.
func TestHALeaderGoneShown(t *testing.T) {
	srv := etcdtest.Start(t)
	r1 := openHARepo(t, srv, "n1")
	r2 := openHARepo(t, srv, "n2")
	r1.campaignForTest(t)
	if st, err := r2.Status(context.Background()); err != nil || st.HA == nil || st.HA.Leader != "n1" {
		t.Fatalf("standby status while n1 leads: %+v %v", st, err)
	}
	r1.leaveHA()
	st, err := r2.Status(context.Background())
	if err != nil || st.HA == nil || st.HA.Leader != "" {
		t.Fatalf("standby status after n1 left: %+v %v, want no leader", st.HA, err)
	}
	if err := r2.notLeader(); err == nil || !strings.Contains(err.Error(), "(leader: none elected)") {
		t.Fatalf("standby's refusal after n1 left: %v", err)
	}
}
