package repo

// End-to-end tests of [publish] target = "s3" against a real S3 server
// (SeaweedFS, internal/s3test): a daemon publishes into the bucket, dnf
// installs from the bucket alone, a reader never sees a repomd.xml that
// names a missing or different object, an outage is caught up, and fsck
// finds and repairs what was taken from the bucket.

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/minio/minio-go/v7"

	"github.com/repoctl/repoctl/internal/s3test"
	"github.com/repoctl/repoctl/metadata"
)

// s3Setup is a weed server with bucket "repo" and a ROOT whose config
// publishes there; hosts use publicURL.
type s3Setup struct {
	srv       *s3test.Server
	root      string
	listen    string
	publicURL string
}

func newS3Setup(t *testing.T, publishExtra string) *s3Setup {
	t.Helper()
	// Anonymous requests, and no probing of a cloud metadata service.
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	srv := s3test.Start(t)
	srv.Bucket("repo")
	s := &s3Setup{srv: srv, root: t.TempDir(), listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		publicURL: srv.Endpoint + "/repo/yum/"}
	cfg := fmt.Sprintf(`[signing]
algo = "ed25519"
[routing]
default = "el/9"
[http]
listen = %q
public_url = %q
[publish]
target = "s3"
%s
[publish.s3]
endpoint = %q
bucket = "repo"
prefix = "yum"
`, s.listen, s.publicURL, publishExtra, srv.Endpoint)
	if err := os.WriteFile(filepath.Join(s.root, ConfigFileName), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *s3Setup) add(t *testing.T, dir, name, version string, args ...string) {
	t.Helper()
	p := lcBuild(t, dir, name, version)
	out, stderr, code := runCLI(t, s.root, append(append([]string{"add"}, args...), p)...)
	if code != 0 || !strings.Contains(out, "added") {
		t.Fatalf("add %s: exit %d\n%s%s", name, code, out, stderr)
	}
}

// httpGet fetches url as a host would.
func httpGet(url string) ([]byte, int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return b, resp.StatusCode, err
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// s3Repodata reads DIR's repomd.xml over HTTP from base and every file it
// names, checking each against its record, then the primary's packages,
// each against its checksum. It returns the sha256 of the repomd.xml read
// (a revision can repeat: a publish takes the clock's, a republish one
// above the last) and the packages.
func s3Repodata(base, dir string) (string, map[string]repoPackage, error) {
	raw, code, err := httpGet(base + dir + "/repodata/repomd.xml")
	if err != nil || code != 200 {
		return "", nil, fmt.Errorf("repomd.xml: HTTP %d %v", code, err)
	}
	md, err := metadata.ParseRepomd(raw)
	if err != nil {
		return "", nil, err
	}
	var primary []byte
	for _, rec := range md.Records {
		b, code, err := httpGet(base + dir + "/" + rec.Href)
		if err != nil || code != 200 {
			return md.Revision, nil, fmt.Errorf("revision %s names %s: HTTP %d %v", md.Revision, rec.Href, code, err)
		}
		if int64(len(b)) != rec.Size || sha256Hex(b) != rec.Checksum {
			return md.Revision, nil, fmt.Errorf("revision %s names %s (%d bytes, %s) but the bucket serves %d bytes, %s",
				md.Revision, rec.Href, rec.Size, rec.Checksum, len(b), sha256Hex(b))
		}
		if rec.Type == "primary" {
			primary = b
		}
	}
	var r io.Reader = bytes.NewReader(primary)
	if zr, err := zstd.NewReader(r); err == nil {
		defer zr.Close()
		r = zr
	}
	if len(primary) > 2 && primary[0] == 0x1f && primary[1] == 0x8b {
		gr, err := gzip.NewReader(bytes.NewReader(primary))
		if err != nil {
			return md.Revision, nil, err
		}
		r = gr
	}
	var p struct {
		Package []repoPackage `xml:"package"`
	}
	if err := xml.NewDecoder(r).Decode(&p); err != nil {
		return md.Revision, nil, fmt.Errorf("revision %s: primary: %w", md.Revision, err)
	}
	id := sha256Hex(raw)
	pkgs := map[string]repoPackage{}
	for _, pk := range p.Package {
		b, code, err := httpGet(base + dir + "/" + pk.Location.Href)
		if err != nil || code != 200 {
			return md.Revision, nil, fmt.Errorf("revision %s lists %s: HTTP %d %v", md.Revision, pk.Location.Href, code, err)
		}
		if sha256Hex(b) != pk.Checksum {
			return md.Revision, nil, fmt.Errorf("revision %s lists %s with sha256 %s, the bucket serves %s", md.Revision, pk.Location.Href, pk.Checksum, sha256Hex(b))
		}
		pkgs[pk.NVRA()] = pk
	}
	return id, pkgs, nil
}

// A daemon with target = "s3" publishes into SeaweedFS; with the daemon
// stopped, a stock dnf host (gpgcheck, repo_gpgcheck,
// skip_if_unavailable=False) installs from the bucket's URL alone, using
// the unmodified `repoctl repofile` output, whose baseurls and gpgkey are
// [http] public_url.
func TestS3PublishDNF(t *testing.T) {
	needTools(t, "dnf", "rpm")
	s := newS3Setup(t, "")
	d := startDaemon(t, s.root)
	in := t.TempDir()
	s.add(t, in, "s3hello", "1.0")
	s.add(t, in, "s3tool", "2.0")
	s.add(t, in, "s3stage", "1.0")
	for _, n := range []string{"s3hello", "s3tool"} {
		if out, stderr, code := runCLI(t, s.root, "promote", n, "--to", "prod", "--yes"); code != 0 {
			t.Fatalf("promote %s: exit %d\n%s%s", n, code, out, stderr)
		}
	}
	repofile, stderr, code := runCLI(t, s.root, "repofile", "--channel", "prod")
	if code != 0 || !strings.Contains(repofile, "baseurl="+s.publicURL+"main/prod/el/$releasever/$basearch/\n") ||
		!strings.Contains(repofile, "gpgkey="+s.publicURL+PublicKeyFile) || strings.Contains(repofile, s.listen) {
		t.Fatalf("repofile: exit %d\n%s%s", code, repofile, stderr)
	}
	d.stop()

	key, code, err := httpGet(s.publicURL + PublicKeyFile)
	local, lerr := os.ReadFile(filepath.Join(s.root, "repo", PublicKeyFile))
	if err != nil || code != 200 || lerr != nil || !bytes.Equal(key, local) {
		t.Fatalf("the bucket's %s: HTTP %d %v; want the served key file (%v)", PublicKeyFile, code, err, lerr)
	}
	_, prod, err := s3Repodata(s.publicURL, "main/prod/el/9/x86_64")
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(keysOf(prod)); !slices.Equal(got, []string{"s3hello-1.0-1.el9.x86_64", "s3tool-2.0-1.el9.x86_64"}) {
		t.Errorf("the bucket's prod repodata lists %v", got)
	}

	h := newELHost(t, repofile)
	out := h.mustDNF("-q", "repoquery", "--qf", "NEVRA %{name}-%{version}-%{release}.%{arch}")
	var got []string
	for _, line := range strings.Split(out, "\n") {
		if n, ok := strings.CutPrefix(line, "NEVRA "); ok {
			got = append(got, n)
		}
	}
	if !slices.Equal(slices.Sorted(slices.Values(got)), []string{"s3hello-1.0-1.el9.x86_64", "s3tool-2.0-1.el9.x86_64"}) {
		t.Errorf("dnf offers %v from the bucket", got)
	}
	out = h.mustDNF("install", "s3hello", "s3tool")
	for _, line := range strings.Split(out, "\n") {
		if dnfErrorLine.MatchString(line) {
			t.Errorf("dnf printed an error line: %q", line)
		}
	}
	for _, n := range []string{"s3hello-1.0-1.el9.x86_64", "s3tool-2.0-1.el9.x86_64"} {
		name, _, _ := strings.Cut(n, "-")
		if got := h.installed(name); got != n {
			t.Errorf("installed %q, want %s", got, n)
		}
	}
	if _, err := h.dnf("install", "s3stage"); err == nil {
		t.Error("a staging-only package installed from prod")
	}
}

func keysOf[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// While 30 republishes (every third after a new package) go to the
// bucket, a reader fetching repomd.xml and every file it names, and every
// package the primary lists, never finds one missing or different. After
// each republish the writer waits for one more full pass of the reader,
// so the reader sees every revision while the next uploads run.
func TestS3ReaderDuringRepublish(t *testing.T) {
	s := newS3Setup(t, "")
	startDaemon(t, s.root)
	in := t.TempDir()
	const dir = "main/staging/el/9/x86_64"
	s.add(t, in, "rdpkg0", "1.0")

	var passes atomic.Int64
	var mu sync.Mutex
	var problems []string
	revisions := map[string]bool{} // repomd.xml contents seen
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			rev, _, err := s3Repodata(s.publicURL, dir)
			mu.Lock()
			if err != nil {
				problems = append(problems, err.Error())
			} else {
				revisions[rev] = true
			}
			mu.Unlock()
			passes.Add(1)
		}
	}()
	for i := 1; i <= 30; i++ {
		if i%3 == 0 {
			s.add(t, in, fmt.Sprintf("rdpkg%d", i), "1.0")
		}
		out, stderr, code := runCLI(t, s.root, "republish", dir)
		if code != 0 {
			t.Fatalf("republish %d: exit %d\n%s%s", i, code, out, stderr)
		}
		seen := passes.Load()
		waitFor(t, 2*time.Minute, "a full pass of the reader", func() (bool, string) {
			return passes.Load() >= seen+2, fmt.Sprint(passes.Load())
		})
	}
	close(stop)
	<-done
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	if len(revisions) < 30 {
		t.Errorf("the reader saw %d repomd.xml, want at least 30 (one per republish)", len(revisions))
	}
	_, pkgs, err := s3Repodata(s.publicURL, dir)
	if err != nil || len(pkgs) != 11 {
		t.Errorf("the bucket lists %d packages (%v), want 11", len(pkgs), err)
	}
	t.Logf("%d reader passes, %d repomd.xml", passes.Load(), len(revisions))
}

// With the bucket down, a change still succeeds locally; /readyz names
// the directory; once the bucket is back the daemon catches up on its
// own, and superseded objects go only after the grace period.
func TestS3OutageAndGrace(t *testing.T) {
	s := newS3Setup(t, "grace = \"3s\"")
	d := startDaemon(t, s.root)
	in := t.TempDir()
	const dir = "main/staging/el/9/x86_64"
	s.add(t, in, "outpkg1", "1.0")
	raw, _, err := httpGet(s.publicURL + dir + "/repodata/repomd.xml")
	if err != nil {
		t.Fatal(err)
	}
	before, err := metadata.ParseRepomd(raw)
	if err != nil {
		t.Fatal(err)
	}

	s.srv.Stop()
	s.add(t, in, "outpkg2", "1.0")
	readyz := func() (int, Readiness) {
		b, code, err := httpGet("http://" + s.listen + "/readyz")
		var rd Readiness
		if err == nil {
			json.Unmarshal(b, &rd)
		}
		return code, rd
	}
	code, rd := readyz()
	found := false
	for _, why := range rd.Reasons {
		found = found || (why.Check == "publish" && why.Dir == dir && strings.Contains(why.Message, "s3://repo/yum/"))
	}
	if code != http.StatusServiceUnavailable || !found {
		t.Errorf("/readyz during the outage: %d %+v, want 503 naming %s", code, rd, dir)
	}
	// A daemon (re)started during the outage starts, and knows the
	// directory is pending.
	d.stop()
	startDaemon(t, s.root)
	if code, rd := readyz(); code != http.StatusServiceUnavailable || len(rd.Reasons) == 0 || rd.Reasons[0].Dir != dir {
		t.Errorf("/readyz of a daemon started during the outage: %d %+v, want 503 naming %s", code, rd, dir)
	}

	// Nothing can be retired in the bucket before it is back, so t0,
	// taken before the restart (which returns only once the server
	// answers, by when the daemon may already have caught up), is a
	// lower bound of when the grace began.
	t0 := time.Now()
	s.srv.Restart()
	waitFor(t, 3*time.Minute, "the bucket to list outpkg2 and /readyz to say ready", func() (bool, string) {
		_, pkgs, err := s3Repodata(s.publicURL, dir)
		if err != nil {
			return false, err.Error()
		}
		if _, ok := pkgs["outpkg2-1.0-1.el9.x86_64"]; !ok {
			return false, fmt.Sprint(slices.Sorted(keysOf(pkgs)))
		}
		code, rd := readyz()
		return code == 200, fmt.Sprintf("readyz %d %+v", code, rd)
	})
	// The repodata outpkg2 superseded stays for 3s after the new
	// repomd.xml went up, then goes.
	old := ""
	for _, rec := range before.Records {
		if rec.Type == "primary" {
			old = s.publicURL + dir + "/" + rec.Href
		}
	}
	var gone time.Time
	waitFor(t, 2*time.Minute, "the superseded primary to be deleted", func() (bool, string) {
		_, code, err := httpGet(old)
		if err == nil && code == http.StatusNotFound {
			gone = time.Now()
			return true, ""
		}
		return false, fmt.Sprint(code, err)
	})
	if d := gone.Sub(t0); d < 3*time.Second {
		t.Errorf("the superseded primary went %v after the catch-up began, before the 3s grace", d)
	}
	if out, stderr, code := runCLI(t, s.root, "fsck"); code != 0 {
		t.Errorf("fsck after the catch-up: exit %d\n%s%s", code, out, stderr)
	}
}

// fsck compares the bucket with the store: an object deleted or replaced
// behind repoctl's back is a finding (exit 3), which --repair uploads
// again.
func TestS3Fsck(t *testing.T) {
	s := newS3Setup(t, "")
	startDaemon(t, s.root)
	in := t.TempDir()
	const dir = "main/staging/el/9/x86_64"
	s.add(t, in, "fsckpkg", "1.0")
	s.add(t, in, "fsckother", "1.0")
	if out, stderr, code := runCLI(t, s.root, "fsck"); code != 0 {
		t.Fatalf("fsck of a good bucket: exit %d\n%s%s", code, out, stderr)
	}
	raw, _, err := httpGet(s.publicURL + dir + "/repodata/repomd.xml")
	if err != nil {
		t.Fatal(err)
	}
	md, err := metadata.ParseRepomd(raw)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pkgKey := "yum/" + dir + "/fsckpkg-1.0-1.el9.x86_64.rpm"
	if err := s.srv.Client.RemoveObject(ctx, "repo", pkgKey, minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	bad := []byte("not the primary")
	repodataKey := "yum/" + dir + "/" + md.Records[0].Href
	if _, err := s.srv.Client.PutObject(ctx, "repo", repodataKey, bytes.NewReader(bad), int64(len(bad)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	// A failing command's JSON is {"error": …, "result": …}.
	var res struct {
		Result FsckReport `json:"result"`
	}
	out, stderr, code := runCLI(t, s.root, "-o", "json", "fsck")
	rep := &res.Result
	if code != 3 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("fsck of a damaged bucket: exit %d, want 3\n%s%s", code, out, stderr)
	}
	var got []string
	for _, f := range rep.Findings {
		got = append(got, f.Kind+" "+f.File)
	}
	want := []string{FsckTargetModified + " " + dir + "/" + md.Records[0].Href, FsckTargetMissing + " " + dir + "/fsckpkg-1.0-1.el9.x86_64.rpm"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("fsck found %v, want %v\n%s", got, want, out)
	}
	out, stderr, code = runCLI(t, s.root, "-o", "json", "fsck", "--repair")
	var fixed FsckReport
	if code != 0 || json.Unmarshal([]byte(out), &fixed) != nil || len(fixed.Findings) != 2 {
		t.Fatalf("fsck --repair: exit %d\n%s%s", code, out, stderr)
	}
	for _, f := range fixed.Findings {
		if !f.Repaired || !strings.HasPrefix(f.Repair, "synced ") {
			t.Errorf("after --repair: %+v", f)
		}
	}
	if out, stderr, code := runCLI(t, s.root, "fsck"); code != 0 {
		t.Fatalf("fsck after the repair: exit %d\n%s%s", code, out, stderr)
	}
	if _, pkgs, err := s3Repodata(s.publicURL, dir); err != nil || len(pkgs) != 2 {
		t.Fatalf("the bucket after the repair: %d packages, %v", len(pkgs), err)
	}
}

// Without [publish] nothing changes: no mirror state, no bucket.
func TestLocalTargetDefault(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(lcConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p := lcBuild(t, t.TempDir(), "localpkg", "1.0")
	if res, err := r.Add(ctx, []string{p}, AddOptions{}); err != nil || res[0].Action != ActionAdded {
		t.Fatalf("%+v %v", res, err)
	}
	if r.tree.mirror != nil || r.Config().Publish.Target != TargetLocal {
		t.Error("a mirror without [publish] target")
	}
	if _, err := os.Stat(filepath.Join(root, MirrorStateFile)); !os.IsNotExist(err) {
		t.Errorf("%s exists with the local target: %v", MirrorStateFile, err)
	}
	if p, err := r.MirrorPending(); p != nil || err != nil {
		t.Errorf("pending %v %v", p, err)
	}
}
