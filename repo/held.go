package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Files that left the repodata. A rollback, restore or prune takes a
// package out of a channel's repodata but keeps its file, unlisted, while a
// kept version of that channel names it (PackageRecord.Held), so that a
// rollback can list it again without the package coming back through
// ingest. Once no kept version names it, the file is queued in the trash
// bucket and deleted after the publish grace, as superseded repodata is,
// so a client holding the older repomd.xml can still download it.
//
// `remove` is different on purpose: an operator pulling a package wants
// it gone now (a bad or compromised build), so its files are deleted at
// once and a rollback to a version naming it refuses.
var bucketTrash = []byte("trash") // file relative to ROOT/repo → trashItem

type trashItem struct {
	Due       time.Time `json:"due"`
	Repo      string    `json:"repo"`
	NEVRA     string    `json:"nevra"`
	Placement Placement `json:"placement"`
}

// dropHeldPlaced forgets held placements that are listed again.
func (p *PackageRecord) dropHeldPlaced() {
	if len(p.Held) == 0 {
		return
	}
	placed := map[string]bool{}
	for _, pl := range p.Placements {
		placed[pl.File] = true
	}
	var keep []Placement
	for _, h := range p.Held {
		if !placed[h.File] {
			keep = append(keep, h)
		}
	}
	p.Held = keep
}

// hold moves p's placements in channel to Held and returns them.
func (p *PackageRecord) hold(channel string) []Placement {
	var keep, out []Placement
	for _, pl := range p.Placements {
		if pl.Channel == channel {
			out = append(out, pl)
		} else {
			keep = append(keep, pl)
		}
	}
	p.Placements = keep
	p.Held = append(p.Held, out...)
	return out
}

// heldIn is p's held placements in channel.
func (p *PackageRecord) heldIn(channel string) []Placement {
	var out []Placement
	for _, h := range p.Held {
		if h.Channel == channel {
			out = append(out, h)
		}
	}
	return out
}

func untrash(tx *bolt.Tx, file string) error {
	return tx.Bucket(bucketTrash).Delete([]byte(file))
}

func trashFile(tx *bolt.Tx, pl Placement, repo, nevra string, due time.Time) error {
	return putJSON(tx.Bucket(bucketTrash), []byte(pl.File), &trashItem{Due: due.UTC(), Repo: repo, NEVRA: nevra, Placement: pl})
}

// expireVersions applies [retention] channel_versions and
// channel_version_days to the channels cc changed: the oldest versions
// beyond the limits fold into the channel's base, and the held files that
// no kept version names any more go to the trash.
func (r *Repo) expireVersions(tx *bolt.Tx, cc *chanChanges) error {
	if cc == nil {
		return nil
	}
	keepN := r.cfg.Retention.ChannelVersions
	if keepN < 1 {
		keepN = DefaultChannelVersions
	}
	var maxAge time.Duration
	if d := r.cfg.Retention.ChannelVersionDays; d > 0 {
		maxAge = time.Duration(d) * 24 * time.Hour
	}
	now := time.Now()
	for k := range cc.d {
		// Versions are decoded as needed, oldest first: after a burst
		// each of the last channel_versions may name thousands of
		// packages, and every change would decode them all again.
		raw := versionValues(tx, k)
		vs := make([]*ChannelVersion, len(raw))
		decode := func(i int) (*ChannelVersion, error) {
			if vs[i] == nil {
				var cv ChannelVersion
				if err := json.Unmarshal(raw[i], &cv); err != nil {
					return nil, fmt.Errorf("decoding channel version of %s/%s: %w", k.repo, k.channel, err)
				}
				vs[i] = &cv
			}
			return vs[i], nil
		}
		n := 0 // how many of the oldest expire
		for n < len(vs)-1 {
			if len(vs)-n <= keepN {
				if maxAge <= 0 {
					break
				}
				cv, err := decode(n)
				if err != nil {
					return err
				}
				if now.Sub(cv.Time) <= maxAge {
					break
				}
			}
			n++
		}
		if n == 0 {
			continue
		}
		for i := range n + 1 { // the expired ones and the first kept
			if _, err := decode(i); err != nil {
				return err
			}
		}
		kept := func() ([]*ChannelVersion, error) {
			for i := n; i < len(vs); i++ {
				if _, err := decode(i); err != nil {
					return nil, err
				}
			}
			return vs[n:], nil
		}
		if err := r.foldVersions(tx, k, vs[:n], vs[n], kept, now); err != nil {
			return err
		}
	}
	return nil
}

// versionValues is the encoded versions of k, oldest first (valid for
// the transaction).
func versionValues(tx *bolt.Tx, k chanKey) [][]byte {
	var out [][]byte
	c := tx.Bucket(bucketChanVer).Cursor()
	p := k.prefix()
	for k2, v := c.Seek(p); k2 != nil && bytes.HasPrefix(k2, p); k2, v = c.Next() {
		if len(k2) == len(p)+8 { // not another channel whose name extends this one's
			out = append(out, v)
		}
	}
	return out
}

