package repo

import (
	"context"
	"fmt"
	"github.com/repoctl/repoctl/internal/nevra"
	"strings"

	rpmutils "github.com/sassoftware/go-rpmutils"
	bolt "go.etcd.io/bbolt"
)

// cmpEVR orders two records by epoch, version, release as rpm does.
func cmpEVR(a, b *PackageRecord) int {
	ea, eb := a.Epoch, b.Epoch
	if ea == "" {
		ea = "0"
	}
	if eb == "" {
		eb = "0"
	}
	if c := rpmutils.Vercmp(ea, eb); c != 0 {
		return c
	}
	if c := rpmutils.Vercmp(a.Version, b.Version); c != 0 {
		return c
	}
	return rpmutils.Vercmp(a.Release, b.Release)
}

// matches reports whether spec names p: NEVRA, N-[E:]V-R, N-V-R.A.rpm or N.
func matches(p *PackageRecord, spec string) bool {
	spec = strings.TrimSuffix(spec, ".rpm")
	nvr := p.Name + "-" + p.Version + "-" + p.Release
	evr := p.Version + "-" + p.Release
	if p.Epoch != "" && p.Epoch != "0" {
		evr = p.Epoch + ":" + evr
	}
	switch spec {
	case p.NEVRA, p.Name, nvr, nvr + "." + p.Arch, p.Name + "-" + evr, p.Name + "-" + evr + "." + p.Arch,
		p.Name + "-0:" + p.Version + "-" + p.Release + "." + p.Arch:
		return true
	}
	return false
}

