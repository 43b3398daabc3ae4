package repo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	kv "github.com/repoctl/repoctl/repo/store"
)

// Buckets of ROOT/repoctl.db. Values are JSON so that the store can be read
// with any bbolt tool and survives field additions; the one exception is
// the fragments bucket (store_codec.go), zstd-compressed XML.
var (
	bucketPackages = []byte("packages") // repo \x00 NEVRA → PackageRecord without fragments (store_codec.go)
	bucketEvents   = []byte("events")   // big-endian seq → Event
	bucketJournal  = []byte("journal")  // item id → journalItem
	bucketMeta     = []byte("meta")     // "schema" → version
	bucketDirty    = []byte("dirty")    // repository dir whose repodata lags the store → ""
	bucketComps    = []byte("comps")    // repository name → CompsInfo (comps.go)
	// bucketAdvisories: repo \x00 advisory id → Advisory.
	bucketAdvisories = []byte("advisories")
)

// schemaVersion 2 added channel versions: a store at 1 (repoctl before
// them) is migrated by giving each channel its version 1 (importVersions).
// Schema 3 moved the fragments out of the package records into the
// fragments bucket, compressed (store_codec.go); a store at 1 or 2 is
// migrated by a compacting copy (store_migrate.go).
const schemaVersion = "3"

// store wraps the bbolt handle. All multi-record changes happen in one
// bbolt transaction so that a crash leaves either all or nothing.
type store struct {
	db kv.DB
}

func openStore(path string) (*store, error) {
	// Stores at schema 1 or 2 exist only as bbolt files (the etcd backend
	// came with schema 3), and their migration is a copy of the file, so
	// it runs on the file before the store opens it.
	if err := migrateFile(path); err != nil {
		return nil, err
	}
	// The ROOT lock is already ours, so bbolt's own flock is free; the
	// short timeout only guards against a foreign program holding the file.
	db, err := kv.OpenBolt(path, 2*time.Second)
	if err != nil {
		if errors.Is(err, kv.ErrHeld) {
			return nil, fmt.Errorf("%w: store %q is held by a program outside repoctl", ErrLocked, path)
		}
		return nil, fmt.Errorf("opening store %q: %w", path, err)
	}
	return initStore(db, path)
}

