package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestEtcdStoreDaemonDNF: a daemon with [store] backend = "etcd" on a
// real etcd ingests through the CLI and a drop-in, promotes, keeps its
// hash chain, survives a restart from etcd alone, and a dnf host with
// gpgcheck and repo_gpgcheck installs what it published. Nothing of the
// store is on local disk, and every key is under the configured prefix.
func TestEtcdStoreDaemonDNF(t *testing.T) {
	needTools(t, "dnf", "rpm")
	srv := etcdtest.Start(t)
	root, _ := newTestRoot(t, fmt.Sprintf(`[signing]
algo = "ed25519"
[routing]
default = "el/9"
[store]
backend = "etcd"
endpoints = [%q]
prefix = "/e2e/one/"
max_txn_ops = %d
max_request_bytes = %d
`, srv.Endpoint, etcdtest.MaxTxnOps, etcdtest.MaxRequestBytes))
	d := startDaemon(t, root)
	in := t.TempDir()
	for _, n := range []string{"etcdhello", "etcdtool"} {
		p := lcBuild(t, in, n, "1.0")
		if out, stderr, code := runCLI(t, root, "add", p); code != 0 || !strings.Contains(out, "added") {
			t.Fatalf("add %s: exit %d\n%s%s", n, code, out, stderr)
		}
	}
	// A batch of drop-ins: its transactions must fit the server's limits.
	const batch = 40
	bdir := t.TempDir()
	for i := 0; i < batch; i++ {
		p := lcBuild(t, bdir, fmt.Sprintf("etcdbatch%02d", i), "1.0")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		dropFile(t, filepath.Join(root, "incoming"), filepath.Base(p), b)
	}
	dropped := lcBuild(t, t.TempDir(), "etcddrop", "2.0")
	b, err := os.ReadFile(dropped)
	if err != nil {
		t.Fatal(err)
	}
	dropFile(t, filepath.Join(root, "incoming"), filepath.Base(dropped), b)
	staging := filepath.Join(root, "repo", "main", "staging", "el", "9", "x86_64")
	waitFor(t, 3*time.Minute, "the dropped packages in repodata", func() (bool, string) {
		pk, err := repodataPackages(staging)
		if err != nil {
			return false, err.Error()
		}
		_, ok := pk["etcddrop-2.0-1.el9.x86_64"]
		return ok && len(pk) == batch+3, fmt.Sprintf("%d packages, incoming %v", len(pk), listDir(t, filepath.Join(root, "incoming")))
	})
	if out, stderr, code := runCLI(t, root, "promote", "etcdhello", "--to", "prod", "--yes"); code != 0 {
		t.Fatalf("promote: exit %d\n%s%s", code, out, stderr)
	}
	if _, stderr, code := runCLI(t, root, "history", "--verify"); code != 0 {
		t.Fatalf("history --verify: exit %d: %s", code, stderr)
	}

	// The store is in etcd: no local file, keys under the prefix only.
	if _, err := os.Stat(filepath.Join(root, "repoctl.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ROOT/repoctl.db exists with the etcd store: %v", err)
	}
	cli := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := cli.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, kv := range resp.Kvs {
		switch k := string(kv.Key); {
		case strings.HasPrefix(k, "/e2e/one/"):
			n++
		case strings.HasPrefix(k, "/e2e/one.leader/"): // the HA election, beside the prefix (leader.Prefix)
		case k == "/etcdtest-ready":
		default:
			t.Errorf("etcd key %q outside the prefix", k)
		}
	}
	if n < 20 {
		t.Errorf("%d keys under the prefix: the store is not in etcd", n)
	}

	// A restarted daemon has everything back from etcd.
	d.stop()
	d = startDaemon(t, root)
	var st Status
	cliJSON(t, root, &st, "status")
	if st.Packages != batch+3 || st.Events == 0 || st.InFlight != 0 || st.Dirty != 0 {
		t.Fatalf("status after restart: %d packages, %d events, %d in flight, %d dirty", st.Packages, st.Events, st.InFlight, st.Dirty)
	}
	var list []PackageRecord
	cliJSON(t, root, &list, "list")
	if len(list) != batch+3 {
		t.Fatalf("list after restart: %d packages", len(list))
	}

	repofile, stderr, code := runCLI(t, root, "repofile", "--channel", "staging")
	if code != 0 {
		t.Fatalf("repofile: exit %d: %s", code, stderr)
	}
	h := newELHost(t, repofile)
	out := h.mustDNF("install", "etcdhello", "etcdtool", "etcddrop", "etcdbatch07")
	for _, line := range strings.Split(out, "\n") {
		if dnfErrorLine.MatchString(line) {
			t.Errorf("dnf printed an error line: %q", line)
		}
	}
	for _, want := range []string{"etcdhello-1.0-1.el9.x86_64", "etcdtool-1.0-1.el9.x86_64", "etcddrop-2.0-1.el9.x86_64", "etcdbatch07-1.0-1.el9.x86_64"} {
		name, _, _ := strings.Cut(want, "-")
		if got := h.installed(name); got != want {
			t.Errorf("installed %q, want %s", got, want)
		}
	}
	d.stop()
}

// TestEtcdStoreUnreachable: a daemon whose etcd does not answer fails to
// start with an error naming the endpoint, instead of hanging.
func TestEtcdStoreUnreachable(t *testing.T) {
	root, _ := newTestRoot(t, fmt.Sprintf("[store]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:%d\"]\ndial_timeout = \"2s\"\n", freePort(t)))
	out, stderr, code := runCLI(t, root, "-o", "json", "status")
	if code == 0 || !strings.Contains(stderr+out, "etcd") {
		t.Fatalf("status with etcd down: exit %d\n%s%s", code, out, stderr)
	}
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &e); err != nil || !strings.Contains(e.Error.Message, "127.0.0.1") {
		t.Errorf("-o json error: %v\n%s", err, out)
	}
	// Library code does not print: the etcd client's logger is silenced.
	if strings.Contains(stderr, `"level"`) || strings.Contains(stderr, "retrying") {
		t.Errorf("the etcd client logged to stderr:\n%s", stderr)
	}
}
