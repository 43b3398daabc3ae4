package target

import (
	"bytes"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// Cases of the conformance suite (TestConformance) that mutation checks
// found missing.
func init() {
	suite = append(suite, []struct {
		name string
		f    func(t *testing.T, tg Target)
	}{
		{"MirrorUnsigned", testMirrorUnsigned},
		{"MirrorHolds", testMirrorHolds},
		{"MirrorGraceFromFirstRetire", testMirrorGraceFromFirstRetire},
		{"MirrorCopyStaleSource", testMirrorCopyStaleSource},
	}...)
}

// A directory that stops being signed loses its old repomd.xml.asc
// before the new repomd.xml goes up, grace period or not: dnf with
// repo_gpgcheck would reject a repomd.xml beside a signature of another.
func testMirrorUnsigned(t *testing.T, tg Target) {
	rec := &recorder{Target: tg}
	m := openMirror(t, rec, WithGrace(time.Hour))
	f := &fakeDir{dir: "main/prod/el/9/x86_64", packages: map[string][]byte{"a.rpm": []byte("a")}, gen: 1}
	if _, err := m.SyncDir(ctx, f.manifest()); err != nil {
		t.Fatal(err)
	}
	sigKey := f.dir + "/repodata/repomd.xml.asc"
	if _, err := get(t, tg, sigKey); err != nil {
		t.Fatalf("signed sync: %v", err)
	}
	f.gen = 2
	man := f.manifest()
	man.Signature = nil
	rec.onPut = func(key string) error {
		if phase(key) == 3 {
			if _, err := tg.Stat(ctx, sigKey); !errors.Is(err, ErrNotExist) {
				t.Errorf("the unsigned repomd.xml goes up beside the old signature (%v)", err)
			}
		}
		return nil
	}
	if _, err := m.SyncDir(ctx, man); err != nil {
		t.Fatal(err)
	}
	if _, err := get(t, tg, sigKey); !errors.Is(err, ErrNotExist) {
		t.Errorf("after the unsigned sync, %q: %v, want gone", sigKey, err)
	}
}

// Holds is true only for an object the target has as given and that is
// current: not one with other content, not one retired (still there in
// its grace period, but no longer part of any directory).
func testMirrorHolds(t *testing.T, tg Target) {
	m := openMirror(t, tg, WithGrace(time.Hour))
	f := &fakeDir{dir: "main/prod/el/9/x86_64", packages: map[string][]byte{"a.rpm": []byte("a"), "b.rpm": []byte("bb")}, gen: 1}
	if _, err := m.SyncDir(ctx, f.manifest()); err != nil {
		t.Fatal(err)
	}
	holds := func(key string, b []byte) bool {
		t.Helper()
		ok, err := m.Holds(key, int64(len(b)), sum(b))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !holds(f.dir+"/b.rpm", []byte("bb")) {
		t.Error("a current object is not held")
	}
	if holds(f.dir+"/b.rpm", []byte("xx")) || holds(f.dir+"/c.rpm", []byte("bb")) {
		t.Error("other content, or an unknown key, is held")
	}
	delete(f.packages, "b.rpm")
	f.gen = 2
	if _, err := m.SyncDir(ctx, f.manifest()); err != nil {
		t.Fatal(err)
	}
	if _, err := get(t, tg, f.dir+"/b.rpm"); err != nil {
		t.Fatalf("b.rpm within its grace period: %v", err)
	}
	if holds(f.dir+"/b.rpm", []byte("bb")) {
		t.Error("a retired object is held")
	}
}

// An object's grace period runs from when it first left its directory:
// later syncs of the directory (a busy repository publishes every few
// minutes) do not start it again, or superseded repodata would never go.
func testMirrorGraceFromFirstRetire(t *testing.T, tg Target) {
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix())
	m := openMirror(t, tg, WithGrace(time.Hour), WithClock(func() time.Time { return time.Unix(now.Load(), 0) }))
	f := &fakeDir{dir: "main/prod/el/9/x86_64", packages: map[string][]byte{"a.rpm": []byte("a")}, gen: 1}
	first := f.manifest()
	for gen := 1; gen <= 3; gen++ {
		f.gen = gen
		if _, err := m.SyncDir(ctx, f.manifest()); err != nil {
			t.Fatal(err)
		}
		if gen == 2 {
			now.Add(1800) // generation 1 left at gen 2; generation 3 comes half a grace later
		}
	}
	now.Add(1800)
	if n, err := m.Sweep(ctx); err != nil || n != 3 {
		t.Fatalf("sweep a grace period after generation 1 left: %d, %v; want its 3 repodata files", n, err)
	}
	for _, o := range first.Repodata {
		if _, err := get(t, tg, o.Key); !errors.Is(err, ErrNotExist) {
			t.Errorf("%q a grace period after it left: %v, want gone", o.Key, err)
		}
	}
}

// A copy source is the key that last had the content: one since
// overwritten with other bytes of the same size (a package re-signed in
// place) is no source, or the copy would publish the new bytes under the
// old content's name.
func testMirrorCopyStaleSource(t *testing.T, tg Target) {
	m := openMirror(t, tg)
	a := bytes.Repeat([]byte("content A "), 8192)
	b := bytes.Repeat([]byte("content B "), 8192)
	staging := &fakeDir{dir: "main/staging/el/9/x86_64", packages: map[string][]byte{"p.rpm": a}, gen: 1}
	if _, err := m.SyncDir(ctx, staging.manifest()); err != nil {
		t.Fatal(err)
	}
	staging.packages["p.rpm"], staging.gen = b, 2
	if _, err := m.SyncDir(ctx, staging.manifest()); err != nil {
		t.Fatal(err)
	}
	prod := &fakeDir{dir: "main/prod/el/9/x86_64", packages: map[string][]byte{"p.rpm": a}, gen: 1}
	if _, err := m.SyncDir(ctx, prod.manifest()); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, tg, prod.dir+"/p.rpm"); !bytes.Equal(got, a) {
		t.Errorf("prod's p.rpm holds %.10q..., want %.10q...", got, a)
	}
}
