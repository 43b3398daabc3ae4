package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/etcdtest"
	kv "github.com/repoctl/repoctl/repo/store"
	"github.com/repoctl/repoctl/sign"
)

func openHARepo(t *testing.T, srv *etcdtest.Server, node string) *Repo {
	t.Helper()
	root := t.TempDir()
	cfg := fmt.Sprintf(`[signing]
algo = "ed25519"
[routing]
default = "el/9"
[store]
backend = "etcd"
endpoints = [%q]
prefix = "/ha/fence/"
node = %q
lease_ttl = "3s"
max_txn_ops = %d
max_request_bytes = %d
`, srv.Endpoint, node, etcdtest.MaxTxnOps, etcdtest.MaxRequestBytes)
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open(context.Background(), root, WithResume(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.leaveHA()
		r.Close()
	})
	ok, err := r.joinHA(context.Background(), node, slog.New(slog.DiscardHandler))
	if err != nil || !ok {
		t.Fatalf("joinHA %s: %v, %v", node, ok, err)
	}
	return r
}

func (r *Repo) campaignForTest(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	term, err := r.ha.cand.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.takeOver(ctx, term); err != nil {
		t.Fatal(err)
	}
}

// TestHAFencedWrites: a standby's store writes and changes are refused
// with ErrNotLeader naming the leader; a leader whose lease was revoked
// behind its back (it still believes it leads) has its late ingest
// fenced off by the store: ErrFenced, and nothing of it lands; the new
// leader writes.
func TestHAFencedWrites(t *testing.T) {
	srv := etcdtest.Start(t)
	r1 := openHARepo(t, srv, "n1")
	r2 := openHARepo(t, srv, "n2")
	noop := func(tx kv.Tx) error { return tx.Bucket(bucketMeta).Put([]byte("ha-test"), []byte("x")) }
	if err := r1.st.db.Update(noop); !errors.Is(err, ErrNotLeader) || !strings.Contains(err.Error(), "not the leader (leader: none elected)") {
		t.Fatalf("write of a standby with no leader: %v", err)
	}
	r1.campaignForTest(t)
	if err := r1.st.db.Update(noop); err != nil {
		t.Fatalf("write of the leader: %v", err)
	}
	in := t.TempDir()
	p := lcBuild(t, in, "fenced", "1.0")
	// The add's first write is the one refused, and the error says so in
	// the user's words, not the pipeline's.
	if _, err := r2.Add(context.Background(), []string{p}, AddOptions{}); !errors.Is(err, ErrNotLeader) || !strings.Contains(err.Error(), "(leader: n1)") ||
		!strings.HasPrefix(err.Error(), "recording 1 incoming package(s) in the store: ") {
		t.Fatalf("add on the standby: %v", err)
	}
	if err := r2.notLeader(); err == nil || !strings.Contains(err.Error(), "not the leader (leader: n1)") {
		t.Fatalf("standby's refusal: %v", err)
	}
	if st, err := r2.Status(context.Background()); err != nil || st.HA == nil || st.HA.Role != RoleStandby || st.HA.Leader != "n1" {
		t.Fatalf("standby status: %+v %v", st, err)
	}

	// The lease goes (as when the leader hangs past its TTL); r1 has not
	// noticed and goes on.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := srv.Client().Revoke(ctx, r1.ha.cand.Lease()); err != nil {
		t.Fatal(err)
	}
	r2.campaignForTest(t)
	res, err := r1.Add(context.Background(), []string{p}, AddOptions{})
	if !errors.Is(err, kv.ErrFenced) {
		t.Fatalf("late add of the deposed leader: %v %+v", err, res)
	}
	if list, err := r2.List(context.Background(), ListOptions{}); err != nil || len(list) != 0 {
		t.Fatalf("after the fenced add the store lists %d packages (%v)", len(list), err)
	}
	if err := r2.st.db.Update(noop); err != nil {
		t.Fatalf("write of the new leader: %v", err)
	}
	res, err = r2.Add(context.Background(), []string{p}, AddOptions{})
	if err != nil || len(res) != 1 || res[0].Action != ActionAdded {
		t.Fatalf("add on the new leader: %+v %v", res, err)
	}
	var signs []Event
	if err := r2.view(func(tx kv.Tx) error {
		return tx.Bucket(bucketEvents).ForEach(func(_, v []byte) error {
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if e.Action == EventSign {
				signs = append(signs, e)
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if len(signs) != 1 || signs[0].Details["node"] != "n2" {
		t.Fatalf("sign events %+v, want one by n2", signs)
	}
}

// TestHAJournalOwner: items a leader signed but did not record (it died
// there) stay in the shared journal for their owner: the next leader
// leaves them, and the owner records them, once, when it leads again.
func TestHAJournalOwner(t *testing.T) {
	srv := etcdtest.Start(t)
	r1 := openHARepo(t, srv, "n1")
	r2 := openHARepo(t, srv, "n2")
	r1.campaignForTest(t)
	p := lcBuild(t, t.TempDir(), "owned", "1.0")
	failpoint = func(state string) error {
		if state == stateSigned {
			return errors.New("died after signing")
		}
		return nil
	}
	_, err := r1.Add(context.Background(), []string{p}, AddOptions{})
	failpoint = nil
	if err == nil || !strings.Contains(err.Error(), "died after signing") {
		t.Fatalf("add through the failpoint: %v", err)
	}
	r1.leaveHA() // its session ends: r2 may lead
	r2.campaignForTest(t)
	st, err := r2.Status(context.Background())
	if err != nil || st.InFlight != 1 || st.Packages != 0 {
		t.Fatalf("after r2's takeover: %+v %v; want r1's item left in the journal", st, err)
	}
	// r2 hands over (it stops); r1 joins again and leads.
	r2.leaveHA()
	if ok, err := r1.joinHA(context.Background(), "n1", slog.New(slog.DiscardHandler)); err != nil || !ok {
		t.Fatal(err)
	}
	r1.campaignForTest(t)
	st, err = r1.Status(context.Background())
	if err != nil || st.InFlight != 0 || st.Packages != 1 {
		t.Fatalf("after r1 leads again: %+v %v; want its item recorded", st, err)
	}
	var signs []string
	if err := r1.view(func(tx kv.Tx) error {
		return tx.Bucket(bucketEvents).ForEach(func(_, v []byte) error {
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if e.Action == EventSign {
				signs = append(signs, e.NEVRA+" by "+e.Details["node"])
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if len(signs) != 1 || signs[0] != "owned-1.0-1.el9.x86_64 by n1" {
		t.Fatalf("sign events %v", signs)
	}
}

// TestHAPairKey: a daemon joining a pair whose store has a key ring
// refuses to start without the pair's key (it would generate its own)
// or with another key (it would start a rotation to it), and starts
// with a copy of it.
func TestHAPairKey(t *testing.T) {
	srv := etcdtest.Start(t)
	first := openHARepo(t, srv, "k1")
	pairKey := first.Key().KeyID()
	newRoot := func(node string) string {
		root := t.TempDir()
		cfg := fmt.Sprintf("[signing]\nalgo = \"ed25519\"\n[store]\nbackend = \"etcd\"\nendpoints = [%q]\nprefix = \"/ha/fence/\"\nnode = %q\nmax_txn_ops = %d\nmax_request_bytes = %d\n",
			srv.Endpoint, node, etcdtest.MaxTxnOps, etcdtest.MaxRequestBytes)
		if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return root
	}
	open := func(root string) error {
		r, err := Open(context.Background(), root, WithResume(false), withPair())
		if err == nil {
			r.Close()
		}
		return err
	}
	none := newRoot("k2")
	if err := open(none); !errors.Is(err, ErrPairKey) || !strings.Contains(err.Error(), pairKey) {
		t.Fatalf("a daemon without a key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(none, "keys", "signing.asc")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a key was generated: %v", err)
	}
	other := newRoot("k3")
	k, err := sign.GenerateKey("ed25519", "other", "other@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(other, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := k.WritePrivateFile(filepath.Join(other, "keys", "signing.asc")); err != nil {
		t.Fatal(err)
	}
	if err := open(other); !errors.Is(err, ErrPairKey) || !strings.Contains(err.Error(), k.KeyID()) {
		t.Fatalf("a daemon with another key: %v", err)
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(first.Root(), "keys"), none).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if err := open(none); err != nil {
		t.Fatalf("a daemon with the pair's key: %v", err)
	}
	if err := first.view(func(tx kv.Tx) error {
		rot, err := getRotation(tx)
		if err == nil && rot != nil {
			err = fmt.Errorf("a rotation was started: %+v", rot)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func TestShownLeader(t *testing.T) {
	if got := shownLeader("a@127.0.0.1:80"); got != "a@127.0.0.1:80" {
		t.Errorf("plain id shown as %q", got)
	}
	if got := shownLeader("evil\x1b[2J\n"); strings.ContainsAny(got, "\x1b\n") {
		t.Errorf("control characters shown: %q", got)
	}
	if got := shownLeader(strings.Repeat("x", 5000)); len(got) > maxLeaderID+8 {
		t.Errorf("a 5000-byte id shown as %d bytes", len(got))
	}
}

// TestHALostLease: a leader whose lease is revoked notices (lead returns
// ErrLostLeadership, for the daemon to stop) and refuses writes from then
// on; the drop-in watcher's start ran once, after the takeover.
func TestHALostLease(t *testing.T) {
	srv := etcdtest.Start(t)
	r := openHARepo(t, srv, "lost")
	started := make(chan struct{}, 2)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- r.lead(ctx, func() error { started <- struct{}{}; return nil }) }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("lead returned before leading: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("not leading within a minute")
	}
	if r.standby() {
		t.Fatal("started as a standby")
	}
	rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
	defer rcancel()
	if _, err := srv.Client().Revoke(rctx, r.ha.cand.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrLostLeadership) {
			t.Fatalf("lead after the revoke: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the lost lease went unnoticed for a minute")
	}
	if err := r.st.db.Update(func(tx kv.Tx) error { return nil }); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("write after the lost lease: %v", err)
	}
	if len(started) != 0 {
		t.Fatal("the watcher was started twice")
	}
}
