package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/repoctl/repoctl/internal/etcdtest"
	"github.com/repoctl/repoctl/repo/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func openEtcd(t *testing.T, srv *etcdtest.Server, prefix string, o store.EtcdOptions) store.DB {
	t.Helper()
	o.Endpoints, o.Prefix = []string{srv.Endpoint}, prefix
	if o.MaxTxnOps == 0 {
		o.MaxTxnOps, o.MaxRequestBytes = etcdtest.MaxTxnOps, etcdtest.MaxRequestBytes
	}
	db, err := store.OpenEtcd(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestEtcdConflictRetried: another process commits between an Update's
// read and its commit; the commit fails its compare and fn runs again on
// the new state. Point reads, range inserts and range deletes each count.
func TestEtcdConflictRetried(t *testing.T) {
	srv := etcdtest.Start(t)
	a := openEtcd(t, srv, "/c/", store.EtcdOptions{})
	b := openEtcd(t, srv, "/c/", store.EtcdOptions{})
	putAll(t, a, "k", map[string]string{"x": "1", "r1": "", "r2": ""})
	for _, c := range []struct {
		name  string
		read  func(bk store.Bucket) string // what fn bases its write on
		other func(bk store.Bucket) error  // the other process's commit
	}{
		{"point read", func(bk store.Bucket) string { return string(bk.Get([]byte("x"))) },
			func(bk store.Bucket) error { return bk.Put([]byte("x"), []byte("2")) }},
		{"missing key read", func(bk store.Bucket) string { return string(bk.Get([]byte("y"))) },
			func(bk store.Bucket) error { return bk.Put([]byte("y"), []byte("new")) }},
		{"range insert", func(bk store.Bucket) string { return fmt.Sprint(bk.Stats().KeyN) },
			func(bk store.Bucket) error { return bk.Put([]byte("r3"), nil) }},
		{"range delete", func(bk store.Bucket) string {
			n := 0
			c := bk.Cursor()
			for k, _ := c.Seek([]byte("r")); k != nil; k, _ = c.Next() {
				n++
			}
			return fmt.Sprint(n)
		}, func(bk store.Bucket) error { return bk.Delete([]byte("r1")) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			runs := 0
			var first, last string
			update(t, a, func(tx store.Tx) error {
				runs++
				bk := tx.Bucket([]byte("k"))
				last = c.read(bk)
				if runs == 1 {
					first = last
					update(t, b, func(tx store.Tx) error { return c.other(tx.Bucket([]byte("k"))) })
				}
				return bk.Put([]byte("result "+c.name), []byte(last))
			})
			if runs != 2 || first == last {
				t.Fatalf("fn ran %d times, read %q then %q: the other commit did not conflict", runs, first, last)
			}
			must(t, a.View(func(tx store.Tx) error {
				if got := string(tx.Bucket([]byte("k")).Get([]byte("result " + c.name))); got != last {
					t.Fatalf("committed %q, want %q", got, last)
				}
				return nil
			}))
		})
	}
	// A blind write (no read) does not conflict with anything.
	runs := 0
	update(t, a, func(tx store.Tx) error {
		runs++
		if runs == 1 {
			update(t, b, func(tx store.Tx) error { return tx.Bucket([]byte("k")).Put([]byte("x"), []byte("3")) })
		}
		return tx.Bucket([]byte("k")).Put([]byte("blind"), []byte("1"))
	})
	if runs != 1 {
		t.Fatalf("a blind write ran %d times", runs)
	}
}

// TestEtcdTxnLimits: a transaction beyond the configured or the server's
// limits fails with ErrTxnTooLarge, naming the flags, and writes nothing.
func TestEtcdTxnLimits(t *testing.T) {
	srv := etcdtest.Start(t)
	small := openEtcd(t, srv, "/l/", store.EtcdOptions{MaxTxnOps: 10, MaxRequestBytes: 1 << 20})
	// The client believes the server takes more than it does: the server
	// says no, and that is reported the same way.
	over := openEtcd(t, srv, "/l/", store.EtcdOptions{MaxTxnOps: 10 * etcdtest.MaxTxnOps, MaxRequestBytes: 4 * etcdtest.MaxRequestBytes})
	update(t, small, func(tx store.Tx) error { bucket(t, tx, "b"); return nil })
	for _, c := range []struct {
		name string
		db   store.DB
		n    int
		size int
	}{
		{"ops, client side", small, 11, 1},
		{"bytes, client side", small, 2, 600 << 10},
		{"ops, server side", over, etcdtest.MaxTxnOps + 10, 1},
		{"bytes, server side", over, 3, 12 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.db.Update(func(tx store.Tx) error {
				bk := tx.Bucket([]byte("b"))
				for i := 0; i < c.n; i++ {
					if err := bk.Put([]byte(fmt.Sprint(c.name, i)), make([]byte, c.size)); err != nil {
						return err
					}
				}
				return nil
			})
			if !errors.Is(err, store.ErrTxnTooLarge) {
				t.Fatalf("got %v, want ErrTxnTooLarge", err)
			}
			if !strings.Contains(err.Error(), "max-") && !strings.Contains(err.Error(), "too") {
				t.Fatalf("the error does not say which limit: %v", err)
			}
			t.Log(err)
			must(t, small.View(func(tx store.Tx) error {
				if n := tx.Bucket([]byte("b")).Stats().KeyN; n != 0 {
					t.Fatalf("%d keys landed from a refused transaction", n)
				}
				return nil
			}))
		})
	}
}

