package store_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/repoctl/repoctl/repo/store"
)

// BenchmarkBoltSeam compares a walk and point reads over 20,000 keys
// through the seam with the same on bbolt directly: the cost repo pays for
// the interface on its default backend.
func BenchmarkBoltSeam(b *testing.B) {
	p := filepath.Join(b.TempDir(), "b.db")
	db, err := store.OpenBolt(p, time.Second)
	if err != nil {
		b.Fatal(err)
	}
	const n = 20000
	if err := db.Update(func(tx store.Tx) error {
		bk, err := tx.CreateBucketIfNotExists([]byte("packages"))
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			if err := bk.Put([]byte(fmt.Sprintf("main\x00pkg-%06d-1.0-1.el9.x86_64", i)), make([]byte, 200)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	db.Close()
	keys := make([][]byte, 1000)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("main\x00pkg-%06d-1.0-1.el9.x86_64", i*17%n))
	}
	b.Run("seam", func(b *testing.B) {
		db, err := store.OpenBolt(p, time.Second)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		b.ReportAllocs()
		for b.Loop() {
			if err := db.View(func(tx store.Tx) error {
				c, got := tx.Bucket([]byte("packages")).Cursor(), 0
				for k, _ := c.First(); k != nil; k, _ = c.Next() {
					got++
				}
				for _, k := range keys {
					if tx.Bucket([]byte("packages")).Get(k) == nil {
						return fmt.Errorf("%q missing", k)
					}
				}
				if got != n {
					return fmt.Errorf("walked %d", got)
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw", func(b *testing.B) {
		db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		b.ReportAllocs()
		for b.Loop() {
			if err := db.View(func(tx *bolt.Tx) error {
				c, got := tx.Bucket([]byte("packages")).Cursor(), 0
				for k, _ := c.First(); k != nil; k, _ = c.Next() {
					got++
				}
				for _, k := range keys {
					if tx.Bucket([]byte("packages")).Get(k) == nil {
						return fmt.Errorf("%q missing", k)
					}
				}
				if got != n {
					return fmt.Errorf("walked %d", got)
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
