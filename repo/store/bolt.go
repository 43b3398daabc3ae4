package store

import (
	"errors"
	"fmt"
	"iter"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrHeld: OpenBolt found the file locked by another process.
var ErrHeld = errors.New("store: file is held by another process")

// OpenBolt opens (creating it if need be) the bbolt file at path, waiting
// at most timeout (0: forever) for another process's lock.
func OpenBolt(path string, timeout time.Duration) (DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("opening %q: %w", path, ErrHeld)
		}
		return nil, fmt.Errorf("opening %q: %w", path, err)
	}
	return &boltDB{db: db}, nil
}

type boltDB struct{ db *bolt.DB }

func (d *boltDB) View(fn func(Tx) error) error {
	return boltErr(d.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) }))
}

func (d *boltDB) Update(fn func(Tx) error) error {
	return boltErr(d.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) }))
}

func (d *boltDB) Close() error { return d.db.Close() }

// boltErr maps bbolt's errors to this package's, leaving fn's own as is.
func boltErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bolt.ErrDatabaseNotOpen):
		return ErrClosed
	}
	return err
}

func mapBoltErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bolt.ErrBucketNotFound):
		return ErrBucketNotFound
	case errors.Is(err, bolt.ErrBucketExists):
		return ErrBucketExists
	case errors.Is(err, bolt.ErrIncompatibleValue):
		return ErrIncompatibleValue
	case errors.Is(err, bolt.ErrKeyRequired), errors.Is(err, bolt.ErrBucketNameRequired):
		return ErrKeyRequired
	case errors.Is(err, bolt.ErrTxNotWritable):
		return ErrTxNotWritable
	}
	return err
}

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) Bucket(name []byte) Bucket {
	if b := t.tx.Bucket(name); b != nil {
		return boltBucket{b}
	}
	return nil
}

func (t boltTx) CreateBucketIfNotExists(name []byte) (Bucket, error) {
	b, err := t.tx.CreateBucketIfNotExists(name)
	if err != nil {
		return nil, mapBoltErr(err)
	}
	return boltBucket{b}, nil
}

func (t boltTx) DeleteBucket(name []byte) error { return mapBoltErr(t.tx.DeleteBucket(name)) }

func (t boltTx) ForEachBucket(fn func(name []byte) error) error {
	return t.tx.ForEach(func(name []byte, _ *bolt.Bucket) error { return fn(name) })
}

func (t boltTx) Writable() bool { return t.tx.Writable() }

func (t boltTx) Check() iter.Seq[error] {
	return func(yield func(error) bool) {
		ch := t.tx.Check()
		for err := range ch {
			if !yield(err) {
				for range ch { // let bbolt's checker finish
				}
				return
			}
		}
	}
}

type boltBucket struct{ b *bolt.Bucket }

func (b boltBucket) Get(key []byte) []byte { return b.b.Get(key) }

func (b boltBucket) Put(key, value []byte) error {
	if value == nil {
		value = []byte{} // bbolt stores nil as empty; say so
	}
	return mapBoltErr(b.b.Put(key, value))
}

func (b boltBucket) Delete(key []byte) error { return mapBoltErr(b.b.Delete(key)) }

func (b boltBucket) ForEach(fn func(k, v []byte) error) error {
	return b.b.ForEach(func(k, v []byte) error {
		if v == nil { // a nested bucket
			return nil
		}
		return fn(k, v)
	})
}

func (b boltBucket) ForEachBucket(fn func(name []byte) error) error {
	return b.b.ForEachBucket(fn)
}

func (b boltBucket) Cursor() Cursor { return &boltCursor{c: b.b.Cursor()} }

func (b boltBucket) Bucket(name []byte) Bucket {
	if n := b.b.Bucket(name); n != nil {
		return boltBucket{n}
	}
	return nil
}

func (b boltBucket) CreateBucketIfNotExists(name []byte) (Bucket, error) {
	n, err := b.b.CreateBucketIfNotExists(name)
	if err != nil {
		return nil, mapBoltErr(err)
	}
	return boltBucket{n}, nil
}

func (b boltBucket) DeleteBucket(name []byte) error { return mapBoltErr(b.b.DeleteBucket(name)) }

func (b boltBucket) NextSequence() (uint64, error) {
	n, err := b.b.NextSequence()
	return n, mapBoltErr(err)
}

func (b boltBucket) Stats() BucketStats {
	// bbolt's Stats walks every page and counts nested buckets' keys too;
	// counting the pairs is what callers mean.
	n := 0
	c := b.b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v != nil {
			n++
		}
	}
	return BucketStats{KeyN: n}
}

// boltCursor hides nested buckets (bbolt returns them with a nil value).
// The loops are written out: a walk over 100,000 packages calls Next for
// each, and a method value per step costs more than the step.
type boltCursor struct{ c *bolt.Cursor }

func (c *boltCursor) forward(k, v []byte) ([]byte, []byte) {
	for k != nil && v == nil {
		k, v = c.c.Next()
	}
	return k, v
}

func (c *boltCursor) backward(k, v []byte) ([]byte, []byte) {
	for k != nil && v == nil {
		k, v = c.c.Prev()
	}
	return k, v
}

func (c *boltCursor) First() ([]byte, []byte)          { return c.forward(c.c.First()) }
func (c *boltCursor) Last() ([]byte, []byte)           { return c.backward(c.c.Last()) }
func (c *boltCursor) Next() ([]byte, []byte)           { return c.forward(c.c.Next()) }
func (c *boltCursor) Prev() ([]byte, []byte)           { return c.backward(c.c.Prev()) }
func (c *boltCursor) Seek(key []byte) ([]byte, []byte) { return c.forward(c.c.Seek(key)) }
