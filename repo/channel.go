package repo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	kv "github.com/repoctl/repoctl/repo/store"
)

// ErrFilesGone is a rollback (or restore) that would list a package whose
// file is no longer kept: it was removed with `remove`, or the version
// naming it expired and its held file was deleted.
var ErrFilesGone = errors.New("repo: package files are gone")

// ErrNoVersion is a channel version that never existed or has expired.
var ErrNoVersion = errors.New("repo: no such channel version")

// ChannelLogOptions selects the versions ChannelLog returns.
type ChannelLogOptions struct {
	Repo    string `json:"repo,omitempty"`
	Channel string `json:"channel"`
	// Limit caps how many (newest first); 0 = all kept.
	Limit int `json:"limit,omitempty"`
}

// ChannelShowOptions names one version (0: the current one).
type ChannelShowOptions struct {
	Repo    string `json:"repo,omitempty"`
	Channel string `json:"channel"`
	Version uint64 `json:"version,omitempty"`
}

// ChannelSnapshot is a channel's package set at one version.
type ChannelSnapshot struct {
	ChannelVersion
	Current bool     `json:"current"`
	NEVRAs  []string `json:"nevras"`
}

// ChannelDiffOptions names two versions of one channel.
type ChannelDiffOptions struct {
	Repo    string `json:"repo,omitempty"`
	Channel string `json:"channel"`
	From    uint64 `json:"from"`
	To      uint64 `json:"to"` // 0: the current one
}

// PackageChange is a package name and arch whose newest version differs
// between two versions of a channel.
type PackageChange struct {
	Name string `json:"name"`
	Arch string `json:"arch"`
	From string `json:"from"` // NEVRA
	To   string `json:"to"`   // NEVRA
}

// ChannelDiff is what changed from one version of a channel to another:
// the NEVRAs added and removed, and per name and arch whether the newest
// version went up or down.
type ChannelDiff struct {
	Repo       string          `json:"repo"`
	Channel    string          `json:"channel"`
	From       uint64          `json:"from"`
	To         uint64          `json:"to"`
	Added      []string        `json:"added"`
	Removed    []string        `json:"removed"`
	Upgraded   []PackageChange `json:"upgraded"`
	Downgraded []PackageChange `json:"downgraded"`
}

// ChannelRollbackRequest makes a channel's current set equal to version To.
type ChannelRollbackRequest struct {
	Repo    string `json:"repo,omitempty"`
	Channel string `json:"channel"`
	To      uint64 `json:"to"`
	DryRun  bool   `json:"dry_run,omitempty"`
	Who     string `json:"who,omitempty"`
}

// ChannelChange is the result of a rollback or restore: the version it
// made and what it listed again or took out.
type ChannelChange struct {
	Repo    string `json:"repo"`
	Channel string `json:"channel"`
	// From is the version current before; Version the one made (0 on a
	// dry run or when nothing changed).
	From         uint64   `json:"from"`
	Version      uint64   `json:"version,omitempty"`
	RolledBackTo uint64   `json:"rolled_back_to,omitempty"`
	Added        []string `json:"added"`
	Removed      []string `json:"removed"`
	Dirs         []string `json:"dirs"`
	DryRun       bool     `json:"dry_run,omitempty"`
	Unchanged    bool     `json:"unchanged,omitempty"`
}

func (r *Repo) channelKey(repo, channel string) (chanKey, error) {
	rn, err := r.cfg.checkRepo(repo)
	if err != nil {
		return chanKey{}, err
	}
	ch, err := r.cfg.checkChannel(channel, "")
	if err != nil {
		return chanKey{}, err
	}
	if ch == "" {
		return chanKey{}, fmt.Errorf("%w: no channel given (channels: %s)", ErrBadOption, strings.Join(r.cfg.Channels, ", "))
	}
	return chanKey{rn, ch}, nil
}

