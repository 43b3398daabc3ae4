package target

// The conformance suite: every Target, and a Mirror on every Target, must
// pass it. It runs against a local directory and a real S3 server
// (SeaweedFS, started by the test; see internal/s3test).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/s3test"
)

// impl makes a fresh, empty target of one kind for each test.
type impl struct {
	name string
	mk   func(t *testing.T) Target
}

func impls(t *testing.T) []impl {
	var srv *s3test.Server
	var once sync.Once
	var n atomic.Int64
	return []impl{
		{"dir", func(t *testing.T) Target {
			d, err := OpenDir(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			return d
		}},
		{"s3", func(t *testing.T) Target {
			// One server for the suite (it takes seconds to start), a
			// bucket and prefix per test.
			once.Do(func() { srv = s3test.Start(suiteT) })
			if srv == nil {
				t.Fatal("no S3 server")
			}
			b := srv.Bucket(fmt.Sprintf("suite-%d", n.Add(1)))
			s, err := OpenS3(context.Background(), S3Config{Endpoint: srv.Endpoint, Bucket: b, Prefix: "pre/fix"})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
	}
}

// suiteT owns the shared S3 server, so it outlives each subtest.
var suiteT *testing.T

func TestConformance(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	suiteT = t
	for _, im := range impls(t) {
		t.Run(im.name, func(t *testing.T) {
			for _, c := range suite {
				t.Run(c.name, func(t *testing.T) { c.f(t, im.mk(t)) })
			}
		})
	}
}

var suite = []struct {
	name string
	f    func(t *testing.T, tg Target)
}{
	{"PutGetStat", testPutGetStat},
	{"NotExist", testNotExist},
	{"RePut", testRePut},
	{"Delete", testDelete},
	{"BadKeys", testBadKeys},
	{"Mismatch", testMismatch},
	{"Copy", testCopy},
	{"MirrorOrder", testMirrorOrder},
	{"MirrorSkip", testMirrorSkip},
	{"MirrorGrace", testMirrorGrace},
	{"MirrorRetry", testMirrorRetry},
	{"MirrorFailure", testMirrorFailure},
	{"MirrorCheck", testMirrorCheck},
	{"MirrorCopy", testMirrorCopy},
	{"MirrorNewTarget", testMirrorNewTarget},
}

var ctx = context.Background()

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func put(t *testing.T, tg Target, key string, b []byte) {
	t.Helper()
	if err := tg.Put(ctx, key, bytes.NewReader(b), int64(len(b)), sum(b), PutOptions{}); err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
}

func get(t *testing.T, tg Target, key string) ([]byte, error) {
	t.Helper()
	rc, err := tg.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func mustGet(t *testing.T, tg Target, key string) []byte {
	t.Helper()
	b, err := get(t, tg, key)
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	return b
}

func testPutGetStat(t *testing.T, tg Target) {
	body := bytes.Repeat([]byte("rpm bytes "), 5000)
	put(t, tg, "main/prod/el/9/x86_64/a-1-1.el9.x86_64.rpm", body)
	if got := mustGet(t, tg, "main/prod/el/9/x86_64/a-1-1.el9.x86_64.rpm"); !bytes.Equal(got, body) {
		t.Fatalf("get returned %d bytes, put %d", len(got), len(body))
	}
	info, err := tg.Stat(ctx, "main/prod/el/9/x86_64/a-1-1.el9.x86_64.rpm")
	if err != nil || info.Size != int64(len(body)) || info.SHA256 != sum(body) {
		t.Fatalf("stat: %+v, %v; want %d bytes, %s", info, err, len(body), sum(body))
	}
	empty := []byte{}
	put(t, tg, "top-level-empty", empty)
	if info, err := tg.Stat(ctx, "top-level-empty"); err != nil || info.Size != 0 || info.SHA256 != sum(empty) {
		t.Fatalf("stat of an empty object: %+v, %v", info, err)
	}
}

func testNotExist(t *testing.T, tg Target) {
	if _, err := tg.Get(ctx, "no/such/object"); !errors.Is(err, ErrNotExist) {
		t.Errorf("get of a missing object: %v, want ErrNotExist", err)
	}
	if _, err := tg.Stat(ctx, "no/such/object"); !errors.Is(err, ErrNotExist) {
		t.Errorf("stat of a missing object: %v, want ErrNotExist", err)
	}
	if err := tg.Delete(ctx, "no/such/object"); err != nil {
		t.Errorf("delete of a missing object: %v", err)
	}
	put(t, tg, "d/file", []byte("x"))
	// A "directory" of objects is no object.
	if _, err := tg.Get(ctx, "d"); !errors.Is(err, ErrNotExist) {
		t.Errorf("get of a key prefix: %v, want ErrNotExist", err)
	}
}

func testRePut(t *testing.T, tg Target) {
	put(t, tg, "k/repomd.xml", []byte("one"))
	put(t, tg, "k/repomd.xml", []byte("one"))
	if got := mustGet(t, tg, "k/repomd.xml"); string(got) != "one" {
		t.Fatalf("after putting the same twice: %q", got)
	}
	put(t, tg, "k/repomd.xml", []byte("two, longer"))
	if got := mustGet(t, tg, "k/repomd.xml"); string(got) != "two, longer" {
		t.Fatalf("after replacing: %q", got)
	}
	if info, err := tg.Stat(ctx, "k/repomd.xml"); err != nil || info.SHA256 != sum([]byte("two, longer")) {
		t.Fatalf("stat after replacing: %+v %v", info, err)
	}
}

func testDelete(t *testing.T, tg Target) {
	put(t, tg, "a/b/c.rpm", []byte("c"))
	put(t, tg, "a/b/d.rpm", []byte("d"))
	if err := tg.Delete(ctx, "a/b/c.rpm"); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Get(ctx, "a/b/c.rpm"); !errors.Is(err, ErrNotExist) {
		t.Errorf("deleted object: %v, want ErrNotExist", err)
	}
	if got := mustGet(t, tg, "a/b/d.rpm"); string(got) != "d" {
		t.Errorf("the other object: %q", got)
	}
	if err := tg.Delete(ctx, "a/b/c.rpm"); err != nil {
		t.Errorf("deleting twice: %v", err)
	}
}

var badKeys = []string{"", "/abs", "../up", "a/../b", "a//b", "a/", ".hidden", "a/.repodata.new/x",
	"a/./b", "a\\b", "a\x00b", "a\nb", strings.Repeat("k", MaxKeyLen+1)}

func testBadKeys(t *testing.T, tg Target) {
	for _, k := range badKeys {
		if err := tg.Put(ctx, k, strings.NewReader("x"), 1, sum([]byte("x")), PutOptions{}); !errors.Is(err, ErrBadKey) {
			t.Errorf("put %q: %v, want ErrBadKey", k, err)
		}
		if _, err := tg.Get(ctx, k); !errors.Is(err, ErrBadKey) {
			t.Errorf("get %q: %v, want ErrBadKey", k, err)
		}
		if _, err := tg.Stat(ctx, k); !errors.Is(err, ErrBadKey) {
			t.Errorf("stat %q: %v, want ErrBadKey", k, err)
		}
		if err := tg.Delete(ctx, k); !errors.Is(err, ErrBadKey) {
			t.Errorf("delete %q: %v, want ErrBadKey", k, err)
		}
	}
}

// Content that is not what it was announced as never lands, not even
// replacing a good object.
func testMismatch(t *testing.T, tg Target) {
	good := []byte("the good bytes")
	put(t, tg, "m/pkg.rpm", good)
	bad := []byte("the evil bytes")
	for _, c := range []struct {
		name string
		body io.Reader
		size int64
	}{
		{"wrong sha256", bytes.NewReader(bad), int64(len(bad))},
		{"short body", bytes.NewReader(good[:5]), int64(len(good))},
		{"long body", bytes.NewReader(append(append([]byte{}, good...), 'x')), int64(len(good))},
	} {
		// A long body may be cut at the announced size (its first bytes
		// are the announced content); the others must fail.
		if err := tg.Put(ctx, "m/pkg.rpm", c.body, c.size, sum(good), PutOptions{}); err == nil && c.name != "long body" {
			t.Errorf("%s: put succeeded", c.name)
		}
		if got := mustGet(t, tg, "m/pkg.rpm"); !bytes.Equal(got, good) {
			t.Errorf("%s: the object now holds %q", c.name, got)
		}
		if err := tg.Put(ctx, "m/new.rpm", bytes.NewReader(bad), int64(len(bad)), sum(good), PutOptions{}); !errors.Is(err, ErrMismatch) {
			t.Errorf("%s: put of a new key: %v, want ErrMismatch", c.name, err)
		}
		if _, err := tg.Get(ctx, "m/new.rpm"); !errors.Is(err, ErrNotExist) {
			t.Errorf("%s: a mismatched new object landed: %v", c.name, err)
		}
	}
}

func testCopy(t *testing.T, tg Target) {
	c, ok := tg.(Copier)
	if !ok {
		t.Fatalf("%T is no Copier", tg)
	}
	body := []byte("promoted package")
	put(t, tg, "main/staging/el/9/x86_64/p.rpm", body)
	if err := c.Copy(ctx, "main/staging/el/9/x86_64/p.rpm", "main/prod/el/9/x86_64/p.rpm", PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, tg, "main/prod/el/9/x86_64/p.rpm"); !bytes.Equal(got, body) {
		t.Fatalf("copy holds %q", got)
	}
	if info, err := tg.Stat(ctx, "main/prod/el/9/x86_64/p.rpm"); err != nil || info.SHA256 != sum(body) {
		t.Fatalf("stat of the copy: %+v %v", info, err)
	}
	if err := c.Copy(ctx, "main/staging/el/9/x86_64/none.rpm", "main/prod/el/9/x86_64/none.rpm", PutOptions{}); err == nil {
		t.Error("copy of a missing object succeeded")
	}
}

// fakeDir is a repository directory in memory: the manifest a publish
// of these packages and this repodata generation would give.
type fakeDir struct {
	dir      string
	packages map[string][]byte // file name → content
	gen      int               // repodata generation
}

func obj(key string, b []byte) Object {
	return Object{Key: key, Size: int64(len(b)), SHA256: sum(b), Open: func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}}
}

func (f *fakeDir) manifest() DirManifest {
	man := DirManifest{Dir: f.dir}
	var names []string
	for n := range f.packages {
		names = append(names, n)
	}
	slices.Sort(names)
	var listing strings.Builder
	for _, n := range names {
		man.Packages = append(man.Packages, obj(f.dir+"/"+n, f.packages[n]))
		fmt.Fprintf(&listing, "%s %s\n", n, sum(f.packages[n]))
	}
	var repomd strings.Builder
	fmt.Fprintf(&repomd, "revision %d\n", f.gen)
	for _, typ := range []string{"primary", "filelists", "other"} {
		b := []byte(fmt.Sprintf("%s gen %d\n%s", typ, f.gen, listing.String()))
		key := f.dir + "/repodata/" + sum(b) + "-" + typ + ".xml.zst"
		man.Repodata = append(man.Repodata, obj(key, b))
		fmt.Fprintf(&repomd, "%s %s %d\n", strings.TrimPrefix(key, f.dir+"/"), sum(b), len(b))
	}
	rm := []byte(repomd.String())
	man.Repomd = obj(f.dir+"/repodata/repomd.xml", rm)
	sig := obj(f.dir+"/repodata/repomd.xml.asc", []byte("signature of "+sum(rm)))
	man.Signature = &sig
	return man
}

// recorder is a Target that logs each put and checks, as repomd.xml goes
// up, that everything the manifest names is already readable.
type recorder struct {
	Target
	mu    sync.Mutex
	puts  []string
	onPut func(key string) error
}

func (r *recorder) Put(ctx context.Context, key string, body io.Reader, size int64, sum string, o PutOptions) error {
	if r.onPut != nil {
		if err := r.onPut(key); err != nil {
			return err
		}
	}
	if err := r.Target.Put(ctx, key, body, size, sum, o); err != nil {
		return err
	}
	r.mu.Lock()
	r.puts = append(r.puts, key)
	r.mu.Unlock()
	return nil
}

func (r *recorder) Copy(ctx context.Context, src, dst string, o PutOptions) error {
	if err := r.Target.(Copier).Copy(ctx, src, dst, o); err != nil {
		return err
	}
	r.mu.Lock()
	r.puts = append(r.puts, "copy:"+dst)
	r.mu.Unlock()
	return nil
}

func (r *recorder) taken() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.puts
	r.puts = nil
	return out
}

func openMirror(t *testing.T, tg Target, opts ...MirrorOption) *Mirror {
	t.Helper()
	m, err := OpenMirror(tg, filepath.Join(t.TempDir(), "state.db"), append([]MirrorOption{WithRetry(3, time.Millisecond, 10*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func phase(key string) int {
	switch {
	case strings.HasSuffix(key, "/repomd.xml"):
		return 3
	case strings.HasSuffix(key, "/repomd.xml.asc"):
		return 2
	case strings.Contains(key, "/repodata/"):
		return 1
	}
	return 0
}

// Objects go up packages, repodata, signature, repomd.xml; when
// repomd.xml goes up every object it and the package list name is
// already readable from the target itself.
func testMirrorOrder(t *testing.T, tg Target) {
	rec := &recorder{Target: tg}
	m := openMirror(t, rec, WithParallel(4))
	f := &fakeDir{dir: "main/prod/el/9/x86_64", packages: map[string][]byte{}}
	for i := range 12 {
		f.packages[fmt.Sprintf("p%02d-1-1.el9.x86_64.rpm", i)] = bytes.Repeat([]byte{byte(i)}, 1000+i)
	}
	for gen := 1; gen <= 3; gen++ {
		f.gen = gen
		f.packages[fmt.Sprintf("new%d-1-1.el9.x86_64.rpm", gen)] = []byte(fmt.Sprintf("new package %d", gen))
		man := f.manifest()
		rec.onPut = func(key string) error {
			if phase(key) != 3 {
				return nil
			}
			for _, o := range man.all() {
				if o.Key == key {
					continue
				}
				info, err := tg.Stat(ctx, o.Key)
				if err != nil || info.Size != o.Size || info.SHA256 != o.SHA256 {
					t.Errorf("gen %d: repomd.xml goes up while %q is %+v, %v", gen, o.Key, info, err)
				}
			}
			return nil
		}
		if _, err := m.SyncDir(ctx, man); err != nil {
			t.Fatal(err)
		}
		puts := rec.taken()
		for i := 1; i < len(puts); i++ {
			if phase(puts[i]) < phase(puts[i-1]) {
				t.Errorf("gen %d: %q went up after %q", gen, puts[i], puts[i-1])
			}
		}
		if len(puts) == 0 || phase(puts[len(puts)-1]) != 3 {
			t.Errorf("gen %d: repomd.xml is not last: %v", gen, puts)
		}
		for _, o := range man.all() {
			if got := mustGet(t, tg, o.Key); sum(got) != o.SHA256 {
				t.Errorf("gen %d: %q holds other content", gen, o.Key)
			}
		}
	}
}

// A second sync of the same directory puts nothing and makes no request;
// one changed package puts that package and the new metadata only.
func testMirrorSkip(t *testing.T, tg Target) {
	rec := &recorder{Target: tg}
	m := openMirror(t, rec)
	f := &fakeDir{dir: "main/staging/el/9/x86_64", packages: map[string][]byte{}, gen: 1}
	for i := range 20 {
		f.packages[fmt.Sprintf("p%02d.rpm", i)] = []byte(fmt.Sprintf("package %d", i))
	}
	res, err := m.SyncDir(ctx, f.manifest())
	if err != nil || res.Uploaded != 25 {
		t.Fatalf("first sync: %+v, %v; want 25 uploads", res, err)
	}
	rec.taken()
	before := m.Requests()
	res, err = m.SyncDir(ctx, f.manifest())
	if err != nil || res.Uploaded != 0 || res.Skipped != 25 || len(rec.taken()) != 0 || m.Requests() != before {
		t.Fatalf("unchanged sync: %+v, %v, %d requests; want everything skipped and no request", res, err, m.Requests()-before)
	}
	f.gen = 2
	f.packages["added.rpm"] = []byte("the added package")
	bytesBefore, _ := m.Uploaded()
	res, err = m.SyncDir(ctx, f.manifest())
	if err != nil {
		t.Fatal(err)
	}
	puts := rec.taken()
	slices.Sort(puts)
	man := f.manifest()
	var want []string
	want = append(want, f.dir+"/added.rpm")
	for _, o := range man.Repodata {
		want = append(want, o.Key)
	}
	want = append(want, f.dir+"/repodata/repomd.xml", f.dir+"/repodata/repomd.xml.asc")
	slices.Sort(want)
	if !slices.Equal(puts, want) || res.Uploaded != 6 || res.Skipped != 20 || res.Retired != 3 {
		t.Errorf("one added package: put %v (%+v), want %v", puts, res, want)
	}
	var wantBytes int64
	for _, o := range man.all() {
		if slices.Contains(want, o.Key) {
			wantBytes += o.Size
		}
	}
	if got, _ := m.Uploaded(); got-bytesBefore != wantBytes || res.Bytes != wantBytes {
		t.Errorf("uploaded %d bytes (result %d), want %d", got-bytesBefore, res.Bytes, wantBytes)
	}
}

// Superseded repodata and removed packages stay for the grace period
// and go after it; what is current never goes.
func testMirrorGrace(t *testing.T, tg Target) {
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix())
	m := openMirror(t, tg, WithGrace(time.Hour), WithClock(func() time.Time { return time.Unix(now.Load(), 0) }))
	f := &fakeDir{dir: "main/prod/el/9/x86_64", packages: map[string][]byte{"a.rpm": []byte("a"), "b.rpm": []byte("b")}, gen: 1}
	old := f.manifest()
	if _, err := m.SyncDir(ctx, old); err != nil {
		t.Fatal(err)
	}
	delete(f.packages, "b.rpm")
	f.gen = 2
	cur := f.manifest()
	res, err := m.SyncDir(ctx, cur)
	if err != nil || res.Retired != 4 || res.Deleted != 0 {
		t.Fatalf("second generation: %+v, %v; want 4 retired (3 repodata files, b.rpm), none deleted", res, err)
	}
	gone := []string{f.dir + "/b.rpm"}
	for _, o := range old.Repodata {
		gone = append(gone, o.Key)
	}
	for _, k := range gone {
		if _, err := get(t, tg, k); err != nil {
			t.Errorf("%q within its grace period: %v", k, err)
		}
	}
	now.Add(3599)
	if n, err := m.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("sweep before the grace ended: %d, %v", n, err)
	}
	now.Add(1)
	if n, err := m.Sweep(ctx); err != nil || n != 4 {
		t.Fatalf("sweep after the grace: %d, %v; want 4", n, err)
	}
	for _, k := range gone {
		if _, err := get(t, tg, k); !errors.Is(err, ErrNotExist) {
			t.Errorf("%q after its grace period: %v, want gone", k, err)
		}
	}
	for _, o := range cur.all() {
		if _, err := get(t, tg, o.Key); err != nil {
			t.Errorf("current %q: %v", o.Key, err)
		}
	}
	// A package taken out and put back within the grace period is
	// neither uploaded again nor deleted.
	delete(f.packages, "a.rpm")
	f.gen = 3
	if _, err := m.SyncDir(ctx, f.manifest()); err != nil {
		t.Fatal(err)
	}
	now.Add(1800)
	f.packages["a.rpm"] = []byte("a")
	f.gen = 4
	res, err = m.SyncDir(ctx, f.manifest())
	if err != nil || res.Uploaded != 5 {
		t.Fatalf("a.rpm back: %+v, %v; want only the 5 metadata objects uploaded", res, err)
	}
	now.Add(7200)
	if _, err := m.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := get(t, tg, f.dir+"/a.rpm"); err != nil {
		t.Errorf("a.rpm, current again, was deleted: %v", err)
	}
}

// flaky fails the first tries of every put.
type flaky struct {
	Target
	mu    sync.Mutex
	tries map[string]int
	fails int
}

func (f *flaky) Put(ctx context.Context, key string, body io.Reader, size int64, sum string, o PutOptions) error {
	f.mu.Lock()
	f.tries[key]++
	n := f.tries[key]
	f.mu.Unlock()
	if n <= f.fails {
		io.Copy(io.Discard, io.LimitReader(body, 10)) // a transfer that broke off
		return fmt.Errorf("injected failure %d of %q", n, key)
	}
	return f.Target.Put(ctx, key, body, size, sum, o)
}

// Failed puts are retried (each try reading the content afresh) until
// they succeed.
func testMirrorRetry(t *testing.T, tg Target) {
	fl := &flaky{Target: tg, tries: map[string]int{}, fails: 2}
	m := openMirror(t, fl)
	f := &fakeDir{dir: "main/prod/el/9/x86_64", packages: map[string][]byte{"a.rpm": []byte("aaaa"), "b.rpm": []byte("bbbb")}, gen: 1}
	res, err := m.SyncDir(ctx, f.manifest())
	if err != nil || res.Uploaded != 7 {
		t.Fatalf("sync with flaky puts: %+v, %v", res, err)
	}
	for k, n := range fl.tries {
		if n != 3 {
			t.Errorf("%q tried %d times, want 3", k, n)
		}
	}
	for _, o := range f.manifest().all() {
		if got := mustGet(t, tg, o.Key); sum(got) != o.SHA256 {
			t.Errorf("%q holds other content", o.Key)
		}
	}
}

// A sync that fails in the repodata phase leaves the old repomd.xml
// served; the next sync puts only what is left.
func testMirrorFailure(t *testing.T, tg Target) {
	var broken atomic.Bool
	rec := &recorder{Target: tg, onPut: func(key string) error {
		if broken.Load() && phase(key) == 1 {
			return errors.New("injected outage")
		}
		return nil
	}}
	m := openMirror(t, rec)
	f := &fakeDir{dir: "main/prod/el/9/x86_64", packages: map[string][]byte{"a.rpm": []byte("a")}, gen: 1}
	if _, err := m.SyncDir(ctx, f.manifest()); err != nil {
		t.Fatal(err)
	}
	oldRepomd := mustGet(t, tg, f.dir+"/repodata/repomd.xml")
	rec.taken()
	broken.Store(true)
	f.packages["b.rpm"] = []byte("b")
	f.gen = 2
	if _, err := m.SyncDir(ctx, f.manifest()); err == nil {
		t.Fatal("sync during an outage succeeded")
	}
	if got := mustGet(t, tg, f.dir+"/repodata/repomd.xml"); !bytes.Equal(got, oldRepomd) {
		t.Errorf("repomd.xml changed although its repodata did not go up: %q", got)
	}
	for _, o := range (&fakeDir{dir: f.dir, packages: map[string][]byte{"a.rpm": []byte("a")}, gen: 1}).manifest().Repodata {
		if _, err := get(t, tg, o.Key); err != nil {
			t.Errorf("old %q gone after a failed sync: %v", o.Key, err)
		}
	}
	if puts := rec.taken(); !slices.Equal(puts, []string{f.dir + "/b.rpm"}) {
		t.Errorf("during the outage: put %v, want only b.rpm", puts)
	}
	broken.Store(false)
	res, err := m.SyncDir(ctx, f.manifest())
	if err != nil || res.Uploaded != 5 || res.Skipped != 2 {
		t.Fatalf("after the outage: %+v, %v; want 5 uploads (3 repodata, signature, repomd.xml), a.rpm and b.rpm skipped", res, err)
	}
	if got := mustGet(t, tg, f.dir+"/repodata/repomd.xml"); sum(got) != f.manifest().Repomd.SHA256 {
		t.Error("repomd.xml is not the new one")
	}
}

// Check finds objects deleted or replaced behind the mirror's back;
// Forget and a sync repair them.
func testMirrorCheck(t *testing.T, tg Target) {
	m := openMirror(t, tg)
	f := &fakeDir{dir: "main/prod/el/9/x86_64", packages: map[string][]byte{"a.rpm": []byte("a"), "b.rpm": []byte("b")}, gen: 1}
	man := f.manifest()
	if _, err := m.SyncDir(ctx, man); err != nil {
		t.Fatal(err)
	}
	key := obj("RPM-GPG-KEY-repoctl", []byte("public key"))
	if _, err := m.SyncFiles(ctx, []Object{key}); err != nil {
		t.Fatal(err)
	}
	if probs, err := m.Check(ctx, []DirManifest{man}, []Object{key}); err != nil || len(probs) != 0 {
		t.Fatalf("check of a good mirror: %v, %v", probs, err)
	}
	if err := tg.Delete(ctx, f.dir+"/a.rpm"); err != nil {
		t.Fatal(err)
	}
	put(t, tg, f.dir+"/repodata/repomd.xml", []byte("tampered"))
	put(t, tg, f.dir+"/b.rpm", []byte("B"))
	probs, err := m.Check(ctx, []DirManifest{man}, []Object{key})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range probs {
		got = append(got, p.Kind+" "+strings.TrimPrefix(p.Key, f.dir+"/"))
	}
	if want := []string{"missing a.rpm", "modified b.rpm", "modified repodata/repomd.xml"}; !slices.Equal(got, want) {
		t.Fatalf("check found %v, want %v", got, want)
	}
	var keys []string
	for _, p := range probs {
		keys = append(keys, p.Key)
	}
	if err := m.Forget(keys); err != nil {
		t.Fatal(err)
	}
	res, err := m.SyncDir(ctx, man)
	if err != nil || res.Uploaded != 3 {
		t.Fatalf("repairing sync: %+v, %v; want 3 uploads", res, err)
	}
	if probs, err := m.Check(ctx, []DirManifest{man}, []Object{key}); err != nil || len(probs) != 0 {
		t.Fatalf("check after the repair: %v, %v", probs, err)
	}
}

// A package promoted into another directory is copied within the
// target, not uploaded again.
func testMirrorCopy(t *testing.T, tg Target) {
	rec := &recorder{Target: tg}
	m := openMirror(t, rec)
	big := bytes.Repeat([]byte("a large package "), 8192)
	staging := &fakeDir{dir: "main/staging/el/9/x86_64", packages: map[string][]byte{"big.rpm": big}, gen: 1}
	if _, err := m.SyncDir(ctx, staging.manifest()); err != nil {
		t.Fatal(err)
	}
	rec.taken()
	prod := &fakeDir{dir: "main/prod/el/9/x86_64", packages: map[string][]byte{"big.rpm": big}, gen: 1}
	res, err := m.SyncDir(ctx, prod.manifest())
	if err != nil || res.Copied != 1 || res.Bytes >= int64(len(big)) {
		t.Fatalf("promotion: %+v, %v; want the package copied, not uploaded", res, err)
	}
	if puts := rec.taken(); !slices.Contains(puts, "copy:"+prod.dir+"/big.rpm") {
		t.Errorf("puts %v: no copy of big.rpm", puts)
	}
	if got := mustGet(t, tg, prod.dir+"/big.rpm"); !bytes.Equal(got, big) {
		t.Error("the copy differs")
	}
}

// A state made for another target is not trusted.
func testMirrorNewTarget(t *testing.T, tg Target) {
	state := filepath.Join(t.TempDir(), "state.db")
	other, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	f := &fakeDir{dir: "main/prod/el/9/x86_64", packages: map[string][]byte{"a.rpm": []byte("a")}, gen: 1}
	m, err := OpenMirror(other, state)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.SyncDir(ctx, f.manifest()); err != nil {
		t.Fatal(err)
	}
	m.Close()
	m, err = OpenMirror(tg, state)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	res, err := m.SyncDir(ctx, f.manifest())
	if err != nil || res.Uploaded != 6 {
		t.Fatalf("sync to a new target with an old state: %+v, %v; want everything uploaded", res, err)
	}
	if _, err := get(t, tg, f.dir+"/a.rpm"); err != nil {
		t.Error(err)
	}
}

func TestCheckS3Config(t *testing.T) {
	good := S3Config{Endpoint: "http://127.0.0.1:8333", Bucket: "repo"}
	c, err := CheckS3Config(good)
	if err != nil || c.Region != "us-east-1" || c.Prefix != "" {
		t.Fatalf("good config: %+v, %v", c, err)
	}
	c, err = CheckS3Config(S3Config{Endpoint: "https://s3.example.com/", Bucket: "my.repo-1", Prefix: "yum/el", Region: "eu-west-1"})
	if err != nil || c.Prefix != "yum/el/" || c.Endpoint != "https://s3.example.com" {
		t.Fatalf("normalized: %+v, %v", c, err)
	}
	for _, bad := range []S3Config{
		{Endpoint: "", Bucket: "repo"},
		{Endpoint: "ftp://h", Bucket: "repo"},
		{Endpoint: "file:///etc", Bucket: "repo"},
		{Endpoint: "http://user:secret@h", Bucket: "repo"},
		{Endpoint: "http://h/bucket", Bucket: "repo"},
		{Endpoint: "http://h?x=1", Bucket: "repo"},
		{Endpoint: "http://h:99999", Bucket: "repo"},
		{Endpoint: "http://", Bucket: "repo"},
		{Endpoint: "127.0.0.1:8333", Bucket: "repo"},
		{Endpoint: "http://h", Bucket: ""},
		{Endpoint: "http://h", Bucket: "ab"},
		{Endpoint: "http://h", Bucket: "Repo"},
		{Endpoint: "http://h", Bucket: "re..po"},
		{Endpoint: "http://h", Bucket: "-repo"},
		{Endpoint: "http://h", Bucket: "192.168.1.1"},
		{Endpoint: "http://h", Bucket: "xn--repo"},
		{Endpoint: "http://h", Bucket: "re/po"},
		{Endpoint: "http://h", Bucket: strings.Repeat("a", 64)},
		{Endpoint: "http://h", Bucket: "repo", Prefix: "/abs"},
		{Endpoint: "http://h", Bucket: "repo", Prefix: "a/../b"},
		{Endpoint: "http://h", Bucket: "repo", Prefix: ".."},
		{Endpoint: "http://h", Bucket: "repo", Prefix: "a//b"},
		{Endpoint: "http://h", Bucket: "repo", Prefix: "a\nb"},
		{Endpoint: "http://h", Bucket: "repo", Region: "US EAST"},
	} {
		_, err := CheckS3Config(bad)
		if !errors.Is(err, ErrBadConfig) {
			t.Errorf("%+v: %v, want ErrBadConfig", bad, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("the error repeats the password: %v", err)
		}
	}
}
