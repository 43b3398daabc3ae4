package repo

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	kv "github.com/repoctl/repoctl/repo/store"
)

// Channel versions. Every change to the set of NEVRAs a channel lists
// (add, promote, remove, restore, rollback, prune) makes a new, numbered,
// immutable version of that channel in the same bbolt transaction as the
// change itself, so the history can never disagree with the store.
//
// A version stores only its delta from the one before; a channel's set at
// version V is its base (the set at the newest expired version, empty at
// first) plus the deltas up to V. Expiring old versions folds them into
// the base, so the cost of a change is O(changed) however large the
// channel, and reading a set is bounded by the versions kept.
var (
	bucketChanVer  = []byte("chanver")  // repo \x00 channel \x00 BE version → ChannelVersion
	bucketChanBase = []byte("chanbase") // repo \x00 channel → chanBase
)

// ChannelVersion is one numbered version of a channel: what changed, when,
// who did it and why.
type ChannelVersion struct {
	Repo    string    `json:"repo"`
	Channel string    `json:"channel"`
	Version uint64    `json:"version"`
	Time    time.Time `json:"time"`
	Who     string    `json:"who"`
	Caller  *Caller   `json:"caller,omitempty"`
	// Cause is the action of the event that made it: add, promote,
	// remove, restore, rollback, prune, or import (the set an older
	// repoctl left, recorded when this one first opened the store).
	Cause string `json:"cause"`
	// Event is the seq of that event in the log (history --seq).
	Event uint64 `json:"event,omitempty"`
	// Packages is the size of the set at this version.
	Packages int      `json:"packages"`
	Added    []string `json:"added,omitempty"`
	Removed  []string `json:"removed,omitempty"`
	// RolledBackTo is the version a rollback made this one equal to.
	RolledBackTo uint64 `json:"rolled_back_to,omitempty"`
}

// chanBase is the set of a channel at its newest expired version, kept
// as one nested bucket per channel (NEVRA keys, and baseMetaKey), so that
// folding a version into it costs what the version changed.
type chanBase struct {
	// Version is the newest expired version; 0 while none has expired.
	Version uint64 `json:"version"`
	Count   int    `json:"count"`
}

// baseMetaKey holds the chanBase of a base bucket; no NEVRA starts with NUL.
var baseMetaKey = []byte("\x00meta")

type chanKey struct{ repo, channel string }

func (k chanKey) prefix() []byte { return []byte(k.repo + "\x00" + k.channel + "\x00") }

func chanVerKey(k chanKey, v uint64) []byte {
	return binary.BigEndian.AppendUint64(k.prefix(), v)
}

// chanChanges collects, within one write transaction, how each channel's
// set moves as package records are put and deleted; record turns it into
// versions.
type chanChanges struct {
	d map[chanKey]*chanDelta
	// rolledBackTo marks the versions a rollback makes.
	rolledBackTo map[chanKey]uint64
}

type chanDelta struct{ add, del map[string]bool }

func newChanChanges() *chanChanges { return &chanChanges{d: map[chanKey]*chanDelta{}} }

func channelsOf(pls []Placement) map[string]bool {
	m := map[string]bool{}
	for _, pl := range pls {
		m[pl.Channel] = true
	}
	return m
}

// note records that nevra of repo moved from the channels of before to
// those of after.
func (cc *chanChanges) note(repo, nevra string, before, after []Placement) {
	if cc == nil {
		return
	}
	b, a := channelsOf(before), channelsOf(after)
	for ch := range a {
		if !b[ch] {
			cc.delta(chanKey{repo, ch}).flip(nevra, true)
		}
	}
	for ch := range b {
		if !a[ch] {
			cc.delta(chanKey{repo, ch}).flip(nevra, false)
		}
	}
}

func (cc *chanChanges) delta(k chanKey) *chanDelta {
	d := cc.d[k]
	if d == nil {
		d = &chanDelta{add: map[string]bool{}, del: map[string]bool{}}
		cc.d[k] = d
	}
	return d
}

// flip adds (in) or removes nevra; the two cancel within one change.
func (d *chanDelta) flip(nevra string, in bool) {
	if in {
		if d.del[nevra] {
			delete(d.del, nevra)
		} else {
			d.add[nevra] = true
		}
		return
	}
	if d.add[nevra] {
		delete(d.add, nevra)
	} else {
		d.del[nevra] = true
	}
}

