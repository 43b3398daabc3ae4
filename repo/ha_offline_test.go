package repo

// Commands run without a daemon on an etcd store (ha_offline.go), with
// real parts: etcd, SeaweedFS and the repoctl binary.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/repoctl/repoctl/internal/etcdtest"
	"github.com/repoctl/repoctl/internal/s3test"
	"github.com/repoctl/repoctl/repo/leader"
	kv "github.com/repoctl/repoctl/repo/store"
)

// offlineRoot is a ROOT on the etcd prefix /off/ without a daemon of its
// own (its socket is never served), publishing to the local tree.
func offlineRoot(t *testing.T, srv *etcdtest.Server, node string) string {
	t.Helper()
	root := t.TempDir()
	cfg := fmt.Sprintf(`[signing]
algo = "ed25519"
[routing]
default = "el/9"
[http]
listen = "127.0.0.1:%d"
[daemon]
settle = "200ms"
[store]
backend = "etcd"
endpoints = [%q]
prefix = "/off/"
node = %q
lease_ttl = "3s"
max_txn_ops = %d
max_request_bytes = %d
`, freePort(t), srv.Endpoint, node, etcdtest.MaxTxnOps, etcdtest.MaxRequestBytes)
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// storeMentions lists the keys under prefix whose key or value holds s.
func storeMentions(t *testing.T, srv *etcdtest.Server, prefix, s string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := srv.Client().Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Key), s) || strings.Contains(string(kv.Value), s) {
			out = append(out, fmt.Sprintf("%q", kv.Key))
		}
	}
	return out
}

func copyKeys(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", filepath.Join(from, "keys"), to).CombinedOutput(); err != nil {
		t.Fatalf("copying the key: %v\n%s", err, out)
	}
}

// TestOfflineAddWhileDaemonLeads (issue 11): a daemon leads on root A;
// `repoctl add` on root B, on the same prefix with no daemon of its own,
// exits 4 naming A, and the store holds no trace of the package; B's
// read-only commands still work.
func TestOfflineAddWhileDaemonLeads(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := offlineRoot(t, srv, "a"), offlineRoot(t, srv, "b")
	d := startDaemon(t, a)
	leaderID := d.waitLeads(t)
	copyKeys(t, a, b)
	// A directory left dirty in the shared store is the leader's to
	// republish: B's command must not publish it into its tree (nor
	// mirror it) before its write is refused.
	const dirty = "main/staging/el/9/x86_64"
	raw, err := kv.OpenEtcd(context.Background(), kv.EtcdOptions{Endpoints: []string{srv.Endpoint}, Prefix: "/off/"})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.Update(func(tx kv.Tx) error { return markDirty(tx, []string{dirty}) }); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	p := lcBuild(t, src, "offpkg", "1.0")
	out, stderr, code := runCLI(t, b, "add", p)
	if code != exitCodeBusy || !strings.Contains(stderr, "not the leader (leader: "+leaderID+")") {
		t.Fatalf("add on B while A leads: exit %d\n%s%s", code, out, stderr)
	}
	if _, err := os.Stat(filepath.Join(b, "repo", dirty, "repodata")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("B's refused add published %s: %v", dirty, err)
	}
	if dirs, err := (&store{db: raw}).dirtyDirs(); err != nil || len(dirs) != 1 || dirs[0] != dirty {
		t.Fatalf("dirty directories after B's refused add: %v %v", dirs, err)
	}
	if m := storeMentions(t, srv, "/off/", "offpkg"); len(m) != 0 {
		t.Fatalf("the refused add left %v in the store", m)
	}
	if got, _ := filepath.Glob(filepath.Join(b, "repo", "*", "*", "*", "*", "*", "*.rpm")); len(got) != 0 {
		t.Fatalf("the refused add placed %v", got)
	}
	// Reads need no term.
	out, stderr, code = runCLI(t, b, "-o", "json", "list")
	if code != 0 || strings.Contains(out, "offpkg") {
		t.Fatalf("list on B: exit %d\n%s%s", code, out, stderr)
	}
	// The daemon still leads, and takes the package.
	if _, stderr, code := runCLI(t, a, "add", p); code != 0 {
		t.Fatalf("add through A's daemon: exit %d\n%s", code, stderr)
	}
	if m := storeMentions(t, srv, "/off/", "offpkg"); len(m) == 0 {
		t.Fatal("the daemon's add is not in the store")
	}
}

