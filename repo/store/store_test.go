package store_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/etcdtest"
	"github.com/repoctl/repoctl/repo/store"
)

// backend opens fresh, empty stores of one implementation.
type backend struct {
	name string
	// open is a new empty store and a function opening another handle on
	// it (another process, for etcd; nil for bbolt, whose file one
	// process holds).
	open func(t *testing.T) (db store.DB, another func() store.DB)
	// reopen closes db and opens it again.
	reopen func(t *testing.T, db store.DB) store.DB
}

func boltBackend() backend {
	paths := map[store.DB]string{}
	return backend{
		name: "bbolt",
		open: func(t *testing.T) (store.DB, func() store.DB) {
			p := filepath.Join(t.TempDir(), "s.db")
			db, err := store.OpenBolt(p, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			paths[db] = p
			return db, nil
		},
		reopen: func(t *testing.T, db store.DB) store.DB {
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			n, err := store.OpenBolt(paths[db], 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { n.Close() })
			return n
		},
	}
}

func etcdBackend(srv *etcdtest.Server) backend {
	var n atomic.Int64
	prefixes := map[store.DB]string{}
	var mu sync.Mutex
	openAt := func(t *testing.T, prefix string) store.DB {
		db, err := store.OpenEtcd(context.Background(), store.EtcdOptions{Endpoints: []string{srv.Endpoint},
			Prefix: prefix, MaxTxnOps: etcdtest.MaxTxnOps, MaxRequestBytes: etcdtest.MaxRequestBytes})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		mu.Lock()
		prefixes[db] = prefix
		mu.Unlock()
		return db
	}
	return backend{
		name: "etcd",
		open: func(t *testing.T) (store.DB, func() store.DB) {
			prefix := fmt.Sprintf("/conformance/%d/", n.Add(1))
			return openAt(t, prefix), func() store.DB { return openAt(t, prefix) }
		},
		reopen: func(t *testing.T, db store.DB) store.DB {
			mu.Lock()
			p := prefixes[db]
			mu.Unlock()
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			return openAt(t, p)
		},
	}
}

// TestConformance runs every case against bbolt in a temporary file and
// against a real etcd server.
func TestConformance(t *testing.T) {
	cases := []struct {
		name string
		fn   func(t *testing.T, b backend)
	}{
		{"Ordering", testOrdering},
		{"Cursor", testCursor},
		{"NestedBuckets", testNested},
		{"CursorDeletesWhileIterating", testCursorDeletes},
		{"ReadYourWrites", testReadYourWrites},
		{"Rollback", testRollback},
		{"ViewSnapshot", testViewSnapshot},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"NextSequence", testNextSequence},
		{"LargeValues", testLargeValues},
		{"HostileKeys", testHostileKeys},
		{"EmptyValues", testEmptyValues},
		{"Reopen", testReopen},
		{"Closed", testClosed},
		{"Fencing", testFencing},
	}
	srv := etcdtest.Start(t)
	for _, b := range []backend{boltBackend(), etcdBackend(srv)} {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { c.fn(t, b) })
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func update(t *testing.T, db store.DB, fn func(tx store.Tx) error) {
	t.Helper()
	must(t, db.Update(fn))
}

// bucket is name's bucket, created if need be.
func bucket(t *testing.T, tx store.Tx, name string) store.Bucket {
	t.Helper()
	b, err := tx.CreateBucketIfNotExists([]byte(name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func putAll(t *testing.T, db store.DB, name string, kvs map[string]string) {
	t.Helper()
	update(t, db, func(tx store.Tx) error {
		b := bucket(t, tx, name)
		for k, v := range kvs {
			if err := b.Put([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	})
}

// pairs is the bucket's pairs by ForEach, and checks that a cursor walk
// forward and backward agrees.
func pairs(t *testing.T, tx store.Tx, name string) []string {
	t.Helper()
	b := tx.Bucket([]byte(name))
	if b == nil {
		t.Fatalf("bucket %q missing", name)
	}
	var out []string
	must(t, b.ForEach(func(k, v []byte) error { out = append(out, string(k)+"="+string(v)); return nil }))
	var fwd, bwd []string
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		fwd = append(fwd, string(k)+"="+string(v))
	}
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		bwd = append(bwd, string(k)+"="+string(v))
	}
	slices.Reverse(bwd)
	if !slices.Equal(out, fwd) || !slices.Equal(out, bwd) {
		t.Fatalf("ForEach %q\ncursor forward %q\ncursor backward %q", out, fwd, bwd)
	}
	if n := b.Stats().KeyN; n != len(out) {
		t.Fatalf("Stats().KeyN = %d, %d pairs", n, len(out))
	}
	return out
}

var hostile = []string{"\x00", "\x00\x00", "\x00\xff", "\x00\x01", "\xff", "\xff\xff", "/", "//", "a", "a\x00", "a\x00b",
	"a/", "a/b", "a\xff", "b", "v", "m", "c", "b\x00\x01", "\x01"}

func testOrdering(t *testing.T, b backend) {
	db, _ := b.open(t)
	kvs := map[string]string{}
	for i, k := range hostile {
		kvs[k] = fmt.Sprint(i)
	}
	putAll(t, db, "o", kvs)
	want := slices.Clone(hostile)
	slices.Sort(want) // byte order
	must(t, db.View(func(tx store.Tx) error {
		got := pairs(t, tx, "o")
		for i, k := range want {
			if got[i] != k+"="+kvs[k] {
				t.Fatalf("pair %d = %q, want key %q", i, got[i], k)
			}
		}
		return nil
	}))
}

func testCursor(t *testing.T, b backend) {
	db, _ := b.open(t)
	// More keys than a cursor page of the etcd backend, in a bucket between
	// two others, so walks cross pages and stop at the bucket's ends.
	kvs := map[string]string{}
	for i := 0; i < 1300; i += 2 {
		kvs[fmt.Sprintf("k%05d", i)] = fmt.Sprint(i)
	}
	putAll(t, db, "a", map[string]string{"zzz": "before"})
	putAll(t, db, "m", kvs)
	putAll(t, db, "z", map[string]string{"\x00": "after"})
	must(t, db.View(func(tx store.Tx) error {
		if got := pairs(t, tx, "m"); len(got) != 650 {
			t.Fatalf("%d pairs, want 650", len(got))
		}
		c := tx.Bucket([]byte("m")).Cursor()
		for _, s := range []struct{ seek, want string }{
			{"", "k00000"}, {"k00001", "k00002"}, {"k00600", "k00600"}, {"k0060", "k00600"}, {"k01298", "k01298"}, {"k01299", ""}, {"\xff", ""},
		} {
			k, v := c.Seek([]byte(s.seek))
			if string(k) != s.want || (k != nil && string(v) != kvs[s.want]) {
				t.Fatalf("Seek(%q) = %q, %q; want %q", s.seek, k, v, s.want)
			}
		}
		// Seek, then step both ways across a page boundary.
		k, _ := c.Seek([]byte("k01020"))
		var steps []string
		for i := 0; i < 3; i++ {
			k, _ = c.Next()
			steps = append(steps, string(k))
		}
		for i := 0; i < 6; i++ {
			k, _ = c.Prev()
			steps = append(steps, string(k))
		}
		want := []string{"k01022", "k01024", "k01026", "k01024", "k01022", "k01020", "k01018", "k01016", "k01014"}
		if !slices.Equal(steps, want) {
			t.Fatalf("steps %q, want %q", steps, want)
		}
		if k, _ := c.Last(); string(k) != "k01298" {
			t.Fatalf("Last = %q", k)
		}
		if k, _ := c.Next(); k != nil {
			t.Fatalf("Next after Last = %q", k)
		}
		if k, _ := c.First(); string(k) != "k00000" {
			t.Fatalf("First = %q", k)
		}
		if k, _ := c.Prev(); k != nil {
			t.Fatalf("Prev before First = %q", k)
		}
		return nil
	}))
}

func testNested(t *testing.T, b backend) {
	db, _ := b.open(t)
	update(t, db, func(tx store.Tx) error {
		top := bucket(t, tx, "top")
		must(t, top.Put([]byte("k"), []byte("top")))
		for _, name := range []string{"a", "a\x00", "a\x00b", "\xff", "/"} {
			n, err := top.CreateBucketIfNotExists([]byte(name))
			must(t, err)
			must(t, n.Put([]byte("k"), []byte("in "+name)))
			deep, err := n.CreateBucketIfNotExists([]byte("deep"))
			must(t, err)
			must(t, deep.Put([]byte("k"), []byte("deep in "+name)))
		}
		bucket(t, tx, "top\x00") // a top-level name extending another
		return nil
	})
	must(t, db.View(func(tx store.Tx) error {
		if got := pairs(t, tx, "top"); !slices.Equal(got, []string{"k=top"}) {
			t.Fatalf("top's pairs %q: nested buckets' keys leaked in", got)
		}
		var names []string
		must(t, tx.Bucket([]byte("top")).ForEachBucket(func(n []byte) error { names = append(names, string(n)); return nil }))
		if want := []string{"/", "a", "a\x00", "a\x00b", "\xff"}; !slices.Equal(names, want) {
			t.Fatalf("nested buckets %q, want %q", names, want)
		}
		var tops []string
		must(t, tx.ForEachBucket(func(n []byte) error { tops = append(tops, string(n)); return nil }))
		if want := []string{"top", "top\x00"}; !slices.Equal(tops, want) {
			t.Fatalf("top-level buckets %q, want %q", tops, want)
		}
		for _, name := range []string{"a", "a\x00", "a\x00b", "\xff", "/"} {
			n := tx.Bucket([]byte("top")).Bucket([]byte(name))
			if got := string(n.Get([]byte("k"))); got != "in "+name {
				t.Fatalf("%q/k = %q", name, got)
			}
			if got := string(n.Bucket([]byte("deep")).Get([]byte("k"))); got != "deep in "+name {
				t.Fatalf("%q/deep/k = %q", name, got)
			}
		}
		if tx.Bucket([]byte("top")).Bucket([]byte("nope")) != nil || tx.Bucket([]byte("nope")) != nil {
			t.Fatal("a missing bucket is not nil")
		}
		return nil
	}))
	// Deleting a bucket deletes what it holds, and nothing else.
	update(t, db, func(tx store.Tx) error {
		must(t, tx.Bucket([]byte("top")).DeleteBucket([]byte("a")))
		if err := tx.Bucket([]byte("top")).DeleteBucket([]byte("a")); !errors.Is(err, store.ErrBucketNotFound) {
			t.Fatalf("deleting a deleted bucket: %v", err)
		}
		return nil
	})
	must(t, db.View(func(tx store.Tx) error {
		top := tx.Bucket([]byte("top"))
		if top.Bucket([]byte("a")) != nil {
			t.Fatal("deleted bucket still there")
		}
		if got := string(top.Bucket([]byte("a\x00")).Bucket([]byte("deep")).Get([]byte("k"))); got != "deep in a\x00" {
			t.Fatalf("a sibling lost its contents: %q", got)
		}
		return nil
	}))
	// Delete and re-create in one transaction: only the new contents remain.
	update(t, db, func(tx store.Tx) error {
		top := tx.Bucket([]byte("top"))
		must(t, top.DeleteBucket([]byte("a\x00")))
		n, err := top.CreateBucketIfNotExists([]byte("a\x00"))
		must(t, err)
		if n.Bucket([]byte("deep")) != nil || n.Get([]byte("k")) != nil {
			t.Fatal("a re-created bucket shows the old contents")
		}
		return n.Put([]byte("new"), []byte("1"))
	})
	must(t, db.View(func(tx store.Tx) error {
		n := tx.Bucket([]byte("top")).Bucket([]byte("a\x00"))
		if got := pairs(t, tx, "top"); len(got) != 1 {
			t.Fatalf("top: %q", got)
		}
		var got []string
		must(t, n.ForEach(func(k, v []byte) error { got = append(got, string(k)); return nil }))
		if !slices.Equal(got, []string{"new"}) || n.Bucket([]byte("deep")) != nil {
			t.Fatalf("re-created bucket holds %q, deep %v", got, n.Bucket([]byte("deep")) != nil)
		}
		return nil
	}))
	update(t, db, func(tx store.Tx) error { return tx.DeleteBucket([]byte("top")) })
	must(t, db.View(func(tx store.Tx) error {
		if tx.Bucket([]byte("top")) != nil || tx.Bucket([]byte("top\x00")) == nil {
			t.Fatal("deleting top-level bucket top: wrong buckets left")
		}
		return nil
	}))
}

func testCursorDeletes(t *testing.T, b backend) {
	db, _ := b.open(t)
	kvs := map[string]string{}
	for i := 0; i < 1100; i++ {
		kvs[fmt.Sprintf("%04d", i)] = "v"
	}
	putAll(t, db, "d", kvs)
	// Delete every odd key while walking, and the key the cursor stands
	// on: the walk still visits each key once.
	var seen int
	update(t, db, func(tx store.Tx) error {
		bk := tx.Bucket([]byte("d"))
		c := bk.Cursor()
		seen = 0
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			seen++
			var i int
			fmt.Sscanf(string(k), "%d", &i)
			if i%2 == 1 {
				if err := bk.Delete(k); err != nil {
					return err
				}
			}
		}
		if seen != 1100 {
			t.Fatalf("walk visited %d keys, want 1100", seen)
		}
		if bk.Get([]byte("0001")) != nil || bk.Get([]byte("0002")) == nil {
			t.Fatal("the walk's deletes are not what the transaction sees")
		}
		return nil
	})
	must(t, db.View(func(tx store.Tx) error {
		got := pairs(t, tx, "d")
		if len(got) != 550 || got[0] != "0000=v" || got[1] != "0002=v" {
			t.Fatalf("%d left, first %q", len(got), got[:2])
		}
		return nil
	}))
}

func testReadYourWrites(t *testing.T, b backend) {
	db, _ := b.open(t)
	putAll(t, db, "r", map[string]string{"a": "1", "c": "3", "e": "5"})
	update(t, db, func(tx store.Tx) error {
		bk := tx.Bucket([]byte("r"))
		must(t, bk.Put([]byte("b"), []byte("2")))
		must(t, bk.Put([]byte("c"), []byte("33")))
		must(t, bk.Delete([]byte("e")))
		must(t, bk.Put([]byte("f"), []byte("6")))
		if string(bk.Get([]byte("c"))) != "33" || bk.Get([]byte("e")) != nil || string(bk.Get([]byte("b"))) != "2" {
			t.Fatal("Get does not see the transaction's writes")
		}
		if got, want := pairs(t, tx, "r"), []string{"a=1", "b=2", "c=33", "f=6"}; !slices.Equal(got, want) {
			t.Fatalf("in the transaction %q, want %q", got, want)
		}
		if k, v := bk.Cursor().Seek([]byte("d")); string(k) != "f" || string(v) != "6" {
			t.Fatalf("Seek(d) = %q", k)
		}
		must(t, bk.Put([]byte("e"), []byte("again")))
		if string(bk.Get([]byte("e"))) != "again" {
			t.Fatal("a deleted key put again is missing")
		}
		return nil
	})
	must(t, db.View(func(tx store.Tx) error {
		if got, want := pairs(t, tx, "r"), []string{"a=1", "b=2", "c=33", "e=again", "f=6"}; !slices.Equal(got, want) {
			t.Fatalf("committed %q, want %q", got, want)
		}
		return nil
	}))
}

func testRollback(t *testing.T, b backend) {
	db, _ := b.open(t)
	putAll(t, db, "r", map[string]string{"a": "1"})
	boom := errors.New("boom")
	err := db.Update(func(tx store.Tx) error {
		bk := tx.Bucket([]byte("r"))
		must(t, bk.Put([]byte("a"), []byte("changed")))
		must(t, bk.Put([]byte("b"), []byte("new")))
		bucket(t, tx, "new bucket")
		return fmt.Errorf("wrapped: %w", boom)
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	must(t, db.View(func(tx store.Tx) error {
		if got := pairs(t, tx, "r"); !slices.Equal(got, []string{"a=1"}) {
			t.Fatalf("after a rollback %q", got)
		}
		if tx.Bucket([]byte("new bucket")) != nil {
			t.Fatal("a rolled-back bucket exists")
		}
		if tx.Writable() {
			t.Fatal("a View is writable")
		}
		if err := tx.Bucket([]byte("r")).Put([]byte("x"), nil); !errors.Is(err, store.ErrTxNotWritable) {
			t.Fatalf("Put in a View: %v", err)
		}
		return nil
	}))
}

func testViewSnapshot(t *testing.T, b backend) {
	db, another := b.open(t)
	writer := db
	if another != nil {
		writer = another()
	}
	kvs := map[string]string{}
	for i := 0; i < 700; i++ {
		kvs[fmt.Sprintf("%04d", i)] = "old"
	}
	putAll(t, db, "s", kvs)
	// bbolt remaps its file when it grows, waiting for readers: grow it first.
	update(t, db, func(tx store.Tx) error { return bucket(t, tx, "pad").Put([]byte("x"), make([]byte, 4<<20)) })
	update(t, db, func(tx store.Tx) error { return tx.DeleteBucket([]byte("pad")) })
	must(t, db.View(func(tx store.Tx) error {
		bk := tx.Bucket([]byte("s"))
		if string(bk.Get([]byte("0000"))) != "old" {
			t.Fatal("setup")
		}
		done := make(chan error, 1)
		go func() {
			done <- writer.Update(func(tx store.Tx) error {
				w := tx.Bucket([]byte("s"))
				for i := 0; i < 700; i += 3 {
					if err := w.Put([]byte(fmt.Sprintf("%04d", i)), []byte("new")); err != nil {
						return err
					}
				}
				if err := w.Delete([]byte("0001")); err != nil {
					return err
				}
				return w.Put([]byte("9999"), []byte("new"))
			})
		}()
		must(t, <-done)
		for _, p := range pairs(t, tx, "s") {
			if !bytes.HasSuffix([]byte(p), []byte("=old")) {
				t.Fatalf("the View sees a later commit: %q", p)
			}
		}
		if bk.Get([]byte("0001")) == nil || bk.Get([]byte("9999")) != nil || bk.Stats().KeyN != 700 {
			t.Fatal("the View sees a later commit")
		}
		return nil
	}))
	must(t, db.View(func(tx store.Tx) error {
		if got := pairs(t, tx, "s"); len(got) != 700 || got[0] != "0000=new" || got[1] != "0002=old" {
			t.Fatalf("after the commit: %d pairs, %q", len(got), got[:2])
		}
		return nil
	}))
}

// testConcurrentUpdates: writers on two handles (two processes, for
// etcd) increment one counter and append to a range; conflicts are
// retried and no update is lost.
func testConcurrentUpdates(t *testing.T, b backend) {
	db, another := b.open(t)
	dbs := []store.DB{db, db}
	if another != nil {
		dbs[1] = another()
	}
	update(t, db, func(tx store.Tx) error { bucket(t, tx, "c"); return nil })
	const per = 25
	var calls atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4*per)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				errs <- dbs[w%2].Update(func(tx store.Tx) error {
					calls.Add(1)
					bk := tx.Bucket([]byte("c"))
					var n uint64
					if v := bk.Get([]byte("counter")); v != nil {
						n = binary.BigEndian.Uint64(v)
					}
					if err := bk.Put([]byte("counter"), binary.BigEndian.AppendUint64(nil, n+1)); err != nil {
						return err
					}
					// A range read: the number of log entries, then one more.
					l, err := tx.CreateBucketIfNotExists([]byte("log"))
					if err != nil {
						return err
					}
					k, _ := l.Cursor().Last()
					next := 0
					if k != nil {
						fmt.Sscanf(string(k), "%d", &next)
						next++
					}
					return l.Put([]byte(fmt.Sprintf("%06d", next)), []byte(fmt.Sprint(w)))
				})
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	must(t, db.View(func(tx store.Tx) error {
		if n := binary.BigEndian.Uint64(tx.Bucket([]byte("c")).Get([]byte("counter"))); n != 4*per {
			t.Fatalf("counter %d, want %d: an update was lost", n, 4*per)
		}
		if n := tx.Bucket([]byte("log")).Stats().KeyN; n != 4*per {
			t.Fatalf("log has %d entries, want %d: two writers took one slot", n, 4*per)
		}
		return nil
	}))
	t.Logf("%d commits took %d runs of fn", 4*per, calls.Load())
}

func testNextSequence(t *testing.T, b backend) {
	db, another := b.open(t)
	update(t, db, func(tx store.Tx) error { bucket(t, tx, "q"); return nil })
	var got []uint64
	for i := 0; i < 3; i++ {
		update(t, db, func(tx store.Tx) error {
			n, err := tx.Bucket([]byte("q")).NextSequence()
			got = append(got, n)
			return err
		})
	}
	if !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("sequence %v", got)
	}
	// A rolled-back transaction's number is given again.
	_ = db.Update(func(tx store.Tx) error {
		if n, _ := tx.Bucket([]byte("q")).NextSequence(); n != 4 {
			t.Fatalf("next %d, want 4", n)
		}
		return errors.New("roll back")
	})
	// Concurrent takers (on two handles where there are two) never share one.
	dbs := []store.DB{db, db}
	if another != nil {
		dbs[1] = another()
	}
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				var n uint64
				err := dbs[w%2].Update(func(tx store.Tx) (err error) {
					n, err = tx.Bucket([]byte("q")).NextSequence()
					return err
				})
				mu.Lock()
				if err != nil || seen[n] {
					t.Errorf("NextSequence: %d, %v (seen: %v)", n, err, seen[n])
				}
				seen[n] = true
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	for n := uint64(4); n < 44; n++ {
		if !seen[n] {
			t.Fatalf("number %d never given out (%d given)", n, len(seen))
		}
	}
}

func testLargeValues(t *testing.T, b backend) {
	db, _ := b.open(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	big[0], big[len(big)-1] = 0, 0xff
	update(t, db, func(tx store.Tx) error {
		bk := bucket(t, tx, "big")
		for i := 0; i < 4; i++ {
			if err := bk.Put([]byte{byte(i)}, big); err != nil {
				return err
			}
		}
		return nil
	})
	must(t, db.View(func(tx store.Tx) error {
		n := 0
		must(t, tx.Bucket([]byte("big")).ForEach(func(k, v []byte) error {
			n++
			if !bytes.Equal(v, big) {
				t.Fatalf("value %q is %d bytes, not what was put", k, len(v))
			}
			return nil
		}))
		if n != 4 {
			t.Fatalf("%d values", n)
		}
		return nil
	}))
	// Enough large values that a walk takes several requests on etcd.
	half := big[:512<<10]
	for u := 0; u < 3; u++ {
		update(t, db, func(tx store.Tx) error {
			bk := bucket(t, tx, "many")
			for i := 0; i < 8; i++ {
				if err := bk.Put([]byte(fmt.Sprintf("%02d", u*8+i)), half); err != nil {
					return err
				}
			}
			return nil
		})
	}
	must(t, db.View(func(tx store.Tx) error {
		c := tx.Bucket([]byte("many")).Cursor()
		var fwd, bwd []string
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if !bytes.Equal(v, half) {
				t.Fatalf("value %q differs", k)
			}
			fwd = append(fwd, string(k))
		}
		for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
			bwd = append(bwd, string(k))
		}
		slices.Reverse(bwd)
		if len(fwd) != 24 || !slices.Equal(fwd, bwd) || fwd[0] != "00" || fwd[23] != "23" {
			t.Fatalf("walks %q and %q", fwd, bwd)
		}
		return nil
	}))
}

func testHostileKeys(t *testing.T, b backend) {
	db, _ := b.open(t)
	long := bytes.Repeat([]byte{0, 0xff, '/'}, 3000)
	update(t, db, func(tx store.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(nil); !errors.Is(err, store.ErrKeyRequired) {
			t.Fatalf("an empty bucket name: %v", err)
		}
		bk := bucket(t, tx, "\x00/\xff")
		if err := bk.Put(nil, []byte("x")); !errors.Is(err, store.ErrKeyRequired) {
			t.Fatalf("an empty key: %v", err)
		}
		for _, k := range append(hostile, string(long)) {
			must(t, bk.Put([]byte(k), []byte(k)))
		}
		return nil
	})
	must(t, db.View(func(tx store.Tx) error {
		bk := tx.Bucket([]byte("\x00/\xff"))
		for _, k := range append(hostile, string(long)) {
			if got := bk.Get([]byte(k)); !bytes.Equal(got, []byte(k)) {
				t.Fatalf("Get(%q) = %q", k, got)
			}
		}
		if bk.Get(nil) != nil || bk.Get([]byte("\x00\x00\x00")) != nil {
			t.Fatal("a missing key has a value")
		}
		if got := pairs(t, tx, "\x00/\xff"); len(got) != len(hostile)+1 {
			t.Fatalf("%d pairs", len(got))
		}
		return nil
	}))
}

func testEmptyValues(t *testing.T, b backend) {
	db, _ := b.open(t)
	update(t, db, func(tx store.Tx) error {
		bk := bucket(t, tx, "e")
		must(t, bk.Put([]byte("nil"), nil))
		must(t, bk.Put([]byte("empty"), []byte{}))
		return nil
	})
	must(t, db.View(func(tx store.Tx) error {
		bk := tx.Bucket([]byte("e"))
		for _, k := range []string{"nil", "empty"} {
			if v := bk.Get([]byte(k)); v == nil || len(v) != 0 {
				t.Fatalf("Get(%q) = %#v, want a non-nil empty value", k, v)
			}
		}
		n := 0
		c := bk.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v == nil {
				t.Fatalf("cursor: %q has a nil value", k)
			}
			n++
		}
		if n != 2 {
			t.Fatalf("cursor saw %d pairs", n)
		}
		return nil
	}))
}

func testReopen(t *testing.T, b backend) {
	db, _ := b.open(t)
	putAll(t, db, "p", map[string]string{"k": "v"})
	db = b.reopen(t, db)
	must(t, db.View(func(tx store.Tx) error {
		if got := pairs(t, tx, "p"); !slices.Equal(got, []string{"k=v"}) {
			t.Fatalf("after reopening %q", got)
		}
		return nil
	}))
}

func testClosed(t *testing.T, b backend) {
	db, _ := b.open(t)
	must(t, db.Close())
	if err := db.View(func(store.Tx) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("View after Close: %v", err)
	}
	if err := db.Update(func(store.Tx) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Update after Close: %v", err)
	}
}

func testFencing(t *testing.T, b backend) {
	db, _ := b.open(t)
	if b.name == "bbolt" {
		if _, err := store.Fenced(db, store.Fence{Key: "x", Rev: 1}); !errors.Is(err, store.ErrFenceUnsupported) {
			t.Fatalf("bbolt fenced: %v", err)
		}
		return
	}
	cli := store.Client(db)
	ctx := context.Background()
	resp, err := cli.Put(ctx, "/fence/leader", "me")
	must(t, err)
	fence := store.Fence{Key: "/fence/leader", Rev: resp.Header.Revision}
	fdb, err := store.Fenced(db, fence)
	must(t, err)
	putAll(t, fdb, "f", map[string]string{"while leader": "1"})
	// Another takes over: the key is deleted and written again.
	_, err = cli.Delete(ctx, fence.Key)
	must(t, err)
	_, err = cli.Put(ctx, fence.Key, "other")
	must(t, err)
	err = fdb.Update(func(tx store.Tx) error {
		return tx.Bucket([]byte("f")).Put([]byte("after deposed"), []byte("1"))
	})
	if !errors.Is(err, store.ErrFenced) {
		t.Fatalf("a deposed writer's Update: %v, want ErrFenced", err)
	}
	must(t, db.View(func(tx store.Tx) error {
		if got := pairs(t, tx, "f"); !slices.Equal(got, []string{"while leader=1"}) {
			t.Fatalf("after the fenced write %q", got)
		}
		return nil
	}))
	// The unfenced handle still writes.
	putAll(t, db, "f", map[string]string{"unfenced": "1"})
}
