// Package statetest is the conformance suite of upgrade.Store: every
// implementation (upgrade's FileStore, repo's store-seam adapter on bbolt
// and on etcd) runs Run, so that they all keep rollouts alike: overlapping
// rollouts refused (also when started at once from two handles), a run
// lock held by a live holder refused and a dead holder's taken over,
// rollouts listed oldest first, records that outlive their handle.
//
// It is for tests only; nothing in repoctl's commands imports it. The
// rollouts it starts run against loopback ports where nothing listens, so
// each halts at its first step without touching a host.
package statetest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/repoctl/repoctl/upgrade"
)

// Impl is one implementation under test.
type Impl struct {
	// Open is a new, empty store and a function opening another handle
	// on the same records, as another process or node would.
	Open func(t *testing.T) (st upgrade.Store, another func() upgrade.Store)
	// Reopen closes st and opens it again.
	Reopen func(t *testing.T, st upgrade.Store) upgrade.Store
	// Hold makes a holder outside this process's handles take rollout
	// id's run lock, and returns once it holds it. kill makes the holder
	// die as a crash does (SIGKILL, a session that is never closed):
	// nobody releases the lock.
	Hold func(t *testing.T, st upgrade.Store, id string) (kill func())
	// DeadAfter is how long a dead holder may keep its lock (an etcd
	// lease's TTL); 0 for a lock that dies with its holder.
	DeadAfter time.Duration
}

// Run runs every case against impl.
func Run(t *testing.T, impl Impl) {
	sh := newEnv(t)
	for _, c := range []struct {
		name string
		fn   func(t *testing.T, impl Impl, e *env)
	}{
		{"EmptyStore", testEmpty},
		{"ConflictingRolloutsRefused", testConflict},
		{"ConcurrentStartsOneWins", testConcurrentStarts},
		{"AbortFreesHosts", testAbortFrees},
		{"ListOrder", testListOrder},
		{"SurvivesReopen", testReopen},
		{"LockHeldByLiveHolder", testLiveLock},
		{"LockOfDeadHolderTakenOver", testDeadLock},
	} {
		t.Run(c.name, func(t *testing.T) { c.fn(t, impl, sh) })
	}
}

// env is an SSH identity and known_hosts for rollouts that never connect.
type env struct {
	knownHosts, identity string
}