// findPackage resolves spec among the packages of repo that are in channel
// ("" = any): an exact match wins, else the newest EVR of the name.
func findPackage(tx *bolt.Tx, repo, spec, channel string) (*PackageRecord, error) {
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	if p, err := getPackage(tx, repo, spec); err != nil || p != nil {
		if p != nil && channel != "" && !p.InChannel(channel) {
			return nil, fmt.Errorf("%w: %s is not in channel %s of %s", ErrNotFound, spec, channel, repo)
		}
		return p, err
	}
	var best []*PackageRecord
	err := eachPackage(tx, repo, func(p *PackageRecord) error {
		if !matches(p, spec) || (channel != "" && !p.InChannel(channel)) {
			return nil
		}
		switch {
		case len(best) == 0:
			best = []*PackageRecord{p}
		case cmpEVR(p, best[0]) > 0:
			best = []*PackageRecord{p}
		case cmpEVR(p, best[0]) == 0:
			best = append(best, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	switch len(best) {
	case 0:
		where := repo
		if channel != "" {
			where = channel + " of " + repo
		}
		return nil, fmt.Errorf("%w: no package matching %q in %s", ErrNotFound, spec, where)
	case 1:
		return best[0], nil
	}
	names := make([]string, len(best))
	for i, p := range best {
		names[i] = p.NEVRA
	}
	return nil, fmt.Errorf("%w: %q matches %s; name the NEVRA", ErrAmbiguous, spec, strings.Join(names, ", "))
}

// checkSpec refuses a typed package name that no valid package can have,
// before it is looked up, logged or recorded.
func checkSpec(spec string) error {
	if err := nevra.Spec(spec); err != nil {
		return fmt.Errorf("%w: %s", ErrInvalidName, nevra.Why(err))
	}
	return nil
}

// Promote places the exact signed file of a package from r.From into r.To
// (same inode, same bytes, same key id), republishes the target directories
// and records the event. Older versions stay published in the target, so a
// rollback can `dnf downgrade` to Previous.
func (r *Repo) Promote(ctx context.Context, req PromoteRequest) (*PromoteResult, error) {
	repoName, err := r.cfg.checkRepo(req.Repo)
	if err != nil {
		return nil, err
	}
	from, err := r.cfg.checkChannel(req.From, r.cfg.Channels[0])
	if err != nil {
		return nil, err
	}
	to, err := r.cfg.checkChannel(req.To, r.cfg.Channels[len(r.cfg.Channels)-1])
	if err != nil {
		return nil, err
	}
	if from == to {
		return nil, fmt.Errorf("%w: promote from %s to itself", ErrBadConfig, from)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	var p *PackageRecord
	res := &PromoteResult{Repo: repoName, From: from, To: to, DryRun: req.DryRun}
	err = r.st.db.View(func(tx *bolt.Tx) error {
		var err error
		if p, err = findPackage(tx, repoName, req.Package, from); err != nil {
			return err
		}
		var prev *PackageRecord
		err = eachPackage(tx, repoName, func(q *PackageRecord) error {
			if q.NEVRA != p.NEVRA && q.Name == p.Name && q.Arch == p.Arch && q.InChannel(to) &&
				(prev == nil || cmpEVR(q, prev) > 0) {
				prev = q
			}
			return nil
		})
		if prev != nil {
			res.Previous = prev.NEVRA
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("promoting %q: %w", req.Package, err)
	}
	res.NEVRA, res.Name, res.Epoch, res.Version, res.Release, res.Arch = p.NEVRA, p.Name, p.Epoch, p.Version, p.Release, p.Arch
	res.AlreadyPresent = p.InChannel(to)
	var add []Placement
	for _, pl := range p.Placements {
		if pl.Channel != from {
			continue
		}
		npl, err := newPlacement(repoName, to, pl.Release, pl.Arch, p.FileName)
		if err != nil {
			return nil, fmt.Errorf("promoting %s: %w", p.NEVRA, err)
		}
		add = append(add, npl)
	}
	for _, pl := range add {
		res.Files = append(res.Files, pl.File)
		res.Dirs = append(res.Dirs, pl.Dir)
		res.URLs = append(res.URLs, r.cfg.URL(pl.Dir+"/"))
	}
	if len(res.Files) > 0 {
		res.File = res.Files[0]
	}
	if req.DryRun || res.AlreadyPresent {
		return res, nil
	}
	src := ""
	for _, pl := range p.Placements {
		if pl.Channel == from {
			if err := checkPlacement(repoName, pl); err != nil {
				return nil, fmt.Errorf("promoting %s: %w", p.NEVRA, err)
			}
			src = pl.File
			break
		}
	}
	for _, pl := range add {
		if err := r.tree.linkWithin(src, pl); err != nil {
			return nil, fmt.Errorf("promoting %s into %q: %w", p.NEVRA, pl.Dir, err)
		}
		if err := r.tree.syncDir(pl.Dir); err != nil {
			return nil, err
		}
	}
	dirs := map[string]bool{}
	for _, pl := range add {
		dirs[pl.Dir] = true
	}
	act := r.actor(ctx, req.Who)
	// Record first, with the directories marked dirty in the same
	// transaction: a crash before the publish below is finished by Resume,
	// so store, event log and repodata never disagree for long.
	prevPl := p.Placements
	p.Placements = append(append([]Placement(nil), p.Placements...), add...)
	ev := []Event{act.stamp(Event{Action: EventPromote, Repo: repoName, Channel: to, NEVRA: p.NEVRA,
		Details: map[string]string{"from": from, "to": to, "previous": res.Previous, "sha256": p.SHA256}})}
	if err := r.saveDirty(p, sortedKeys(dirs), ev); err != nil {
		return nil, err
	}
	r.indexAdd(p, add)
	if err := hit("promote.recorded"); err != nil {
		return nil, err
	}
	if err := r.publishDirty(ctx, sortedKeys(dirs), act); err != nil {
		// Undo the record so a failed promote is not published later.
		r.indexRemove(p, add)
		p.Placements = prevPl
		if uerr := r.saveDirty(p, sortedKeys(dirs), []Event{act.stamp(Event{Action: EventPromote + ".failed", Repo: repoName,
			Channel: to, NEVRA: p.NEVRA, Details: map[string]string{"error": err.Error()}})}); uerr != nil {
			r.o.log.Error("undoing failed promote", "nevra", p.NEVRA, "err", uerr)
		}
		return nil, fmt.Errorf("promoting %s: %w", p.NEVRA, err)
	}
	return res, nil
}

// Restore undoes res: the package leaves the target channel unless it was
// there before the promote. Previous was never removed, so it is what
// clients see again.
func (r *Repo) Restore(ctx context.Context, res *PromoteResult) error {
	if res == nil || res.DryRun {
		return nil
	}
	act := r.actor(ctx, "")
	if res.AlreadyPresent {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.st.db.Update(func(tx *bolt.Tx) error {
			e := act.stamp(Event{Action: EventRestore, Repo: res.Repo, Channel: res.To, NEVRA: res.NEVRA,
				Details: map[string]string{"note": "was in " + res.To + " before the promote; left in place", "previous": res.Previous}})
			return appendEvent(tx, &e)
		})
	}
	// Idempotent: a rollout resumed after a crash may restore twice.
	var present bool
	if err := r.view(func(tx *bolt.Tx) error {
		p, err := getPackage(tx, res.Repo, res.NEVRA)
		present = p != nil && p.InChannel(res.To)
		return err
	}); err != nil {
		return err
	}
	if !present {
		return nil
	}
	_, err := r.remove(ctx, res.NEVRA, RemoveOptions{Repo: res.Repo, Channel: res.To}, EventRestore,
		map[string]string{"previous": res.Previous, "from": res.From})
	return err
}

// Remove takes a package out of one channel (o.Channel) or all, deleting
// its files there and republishing.
func (r *Repo) Remove(ctx context.Context, nevra string, o RemoveOptions) (*RemoveResult, error) {
	return r.remove(ctx, nevra, o, EventRemove, nil)
}

func (r *Repo) remove(ctx context.Context, spec string, o RemoveOptions, action string, details map[string]string) (*RemoveResult, error) {
	repoName, err := r.cfg.checkRepo(o.Repo)
	if err != nil {
		return nil, err
	}
	if o.Channel != "" {
		if _, err := r.cfg.checkChannel(o.Channel, ""); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	var p *PackageRecord
	err = r.st.db.View(func(tx *bolt.Tx) error {
		var err error
		p, err = findPackage(tx, repoName, spec, o.Channel)
		if err == nil && spec == p.Name {
			// A bare name is fine for promote, too loose for removal.
			err = fmt.Errorf("%w: %q is a name; give the NEVRA (%s)", ErrAmbiguous, spec, p.NEVRA)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("removing %q: %w", spec, err)
	}
	var gone, keep []Placement
	for _, pl := range p.Placements {
		if o.Channel == "" || pl.Channel == o.Channel {
			gone = append(gone, pl)
		} else {
			keep = append(keep, pl)
		}
	}
	res := &RemoveResult{NEVRA: p.NEVRA, Repo: repoName, DryRun: o.DryRun, Removed: len(keep) == 0}
	dirs := map[string]bool{}
	for _, pl := range gone {
		if err := checkPlacement(repoName, pl); err != nil {
			return nil, fmt.Errorf("removing %s: %w", p.NEVRA, err)
		}
		res.Files = append(res.Files, pl.File)
		dirs[pl.Dir] = true
	}
	res.Dirs = sortedKeys(dirs)
	if o.DryRun {
		return res, nil
	}
	// Record (with the directories marked dirty), unpublish, then delete
	// the files: a client with the new repomd never sees a file it names
	// go missing, and a crash anywhere is finished by Resume.
	act := r.actor(ctx, o.Who)
	d := map[string]string{"files": strings.Join(res.Files, " ")}
	for k, v := range details {
		d[k] = v
	}
	ev := []Event{act.stamp(Event{Action: action, Repo: repoName, Channel: o.Channel, NEVRA: p.NEVRA, Details: d})}
	p.Placements = keep
	if len(keep) == 0 {
		err = r.st.db.Update(func(tx *bolt.Tx) error {
			if err := deletePackage(tx, repoName, p.NEVRA); err != nil {
				return err
			}
			if err := markDirty(tx, res.Dirs); err != nil {
				return err
			}
			return appendEvents(tx, ev)
		})
	} else {
		err = r.saveDirty(p, res.Dirs, ev)
	}
	if err != nil {
		return nil, err
	}
	r.indexRemove(p, gone)
	if err := hit("remove.recorded"); err != nil {
		return nil, err
	}
	if err := r.publishDirty(ctx, res.Dirs, act); err != nil {
		return nil, fmt.Errorf("removing %s: %w", p.NEVRA, err)
	}
	// Files go last: a crash before this leaves an unlisted file, never a
	// recorded package whose file is missing.
	for _, pl := range gone {
		if err := r.tree.remove(pl.File); err != nil {
			return nil, fmt.Errorf("removing %q: %w", pl.File, err)
		}
	}
	return res, nil
}

// saveDirty stores p and events and marks dirs as needing a publish, in
// one transaction.
func (r *Repo) saveDirty(p *PackageRecord, dirs []string, events []Event) error {
	return r.st.db.Update(func(tx *bolt.Tx) error {
		if err := putPackage(tx, p); err != nil {
			return err
		}
		if err := markDirty(tx, dirs); err != nil {
			return err
		}
		return appendEvents(tx, events)
	})
}

// publishDirty publishes dirs from the index and then clears their dirty
// marks, recording the publish events.
func (r *Repo) publishDirty(ctx context.Context, dirs []string, a actor) error {
	events, err := r.publishDirs(ctx, dirs, nil, a)
	if err != nil {
		return err
	}
	return r.st.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDirty)
		for _, d := range dirs {
			if err := b.Delete([]byte(d)); err != nil {
				return err
			}
		}
		return appendEvents(tx, events)
	})
}

func appendEvents(tx *bolt.Tx, events []Event) error {
	for i := range events {
		if err := appendEvent(tx, &events[i]); err != nil {
			return err
		}
	}
	return nil
}
