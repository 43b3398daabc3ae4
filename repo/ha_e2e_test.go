package repo

// The HA pair end to end, with real parts: etcd (internal/etcdtest),
// SeaweedFS (internal/s3test) and two daemons (the real binary) on
// separate ROOTs that share one [store] prefix and one [publish.s3]
// bucket.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/repoctl/repoctl/internal/etcdtest"
	"github.com/repoctl/repoctl/internal/s3test"
	"github.com/repoctl/repoctl/metadata"
	kv "github.com/repoctl/repoctl/repo/store"
)

// haTTL is the lease of the pair in these tests: short, so that a
// takeover after kill -9 comes within seconds.
const haTTL = 3 * time.Second

type haNode struct {
	name, root, listen string
	d                  *daemonProc
}

func newHANode(t *testing.T, name, etcdEP, s3EP, publicURL string) *haNode {
	t.Helper()
	n := &haNode{name: name, root: t.TempDir(), listen: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	cfg := fmt.Sprintf(`[signing]
algo = "ed25519"
[routing]
default = "el/9"
[daemon]
settle = "200ms"
[http]
listen = %q
public_url = %q
[store]
backend = "etcd"
endpoints = [%q]
prefix = "/ha/pair/"
node = %q
lease_ttl = %q
max_txn_ops = %d
max_request_bytes = %d
[publish]
target = "s3"
[publish.s3]
endpoint = %q
bucket = "repo"
prefix = "yum"
`, n.listen, publicURL, etcdEP, name, haTTL.String(), etcdtest.MaxTxnOps, etcdtest.MaxRequestBytes, s3EP)
	if err := os.WriteFile(filepath.Join(n.root, ConfigFileName), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *haNode) status(t *testing.T) (*Status, error) {
	t.Helper()
	out, stderr, code := runCLI(t, n.root, "-o", "json", "status")
	if code != 0 {
		return nil, fmt.Errorf("status of %s: exit %d: %s", n.name, code, stderr)
	}
	var st Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, err
	}
	return &st, nil
}

func (n *haNode) waitRole(t *testing.T, role string) *Status {
	t.Helper()
	var st *Status
	waitFor(t, 2*time.Minute, n.name+" as "+role, func() (bool, string) {
		var err error
		if st, err = n.status(t); err != nil {
			return false, err.Error()
		}
		if st.HA == nil {
			return false, "no HA in status"
		}
		return st.HA.Role == role, st.HA.Role + ", leader " + st.HA.Leader
	})
	return st
}

// TestHAPairTakeover is issue 11's "Done when" for the pair: 50 drop-ins
// into the leader, which is killed (SIGKILL) in the middle of its batch;
// the standby leads within the TTL plus 5 s and takes 50 more; the old
// leader comes back as a standby, and once it leads again (the other one
// stops) it finishes its own journal and drop-ins. Then the bucket's
// repodata lists each of the 100 packages once, each verifies with
// rpmkeys against the served key, each was signed once (by one node),
// the hash chain verifies, and a dnf host with gpgcheck, repo_gpgcheck
// and skip_if_unavailable=False installs from the bucket.
func TestHAPairTakeover(t *testing.T) {
	needTools(t, "dnf", "rpm", "rpmkeys")
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	etcd := etcdtest.Start(t)
	s3 := s3test.Start(t)
	s3.Bucket("repo")
	publicURL := s3.Endpoint + "/repo/yum/"
	a := newHANode(t, "a", etcd.Endpoint, s3.Endpoint, publicURL)
	b := newHANode(t, "b", etcd.Endpoint, s3.Endpoint, publicURL)

	// 100 packages, built before anything runs.
	src := t.TempDir()
	var pkgs []string // file paths
	for i := range 100 {
		pkgs = append(pkgs, lcBuild(t, src, fmt.Sprintf("hapkg%03d", i), "1.0"))
	}
	drop := func(n *haNode, from, to int) {
		t.Helper()
		for _, p := range pkgs[from:to] {
			body, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			dropFile(t, filepath.Join(n.root, "incoming"), filepath.Base(p), body)
		}
	}

	// a starts alone and leads; it generates the pair's signing key,
	// which b is given (a standby never generates one).
	a.d = startDaemon(t, a.root)
	st := a.waitRole(t, RoleLeader)
	if st.HA.Node != "a@"+a.listen || st.HA.Leader != st.HA.Node || st.HA.LeaseTTL != haTTL.String() ||
		len(st.HA.Endpoints) != 1 || st.HA.Endpoints[0] != etcd.Endpoint || !strings.HasPrefix(st.Target, "s3://repo/yum") {
		t.Fatalf("status of the leader: %+v, target %q", st.HA, st.Target)
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(a.root, "keys"), b.root).CombinedOutput(); err != nil {
		t.Fatalf("copying the key: %v\n%s", err, out)
	}
	b.d = startDaemon(t, b.root)
	st = b.waitRole(t, RoleStandby)
	if st.HA.Leader != "a@"+a.listen {
		t.Fatalf("the standby says the leader is %q", st.HA.Leader)
	}
	text, _, code := runCLI(t, b.root, "status")
	for _, want := range []string{"role:      standby (node b@", "leader:    a@" + a.listen, "lease:     ttl 3s", "etcd:      " + etcd.Endpoint, "target:    s3://repo/yum"} {
		if code != 0 || !strings.Contains(text, want) {
			t.Errorf("status of the standby lacks %q (exit %d):\n%s", want, code, text)
		}
	}
	// A change asked of the standby is refused, naming the leader.
	out, stderr, code := runCLI(t, b.root, "add", pkgs[0])
	if code != exitCodeBusy || !strings.Contains(stderr, "not the leader (leader: a@"+a.listen+")") {
		t.Fatalf("add on the standby: exit %d\n%s%s", code, out, stderr)
	}
	// Even when no file could be opened: the standby, not the file, is
	// why nothing was done.
	out, stderr, code = runCLI(t, b.root, "add", filepath.Join(src, "missing.rpm"))
	if code != exitCodeBusy || !strings.Contains(stderr, "not the leader (leader: a@"+a.listen+")") {
		t.Fatalf("add of a missing file on the standby: exit %d\n%s%s", code, out, stderr)
	}
	out, _, code = runCLI(t, b.root, "-o", "json", "republish", "main/staging/el/9/x86_64")
	if code != exitCodeBusy || !strings.Contains(out, "not the leader") {
		t.Fatalf("republish on the standby: exit %d\n%s", code, out)
	}

	// A drop-in of the standby waits in its incoming/ (it is b's: b takes
	// it once it leads).
	drop(b, 50, 51)

	// 50 into the leader: 10 first, recorded; then 40, and the leader is
	// killed as soon as its journal holds part of them.
	drop(a, 0, 10)
	waitFor(t, 3*time.Minute, "a's first 10 packages", func() (bool, string) {
		st, err := a.status(t)
		if err != nil {
			return false, err.Error()
		}
		return st.Packages == 10 && st.InFlight == 0, fmt.Sprintf("%d packages, %d in flight", st.Packages, st.InFlight)
	})
	if st, err := b.status(t); err != nil || st.Incoming != 1 || st.Packages != 10 {
		t.Fatalf("the standby's drop-in did not wait: %+v %v", st, err)
	}
	drop(a, 10, 50)
	// The kill comes once a's journal holds signed items it has not
	// recorded yet (placed, published, uploaded or not): the hardest
	// moment, read from the shared journal itself.
	jdb, err := kv.OpenEtcd(context.Background(), kv.EtcdOptions{Endpoints: []string{etcd.Endpoint}, Prefix: "/ha/pair/",
		DialTimeout: 5 * time.Second, MaxTxnOps: etcdtest.MaxTxnOps, MaxRequestBytes: etcdtest.MaxRequestBytes})
	if err != nil {
		t.Fatal(err)
	}
	defer jdb.Close()
	journal := &store{db: jdb}
	states := func() map[string]int {
		items, err := journal.journal()
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, it := range items {
			n[it.Owner+":"+it.State]++
		}
		return n
	}
	var atKill map[string]int
	waitFor(t, 3*time.Minute, "signed items of a not yet recorded", func() (bool, string) {
		atKill = states()
		return atKill["a:"+stateSigned]+atKill["a:"+statePlaced]+atKill["a:"+statePublished] > 0, fmt.Sprint(atKill)
	})
	a.d.kill9()
	killed := time.Now()
	t.Logf("killed a with journal items (owner:state) %v", atKill)

	var took time.Duration
	waitFor(t, 2*time.Minute, "b to lead", func() (bool, string) {
		st, err := b.status(t)
		if err != nil {
			return false, err.Error()
		}
		took = time.Since(killed)
		return st.HA.Role == RoleLeader, st.HA.Role
	})
	t.Logf("b leads %v after a was killed (lease TTL %v; load %s)", took.Round(time.Millisecond), haTTL, loadavg())
	if took > haTTL+5*time.Second {
		t.Errorf("b took %v to lead, more than the TTL %v plus 5s", took, haTTL)
	}

	// 50 into the new leader, once it has taken over: b's tree lacked
	// a's packages, so it fetched them from the bucket, then republished
	// (the store's dirty directories are none).
	before := 0
	fetched := regexp.MustCompile(`"HA: index reloaded from the store".*"fetched_from_target":(\d+)`)
	waitFor(t, 3*time.Minute, "b's takeover to finish", func() (bool, string) {
		m := fetched.FindStringSubmatch(b.d.log())
		if m == nil {
			return false, "no reload yet"
		}
		st, err := b.status(t)
		if err != nil {
			return false, err.Error()
		}
		var list []PackageRecord
		cliJSON(t, b.root, &list, "list")
		before = 0 // a's packages
		for _, p := range list {
			if p.Name < "hapkg050" {
				before++
			}
		}
		return st.Dirty == 0, fmt.Sprintf("fetched %s, %d dirty", m[1], st.Dirty)
	})
	if m := fetched.FindStringSubmatch(b.d.log()); m[1] == "0" || m[1] != fmt.Sprint(before) {
		t.Errorf("b's takeover fetched %s of a's package files from the bucket, want all %d", m[1], before)
	}
	t.Logf("b took over (index, %d files fetched, republished) %v after a was killed", before, time.Since(killed).Round(time.Millisecond))
	drop(b, 51, 100)
	waitFor(t, 5*time.Minute, "b's 50 packages", func() (bool, string) {
		var list []PackageRecord
		cliJSON(t, b.root, &list, "list")
		have := map[string]bool{}
		for _, p := range list {
			have[p.NEVRA] = true
		}
		missing := 0
		for i := 50; i < 100; i++ {
			if !have[fmt.Sprintf("hapkg%03d-1.0-1.el9.x86_64", i)] {
				missing++
			}
		}
		st, err := b.status(t)
		if err != nil {
			return false, err.Error()
		}
		return missing == 0 && st.Incoming == 0, fmt.Sprintf("%d of b's missing, %d incoming", missing, st.Incoming)
	})

	// a comes back as a standby; what it left waits for it.
	a.d = startDaemon(t, a.root)
	st = a.waitRole(t, RoleStandby)
	if st.HA.Leader != "b@"+b.listen {
		t.Errorf("restarted a says the leader is %q", st.HA.Leader)
	}
	if st.Packages >= 100 {
		t.Fatalf("%d packages before a led again: nothing was left to finish", st.Packages)
	}
	left := states()
	if left["a:"+stateSigned]+left["a:"+statePlaced]+left["a:"+statePublished] == 0 {
		t.Fatalf("a's signed items are not in the journal any more: %v", left)
	}
	t.Logf("a back as a standby: %d packages, %d waiting in its incoming/, journal %v", st.Packages, st.Incoming, left)

	// b stops (it resigns: a leads at once) and a finishes its part.
	b.d.stop()
	a.waitRole(t, RoleLeader)
	waitFor(t, 5*time.Minute, "all 100 packages", func() (bool, string) {
		st, err := a.status(t)
		if err != nil {
			return false, err.Error()
		}
		return st.Packages == 100 && st.InFlight == 0 && st.Incoming == 0 && st.Dirty == 0,
			fmt.Sprintf("%d packages, %d in flight, %d incoming, %d dirty", st.Packages, st.InFlight, st.Incoming, st.Dirty)
	})
	b.d = startDaemon(t, b.root)
	b.waitRole(t, RoleStandby)

	// The bucket: each package once in the repodata, each signed.
	const dir = "main/staging/el/9/x86_64"
	var listed []string
	waitFor(t, 2*time.Minute, "the bucket's repodata to list 100 packages", func() (bool, string) {
		var err error
		listed, err = s3PrimaryNames(publicURL, dir)
		if err != nil {
			return false, err.Error()
		}
		return len(listed) >= 100, fmt.Sprintf("%d listed", len(listed))
	})
	count := map[string]int{}
	for _, n := range listed {
		count[n]++
	}
	for i := range 100 {
		n := fmt.Sprintf("hapkg%03d-1.0-1.el9.x86_64", i)
		if count[n] != 1 {
			t.Errorf("the bucket's repodata lists %s %d times", n, count[n])
		}
	}
	if len(listed) != 100 {
		t.Errorf("the bucket's repodata lists %d packages, want 100", len(listed))
	}
	if _, got, err := s3Repodata(publicURL, dir); err != nil || len(got) != 100 {
		t.Fatalf("the bucket's repodata: %d packages served as listed, %v", len(got), err)
	}
	key, code2, err := httpGet(publicURL + PublicKeyFile)
	if err != nil || code2 != 200 {
		t.Fatalf("the served key: HTTP %d %v", code2, err)
	}
	db, kf := t.TempDir(), filepath.Join(t.TempDir(), "key.asc")
	if err := os.WriteFile(kf, key, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("rpmkeys", "--dbpath", db, "--import", kf).CombinedOutput(); err != nil {
		t.Fatalf("rpmkeys --import: %v\n%s", err, out)
	}
	dl := t.TempDir()
	for n := range count {
		body, code, err := httpGet(publicURL + dir + "/" + n + ".rpm")
		if err != nil || code != 200 {
			t.Errorf("%s from the bucket: HTTP %d %v", n, code, err)
			continue
		}
		f := filepath.Join(dl, n+".rpm")
		if err := os.WriteFile(f, body, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("rpmkeys", "--dbpath", db, "--checksig", f).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "digests signatures OK") {
			t.Errorf("rpmkeys --checksig %s: %v\n%s", n, err, out)
		}
	}

	// One sign event per package, each naming one node; both signed.
	var events []Event
	cliJSON(t, a.root, &events, "history")
	signer := map[string][]string{}
	byNode := map[string]int{}
	for _, e := range events {
		if e.Action == EventSign {
			signer[e.NEVRA] = append(signer[e.NEVRA], e.Details["node"])
			byNode[e.Details["node"]]++
		}
	}
	for i := range 100 {
		n := fmt.Sprintf("hapkg%03d-1.0-1.el9.x86_64", i)
		if s := signer[n]; len(s) != 1 || (s[0] != "a" && s[0] != "b") {
			t.Errorf("%s: sign events by %q, want one by a or b", n, s)
		}
	}
	if byNode["a"] == 0 || byNode["b"] < 50 {
		t.Errorf("signed by node: %v; want a's and b's 50 at least", byNode)
	}
	t.Logf("signed by node: %v", byNode)
	if out, stderr, code := runCLI(t, a.root, "history", "--verify"); code != 0 {
		t.Fatalf("history --verify: exit %d\n%s%s", code, out, stderr)
	}

	repofile, stderr, code := runCLI(t, a.root, "repofile", "--channel", "staging")
	if code != 0 || !strings.Contains(repofile, "baseurl="+publicURL) {
		t.Fatalf("repofile: exit %d\n%s%s", code, repofile, stderr)
	}
	a.d.stop()
	b.d.stop()
	// With both daemons stopped, the host has only the bucket.
	h := newELHost(t, repofile)
	want := []string{"hapkg000", "hapkg049", "hapkg050", "hapkg099"}
	out = h.mustDNF(append([]string{"install"}, want...)...)
	for _, line := range strings.Split(out, "\n") {
		if dnfErrorLine.MatchString(line) {
			t.Errorf("dnf printed an error line: %q", line)
		}
	}
	for _, n := range want {
		if got := h.installed(n); got != n+"-1.0-1.el9.x86_64" {
			t.Errorf("installed %q, want %s-1.0-1.el9.x86_64", got, n)
		}
	}
}

// exitCodeBusy is the CLI's exit code 4 (README: a lock is held, or a
// standby was asked for a change).
const exitCodeBusy = 4

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// s3PrimaryNames is every <package> of dir's primary in the bucket, as
// NEVRA, duplicates kept.
func s3PrimaryNames(base, dir string) ([]string, error) {
	raw, code, err := httpGet(base + dir + "/repodata/repomd.xml")
	if err != nil || code != 200 {
		return nil, fmt.Errorf("repomd.xml: HTTP %d %v", code, err)
	}
	md, err := metadata.ParseRepomd(raw)
	if err != nil {
		return nil, err
	}
	for _, rec := range md.Records {
		if rec.Type != "primary" {
			continue
		}
		b, code, err := httpGet(base + dir + "/" + rec.Href)
		if err != nil || code != 200 {
			return nil, fmt.Errorf("%s: HTTP %d %v", rec.Href, code, err)
		}
		var r io.Reader = bytes.NewReader(b)
		switch {
		case len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b:
			gr, err := gzip.NewReader(r)
			if err != nil {
				return nil, err
			}
			r = gr
		case strings.HasSuffix(rec.Href, ".zst"):
			zr, err := zstd.NewReader(r)
			if err != nil {
				return nil, err
			}
			defer zr.Close()
			r = zr
		}
		var p struct {
			Package []repoPackage `xml:"package"`
		}
		if err := xml.NewDecoder(r).Decode(&p); err != nil {
			return nil, fmt.Errorf("%s: %w", rec.Href, err)
		}
		var out []string
		for _, pk := range p.Package {
			out = append(out, pk.NVRA())
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: no primary", dir)
}