// ChannelLog lists the kept versions of a channel, newest first.
func (r *Repo) ChannelLog(ctx context.Context, o ChannelLogOptions) ([]ChannelVersion, error) {
	k, err := r.channelKey(o.Repo, o.Channel)
	if err != nil {
		return nil, err
	}
	if o.Limit < 0 {
		return nil, fmt.Errorf("%w: negative limit %d", ErrBadOption, o.Limit)
	}
	out := []ChannelVersion{}
	err = r.st.db.View(func(tx kv.Tx) error {
		return eachVersion(tx, k, func(cv *ChannelVersion) error {
			out = append(out, *cv)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading the log of channel %q: %w", k.channel, err)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	if o.Limit > 0 && len(out) > o.Limit {
		out = out[:o.Limit]
	}
	return out, nil
}

// ChannelShow is a channel's set at one version.
func (r *Repo) ChannelShow(ctx context.Context, o ChannelShowOptions) (*ChannelSnapshot, error) {
	k, err := r.channelKey(o.Repo, o.Channel)
	if err != nil {
		return nil, err
	}
	var snap *ChannelSnapshot
	err = r.st.db.View(func(tx kv.Tx) error {
		set, at, err := channelSet(tx, k, o.Version)
		if err != nil {
			return err
		}
		last, err := lastVersion(tx, k)
		if err != nil {
			return err
		}
		snap = &ChannelSnapshot{NEVRAs: sortedKeys(set)}
		if at != nil {
			snap.ChannelVersion = *at
			snap.Added, snap.Removed = nil, nil
		} else {
			snap.Repo, snap.Channel = k.repo, k.channel
		}
		snap.Current = last == nil || (at != nil && at.Version == last.Version)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("showing channel %q: %w", k.channel, err)
	}
	return snap, nil
}

// ChannelDiff compares two versions of a channel.
func (r *Repo) ChannelDiff(ctx context.Context, o ChannelDiffOptions) (*ChannelDiff, error) {
	k, err := r.channelKey(o.Repo, o.Channel)
	if err != nil {
		return nil, err
	}
	if o.From == 0 {
		return nil, fmt.Errorf("%w: diff needs a version to compare from", ErrBadOption)
	}
	var a, b map[string]bool
	d := &ChannelDiff{Repo: k.repo, Channel: k.channel, From: o.From, To: o.To,
		Added: []string{}, Removed: []string{}, Upgraded: []PackageChange{}, Downgraded: []PackageChange{}}
	err = r.st.db.View(func(tx kv.Tx) error {
		var err error
		if a, _, err = channelSet(tx, k, o.From); err != nil {
			return err
		}
		var at *ChannelVersion
		if b, at, err = channelSet(tx, k, o.To); err != nil {
			return err
		}
		if at != nil {
			d.To = at.Version
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("comparing versions of channel %q: %w", k.channel, err)
	}
	for n := range b {
		if !a[n] {
			d.Added = append(d.Added, n)
		}
	}
	for n := range a {
		if !b[n] {
			d.Removed = append(d.Removed, n)
		}
	}
	sort.Strings(d.Added)
	sort.Strings(d.Removed)
	na, nb := newestByNameArch(a), newestByNameArch(b)
	var keys []string
	for key := range nb {
		if _, ok := na[key]; ok {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	for _, key := range keys {
		x, y := na[key], nb[key]
		if x.nevra == y.nevra {
			continue
		}
		c := PackageChange{Name: y.name, Arch: y.arch, From: x.nevra, To: y.nevra}
		if cmpParsed(y, x) > 0 {
			d.Upgraded = append(d.Upgraded, c)
		} else {
			d.Downgraded = append(d.Downgraded, c)
		}
	}
	return d, nil
}

type parsedNEVRA struct{ nevra, name, epoch, version, release, arch string }

// parseNEVRA splits name-[epoch:]version-release.arch as formatNEVRA
// writes it; the name may hold dashes, the others may not.
func parseNEVRA(s string) (parsedNEVRA, bool) {
	p := parsedNEVRA{nevra: s}
	dot := strings.LastIndexByte(s, '.')
	if dot < 0 {
		return p, false
	}
	p.arch, s = s[dot+1:], s[:dot]
	dr := strings.LastIndexByte(s, '-')
	if dr < 0 {
		return p, false
	}
	p.release, s = s[dr+1:], s[:dr]
	dv := strings.LastIndexByte(s, '-')
	if dv < 0 {
		return p, false
	}
	p.version, p.name = s[dv+1:], s[:dv]
	if i := strings.IndexByte(p.version, ':'); i >= 0 {
		p.epoch, p.version = p.version[:i], p.version[i+1:]
	}
	return p, p.name != ""
}

func cmpParsed(a, b parsedNEVRA) int {
	return compareEVR(a.epoch, a.version, a.release, b.epoch, b.version, b.release)
}

func newestByNameArch(set map[string]bool) map[string]parsedNEVRA {
	out := map[string]parsedNEVRA{}
	for n := range set {
		p, ok := parseNEVRA(n)
		if !ok {
			continue
		}
		key := p.name + "." + p.arch
		if cur, ok := out[key]; !ok || cmpParsed(p, cur) > 0 {
			out[key] = p
		}
	}
	return out
}

// ChannelRollback makes a new version of a channel equal to an older one
// and publishes it in every directory it affects. Packages it takes out
// keep their files (held.go); packages it lists again come from their
// held file or from another channel's copy, and without either it refuses
// with ErrFilesGone before changing anything.
func (r *Repo) ChannelRollback(ctx context.Context, req ChannelRollbackRequest) (*ChannelChange, error) {
	k, err := r.channelKey(req.Repo, req.Channel)
	if err != nil {
		return nil, err
	}
	if req.To == 0 {
		return nil, fmt.Errorf("%w: rollback needs --to VERSION", ErrBadOption)
	}
	act := r.actor(ctx, req.Who)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	var add, del []string
	var from uint64
	err = r.st.db.View(func(tx kv.Tx) error {
		cur, at, err := channelSet(tx, k, 0)
		if err != nil {
			return err
		}
		if at != nil {
			from = at.Version
		}
		target, _, err := channelSet(tx, k, req.To)
		if err != nil {
			return err
		}
		for n := range target {
			if !cur[n] {
				add = append(add, n)
			}
		}
		for n := range cur {
			if !target[n] {
				del = append(del, n)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rolling back channel %q to version %d: %w", k.channel, req.To, err)
	}
	sort.Strings(add)
	sort.Strings(del)
	details := map[string]string{"to_version": strconv.FormatUint(req.To, 10), "from_version": strconv.FormatUint(from, 10)}
	res, err := r.changeChannel(ctx, act, k, add, del, EventRollback, details, req.To, req.DryRun)
	if err != nil {
		return nil, fmt.Errorf("rolling back channel %q to version %d: %w", k.channel, req.To, err)
	}
	res.From = from
	return res, nil
}

// EventRollback is the action of a channel rollback's event.
const EventRollback = "rollback"

// plannedAdd is how one package is listed again in a channel.
type plannedAdd struct {
	p     *PackageRecord
	src   string      // file to link from; "" when every placement's file is already there
	place []Placement // the channel's new placements
}

// changeChannel lists add and takes del out of channel k in one recorded
// change (one event, one channel version), then publishes. The caller
// holds r.mu. Taken-out packages' placements become held.
func (r *Repo) changeChannel(ctx context.Context, act actor, k chanKey, add, del []string, action string, details map[string]string, rolledBackTo uint64, dryRun bool) (*ChannelChange, error) {
	res := &ChannelChange{Repo: k.repo, Channel: k.channel, RolledBackTo: rolledBackTo, Added: add, Removed: del, Dirs: []string{}, DryRun: dryRun}
	if res.Added == nil {
		res.Added = []string{}
	}
	if res.Removed == nil {
		res.Removed = []string{}
	}
	if len(add)+len(del) == 0 {
		res.Unchanged = true
		return res, nil
	}
	var plans []plannedAdd
	var outs []*PackageRecord
	var missing []string
	dirs := map[string]bool{}
	err := r.st.db.View(func(tx kv.Tx) error {
		for _, n := range add {
			p, err := getPackage(tx, k.repo, n)
			if err != nil {
				return err
			}
			if p == nil {
				missing = append(missing, n+" (not in the store)")
				continue
			}
			pa, ok := r.planAdd(p, k)
			if !ok {
				missing = append(missing, n)
				continue
			}
			plans = append(plans, pa)
		}
		for _, n := range del {
			p, err := getPackage(tx, k.repo, n)
			if err != nil {
				return err
			}
			if p == nil || !p.InChannel(k.channel) {
				return fmt.Errorf("%w: %s is not in channel %s", ErrNotFound, n, k.channel)
			}
			outs = append(outs, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: no kept file for %s (removed, or its version expired)", ErrFilesGone, strings.Join(missing, ", "))
	}
	for _, pa := range plans {
		for _, pl := range pa.place {
			dirs[pl.Dir] = true
		}
	}
	for _, p := range outs {
		for _, pl := range p.Placements {
			if pl.Channel == k.channel {
				if err := checkPlacement(k.repo, pl); err != nil {
					return nil, fmt.Errorf("%s: %w", p.NEVRA, err)
				}
				dirs[pl.Dir] = true
			}
		}
	}
	res.Dirs = sortedKeys(dirs)
	if dryRun {
		return res, nil
	}
	for _, pa := range plans {
		if pa.src == "" {
			continue
		}
		for _, pl := range pa.place {
			if err := r.tree.linkWithin(pa.src, pl); err != nil {
				return nil, fmt.Errorf("placing %s into %q: %w", pa.p.NEVRA, pl.Dir, err)
			}
		}
	}
	for d := range dirs {
		if err := r.tree.syncDir(d); err != nil {
			return nil, err
		}
	}
	var put []*PackageRecord
	held := make([][]Placement, len(outs))
	for i, p := range outs {
		held[i] = p.hold(k.channel)
		put = append(put, p)
	}
	for _, pa := range plans {
		pa.p.Placements = append(pa.p.Placements, pa.place...)
		put = append(put, pa.p)
	}
	d := map[string]string{}
	for key, v := range details {
		d[key] = v
	}
	if len(add) > 0 {
		d["added"] = strings.Join(add, " ")
	}
	if len(del) > 0 {
		d["removed"] = strings.Join(del, " ")
	}
	first := ""
	if len(add) > 0 {
		first = add[0]
	} else {
		first = del[0]
	}
	ev := act.stamp(Event{Action: action, Repo: k.repo, Channel: k.channel, NEVRA: first, Details: d})
	cc := newChanChanges()
	if rolledBackTo > 0 {
		cc.rolledBackTo = map[chanKey]uint64{k: rolledBackTo}
	}
	var made uint64
	err = r.saveTracked(k.repo, put, nil, res.Dirs, []Event{ev}, cc, nil)
	if err != nil {
		return nil, err
	}
	_ = r.st.db.View(func(tx kv.Tx) error {
		if last, err := lastVersion(tx, k); err == nil && last != nil {
			made = last.Version
		}
		return nil
	})
	res.Version = made
	for i, p := range outs {
		r.indexRemove(p, held[i])
	}
	for _, pa := range plans {
		r.indexAdd(pa.p, pa.place)
	}
	if err := hit(action + ".recorded"); err != nil {
		return nil, err
	}
	if err := r.publishDirty(ctx, res.Dirs, act); err != nil {
		return nil, fmt.Errorf("recorded as version %d; publishing (finished by the next start or `repoctl republish`): %w", made, err)
	}
	return res, nil
}

// planAdd finds how p is listed in channel k again: its held placements
// there when their files are still on disk, else links from any copy of
// it, at the releases and arches it had (a noarch package in every arch).
func (r *Repo) planAdd(p *PackageRecord, k chanKey) (plannedAdd, bool) {
	pa := plannedAdd{p: p}
	if held := p.heldIn(k.channel); len(held) > 0 {
		all := true
		for _, h := range held {
			if checkPlacement(k.repo, h) != nil || !r.tree.exists(h.File) {
				all = false
			}
		}
		if all {
			pa.place = held
			return pa, true
		}
	}
	seen := map[[2]string]bool{}
	for _, pl := range append(append([]Placement(nil), p.Placements...), p.Held...) {
		if checkPlacement(k.repo, pl) != nil {
			continue
		}
		if pa.src == "" && r.tree.exists(pl.File) {
			pa.src = pl.File
		}
		ra := [2]string{pl.Release, pl.Arch}
		if seen[ra] {
			continue
		}
		seen[ra] = true
		npl, err := newPlacement(k.repo, k.channel, pl.Release, pl.Arch, p.FileName)
		if err != nil {
			continue
		}
		pa.place = append(pa.place, npl)
	}
	return pa, pa.src != "" && len(pa.place) > 0
}