// initStore creates the buckets and checks the schema; name is the
// store's path or address, for errors.
func initStore(db kv.DB, name string) (*store, error) {
	err := db.Update(func(tx kv.Tx) error {
		if err := createBuckets(tx); err != nil {
			return err
		}
		m := tx.Bucket(bucketMeta)
		switch v := m.Get([]byte("schema")); {
		case v == nil || string(v) == schemaVersion:
		default:
			return fmt.Errorf("store schema %q, this repoctl knows %q (a newer repoctl wrote it)", v, schemaVersion)
		}
		return m.Put([]byte("schema"), []byte(schemaVersion))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialising store %q: %w", name, err)
	}
	return &store{db: db}, nil
}

// storeBuckets are the top-level buckets every store has.
func storeBuckets() [][]byte {
	return [][]byte{bucketPackages, bucketFragments, bucketEvents, bucketJournal, bucketMeta, bucketDirty,
		bucketChanVer, bucketChanBase, bucketTrash, bucketComps, bucketAdvisories}
}

func createBuckets(tx kv.Tx) error {
	for _, b := range storeBuckets() {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

func (s *store) close() error { return s.db.Close() }

func pkgKey(repo, nevra string) []byte {
	return []byte(repo + "\x00" + nevra)
}

func getJSON(b kv.Bucket, key []byte, v any) (bool, error) {
	raw := b.Get(key)
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("decoding %s/%q: %w", "store", key, err)
	}
	return true, nil
}

func putJSON(b kv.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

func getPackage(tx kv.Tx, repo, nevra string) (*PackageRecord, error) {
	k := pkgKey(repo, nevra)
	v := tx.Bucket(bucketPackages).Get(k)
	if v == nil {
		return nil, nil
	}
	return decodePackage(tx, k, v)
}

func putPackage(tx kv.Tx, p *PackageRecord) error {
	return putPackageRaw(tx.Bucket(bucketPackages), tx.Bucket(bucketFragments), pkgKey(p.Repo, p.NEVRA), p)
}

func deletePackage(tx kv.Tx, repo, nevra string) error {
	k := pkgKey(repo, nevra)
	if err := tx.Bucket(bucketFragments).Delete(k); err != nil {
		return err
	}
	return tx.Bucket(bucketPackages).Delete(k)
}

// eachPackage calls fn for every package of repo ("" = all) in key order,
// each with its whole Entry.
func eachPackage(tx kv.Tx, repo string, fn func(*PackageRecord) error) error {
	return scanPackages(tx, repo, true, fn)
}

// eachPackageLight is eachPackage with light Entries (no fragments): it
// reads the records only, a fifth of the store's package bytes.
func eachPackageLight(tx kv.Tx, repo string, fn func(*PackageRecord) error) error {
	return scanPackages(tx, repo, false, fn)
}

func scanPackages(tx kv.Tx, repo string, frags bool, fn func(*PackageRecord) error) error {
	c := tx.Bucket(bucketPackages).Cursor()
	var prefix []byte
	if repo != "" {
		prefix = []byte(repo + "\x00")
	}
	n := 0
	defer func() {
		if n >= 4096 {
			kv.DropResident(tx)
		}
	}()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		// A long scan's pages leave the RSS as it goes (store_mem.go).
		if n++; n%16384 == 0 {
			kv.DropResident(tx)
		}
		var p *PackageRecord
		var err error
		if frags {
			p, err = decodePackage(tx, k, v)
		} else {
			p, err = decodeRecord(k, v)
		}
		if err != nil {
			return err
		}
		if err := fn(p); err != nil {
			return err
		}
	}
	return nil
}

// Journal states of one ingested file, in order.
const (
	stateReceived  = "received"  // journaled; the file is (being) moved or copied into the spool
	stateValidated = "validated" // header read, routed, not a duplicate
	stateSigned    = "signed"    // spool copy signed and re-read; Record filled in
	statePlaced    = "placed"    // linked into every target directory
	statePublished = "published" // repodata of every target directory lists it
	// "recorded" is not stored: recording deletes the journal item in the
	// same transaction that writes the package record and its events.
)

// journalItem is one file in flight.
type journalItem struct {
	ID      string         `json:"id"`
	Src     string         `json:"src"`   // the path we were given
	Spool   string         `json:"spool"` // our private copy
	Move    bool           `json:"move"`  // Src was handed over (drop-in)
	Repo    string         `json:"repo"`
	Channel string         `json:"channel"`
	Who     string         `json:"who"`
	Caller  *Caller        `json:"caller,omitempty"` // kernel credentials of who asked
	Note    string         `json:"note,omitempty"`   // who the client claimed to be, if different
	State   string         `json:"state"`
	Time    time.Time      `json:"time"`
	Record  *PackageRecord `json:"record,omitempty"`
	// Owner is the daemon of an HA pair that took the file ([store]
	// node; "" outside a pair): its spool copy is on that daemon's disk,
	// so only that daemon resumes the item.
	Owner string `json:"owner,omitempty"`
}

func (it *journalItem) actor() actor {
	return actor{who: it.Who, caller: it.Caller, note: it.Note}
}

func putJournal(tx kv.Tx, it *journalItem) error {
	return putJSON(tx.Bucket(bucketJournal), []byte(it.ID), it)
}

// setJournal saves items, in parts if the store's transactions cannot
// hold them all: each item is its own.
func (s *store) setJournal(items ...*journalItem) error {
	return kv.UpdateInParts(s.db, len(items), func(tx kv.Tx, lo, hi int) error {
		for _, it := range items[lo:hi] {
			if err := putJournal(tx, it); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *store) dropJournal(ids ...string) error {
	return kv.UpdateInParts(s.db, len(ids), func(tx kv.Tx, lo, hi int) error {
		for _, id := range ids[lo:hi] {
			if err := tx.Bucket(bucketJournal).Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *store) journal() ([]*journalItem, error) {
	var out []*journalItem
	err := s.db.View(func(tx kv.Tx) error {
		return tx.Bucket(bucketJournal).ForEach(func(k, v []byte) error {
			var it journalItem
			if err := json.Unmarshal(v, &it); err != nil {
				return fmt.Errorf("decoding journal item %q: %w", k, err)
			}
			out = append(out, &it)
			return nil
		})
	})
	return out, err
}

func markDirty(tx kv.Tx, dirs []string) error {
	b := tx.Bucket(bucketDirty)
	for _, d := range dirs {
		if err := b.Put([]byte(d), nil); err != nil {
			return err
		}
	}
	return nil
}

func (s *store) dirtyDirs() ([]string, error) {
	var out []string
	err := s.db.View(func(tx kv.Tx) error {
		return tx.Bucket(bucketDirty).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, err
}