// putPackageTracked is putPackage noting the channel change in cc.
func putPackageTracked(tx kv.Tx, cc *chanChanges, p *PackageRecord) error {
	old, err := getPackage(tx, p.Repo, p.NEVRA)
	if err != nil {
		return err
	}
	var before []Placement
	if old != nil {
		before = old.Placements
	}
	p.dropHeldPlaced()
	cc.note(p.Repo, p.NEVRA, before, p.Placements)
	if len(p.Placements) > 0 {
		// A placed file is no longer waiting to be deleted.
		for _, pl := range p.Placements {
			if err := untrash(tx, pl.File); err != nil {
				return err
			}
		}
	}
	return putPackage(tx, p)
}

// deletePackageTracked is deletePackage noting the channel change in cc.
func deletePackageTracked(tx kv.Tx, cc *chanChanges, repo, nevra string) error {
	old, err := getPackage(tx, repo, nevra)
	if err != nil || old == nil {
		return err
	}
	cc.note(repo, nevra, old.Placements, nil)
	return deletePackage(tx, repo, nevra)
}

// record writes one new version per channel whose set changed, caused by
// ev (already appended, so its seq is known).
func (cc *chanChanges) record(tx kv.Tx, ev *Event) error {
	if cc == nil {
		return nil
	}
	keys := make([]chanKey, 0, len(cc.d))
	for k, d := range cc.d {
		if len(d.add)+len(d.del) > 0 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].repo != keys[j].repo {
			return keys[i].repo < keys[j].repo
		}
		return keys[i].channel < keys[j].channel
	})
	for _, k := range keys {
		d := cc.d[k]
		last, err := lastVersion(tx, k)
		if err != nil {
			return err
		}
		n := 0
		if last != nil {
			n = last.Packages
		} else if b, err := getBase(tx, k); err != nil {
			return err
		} else {
			n = b.Count
		}
		v := ChannelVersion{Repo: k.repo, Channel: k.channel, Version: nextVersion(tx, k, last),
			Time: ev.Time, Who: ev.Who, Caller: ev.Caller, Cause: ev.Action, Event: ev.Seq,
			Added: sortedKeys(d.add), Removed: sortedKeys(d.del), RolledBackTo: cc.rolledBackTo[k]}
		v.Packages = n + len(v.Added) - len(v.Removed)
		if err := putJSON(tx.Bucket(bucketChanVer), chanVerKey(k, v.Version), &v); err != nil {
			return err
		}
	}
	return nil
}

func nextVersion(tx kv.Tx, k chanKey, last *ChannelVersion) uint64 {
	if last != nil {
		return last.Version + 1
	}
	b, err := getBase(tx, k)
	if err != nil {
		return 1
	}
	return b.Version + 1
}

// saveTracked is the one transaction of a change to package records:
// puts and drops (noting channel changes), dirty marks, events, and the
// channel versions the change makes, caused by the first event.
func (r *Repo) saveTracked(repo string, put []*PackageRecord, drop []string, dirs []string, events []Event, cc *chanChanges, more func(tx kv.Tx) error) error {
	if cc == nil {
		cc = newChanChanges()
	}
	return r.st.db.Update(func(tx kv.Tx) error {
		for _, p := range put {
			if err := putPackageTracked(tx, cc, p); err != nil {
				return err
			}
		}
		for _, n := range drop {
			if err := deletePackageTracked(tx, cc, repo, n); err != nil {
				return err
			}
		}
		if err := markDirty(tx, dirs); err != nil {
			return err
		}
		if more != nil {
			if err := more(tx); err != nil {
				return err
			}
		}
		if err := appendEvents(tx, events); err != nil {
			return err
		}
		if len(events) > 0 {
			if err := cc.record(tx, &events[0]); err != nil {
				return err
			}
		}
		return r.expireVersions(tx, cc)
	})
}