// TestEtcdPrefixes: two installations on one etcd see only their own keys.
func TestEtcdPrefixes(t *testing.T) {
	srv := etcdtest.Start(t)
	a := openEtcd(t, srv, "/one/", store.EtcdOptions{})
	b := openEtcd(t, srv, "/one-b/", store.EtcdOptions{})
	putAll(t, a, "packages", map[string]string{"a": "1"})
	putAll(t, b, "packages", map[string]string{"b": "2"})
	update(t, b, func(tx store.Tx) error { bucket(t, tx, "only b"); return nil })
	for db, want := range map[store.DB]string{a: "a=1", b: "b=2"} {
		must(t, db.View(func(tx store.Tx) error {
			if got := pairs(t, tx, "packages"); len(got) != 1 || got[0] != want {
				t.Fatalf("%q, want %q", got, want)
			}
			return nil
		}))
	}
	must(t, a.View(func(tx store.Tx) error {
		if tx.Bucket([]byte("only b")) != nil {
			t.Fatal("a sees b's bucket")
		}
		return nil
	}))
	// Every key is under the prefix.
	resp, err := store.Client(a).Get(context.Background(), "\x00", clientv3.WithFromKey())
	must(t, err)
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		if !strings.HasPrefix(k, "/one/") && !strings.HasPrefix(k, "/one-b/") && k != "/etcdtest-ready" {
			t.Fatalf("key %q outside the prefixes", k)
		}
	}
}

// TestEtcdFenceKeyGone: a fence on a key that no longer exists fails.
func TestEtcdFenceKeyGone(t *testing.T) {
	srv := etcdtest.Start(t)
	db := openEtcd(t, srv, "/f/", store.EtcdOptions{})
	cli := store.Client(db)
	resp, err := cli.Put(context.Background(), "/f-leader", "x")
	must(t, err)
	fdb, err := store.Fenced(db, store.Fence{Key: "/f-leader", Rev: resp.Header.Revision})
	must(t, err)
	update(t, fdb, func(tx store.Tx) error { bucket(t, tx, "b"); return nil })
	_, err = cli.Delete(context.Background(), "/f-leader")
	must(t, err)
	err = fdb.Update(func(tx store.Tx) error { return tx.Bucket([]byte("b")).Put([]byte("k"), nil) })
	if !errors.Is(err, store.ErrFenced) {
		t.Fatalf("got %v, want ErrFenced", err)
	}
}

