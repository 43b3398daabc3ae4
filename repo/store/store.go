// Package store is repoctl's transactional, ordered key/value seam: the
// shape of what repo keeps in its store (buckets of sorted keys, nested
// buckets, cursors, sequences) behind one interface, with two
// implementations: bbolt, one file on local disk and the default, and
// etcd, which several daemons share (see OpenEtcd).
//
// It is for storing small records that must change together, all or
// nothing. It is not a blob store (the etcd backend caps values and
// transactions; see EtcdOptions), not a cache, and it knows nothing about
// packages, channels or events: those encodings stay in repo, which is
// why this package must never import repo.
//
// Semantics, the same on every implementation (the conformance suite in
// store_test.go checks them on both):
//   - View runs fn on one consistent snapshot. Update runs fn in one
//     serializable transaction: either all of its writes land or none do.
//     An error from fn rolls the transaction back and is returned as is.
//   - Keys sort as raw bytes. Any byte string is a valid key (0x00, 0xff,
//     '/', but not the empty key, which bbolt refuses; at most bbolt's 32
//     KiB). Values may be empty: Get returns a non-nil empty slice for them
//     and nil for a missing key.
//   - Buckets nest. ForEach and Cursor visit a bucket's key/value pairs
//     only; ForEachBucket visits its nested buckets. Do not use one name for
//     a key and a nested bucket of the same bucket: bbolt refuses it, etcd
//     keeps the two apart, so code relying on either is not portable.
//   - Within an Update, reads see the transaction's own writes.
//   - Update may run fn more than once on a backend that retries on a
//     conflict (etcd); fn must not have effects outside the Tx that a second
//     run would double. Updates of one DB handle are serialized, as bbolt's
//     are, so a retry only follows a write by another process (and an
//     Update inside an Update of the same handle deadlocks, on both).
//   - Slices returned by Get and cursors are valid only inside the
//     transaction; copy what outlives it.
package store

import (
	"errors"
	"iter"
)

// Errors callers compare with errors.Is.
var (
	// ErrFenced: an Update carrying a fence found the fence key gone or
	// re-created, so the writer no longer holds what it was fenced on (a
	// deposed leader); nothing was written.
	ErrFenced = errors.New("store: write fenced off (the fence key changed: no longer the leader)")
	// ErrTxnTooLarge: a transaction does not fit the backend's limits
	// (etcd's --max-txn-ops, --max-request-bytes); nothing was written.
	ErrTxnTooLarge = errors.New("store: transaction too large for the backend")
	// ErrConflict: an Update kept conflicting with other writers after
	// every retry; nothing was written.
	ErrConflict = errors.New("store: transaction kept conflicting with other writers")
	// ErrBucketNotFound, ErrBucketExists, ErrIncompatibleValue,
	// ErrKeyRequired, ErrTxNotWritable: as bbolt's errors of the same names.
	ErrBucketNotFound    = errors.New("store: bucket not found")
	ErrBucketExists      = errors.New("store: bucket already exists")
	ErrIncompatibleValue = errors.New("store: key holds a bucket, not a value (or the reverse)")
	ErrKeyRequired       = errors.New("store: key required")
	ErrTxNotWritable     = errors.New("store: transaction not writable")
	// ErrFenceUnsupported: Fenced on a backend with no leader to fence on.
	ErrFenceUnsupported = errors.New("store: backend does not support fencing")
	// ErrClosed: the DB was closed.
	ErrClosed = errors.New("store: closed")
)

// DB is an open store.
type DB interface {
	// View runs fn in a read-only transaction on one snapshot.
	View(fn func(Tx) error) error
	// Update runs fn in a read-write transaction and commits it if fn
	// returns nil.
	Update(fn func(Tx) error) error
	// Close releases the store. Transactions after it fail with ErrClosed.
	Close() error
}

// Tx is one transaction. It is not safe for concurrent use.
type Tx interface {
	// Bucket is the top-level bucket name, nil if there is none.
	Bucket(name []byte) Bucket
	CreateBucketIfNotExists(name []byte) (Bucket, error)
	DeleteBucket(name []byte) error
	// ForEachBucket calls fn with the name of every top-level bucket, in order.
	ForEachBucket(fn func(name []byte) error) error
	Writable() bool
	// Check yields what is inconsistent in the store (bbolt: its page
	// check; etcd keeps its own integrity and yields nothing).
	Check() iter.Seq[error]
}

// Bucket is a sorted set of key/value pairs and nested buckets.
type Bucket interface {
	// Get is the value of key, nil if key is missing or names a bucket.
	Get(key []byte) []byte
	Put(key, value []byte) error
	Delete(key []byte) error
	// ForEach calls fn for every key/value pair in key order. fn must not
	// change the bucket; collect and change after, or use a Cursor.
	ForEach(fn func(k, v []byte) error) error
	// ForEachBucket calls fn with every nested bucket's name, in order.
	ForEachBucket(fn func(name []byte) error) error
	Cursor() Cursor
	Bucket(name []byte) Bucket
	CreateBucketIfNotExists(name []byte) (Bucket, error)
	DeleteBucket(name []byte) error
	// NextSequence returns the bucket's next integer (1, 2, ...), unique
	// among the committed transactions that used it.
	NextSequence() (uint64, error)
	Stats() BucketStats
}

// BucketStats is what repo asks of a bucket's size.
type BucketStats struct {
	KeyN int // key/value pairs, nested buckets not counted
}

// Cursor walks a bucket's key/value pairs in key order. Every move
// returns the pair it lands on, or nil, nil past either end. A key deleted
// (by Bucket.Delete) while a cursor stands on it leaves the cursor where
// it was: Next goes on to the following key.
type Cursor interface {
	First() (k, v []byte)
	Last() (k, v []byte)
	// Seek moves to key, or the first key after it.
	Seek(key []byte) (k, v []byte)
	Next() (k, v []byte)
	Prev() (k, v []byte)
}

// Fence guards every write of an Update: the transaction commits only if
// Key still exists with CreateRevision Rev (for an etcd election, the
// leader's key and its create revision: a new leader writes a new key).
type Fence struct {
	Key string
	Rev int64
}

// Fencer is a DB whose writes can be fenced.
type Fencer interface {
	// Fenced is a handle on the same store whose Updates all carry f.
	Fenced(f Fence) DB
}

// Writes reports whether the write transaction tx has buffered changes
// to commit. A backend that cannot tell (bbolt, which writes in place)
// says true.
func Writes(tx Tx) bool {
	if w, ok := tx.(interface{ pendingWrites() bool }); ok {
		return w.pendingWrites()
	}
	return true
}

// Fenced is db with every Update carrying f; ErrFenceUnsupported if
// db's backend has no fencing (bbolt: one process owns the file).
func Fenced(db DB, f Fence) (DB, error) {
	fc, ok := db.(Fencer)
	if !ok {
		return nil, ErrFenceUnsupported
	}
	return fc.Fenced(f), nil
}
