package repo

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	kv "github.com/repoctl/repoctl/repo/store"
)

// migrateFile migrates the bbolt store at path if it is at schema 1 or
// 2; a missing file (a new root) or one at the current schema is left
// alone. The old file is only read: a crash or an error leaves it as it
// was, and the next open migrates again.
func migrateFile(path string) error {
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, ReadOnly: true})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return fmt.Errorf("%w: store %q is held by a program outside repoctl", ErrLocked, path)
		}
		return fmt.Errorf("opening store %q: %w", path, err)
	}
	defer db.Close()
	var v []byte
	err = db.View(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMeta); m != nil {
			v = append(v, m.Get([]byte("schema"))...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading the schema of store %q: %w", path, err)
	}
	if string(v) != "1" && string(v) != "2" {
		return nil
	}
	if err := migrateStore(db, path, string(v)); err != nil {
		return fmt.Errorf("migrating store %q from schema %s to %s: %w", path, v, schemaVersion, err)
	}
	return nil
}

// migrateStore brings a store at schema 1 or 2 to schemaVersion by
// copying it into path+".migrate", converting the package records on the
// way (store_codec.go), and renaming the copy over path. The old file is
// only read, so a crash at any point leaves either it or the finished
// copy at path; a leftover .migrate file is a copy that did not finish
// and is started again. The copy is compact: bbolt never gives back the
// pages an in-place rewrite of every record would free, and the keys go
// in in order, filling every page. Both files' pages leave the RSS after
// each batch, so that migrating a big store does not hold it all resident.
func migrateStore(old *bolt.DB, path, from string) error {
	tmp := path + ".migrate"
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("removing an unfinished migration: %w", err)
	}
	mode := os.FileMode(0o600)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	// NoSync while copying: nothing reads the copy before it is synced
	// once, below, and renamed into place.
	ndb, err := bolt.Open(tmp, mode, &bolt.Options{NoSync: true, NoFreelistSync: true})
	if err != nil {
		return fmt.Errorf("creating %q: %w", tmp, err)
	}
	fail := func(err error) error {
		ndb.Close()
		os.Remove(tmp)
		return err
	}
	err = old.View(func(otx *bolt.Tx) error {
		return otx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if string(name) == string(bucketPackages) {
				return migratePackages(ndb, b)
			}
			return copyBucket(ndb, [][]byte{name}, b)
		})
	})
	if err != nil {
		return fail(err)
	}
	if err := ndb.Sync(); err != nil {
		return fail(fmt.Errorf("syncing %q: %w", tmp, err))
	}
	if err := ndb.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("closing %q: %w", tmp, err)
	}
	// The last step works on records, so it goes through the store seam
	// as every other change does (bbolt syncs the commit).
	kdb, err := kv.OpenBolt(tmp, 2*time.Second)
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("reopening %q: %w", tmp, err)
	}
	err = kdb.Update(func(tx kv.Tx) error {
		if err := createBuckets(tx); err != nil {
			return err
		}
		if from == "1" {
			// Schema 2's migration, on the converted records.
			if err := importVersions(tx); err != nil {
				return fmt.Errorf("giving each channel its version 1: %w", err)
			}
		}
		return tx.Bucket(bucketMeta).Put([]byte("schema"), []byte(schemaVersion))
	})
	if cerr := kdb.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := migrateHook("rename"); err != nil {
		return err // the copy stays, as a crash here would leave it
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replacing the store: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// migrateHook lets tests fail a migration at one of its stages ("batch"
// after each committed batch of the copy, "rename" before the rename),
// as a crash there would.
var migrateHook = func(stage string) error { return nil }

// migrateBatch bounds the bytes one transaction of the copy writes, and
// so the memory bbolt holds for it.
const migrateBatch = 16 << 20

type kvPair struct{ k, v []byte }

// putBatch writes kvs into the bucket at path of ndb, in one transaction.
func putBatch(ndb *bolt.DB, path [][]byte, seq uint64, kvs []kvPair, put func(b *bolt.Bucket, tx *bolt.Tx, x kvPair) error) error {
	err := ndb.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(path[0])
		if err != nil {
			return err
		}
		for _, p := range path[1:] {
			if b, err = b.CreateBucketIfNotExists(p); err != nil {
				return err
			}
		}
		b.FillPercent = 1 // keys come in order
		if err := b.SetSequence(seq); err != nil {
			return err
		}
		for _, x := range kvs {
			if err := put(b, tx, x); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("copying bucket %q: %w", path, err)
	}
	ndb.View(func(tx *bolt.Tx) error { kv.BoltDropResident(tx); return nil })
	return migrateHook("batch")
}

// copyBucket copies ob and its nested buckets, as they are, to path in ndb.
func copyBucket(ndb *bolt.DB, path [][]byte, ob *bolt.Bucket) error {
	raw := func(b *bolt.Bucket, _ *bolt.Tx, x kvPair) error { return b.Put(x.k, x.v) }
	var batch []kvPair
	size := 0
	var nested [][]byte
	flush := func() error {
		err := putBatch(ndb, path, ob.Sequence(), batch, raw)
		batch, size = batch[:0], 0
		kv.BoltDropResident(ob.Tx()) // the old file's pages this batch read
		return err
	}
	c := ob.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			nested = append(nested, k)
			continue
		}
		batch = append(batch, kvPair{k, v})
		if size += len(k) + len(v); size >= migrateBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	for _, n := range nested {
		if err := copyBucket(ndb, append(path[:len(path):len(path)], n), ob.Bucket(n)); err != nil {
			return err
		}
	}
	return nil
}

// migratePackages converts the package records of schema 1 and 2 (the
// whole Entry in the JSON) into records and fragments.
func migratePackages(ndb *bolt.DB, ob *bolt.Bucket) error {
	conv := func(b *bolt.Bucket, tx *bolt.Tx, x kvPair) error {
		var p PackageRecord
		if err := json.Unmarshal(x.v, &p); err != nil {
			return fmt.Errorf("decoding package %q: %w", x.k, err)
		}
		fb, err := tx.CreateBucketIfNotExists(bucketFragments)
		if err != nil {
			return err
		}
		fb.FillPercent = 1
		return putPackageRaw(b, fb, x.k, &p)
	}
	var batch []kvPair
	size := 0
	flush := func() error {
		err := putBatch(ndb, [][]byte{bucketPackages}, ob.Sequence(), batch, conv)
		batch, size = batch[:0], 0
		kv.BoltDropResident(ob.Tx())
		return err
	}
	c := ob.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			return fmt.Errorf("package key %q is a bucket", k)
		}
		batch = append(batch, kvPair{k, v})
		// Converted records take about a third of their old size.
		if size += (len(k) + len(v)) / 3; size >= migrateBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}