// TestEtcdCompactedSnapshot: a read of a revision etcd compacted away
// fails the View (never a mix of revisions), and runs an Update again on
// a new snapshot.
func TestEtcdCompactedSnapshot(t *testing.T) {
	srv := etcdtest.Start(t)
	db := openEtcd(t, srv, "/k/", store.EtcdOptions{})
	other := openEtcd(t, srv, "/k/", store.EtcdOptions{}) // Updates of one handle are serialized
	putAll(t, db, "b", map[string]string{"a": "1", "b": "1"})
	cli := store.Client(db)
	compact := func() {
		t.Helper()
		putAll(t, other, "b", map[string]string{"c": "later"})
		resp, err := cli.Get(context.Background(), "/k/")
		must(t, err)
		_, err = cli.Compact(context.Background(), resp.Header.Revision)
		must(t, err)
	}
	err := db.View(func(tx store.Tx) error {
		if tx.Bucket([]byte("b")).Get([]byte("a")) == nil {
			t.Fatal("setup")
		}
		compact()
		tx.Bucket([]byte("b")).Get([]byte("b"))
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "compacted") {
		t.Fatalf("View across a compaction: %v", err)
	}
	runs := 0
	update(t, db, func(tx store.Tx) error {
		runs++
		bk := tx.Bucket([]byte("b"))
		if runs == 1 {
			compact()
		}
		if bk.Get([]byte("b")) == nil && runs > 1 {
			t.Fatal("b missing on the new snapshot")
		}
		return bk.Put([]byte("d"), []byte("1"))
	})
	if runs != 2 {
		t.Fatalf("fn ran %d times, want 2 (once more after the compaction)", runs)
	}
}

// TestUpdateInParts: 50 writes through a store that takes 10 operations a
// transaction land in parts of at most 10, in order, every unit once,
// and the first and last parts are told so; a unit that alone is too
// large fails with ErrTxnTooLarge and writes nothing of itself.
func TestUpdateInParts(t *testing.T) {
	srv := etcdtest.Start(t)
	small := openEtcd(t, srv, "/parts/", store.EtcdOptions{MaxTxnOps: 10, MaxRequestBytes: 1 << 20})
	update(t, small, func(tx store.Tx) error { bucket(t, tx, "b"); return nil })
	var parts [][2]int
	firsts, lasts := 0, 0
	err := store.UpdateInParts(small, 50, func(tx store.Tx, lo, hi int) error {
		parts = append(parts, [2]int{lo, hi})
		if lo == 0 {
			firsts++
		}
		if hi == 50 {
			lasts++
		}
		bk := tx.Bucket([]byte("b"))
		for i := lo; i < hi; i++ {
			if err := bk.Put([]byte(fmt.Sprintf("k%02d", i)), []byte("v")); err != nil {
				return err
			}
		}
		return nil
	})
	must(t, err)
	// Tried: [0,50) [0,25) [0,12) [0,6) ok [6,12) ok [12,25) [12,18) ok ...
	next := 0
	for _, p := range parts {
		if p[1]-p[0] <= 9 { // fits: the bucket's change key is the 10th write
			if p[0] != next {
				t.Fatalf("part %v after %d: not in order (%v)", p, next, parts)
			}
			next = p[1]
		}
	}
	if next != 50 || firsts < 2 || lasts < 2 {
		t.Fatalf("parts %v", parts)
	}
	must(t, small.View(func(tx store.Tx) error {
		if n := tx.Bucket([]byte("b")).Stats().KeyN; n != 50 {
			t.Fatalf("%d keys landed, want 50", n)
		}
		return nil
	}))
	err = store.UpdateInParts(small, 1, func(tx store.Tx, lo, hi int) error {
		bk := tx.Bucket([]byte("b"))
		for i := 0; i < 20; i++ {
			if err := bk.Put([]byte(fmt.Sprintf("big%02d", i)), []byte("v")); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, store.ErrTxnTooLarge) {
		t.Fatalf("a unit too large alone: %v", err)
	}
}