func lastVersion(tx kv.Tx, k chanKey) (*ChannelVersion, error) {
	c := tx.Bucket(bucketChanVer).Cursor()
	p := k.prefix()
	// Seek past the prefix's last possible key, then step back.
	k2, v := c.Seek(append(slices.Clone(p), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
	if k2 == nil {
		k2, v = c.Last()
	} else {
		k2, v = c.Prev()
	}
	if k2 == nil || !bytes.HasPrefix(k2, p) || len(k2) != len(p)+8 {
		return nil, nil
	}
	var cv ChannelVersion
	if err := json.Unmarshal(v, &cv); err != nil {
		return nil, fmt.Errorf("decoding channel version %q: %w", k2, err)
	}
	return &cv, nil
}

func baseBucket(tx kv.Tx, k chanKey) kv.Bucket {
	return tx.Bucket(bucketChanBase).Bucket([]byte(k.repo + "\x00" + k.channel))
}

func getBase(tx kv.Tx, k chanKey) (*chanBase, error) {
	var b chanBase
	if bb := baseBucket(tx, k); bb != nil {
		if _, err := getJSON(bb, baseMetaKey, &b); err != nil {
			return nil, err
		}
	}
	return &b, nil
}

// eachBaseNEVRA calls fn for every NEVRA of k's base.
func eachBaseNEVRA(tx kv.Tx, k chanKey, fn func(string)) error {
	bb := baseBucket(tx, k)
	if bb == nil {
		return nil
	}
	return bb.ForEach(func(key, _ []byte) error {
		if !bytes.Equal(key, baseMetaKey) {
			fn(string(key))
		}
		return nil
	})
}

func baseHas(tx kv.Tx, k chanKey, nevra string) bool {
	bb := baseBucket(tx, k)
	return bb != nil && bb.Get([]byte(nevra)) != nil
}

// eachVersion calls fn for the kept versions of k, oldest first.
func eachVersion(tx kv.Tx, k chanKey, fn func(*ChannelVersion) error) error {
	c := tx.Bucket(bucketChanVer).Cursor()
	p := k.prefix()
	for k2, v := c.Seek(p); k2 != nil && bytes.HasPrefix(k2, p); k2, v = c.Next() {
		if len(k2) != len(p)+8 {
			continue // another channel whose name extends this one's
		}
		var cv ChannelVersion
		if err := json.Unmarshal(v, &cv); err != nil {
			return fmt.Errorf("decoding channel version %q: %w", k2, err)
		}
		if err := fn(&cv); err != nil {
			return err
		}
	}
	return nil
}

// channelSet is the set of NEVRAs of k at version v (0: the current one).
// It fails with ErrNoVersion for a version that never existed or expired.
func channelSet(tx kv.Tx, k chanKey, v uint64) (map[string]bool, *ChannelVersion, error) {
	b, err := getBase(tx, k)
	if err != nil {
		return nil, nil, err
	}
	set := make(map[string]bool, b.Count)
	if err := eachBaseNEVRA(tx, k, func(n string) { set[n] = true }); err != nil {
		return nil, nil, err
	}
	if v != 0 && v <= b.Version {
		return nil, nil, fmt.Errorf("%w: version %d of channel %s has expired (oldest kept: %d)", ErrNoVersion, v, k.channel, b.Version+1)
	}
	var at *ChannelVersion
	stop := fmt.Errorf("stop")
	err = eachVersion(tx, k, func(cv *ChannelVersion) error {
		if v != 0 && cv.Version > v {
			return stop
		}
		for _, n := range cv.Added {
			set[n] = true
		}
		for _, n := range cv.Removed {
			delete(set, n)
		}
		at = cv
		return nil
	})
	if err != nil && err != stop {
		return nil, nil, err
	}
	if v != 0 && (at == nil || at.Version != v) {
		return nil, nil, fmt.Errorf("%w: channel %s has no version %d", ErrNoVersion, k.channel, v)
	}
	return set, at, nil
}

// importVersions gives every channel that holds packages but has no
// version yet (a store an older repoctl wrote) its version 1, cause
// "import". It runs when the store is migrated to schema 2.
func importVersions(tx kv.Tx) error {
	sets := map[chanKey][]string{}
	err := eachPackageLight(tx, "", func(p *PackageRecord) error {
		for ch := range channelsOf(p.Placements) {
			k := chanKey{p.Repo, ch}
			sets[k] = append(sets[k], p.NEVRA)
		}
		return nil
	})
	if err != nil {
		return err
	}
	now := time.Now().UTC().Round(time.Microsecond)
	for k, ns := range sets {
		if last, err := lastVersion(tx, k); err != nil || last != nil {
			continue
		}
		sort.Strings(ns)
		v := ChannelVersion{Repo: k.repo, Channel: k.channel, Version: 1, Time: now, Who: "repoctl",
			Cause: "import", Packages: len(ns), Added: ns}
		if err := putJSON(tx.Bucket(bucketChanVer), chanVerKey(k, 1), &v); err != nil {
			return err
		}
	}
	return nil
}
