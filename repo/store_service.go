package repo

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// List returns the packages matching o, without their rendered metadata.
func (r *Repo) List(ctx context.Context, o ListOptions) ([]PackageRecord, error) {
	out := []PackageRecord{}
	err := r.view(func(tx *bolt.Tx) error {
		return eachPackage(tx, o.Repo, func(p *PackageRecord) error {
			if (o.Channel != "" && !p.InChannel(o.Channel)) || (o.Name != "" && p.Name != o.Name) {
				return nil
			}
			p.Entry = nil
			out = append(out, *p)
			return nil
		})
	})
	return out, err
}

// view reads the store without waiting for a running batch: bbolt gives
// it a consistent snapshot.
func (r *Repo) view(fn func(tx *bolt.Tx) error) error {
	if r.isClosed.Load() {
		return ErrClosed
	}
	err := r.st.db.View(fn)
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// Status summarises the root: key, counts, in-flight items and directories.
func (r *Repo) Status(ctx context.Context) (*Status, error) {
	st := &Status{Root: r.cfg.Root, Config: r.cfg.File, KeyID: r.key.KeyID(), Fingerprint: r.key.Fingerprint(), HTTP: r.cfg.HTTP.PublicURL, Repos: []RepoStatus{}}
	perDir := map[string]int{}
	err := r.view(func(tx *bolt.Tx) error {
		if err := eachPackage(tx, "", func(p *PackageRecord) error {
			st.Packages++
			for _, pl := range p.Placements {
				perDir[pl.Dir]++
			}
			return nil
		}); err != nil {
			return err
		}
		if k, v := tx.Bucket(bucketEvents).Cursor().Last(); k != nil {
			var e Event
			if err := json.Unmarshal(v, &e); err == nil {
				st.Events = e.Seq
				st.LastEvent = &e.Time
			}
		}
		st.InFlight = tx.Bucket(bucketJournal).Stats().KeyN
		st.Dirty = tx.Bucket(bucketDirty).Stats().KeyN
		return nil
	})
	if err != nil {
		return nil, err
	}
	for dir, n := range perDir {
		parts := strings.Split(dir, "/")
		if len(parts) < 4 {
			continue
		}
		st.Repos = append(st.Repos, RepoStatus{Repo: parts[0], Channel: parts[1],
			Release: strings.Join(parts[2:len(parts)-1], "/"), Arch: parts[len(parts)-1], Dir: dir, Packages: n})
	}
	sort.Slice(st.Repos, func(i, j int) bool { return st.Repos[i].Dir < st.Repos[j].Dir })
	for _, d := range r.cfg.DropIns {
		st.Incoming += countFiles(d.Dir, func(n string) bool { return !IgnoredName(n) })
	}
	st.Rejected = countFiles(r.cfg.Paths.Rejected, func(n string) bool { return !strings.HasSuffix(n, ".reason") && !strings.HasPrefix(n, ".") })
	return st, nil
}

func countFiles(dir string, keep func(string) bool) int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if e.Type().IsRegular() && keep(e.Name()) {
			n++
		}
	}
	return n
}

// History returns the event log, oldest first, filtered by o.
func (r *Repo) History(ctx context.Context, o HistoryOptions) ([]Event, error) {
	out := []Event{}
	err := r.view(func(tx *bolt.Tx) error {
		if o.Verify {
			if err := verifyEvents(tx); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if (o.NEVRA != "" && e.NEVRA != o.NEVRA) || (o.Action != "" && e.Action != o.Action && !strings.HasPrefix(e.Action, o.Action+".")) {
				return nil
			}
			out = append(out, e)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if o.Limit > 0 && len(out) > o.Limit {
		out = out[len(out)-o.Limit:]
	}
	return out, nil
}

// RecordEvent appends e (Seq, Prev and Hash are assigned; Time and Who
// default to now and the caller).
func (r *Repo) RecordEvent(ctx context.Context, e Event) error {
	if e.Action == "" {
		return ErrBadConfig
	}
	e.Who = r.who(e.Who)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	return r.st.db.Update(func(tx *bolt.Tx) error { return appendEvent(tx, &e) })
}

// CheckStore runs bbolt's consistency check; tests and `status` use it.
func (r *Repo) CheckStore() error {
	return r.view(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
}

var _ = filepath.Join
