package store_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/repoctl/repoctl/internal/etcdtest"
	"github.com/repoctl/repoctl/repo/store"
)

// TestEtcdBucketDeletedUnderWriter: another process deletes the bucket an
// Update found and writes into blindly (no read of its pairs). The commit
// must fail its compare on the bucket's marker and fn run again, finding
// no bucket; else the put lands under a bucket that no longer exists, and
// comes back when the bucket is made again.
func TestEtcdBucketDeletedUnderWriter(t *testing.T) {
	srv := etcdtest.Start(t)
	a := openEtcd(t, srv, "/d/", store.EtcdOptions{})
	b := openEtcd(t, srv, "/d/", store.EtcdOptions{})
	update(t, a, func(tx store.Tx) error { bucket(t, tx, "gone"); return nil })
	runs := 0
	sawNone := false
	update(t, a, func(tx store.Tx) error {
		runs++
		bk := tx.Bucket([]byte("gone"))
		if bk == nil {
			sawNone = true
			return nil
		}
		if runs == 1 {
			update(t, b, func(tx store.Tx) error { return tx.DeleteBucket([]byte("gone")) })
		}
		return bk.Put([]byte("orphan"), []byte("1"))
	})
	if runs != 2 || !sawNone {
		t.Fatalf("fn ran %d times (saw the bucket gone: %v): the delete did not conflict", runs, sawNone)
	}
	update(t, b, func(tx store.Tx) error {
		bk := bucket(t, tx, "gone")
		if v := bk.Get([]byte("orphan")); v != nil {
			t.Fatalf("the re-created bucket holds %q, put into the deleted one", v)
		}
		return nil
	})
}

// TestEtcdTxnLimitsExact: a transaction of exactly MaxTxnOps writes, or
// exactly MaxTxnOps compares, is sent (etcd refuses only more), one more
// of either fails with ErrTxnTooLarge before it is sent; so does one a
// little over MaxRequestBytes that the server would take.
func TestEtcdTxnLimitsExact(t *testing.T) {
	srv := etcdtest.Start(t)
	const limit = 10
	db := openEtcd(t, srv, "/x/", store.EtcdOptions{MaxTxnOps: limit, MaxRequestBytes: 1 << 20})
	update(t, db, func(tx store.Tx) error { bucket(t, tx, "b"); return nil })
	// n puts into an existing bucket are n+1 writes (its change key).
	puts := func(n int) error {
		return db.Update(func(tx store.Tx) error {
			bk := tx.Bucket([]byte("b"))
			for i := 0; i < n; i++ {
				if err := bk.Put([]byte(fmt.Sprintf("w%d-%d", n, i)), nil); err != nil {
					return err
				}
			}
			return nil
		})
	}
	// n reads and one put are n+1 compares (the bucket's marker) and 2 writes.
	reads := func(n int) error {
		return db.Update(func(tx store.Tx) error {
			bk := tx.Bucket([]byte("b"))
			for i := 0; i < n; i++ {
				bk.Get([]byte(fmt.Sprintf("r%d", i)))
			}
			return bk.Put([]byte(fmt.Sprintf("after %d reads", n)), nil)
		})
	}
	for _, c := range []struct {
		name string
		run  func(int) error
		n    int
		ok   bool
	}{
		{"writes at the limit", puts, limit - 1, true},
		{"writes over the limit", puts, limit, false},
		{"compares at the limit", reads, limit - 1, true},
		{"compares over the limit", reads, limit, false},
		// Over MaxRequestBytes but within the client's gRPC allowance and
		// the server's: only the configured limit refuses it.
		{"bytes over the limit", func(int) error {
			return db.Update(func(tx store.Tx) error {
				return tx.Bucket([]byte("b")).Put([]byte("big"), make([]byte, 1<<20+16<<10))
			})
		}, 0, false},
	} {
		err := c.run(c.n)
		if c.ok && err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if !c.ok && !errors.Is(err, store.ErrTxnTooLarge) {
			t.Errorf("%s: got %v, want ErrTxnTooLarge", c.name, err)
		}
	}
}

// TestEtcdDeleteAndRecreateRace: an Update deletes a bucket and makes it
// again with new pairs (etcd cannot delete the range and put inside it in
// one Txn, so the old keys go one by one, as its snapshot lists them).
// Another process adds a pair to the old bucket after that snapshot: the
// commit must conflict rather than leave that pair in the new bucket.
func TestEtcdDeleteAndRecreateRace(t *testing.T) {
	srv := etcdtest.Start(t)
	a := openEtcd(t, srv, "/r/", store.EtcdOptions{})
	b := openEtcd(t, srv, "/r/", store.EtcdOptions{})
	putAll(t, a, "k", map[string]string{"old": "1"})
	runs := 0
	update(t, a, func(tx store.Tx) error {
		runs++
		if err := tx.DeleteBucket([]byte("k")); err != nil {
			return err
		}
		if runs == 1 {
			update(t, b, func(tx store.Tx) error { return tx.Bucket([]byte("k")).Put([]byte("late"), []byte("1")) })
		}
		bk, err := tx.CreateBucketIfNotExists([]byte("k"))
		if err != nil {
			return err
		}
		return bk.Put([]byte("new"), []byte("1"))
	})
	must(t, a.View(func(tx store.Tx) error {
		if got := pairs(t, tx, "k"); len(got) != 1 || got[0] != "new=1" {
			t.Fatalf("the re-created bucket holds %q, want only new=1 (fn ran %d times)", got, runs)
		}
		return nil
	}))
}