// statusHA is the daemon's HA status, through its socket.
// addAsNextCommand adds pkg to root as a new command run without a
// daemon, which must lead and land it, and then list want packages.
func addAsNextCommand(t *testing.T, root, pkg string, want int) {
	t.Helper()
	ctx := context.Background()
	svc, release, err := Connect(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if res, err := svc.Add(ctx, []string{pkg}, AddOptions{}); err != nil || len(res) != 1 || res[0].Action != ActionAdded {
		t.Fatalf("add of the next command: %+v %v", res, err)
	}
	list, err := svc.List(ctx, ListOptions{})
	if err != nil || len(list) != want {
		t.Fatalf("list: %+v %v; want %d packages", list, err, want)
	}
}

// waitLeads waits until d leads its pair and returns its election id.
func (d *daemonProc) waitLeads(t *testing.T) string {
	t.Helper()
	var id string
	waitFor(t, 2*time.Minute, "the daemon to lead", func() (bool, string) {
		st, err := d.statusHA(t)
		if err != nil {
			return false, err.Error()
		}
		id = st.Leader
		return st.Role == RoleLeader, st.Role
	})
	return id
}

func (d *daemonProc) statusHA(t *testing.T) (*HAStatus, error) {
	t.Helper()
	c, err := Dial(context.Background(), filepath.Join(d.root, "repoctl.sock"), 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	st, err := c.Status(context.Background())
	if err != nil {
		return nil, err
	}
	if st.HA == nil {
		return nil, errors.New("no HA in status")
	}
	return st.HA, nil
}

// TestOfflineAddFenced (issue 11): with no daemon anywhere, a command's
// add takes the pair's term and its writes are fenced on it: once its
// lease is revoked behind its back, its next add fails with ErrFenced and
// nothing of it lands. A read-only command takes no term; Close resigns.
func TestOfflineAddFenced(t *testing.T) {
	srv := etcdtest.Start(t)
	b := offlineRoot(t, srv, "b")
	ctx := context.Background()
	svc, release, err := Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := svc.(*Repo)
	if !ok {
		t.Fatalf("Connect without a daemon gave %T", svc)
	}
	defer release()
	pfx := leader.Prefix("/off/")
	cli := srv.Client()
	// Opening generated the key (a write): that took the term. A fresh
	// open of a steady store reads only.
	if err := release(); err != nil {
		t.Fatalf("closing: %v", err)
	}
	if _, err := leader.Current(ctx, cli, pfx); !errors.Is(err, leader.ErrNoLeader) {
		t.Fatalf("after Close: %v", err)
	}
	svc, release, err = Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	r = svc.(*Repo)
	if _, err := r.List(ctx, ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if id, err := leader.Current(ctx, cli, pfx); !errors.Is(err, leader.ErrNoLeader) {
		t.Fatalf("a read-only command campaigned: leader %q, %v", id, err)
	}

	src := t.TempDir()
	p1, p2 := lcBuild(t, src, "fencea", "1.0"), lcBuild(t, src, "fenceb", "1.0")
	if res, err := r.Add(ctx, []string{p1}, AddOptions{}); err != nil || len(res) != 1 || res[0].Action != ActionAdded {
		t.Fatalf("offline add: %+v %v", res, err)
	}
	want := fmt.Sprintf("b (command, pid %d)", os.Getpid())
	if id, err := leader.Current(ctx, cli, pfx); err != nil || id != want {
		t.Fatalf("leader while the command writes: %q, %v; want %q", id, err, want)
	}
	// The fence is in the transaction: the election key's revision.
	resp, err := cli.Get(ctx, pfx, clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("election keys: %v %v", resp, err)
	}
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	res, err := r.Add(ctx, []string{p2}, AddOptions{})
	if !errors.Is(err, kv.ErrFenced) {
		t.Fatalf("add after the term was lost: %+v %v", res, err)
	}
	if m := storeMentions(t, srv, "/off/", "fenceb"); len(m) != 0 {
		t.Fatalf("the fenced add left %v in the store", m)
	}
	if err := release(); err != nil {
		t.Fatalf("closing after the term was lost: %v", err)
	}
	// The next command leads again.
	addAsNextCommand(t, b, p2, 2)
}

// TestOfflineThenDaemon (issue 11): a daemon started on the prefix while a
// command run without a daemon holds the term stands by, naming the
// command as leader; when the command exits it leads, and its takeover
// brings the command's package (uploaded to the bucket before the store
// recorded it) into its own tree and repodata.
func TestOfflineThenDaemon(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	etcd := etcdtest.Start(t)
	s3 := s3test.Start(t)
	s3.Bucket("repo")
	publicURL := s3.Endpoint + "/repo/yum/"
	a := newHANode(t, "a", etcd.Endpoint, s3.Endpoint, publicURL)
	b := newHANode(t, "b", etcd.Endpoint, s3.Endpoint, publicURL)
	ctx := context.Background()

	svc, release, err := Connect(ctx, b.root)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	src := t.TempDir()
	p := lcBuild(t, src, "offthen", "1.0")
	res, err := svc.Add(ctx, []string{p}, AddOptions{})
	if err != nil || len(res) != 1 || res[0].Action != ActionAdded || len(res[0].RepoPaths) == 0 {
		t.Fatalf("offline add: %+v %v", res, err)
	}
	copyKeys(t, b.root, a.root)
	a.d = startDaemon(t, a.root)
	want := fmt.Sprintf("b (command, pid %d)", os.Getpid())
	st := a.waitRole(t, RoleStandby)
	if st.HA.Leader != want {
		t.Fatalf("the daemon stands by under %q, want %q", st.HA.Leader, want)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	a.waitRole(t, RoleLeader)
	file := filepath.Join(a.root, "repo", res[0].RepoPaths[0])
	var names []string
	waitFor(t, 2*time.Minute, "a's takeover", func() (bool, string) {
		body, err := os.ReadFile(file)
		if err != nil {
			return false, err.Error()
		}
		if sum := sha256.Sum256(body); hex.EncodeToString(sum[:]) != res[0].SHA256 {
			return false, "sha256 " + hex.EncodeToString(sum[:])
		}
		names, err = s3PrimaryNames(publicURL, filepath.Dir(res[0].RepoPaths[0]))
		return err == nil && len(names) == 1, fmt.Sprint(names, err)
	})
	if !strings.HasPrefix(names[0], "offthen-1.0") {
		t.Fatalf("the bucket's primary lists %v", names)
	}
	out, stderr, code := runCLI(t, a.root, "-o", "json", "list")
	if code != 0 || !strings.Contains(out, "offthen") {
		t.Fatalf("list through the new leader: exit %d\n%s%s", code, out, stderr)
	}
}

// TestOfflineStoreChanged (issue 11): a command opened while a daemon
// leads, which then writes and stops, must not win the free term and
// write from the index it read before the daemon's change: it fails with
// ErrStoreChanged (exit 4) and writes nothing; run again, it works.
func TestOfflineStoreChanged(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := offlineRoot(t, srv, "a"), offlineRoot(t, srv, "b")
	d := startDaemon(t, a)
	d.waitLeads(t)
	copyKeys(t, a, b)
	ctx := context.Background()
	svc, release, err := Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if _, ok := svc.(*Repo); !ok {
		t.Fatalf("Connect without a daemon gave %T", svc)
	}
	src := t.TempDir()
	p1, p2 := lcBuild(t, src, "movedone", "1.0"), lcBuild(t, src, "movedtwo", "1.0")
	if _, stderr, code := runCLI(t, a, "add", p1); code != 0 {
		t.Fatalf("add through A's daemon: exit %d\n%s", code, stderr)
	}
	d.stop()
	waitFor(t, time.Minute, "nobody to lead after A stopped", func() (bool, string) {
		id, err := leader.Current(ctx, srv.Client(), leader.Prefix("/off/"))
		return errors.Is(err, leader.ErrNoLeader), fmt.Sprint(id, err)
	})
	res, err := svc.Add(ctx, []string{p2}, AddOptions{})
	if !errors.Is(err, ErrStoreChanged) {
		t.Fatalf("add from the index read before A's change: %+v %v", res, err)
	}
	if m := storeMentions(t, srv, "/off/", "movedtwo"); len(m) != 0 {
		t.Fatalf("the refused add left %v in the store", m)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	addAsNextCommand(t, b, p2, 2)
}
