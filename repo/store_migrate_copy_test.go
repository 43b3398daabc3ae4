package repo

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	kv "github.com/repoctl/repoctl/repo/store"
)

// boltPairs is every pair of the bbolt file at path, nested buckets
// included, as "bucket/nested/…/key" → value; the package records, their
// fragments and the schema number (which the migration rewrites) left out.
func boltPairs(t *testing.T, path string) map[string]string {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string]string{}
	var walk func(prefix string, b *bolt.Bucket) error
	walk = func(prefix string, b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				out[prefix+string(k)+"/"] = "(bucket)"
				return walk(prefix+string(k)+"/", b.Bucket(k))
			}
			out[prefix+string(k)] = string(v)
			return nil
		})
	}
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			switch string(name) {
			case string(bucketPackages), string(bucketFragments):
				return nil
			}
			return walk(string(name)+"/", b)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	delete(out, string(bucketMeta)+"/schema")
	return out
}

// TestStoreMigrateCopiesEverything: the schema 2 → 3 migration copies
// every other bucket as it is, nested buckets (the channels' held files)
// and their pairs included, and keeps the file's mode.
func TestStoreMigrateCopiesEverything(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	ctx := context.Background()
	r := openPL(t, root)
	if res, err := r.Add(ctx, []string{writeSpec(t, t.TempDir(), spec("alpha", "1.0", "1.el9", "x86_64"))}, AddOptions{}); err != nil || len(res) != 1 {
		t.Fatalf("add: %+v %v", res, err)
	}
	// Nested buckets as held placements make them, two levels deep.
	if err := r.st.db.Update(func(tx kv.Tx) error {
		nb, err := tx.Bucket(bucketChanBase).CreateBucketIfNotExists([]byte("main\x00staging"))
		if err != nil {
			return err
		}
		if err := nb.Put([]byte("held"), []byte("1")); err != nil {
			return err
		}
		deeper, err := nb.CreateBucketIfNotExists([]byte("deeper"))
		if err != nil {
			return err
		}
		return deeper.Put([]byte("k"), []byte("v"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(root, "repoctl.db")
	downgradeToV2(t, db)
	want := boltPairs(t, db)
	if !strings.Contains(strings.Join(slices.Collect(maps.Keys(want)), " "), "/deeper/k") {
		t.Fatalf("setup: no nested pair in %v", slices.Collect(maps.Keys(want)))
	}
	// An operator's mode (a group that reads backups, say) is kept.
	if err := os.Chmod(db, 0o640); err != nil {
		t.Fatal(err)
	}
	st, err := openStore(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(db); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("the migrated store's mode: %v, %v; want 0640 as before", fi.Mode(), err)
	}
	got := boltPairs(t, db)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%q after the migration: %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && !strings.HasPrefix(k, string(bucketMeta)+"/") {
			t.Errorf("%q appeared in the migration", k)
		}
	}
}
