package leader_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/repoctl/repoctl/internal/etcdtest"
	"github.com/repoctl/repoctl/repo/leader"
	"github.com/repoctl/repoctl/repo/store"
)

// The test binary doubles as a candidate process to kill: with
// LEADER_HELPER_ENDPOINT set it campaigns, prints its fence and waits.
func TestMain(m *testing.M) {
	if ep := os.Getenv("LEADER_HELPER_ENDPOINT"); ep != "" {
		os.Exit(helper(ep, os.Getenv("LEADER_HELPER_PREFIX")))
	}
	os.Exit(m.Run())
}

func helper(endpoint, prefix string) int {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	c, err := leader.New(ctx, cli, prefix, "killed", leader.Options{TTL: 2 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	term, err := c.Campaign(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("LEADER %d %s\n", term.Fence.Rev, term.Fence.Key)
	select {} // until killed
}

const storePrefix = "/ha/"

type node struct {
	c  *leader.Candidate
	db store.DB // the store, unfenced
}

func newNode(t *testing.T, srv *etcdtest.Server, id string) node {
	t.Helper()
	db, err := store.OpenEtcd(context.Background(), store.EtcdOptions{Endpoints: []string{srv.Endpoint}, Prefix: storePrefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c, err := leader.New(context.Background(), store.Client(db), leader.Prefix(storePrefix), id, leader.Options{TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return node{c: c, db: db}
}

// write puts key through db fenced on f.
func write(db store.DB, f store.Fence, key string) error {
	fdb, err := store.Fenced(db, f)
	if err != nil {
		return err
	}
	return fdb.Update(func(tx store.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("writes"))
		if err != nil {
			return err
		}
		return b.Put([]byte(key), []byte(f.Key))
	})
}

func keys(t *testing.T, db store.DB) []string {
	t.Helper()
	var out []string
	if err := db.View(func(tx store.Tx) error {
		b := tx.Bucket([]byte("writes"))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error { out = append(out, string(k)); return nil })
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// campaign runs n's campaign in the background.
func campaign(t *testing.T, n node) <-chan leader.Term {
	ch := make(chan leader.Term, 1)
	go func() {
		term, err := n.c.Campaign(context.Background())
		if err != nil {
			t.Errorf("campaign: %v", err)
			close(ch)
			return
		}
		ch <- term
	}()
	return ch
}

func waitTerm(t *testing.T, ch <-chan leader.Term, what string) leader.Term {
	t.Helper()
	select {
	case term, ok := <-ch:
		if !ok {
			t.Fatalf("%s: the campaign failed", what)
		}
		return term
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s: still not leader", what)
	}
	return leader.Term{}
}

// TestTakeoverAfterRevoke: the leader's lease is revoked behind its back
// (as when it expires while the leader hangs); the standby leads, and the
// deposed leader's late write fails with ErrFenced instead of landing.
func TestTakeoverAfterRevoke(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b, watcher := newNode(t, srv, "a:8080"), newNode(t, srv, "b:8080"), newNode(t, srv, "watcher")
	if _, err := watcher.c.Leader(context.Background()); !errors.Is(err, leader.ErrNoLeader) {
		t.Fatalf("Leader before any campaign: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := watcher.c.Observe(ctx)

	ta := waitTerm(t, campaign(t, a), "a")
	bch := campaign(t, b)
	if err := write(a.db, ta.Fence, "a while leader"); err != nil {
		t.Fatal(err)
	}
	if id, err := watcher.c.Leader(ctx); err != nil || id != "a:8080" {
		t.Fatalf("Leader = %q, %v; want a", id, err)
	}
	select {
	case term := <-bch:
		t.Fatalf("b leads (%v) while a holds the election", term)
	default:
	}

	if _, err := store.Client(a.db).Revoke(ctx, a.c.Lease()); err != nil {
		t.Fatal(err)
	}
	tb := waitTerm(t, bch, "b after a's lease was revoked")
	select {
	case <-ta.Lost:
	case <-time.After(2 * time.Minute):
		t.Fatal("a's term did not end when its lease was revoked")
	}
	if err := write(a.db, ta.Fence, "a after deposed"); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("the deposed leader's write: %v, want ErrFenced", err)
	}
	if err := write(b.db, tb.Fence, "b as leader"); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, a.db); strings.Join(got, ",") != "a while leader,b as leader" {
		t.Fatalf("the store holds %q", got)
	}
	if id, err := watcher.c.Leader(ctx); err != nil || id != "b:8080" {
		t.Fatalf("Leader = %q, %v; want b", id, err)
	}
	var ids []string
	for len(ids) < 2 {
		select {
		case id := <-seen:
			if len(ids) == 0 || ids[len(ids)-1] != id {
				ids = append(ids, id)
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("Observe saw %q", ids)
		}
	}
	if ids[0] != "a:8080" || ids[1] != "b:8080" {
		t.Fatalf("Observe saw %q, want a then b", ids)
	}
}

// TestTakeoverAfterKill: the leader is a process killed with SIGKILL; when
// its lease expires the standby leads, and the dead leader's fence no
// longer writes.
func TestTakeoverAfterKill(t *testing.T) {
	srv := etcdtest.Start(t)
	b := newNode(t, srv, "b:8080")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LEADER_HELPER_ENDPOINT="+srv.Endpoint, "LEADER_HELPER_PREFIX="+leader.Prefix(storePrefix))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("the helper did not lead: %v", err)
	}
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "LEADER" {
		t.Fatalf("helper said %q", line)
	}
	rev, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	dead := store.Fence{Key: f[2], Rev: rev}
	if err := write(b.db, dead, "helper while leader"); err != nil {
		t.Fatalf("a write on the live leader's fence: %v", err)
	}
	bch := campaign(t, b)
	if id, err := b.c.Leader(context.Background()); err != nil || id != "killed" {
		t.Fatalf("Leader = %q, %v; want the helper", id, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	tb := waitTerm(t, bch, "b after the leader was killed")
	if err := write(b.db, dead, "dead leader's late write"); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("a write on the dead leader's fence: %v, want ErrFenced", err)
	}
	if err := write(b.db, tb.Fence, "b as leader"); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, b.db); strings.Join(got, ",") != "b as leader,helper while leader" {
		t.Fatalf("the store holds %q", got)
	}
}

// TestResign: a resigning leader hands over at once.
func TestResign(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := newNode(t, srv, "a"), newNode(t, srv, "b")
	ta := waitTerm(t, campaign(t, a), "a")
	bch := campaign(t, b)
	if err := a.c.Resign(context.Background()); err != nil {
		t.Fatal(err)
	}
	tb := waitTerm(t, bch, "b after a resigned")
	if tb.Fence == ta.Fence {
		t.Fatal("two terms with one fence")
	}
	if err := write(a.db, ta.Fence, "a after resigning"); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("write after resigning: %v, want ErrFenced", err)
	}
}

func TestNewRefusesBadInput(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client()
	for _, c := range []struct{ prefix, id string }{{"", "a"}, {"/no-slash", "a"}, {"/p/", ""}} {
		if _, err := leader.New(context.Background(), cli, c.prefix, c.id, leader.Options{}); err == nil {
			t.Errorf("New(%q, %q) succeeded", c.prefix, c.id)
		}
	}
	if got := leader.Prefix("/repoctl/"); got != "/repoctl.leader/" {
		t.Errorf("Prefix = %q", got)
	}
}

// TestTryCampaign: a try while another candidate leads fails with ErrHeld
// naming it and leaves no key behind (the leader's successor is not held
// up by it); with nobody leading it leads at once, its fence works, and a
// daemon's Campaign waits for it until it closes.
func TestTryCampaign(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := context.Background()
	a, cli, d := newNode(t, srv, "a:8080"), newNode(t, srv, "cli"), newNode(t, srv, "d:8080")
	if _, err := leader.Current(ctx, store.Client(a.db), leader.Prefix(storePrefix)); !errors.Is(err, leader.ErrNoLeader) {
		t.Fatalf("Current with nobody leading: %v", err)
	}
	aTerm := waitTerm(t, campaign(t, a), "a")
	_, held, err := cli.c.TryCampaign(ctx)
	if !errors.Is(err, leader.ErrHeld) || held != "a:8080" {
		t.Fatalf("try while a leads: %q, %v", held, err)
	}
	if id, err := leader.Current(ctx, store.Client(a.db), leader.Prefix(storePrefix)); err != nil || id != "a:8080" {
		t.Fatalf("Current while a leads: %q, %v", id, err)
	}
	resp, err := srv.Client().Get(ctx, leader.Prefix(storePrefix), clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Key) != aTerm.Fence.Key {
		t.Fatalf("election keys after the refused try: %v, %v", resp.Kvs, err)
	}
	if err := a.c.Close(); err != nil {
		t.Fatal(err)
	}

	term, held, err := cli.c.TryCampaign(ctx)
	if err != nil || held != "cli" {
		t.Fatalf("try with nobody leading: %q, %v", held, err)
	}
	if err := write(cli.db, term.Fence, "cli-1"); err != nil {
		t.Fatalf("write on the try's term: %v", err)
	}
	dCh := campaign(t, d)
	// The try's key is the oldest: d's campaign cannot end before it goes.
	if id, err := d.c.Leader(ctx); err != nil || id != "cli" {
		t.Fatalf("leader seen by d: %q, %v", id, err)
	}
	select {
	case <-dCh:
		t.Fatal("d leads while the try's term is held")
	default:
	}
	if err := cli.c.Close(); err != nil {
		t.Fatal(err)
	}
	dTerm := waitTerm(t, dCh, "d after the try's candidate closed")
	if err := write(cli.db, term.Fence, "cli-late"); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("late write on the closed try's term: %v", err)
	}
	if err := write(d.db, dTerm.Fence, "d-1"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(keys(t, d.db), ","); got != "cli-1,d-1" {
		t.Fatalf("writes %q", got)
	}
}
