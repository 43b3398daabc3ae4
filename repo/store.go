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
// with any bbolt tool and survives field additions.
var (
	bucketPackages = []byte("packages") // repo \x00 NEVRA → PackageRecord
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
const schemaVersion = "2"

// store wraps the bbolt handle. All multi-record changes happen in one
// bbolt transaction so that a crash leaves either all or nothing.
type store struct {
	db kv.DB
}

func openStore(path string) (*store, error) {
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

// initStore creates the buckets and migrates the schema; name is the
// store's path or address, for errors.
func initStore(db kv.DB, name string) (*store, error) {
	err := db.Update(func(tx kv.Tx) error {
		for _, b := range [][]byte{bucketPackages, bucketEvents, bucketJournal, bucketMeta, bucketDirty,
			bucketChanVer, bucketChanBase, bucketTrash, bucketComps, bucketAdvisories} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		switch v := m.Get([]byte("schema")); {
		case v == nil || string(v) == schemaVersion:
		case string(v) == "1":
			if err := importVersions(tx); err != nil {
				return fmt.Errorf("migrating store schema 1 to %s: %w", schemaVersion, err)
			}
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
	var p PackageRecord
	ok, err := getJSON(tx.Bucket(bucketPackages), pkgKey(repo, nevra), &p)
	if err != nil || !ok {
		return nil, err
	}
	return &p, nil
}

func putPackage(tx kv.Tx, p *PackageRecord) error {
	return putJSON(tx.Bucket(bucketPackages), pkgKey(p.Repo, p.NEVRA), p)
}

func deletePackage(tx kv.Tx, repo, nevra string) error {
	return tx.Bucket(bucketPackages).Delete(pkgKey(repo, nevra))
}

// eachPackage calls fn for every package of repo ("" = all) in key order.
func eachPackage(tx kv.Tx, repo string, fn func(*PackageRecord) error) error {
	c := tx.Bucket(bucketPackages).Cursor()
	var prefix []byte
	if repo != "" {
		prefix = []byte(repo + "\x00")
	}
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var p PackageRecord
		if err := json.Unmarshal(v, &p); err != nil {
			return fmt.Errorf("decoding package %q: %w", k, err)
		}
		if err := fn(&p); err != nil {
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

func (s *store) setJournal(items ...*journalItem) error {
	return s.db.Update(func(tx kv.Tx) error {
		for _, it := range items {
			if err := putJournal(tx, it); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *store) dropJournal(ids ...string) error {
	return s.db.Update(func(tx kv.Tx) error {
		for _, id := range ids {
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