func newEnv(t *testing.T) *env {
	dir := t.TempDir()
	e := &env{knownHosts: filepath.Join(dir, "known_hosts"), identity: filepath.Join(dir, "id_ed25519")}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.identity, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.knownHosts, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// deadPorts are loopback ports where nothing listens: each is one host.
func deadPorts(t *testing.T, n int) []int {
	var out []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

// plan rolls a package out to the hosts on ports.
func (e *env) plan(t *testing.T, ports ...int) *upgrade.Plan {
	t.Helper()
	c := &upgrade.Config{KnownHosts: e.knownHosts, IdentityFile: e.identity, User: "root", Flavor: "el9",
		ConnectTimeout: upgrade.Duration{Duration: 5 * time.Second}, CommandTimeout: upgrade.Duration{Duration: 5 * time.Second}}
	g := upgrade.GroupConfig{Name: "g1"}
	for _, p := range ports {
		g.Hosts = append(g.Hosts, upgrade.HostConfig{Name: fmt.Sprintf("app%d", p), Address: "127.0.0.1", Port: p})
	}
	c.Groups = []upgrade.GroupConfig{g}
	inv, err := c.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	p, err := upgrade.NewPlan(inv, upgrade.PlanRequest{NEVRA: "app-2.0-1.el9.x86_64", Previous: "app-1.0-1.el9.x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func manager(t *testing.T, st upgrade.Store) *upgrade.Manager {
	t.Helper()
	m, err := upgrade.NewManager(t.TempDir(), upgrade.WithStore(st))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// start starts a rollout that halts at its first step (nothing listens
// on its hosts) and so keeps owning them.
func start(t *testing.T, m *upgrade.Manager, p *upgrade.Plan) *upgrade.Rollout {
	t.Helper()
	r, err := m.Start(context.Background(), p)
	if r == nil || !errors.Is(err, upgrade.ErrHalted) {
		t.Fatalf("start: %v, %v; want a rollout halted at its first step", r, err)
	}
	if r.State != upgrade.StateHalted {
		t.Fatalf("start: state %s, want halted", r.State)
	}
	return r
}

func testEmpty(t *testing.T, impl Impl, e *env) {
	st, _ := impl.Open(t)
	m := manager(t, st)
	ctx := context.Background()
	if rs, err := m.List(ctx); err != nil || len(rs) != 0 {
		t.Errorf("List of an empty store: %v, %v", rs, err)
	}
	if _, err := m.Get(ctx, "20260101-000000-000000"); !errors.Is(err, upgrade.ErrNotFound) {
		t.Errorf("Get of a missing rollout: %v, want ErrNotFound", err)
	}
	if _, err := m.Get(ctx, ""); !errors.Is(err, upgrade.ErrNotFound) {
		t.Errorf("Get of the newest in an empty store: %v, want ErrNotFound", err)
	}
	if err := m.CheckHosts(ctx, e.plan(t, deadPorts(t, 1)...)); err != nil {
		t.Errorf("CheckHosts on an empty store: %v", err)
	}
}

func testConflict(t *testing.T, impl Impl, e *env) {
	st, another := impl.Open(t)
	m := manager(t, st)
	ctx := context.Background()
	ports := deadPorts(t, 3)
	first := start(t, m, e.plan(t, ports[0], ports[1]))
	// From this handle and from another: the halted rollout owns its hosts.
	for name, mm := range map[string]*upgrade.Manager{"same handle": m, "another handle": manager(t, another())} {
		overlap := e.plan(t, ports[1], ports[2])
		if err := mm.CheckHosts(ctx, overlap); !errors.Is(err, upgrade.ErrLocked) {
			t.Errorf("%s: CheckHosts of an overlapping plan: %v, want ErrLocked", name, err)
		}
		r, err := mm.Start(ctx, overlap)
		if r != nil || !errors.Is(err, upgrade.ErrLocked) {
			t.Errorf("%s: Start of an overlapping rollout: %v, %v, want ErrLocked and none", name, r, err)
		}
	}
	if rs, err := m.List(ctx); err != nil || len(rs) != 1 || rs[0].ID != first.ID {
		t.Errorf("after the refusals: %v %v, want only %s", rs, err, first.ID)
	}
	// Disjoint hosts are free.
	start(t, m, e.plan(t, ports[2]))
}

func testConcurrentStarts(t *testing.T, impl Impl, e *env) {
	st, another := impl.Open(t)
	ctx := context.Background()
	ports := deadPorts(t, 5)
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	won := make([]*upgrade.Rollout, n)
	for i := range n {
		s := st
		if i > 0 {
			s = another()
		}
		m := manager(t, s)
		// Every plan shares ports[0] and has one host of its own.
		p := e.plan(t, ports[0], ports[i+1])
		wg.Add(1)
		go func() {
			defer wg.Done()
			won[i], errs[i] = m.Start(ctx, p)
		}()
	}
	wg.Wait()
	started := 0
	for i := range n {
		switch {
		case won[i] != nil && errors.Is(errs[i], upgrade.ErrHalted):
			started++
		case won[i] == nil && errors.Is(errs[i], upgrade.ErrLocked):
		default:
			t.Errorf("start %d: %v, %v; want halted (the winner) or ErrLocked", i, won[i], errs[i])
		}
	}
	if started != 1 {
		t.Errorf("%d of %d overlapping rollouts started at once, want exactly 1", started, n)
	}
	if rs, err := manager(t, st).List(ctx); err != nil || len(rs) != 1 {
		t.Errorf("List: %d rollouts, %v; want 1", len(rs), err)
	}
}

func testAbortFrees(t *testing.T, impl Impl, e *env) {
	st, another := impl.Open(t)
	m := manager(t, st)
	ctx := context.Background()
	ports := deadPorts(t, 2)
	first := start(t, m, e.plan(t, ports...))
	// Aborted from another handle: this one's next Start sees it.
	r, err := manager(t, another()).Abort(ctx, first.ID)
	if err != nil || r.State != upgrade.StateAborted {
		t.Fatalf("abort: %v, %v", r, err)
	}
	if _, err := m.Abort(ctx, first.ID); !errors.Is(err, upgrade.ErrFinished) {
		t.Errorf("second abort: %v, want ErrFinished", err)
	}
	if _, err := m.Resume(ctx, first.ID); !errors.Is(err, upgrade.ErrFinished) {
		t.Errorf("resume of an aborted rollout: %v, want ErrFinished", err)
	}
	start(t, m, e.plan(t, ports...))
}

func testListOrder(t *testing.T, impl Impl, e *env) {
	st, another := impl.Open(t)
	m := manager(t, st)
	ctx := context.Background()
	var want []string
	for _, p := range deadPorts(t, 4) {
		want = append(want, start(t, m, e.plan(t, p)).ID)
		time.Sleep(2 * time.Millisecond) // Created differs
	}
	for name, mm := range map[string]*upgrade.Manager{"same handle": m, "another handle": manager(t, another())} {
		rs, err := mm.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rs {
			got = append(got, r.ID)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: List %v, want oldest first %v", name, got, want)
		}
		if r, err := mm.Get(ctx, ""); err != nil || r.ID != want[len(want)-1] {
			t.Errorf("%s: Get(\"\") = %v, %v, want the newest %s", name, r, err, want[len(want)-1])
		}
	}
}

func testReopen(t *testing.T, impl Impl, e *env) {
	st, _ := impl.Open(t)
	ctx := context.Background()
	r := start(t, manager(t, st), e.plan(t, deadPorts(t, 2)...))
	st = impl.Reopen(t, st)
	m := manager(t, st)
	got, err := m.Get(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != upgrade.StateHalted || got.Plan.NEVRA != r.Plan.NEVRA || got.Error == "" || got.Live {
		t.Errorf("after reopen: state %s, nevra %q, error %q, live %v", got.State, got.Plan.NEVRA, got.Error, got.Live)
	}
	failed := 0
	for _, s := range got.Steps {
		if s.State == upgrade.StepFailed {
			failed++
		}
	}
	if failed == 0 {
		t.Errorf("after reopen: no failed step among %d records", len(got.Steps))
	}
	if !got.Created.Equal(r.Created) {
		t.Errorf("after reopen: created %v, want %v", got.Created, r.Created)
	}
}

func testLiveLock(t *testing.T, impl Impl, e *env) {
	st, another := impl.Open(t)
	ctx := context.Background()
	other := another()
	const id = "20260101-000000-aaaaaa"
	if live, err := st.Live(ctx, id); err != nil || live {
		t.Fatalf("Live before anyone locked: %v, %v", live, err)
	}
	lk, err := st.Lock(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if live, err := other.Live(ctx, id); err != nil || !live {
		t.Errorf("Live from another handle while held: %v, %v, want true", live, err)
	}
	if l2, err := other.Lock(ctx, id); !errors.Is(err, upgrade.ErrBusy) {
		if l2 != nil {
			l2.Release()
		}
		t.Errorf("Lock from another handle while held: %v, want ErrBusy", err)
	}
	// Another rollout's lock is independent.
	l3, err := other.Lock(ctx, "20260101-000000-bbbbbb")
	if err != nil {
		t.Errorf("Lock of another rollout: %v", err)
	} else {
		l3.Release()
	}
	if err := lk.Release(); err != nil {
		t.Fatal(err)
	}
	if err := lk.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	if live, err := other.Live(ctx, id); err != nil || live {
		t.Errorf("Live after release: %v, %v, want false", live, err)
	}
	l4, err := other.Lock(ctx, id)
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	l4.Release()
}

func testDeadLock(t *testing.T, impl Impl, e *env) {
	st, _ := impl.Open(t)
	ctx := context.Background()
	m := manager(t, st)
	r := start(t, m, e.plan(t, deadPorts(t, 1)...))
	kill := impl.Hold(t, st, r.ID)
	if got, err := m.Get(ctx, r.ID); err != nil || !got.Live {
		t.Errorf("Get while another holder runs it: live %v, %v, want live", got != nil && got.Live, err)
	}
	if _, err := m.Resume(ctx, r.ID); !errors.Is(err, upgrade.ErrBusy) {
		t.Errorf("Resume while a live holder has the lock: %v, want ErrBusy", err)
	}
	kill()
	deadline := time.Now().Add(impl.DeadAfter + 30*time.Second)
	for {
		lk, err := st.Lock(ctx, r.ID)
		if err == nil {
			lk.Release()
			break
		}
		if !errors.Is(err, upgrade.ErrBusy) || time.Now().After(deadline) {
			t.Fatalf("the dead holder's lock was never taken over: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got, err := m.Get(ctx, r.ID); err != nil || got.Live {
		t.Errorf("Get after the holder died: live %v, %v, want not live", got != nil && got.Live, err)
	}
	// The rollout resumes (and halts again: its host is still away).
	if got, err := m.Resume(ctx, r.ID); !errors.Is(err, upgrade.ErrHalted) || got == nil {
		t.Errorf("Resume after the holder died: %v, %v, want it run and halt", got, err)
	}
}

// HoldFlock is Impl.Hold for flock run locks in dir (upgrade.FileLocks):
// flock(1), another process, holds dir/ID.lock until kill SIGKILLs it.
func HoldFlock(t *testing.T, st upgrade.Locks, dir, id string) func() {
	t.Helper()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	// -o: the lock is flock(1)'s own, not sleep's; the group kill takes both.
	cmd := exec.Command("flock", "-o", "-x", filepath.Join(dir, id+".lock"), "sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("flock(1) is required (util-linux): %v", err)
	}
	done := false
	kill := func() {
		if done {
			return
		}
		done = true
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}
	t.Cleanup(kill)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if live, _ := st.Live(context.Background(), id); live {
			return kill
		}
		if time.Now().After(deadline) {
			t.Fatal("flock(1) never took the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