// foldVersions folds expired into k's base and trashes the held files
// of packages that neither the new base nor a kept version names. It
// costs what the expired and kept versions changed, not the channel's
// size.
func (r *Repo) foldVersions(tx *bolt.Tx, k chanKey, expired []*ChannelVersion, firstKept *ChannelVersion, allKept func() ([]*ChannelVersion, error), now time.Time) error {
	b, err := getBase(tx, k)
	if err != nil {
		return err
	}
	bb, err := tx.Bucket(bucketChanBase).CreateBucketIfNotExists([]byte(k.repo + "\x00" + k.channel))
	if err != nil {
		return err
	}
	left := map[string]bool{} // removed in an expired version: candidates
	for _, cv := range expired {
		for _, n := range cv.Added {
			if bb.Get([]byte(n)) == nil {
				b.Count++
			}
			if err := bb.Put([]byte(n), nil); err != nil {
				return err
			}
			delete(left, n)
		}
		for _, n := range cv.Removed {
			if bb.Get([]byte(n)) != nil {
				b.Count--
			}
			if err := bb.Delete([]byte(n)); err != nil {
				return err
			}
			left[n] = true
		}
		if err := tx.Bucket(bucketChanVer).Delete(chanVerKey(k, cv.Version)); err != nil {
			return err
		}
	}
	b.Version = expired[len(expired)-1].Version
	if err := putJSON(bb, baseMetaKey, b); err != nil {
		return err
	}
	// What the kept versions name: the first one's set (the base less
	// its removals, plus its additions), and whatever later ones add. Its
	// own removals are candidates too: with channel_versions = 1 nothing
	// else ever names them.
	firstRemoved := map[string]bool{}
	for _, n := range firstKept.Removed {
		firstRemoved[n] = true
		left[n] = true
	}
	if len(left) == 0 {
		return nil // nothing removed: no held file to trash
	}
	kept, err := allKept()
	if err != nil {
		return err
	}
	added := map[string]bool{}
	for _, cv := range kept {
		for _, n := range cv.Added {
			added[n] = true
		}
	}
	named := func(n string) bool { return added[n] || (bb.Get([]byte(n)) != nil && !firstRemoved[n]) }
	due := now.Add(r.cfg.grace())
	for _, n := range sortedKeys(left) {
		if named(n) {
			continue
		}
		p, err := getPackage(tx, k.repo, n)
		if err != nil {
			return err
		}
		if p == nil {
			continue
		}
		held := p.heldIn(k.channel)
		if len(held) == 0 {
			continue
		}
		var keep []Placement
		for _, h := range p.Held {
			if h.Channel != k.channel {
				keep = append(keep, h)
			}
		}
		p.Held = keep
		for _, h := range held {
			if err := trashFile(tx, h, k.repo, n, due); err != nil {
				return err
			}
		}
		if len(p.Placements) == 0 && len(p.Held) == 0 {
			err = deletePackage(tx, k.repo, n)
		} else {
			err = putPackage(tx, p)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// sweepTrash deletes the trashed files whose grace has passed, unless a
// package lists or holds the file again. It returns how many it deleted.
func (r *Repo) sweepTrash(ctx context.Context) (int, error) {
	type due struct {
		file string
		it   trashItem
	}
	var ready []due
	now := time.Now()
	err := r.st.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTrash).ForEach(func(k, v []byte) error {
			var it trashItem
			if err := json.Unmarshal(v, &it); err != nil {
				return err
			}
			if !now.Before(it.Due) {
				ready = append(ready, due{string(k), it})
			}
			return nil
		})
	})
	if err != nil || len(ready) == 0 {
		return 0, err
	}
	n := 0
	err = r.st.db.Update(func(tx *bolt.Tx) error {
		for _, d := range ready {
			if err := ctx.Err(); err != nil {
				return err
			}
			p, err := getPackage(tx, d.it.Repo, d.it.NEVRA)
			if err != nil {
				return err
			}
			inUse := false
			if p != nil {
				for _, pl := range append(append([]Placement(nil), p.Placements...), p.Held...) {
					inUse = inUse || pl.File == d.file
				}
			}
			if !inUse {
				if err := checkPlacement(d.it.Repo, d.it.Placement); err != nil || d.it.Placement.File != d.file {
					r.o.log.Error("refusing to delete a trashed file outside the tree", "file", d.file, "err", err)
				} else if err := r.tree.remove(d.file); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				} else {
					n++
				}
			}
			if err := untrash(tx, d.file); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// SweepTrash deletes the files that left the repodata (rollback, restore,
// prune) once no kept channel version names them and their grace has
// passed. The daemon calls it periodically; every publish does too.
func (r *Repo) SweepTrash(ctx context.Context) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, ErrClosed
	}
	return r.sweepTrash(ctx)
}

// keptFiles is every file held for a rollback or waiting in the trash.
func (r *Repo) keptFiles() (map[string]bool, error) {
	kept := map[string]bool{}
	err := r.st.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketTrash).ForEach(func(k, _ []byte) error {
			kept[string(k)] = true
			return nil
		}); err != nil {
			return err
		}
		return eachPackage(tx, "", func(p *PackageRecord) error {
			for _, h := range p.Held {
				kept[h.File] = true
			}
			return nil
		})
	})
	return kept, err
}
