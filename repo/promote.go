package repo

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/repoctl/repoctl/internal/nevra"

	kv "github.com/repoctl/repoctl/repo/store"
	rpmutils "github.com/sassoftware/go-rpmutils"
)

// cmpEVR orders two records by epoch, version, release as rpm does.
func cmpEVR(a, b *PackageRecord) int {
	return compareEVR(a.Epoch, a.Version, a.Release, b.Epoch, b.Version, b.Release)
}

// compareEVR orders two epoch:version-release triples as rpm does; an
// empty epoch is 0.
func compareEVR(ea, va, ra, eb, vb, rb string) int {
	if ea == "" {
		ea = "0"
	}
	if eb == "" {
		eb = "0"
	}
	if c := rpmutils.Vercmp(ea, eb); c != 0 {
		return c
	}
	if c := rpmutils.Vercmp(va, vb); c != 0 {
		return c
	}
	return rpmutils.Vercmp(ra, rb)
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
func findPackage(tx kv.Tx, repo, spec, channel string) (*PackageRecord, error) {
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

// PromotedPackage is one package of a promoted build.
type PromotedPackage struct {
	NEVRA   string `json:"nevra"`
	Name    string `json:"name"`
	Epoch   string `json:"epoch"`
	Version string `json:"version"`
	Release string `json:"release"`
	Arch    string `json:"arch"` // package arch: x86_64, noarch, src
	SHA256  string `json:"sha256"`
	// Files are its placed copies in the target channel and Dirs their
	// repository dirs, relative to ROOT/repo; URLs are the Dirs' base URLs.
	Files []string `json:"files"`
	Dirs  []string `json:"dirs"`
	URLs  []string `json:"urls"`
	// Previous is the newest NEVRA of the same name and arch that was in
	// the target channel before; "" if none.
	Previous string `json:"previous"`
	// AlreadyPresent: it was in the target channel before the promote, so
	// it was not placed again and Restore leaves it there.
	AlreadyPresent bool `json:"already_present"`
}

// All is every package res covers: Packages, or for a result an older
// repoctl recorded (one package, no Packages), that package.
func (res *PromoteResult) All() []PromotedPackage {
	if len(res.Packages) > 0 || res.NEVRA == "" {
		return res.Packages
	}
	return []PromotedPackage{{NEVRA: res.NEVRA, Name: res.Name, Epoch: res.Epoch, Version: res.Version,
		Release: res.Release, Arch: res.Arch, Files: res.Files, Dirs: res.Dirs, URLs: res.URLs,
		Previous: res.Previous, AlreadyPresent: res.AlreadyPresent}}
}

// archRank orders a build's packages: arch packages by arch, then noarch,
// then the source package, so that the first is the one a single-package
// reader of PromoteResult expects.
func archRank(arch string) int {
	switch arch {
	case "src", "nosrc":
		return 2
	case "noarch":
		return 1
	}
	return 0
}

func sortBuild(ps []*PackageRecord) {
	sort.Slice(ps, func(i, j int) bool {
		if a, b := archRank(ps[i].Arch), archRank(ps[j].Arch); a != b {
			return a < b
		}
		return ps[i].Arch < ps[j].Arch
	})
}

// findBuild resolves spec among the packages of repo in channel: an exact
// NEVRA is that package alone; N-V-R or a bare name is every package of
// the newest matching EVR (each arch and the source package), narrowed to
// arches when given.
func findBuild(tx kv.Tx, repo, spec, channel string, arches map[string]bool) ([]*PackageRecord, error) {
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	narrowed := ""
	if len(arches) > 0 {
		narrowed = " of arch " + strings.Join(sortedKeys(arches), ", ")
	}
	if p, err := getPackage(tx, repo, spec); err != nil || p != nil {
		switch {
		case err != nil:
			return nil, err
		case !p.InChannel(channel):
			return nil, fmt.Errorf("%w: %s is not in channel %s of %s", ErrNotFound, spec, channel, repo)
		case len(arches) > 0 && !arches[p.Arch]:
			return nil, fmt.Errorf("%w: %s is not a package%s", ErrNotFound, spec, narrowed)
		}
		return []*PackageRecord{p}, nil
	}
	var best []*PackageRecord
	err := eachPackage(tx, repo, func(p *PackageRecord) error {
		if !matches(p, spec) || !p.InChannel(channel) || (len(arches) > 0 && !arches[p.Arch]) {
			return nil
		}
		switch {
		case len(best) == 0, cmpEVR(p, best[0]) > 0:
			best = []*PackageRecord{p}
		case cmpEVR(p, best[0]) == 0:
			best = append(best, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(best) == 0 {
		return nil, fmt.Errorf("%w: no package%s matching %q in %s of %s", ErrNotFound, narrowed, spec, channel, repo)
	}
	sortBuild(best)
	return best, nil
}

// Promote places the exact signed files of a build (or of one package,
// for an exact NEVRA) from req.From into req.To: same inodes, same bytes,
// same key id. The whole build is one change: recorded as one event with
// every affected directory marked dirty in one transaction, then each
// directory published once. Older versions stay published in the target,
// so a rollback can `dnf downgrade` to Previous.
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
		return nil, fmt.Errorf("%w: promote from %s to itself", ErrBadOption, from)
	}
	arches := map[string]bool{}
	for _, a := range req.Arches {
		if err := nevra.Arch(a); err != nil {
			return nil, fmt.Errorf("%w: arch %q: %s", ErrInvalidName, a, nevra.Why(err))
		}
		arches[a] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	var pkgs []*PackageRecord
	res := &PromoteResult{Repo: repoName, From: from, To: to, DryRun: req.DryRun}
	err = r.st.db.View(func(tx kv.Tx) error {
		var err error
		if pkgs, err = findBuild(tx, repoName, req.Package, from, arches); err != nil {
			return err
		}
		for _, p := range pkgs {
			pp := PromotedPackage{NEVRA: p.NEVRA, Name: p.Name, Epoch: p.Epoch, Version: p.Version, Release: p.Release,
				Arch: p.Arch, SHA256: p.SHA256, AlreadyPresent: p.InChannel(to)}
			var prev *PackageRecord
			err := eachPackage(tx, repoName, func(q *PackageRecord) error {
				if q.NEVRA != p.NEVRA && q.Name == p.Name && q.Arch == p.Arch && q.InChannel(to) &&
					(prev == nil || cmpEVR(q, prev) > 0) {
					prev = q
				}
				return nil
			})
			if err != nil {
				return err
			}
			if prev != nil {
				pp.Previous = prev.NEVRA
			}
			res.Packages = append(res.Packages, pp)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("promoting %q: %w", req.Package, err)
	}
	// Each package's target placements mirror its placements in from
	// (a noarch package is in every arch directory of its release).
	adds := make([][]Placement, len(pkgs))
	dirs := map[string]bool{}
	for i, p := range pkgs {
		pp := &res.Packages[i]
		for _, pl := range p.Placements {
			if pl.Channel != from {
				continue
			}
			npl, err := newPlacement(repoName, to, pl.Release, pl.Arch, p.FileName)
			if err != nil {
				return nil, fmt.Errorf("promoting %s: %w", p.NEVRA, err)
			}
			pp.Files = append(pp.Files, npl.File)
			pp.Dirs = append(pp.Dirs, npl.Dir)
			pp.URLs = append(pp.URLs, r.cfg.URL(npl.Dir+"/"))
			res.Files = append(res.Files, npl.File)
			if !pp.AlreadyPresent {
				adds[i] = append(adds[i], npl)
				dirs[npl.Dir] = true
			}
		}
	}
	// The single fields describe the first package, binary if there is
	// one (sortBuild put them first), as older results did.
	first := res.Packages[0]
	res.NEVRA, res.Name, res.Epoch, res.Version, res.Release, res.Arch = first.NEVRA, first.Name, first.Epoch, first.Version, first.Release, first.Arch
	res.Previous, res.AlreadyPresent = first.Previous, first.AlreadyPresent
	if len(first.Files) > 0 {
		res.File = first.Files[0]
	}
	seenDir := map[string]bool{}
	for _, pp := range res.Packages {
		for _, d := range pp.Dirs {
			if !seenDir[d] {
				seenDir[d] = true
				res.Dirs = append(res.Dirs, d)
				res.URLs = append(res.URLs, r.cfg.URL(d+"/"))
			}
		}
	}
	if req.DryRun || len(dirs) == 0 {
		return res, nil
	}
	for i, p := range pkgs {
		if len(adds[i]) == 0 {
			continue
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
		for _, pl := range adds[i] {
			if err := r.tree.linkWithin(src, pl); err != nil {
				return nil, fmt.Errorf("promoting %s into %q: %w", p.NEVRA, pl.Dir, err)
			}
			if err := r.tree.syncDir(pl.Dir); err != nil {
				return nil, err
			}
		}
	}
	act := r.actor(ctx, req.Who)
	// Record first, with the directories marked dirty in the same
	// transaction: a crash before the publish below is finished by Resume,
	// so store, event log and repodata never disagree for long.
	var changed []*PackageRecord
	var changedPP []PromotedPackage
	prevPl := make([][]Placement, len(pkgs))
	for i, p := range pkgs {
		prevPl[i] = p.Placements
		if len(adds[i]) > 0 {
			p.Placements = append(append([]Placement(nil), p.Placements...), adds[i]...)
			changed = append(changed, p)
			changedPP = append(changedPP, res.Packages[i])
		}
	}
	d := map[string]string{"from": from, "to": to, "previous": changedPP[0].Previous, "sha256": changedPP[0].SHA256}
	if len(pkgs) > 1 {
		buildDetails(d, changedPP)
	}
	ev := act.stamp(Event{Action: EventPromote, Repo: repoName, Channel: to, NEVRA: changed[0].NEVRA, Details: d})
	if err := r.saveDirtyAll(repoName, changed, nil, sortedKeys(dirs), []Event{ev}); err != nil {
		return nil, err
	}
	for i, p := range pkgs {
		r.indexAdd(p, adds[i])
	}
	if err := hit("promote.recorded"); err != nil {
		return nil, err
	}
	if err := r.publishDirty(ctx, sortedKeys(dirs), act); err != nil {
		// Undo the record so a failed promote is not published later.
		for i, p := range pkgs {
			r.indexRemove(p, adds[i])
			p.Placements = prevPl[i]
		}
		fd := map[string]string{"error": err.Error()}
		if len(pkgs) > 1 {
			buildDetails(fd, changedPP)
		}
		if uerr := r.saveDirtyAll(repoName, changed, nil, sortedKeys(dirs), []Event{act.stamp(Event{Action: EventPromote + ".failed", Repo: repoName,
			Channel: to, NEVRA: changed[0].NEVRA, Details: fd})}); uerr != nil {
			r.o.log.Error("undoing failed promote", "nevra", changed[0].NEVRA, "err", uerr)
		}
		return nil, fmt.Errorf("promoting %s: %w", changed[0].NEVRA, err)
	}
	r.applyRetention(ctx, act, repoName, []string{to})
	return res, nil
}

// buildDetails adds the lists that make one event name every package of
// a build change: "nevras", "sha256s" and "previous_nevras", space
// separated and in the same order ("-" for no previous version).
func buildDetails(d map[string]string, pps []PromotedPackage) {
	var nevras, shas, prevs []string
	for _, pp := range pps {
		nevras = append(nevras, pp.NEVRA)
		if pp.SHA256 != "" {
			shas = append(shas, pp.SHA256)
		}
		prevs = append(prevs, orDash(pp.Previous))
	}
	d["nevras"] = strings.Join(nevras, " ")
	if len(shas) == len(pps) {
		d["sha256s"] = strings.Join(shas, " ")
	}
	d["previous_nevras"] = strings.Join(prevs, " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// eventNames reports whether e is about nevra: its NEVRA, or one of the
// packages a build event lists.
func eventNames(e *Event, nevra string) bool {
	if e.NEVRA == nevra {
		return true
	}
	for _, n := range strings.Fields(e.Details["nevras"]) {
		if n == nevra {
			return true
		}
	}
	return false
}

// Restore undoes res: every package of the build leaves the target
// channel unless it was there before the promote, as one change (one
// event, one publish per directory). Previous was never removed, so it is
// what clients see again.
func (r *Repo) Restore(ctx context.Context, res *PromoteResult) error {
	if res == nil || res.DryRun {
		return nil
	}
	repoName, err := r.cfg.checkRepo(res.Repo)
	if err != nil {
		return err
	}
	to, err := r.cfg.checkChannel(res.To, "")
	if err != nil {
		return err
	}
	all := res.All()
	if len(all) == 0 {
		return fmt.Errorf("%w: restore of a promote that names no package", ErrBadRequest)
	}
	for _, pp := range all {
		if err := checkSpec(pp.NEVRA); err != nil {
			return fmt.Errorf("restoring %q: %w", pp.NEVRA, err)
		}
	}
	act := r.actor(ctx, "")
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	var kept []PromotedPackage
	var gone []*PackageRecord
	var gonePP []PromotedPackage
	// Idempotent: a rollout resumed after a crash may restore twice.
	err = r.st.db.View(func(tx kv.Tx) error {
		for _, pp := range all {
			if pp.AlreadyPresent {
				kept = append(kept, pp)
				continue
			}
			p, err := getPackage(tx, repoName, pp.NEVRA)
			if err != nil {
				return err
			}
			if p != nil && p.InChannel(to) {
				gone, gonePP = append(gone, p), append(gonePP, pp)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restoring %s: %w", all[0].NEVRA, err)
	}
	if len(gone) == 0 {
		if len(kept) == 0 {
			return nil
		}
		d := map[string]string{"note": "was in " + to + " before the promote; left in place", "previous": kept[0].Previous}
		if len(all) > 1 {
			buildDetails(d, kept)
		}
		e := act.stamp(Event{Action: EventRestore, Repo: repoName, Channel: to, NEVRA: kept[0].NEVRA, Details: d})
		return r.st.db.Update(func(tx kv.Tx) error { return appendEvent(tx, &e) })
	}
	d := map[string]string{"previous": gonePP[0].Previous, "from": res.From}
	if len(all) > 1 {
		buildDetails(d, gonePP)
		if len(kept) > 0 {
			var ks []string
			for _, k := range kept {
				ks = append(ks, k.NEVRA)
			}
			d["left_in_place"] = strings.Join(ks, " ")
		}
	}
	// The same change as a channel rollback: one event, one new channel
	// version, the packages' files held while a kept version names them.
	var del []string
	for _, p := range gone {
		del = append(del, p.NEVRA)
	}
	sort.Strings(del)
	if _, err := r.changeChannel(ctx, act, chanKey{repoName, to}, nil, del, EventRestore, d, 0, false); err != nil {
		return fmt.Errorf("restoring %s: %w", gone[0].NEVRA, err)
	}
	return nil
}

// saveDirtyAll stores put, deletes the records of drop (NEVRAs of repo),
// marks dirs as needing a publish and appends events, in one transaction:
// a build's change is all recorded or not at all.
func (r *Repo) saveDirtyAll(repo string, put []*PackageRecord, drop []string, dirs []string, events []Event) error {
	return r.saveTracked(repo, put, drop, dirs, events, nil, nil)
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
	err = r.st.db.View(func(tx kv.Tx) error {
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
	// remove deletes the files now (held.go says why); held copies of
	// the channels it leaves go too.
	var heldGone []Placement
	if o.Channel == "" {
		heldGone, p.Held = p.Held, nil
	} else {
		heldGone = p.heldIn(o.Channel)
		var hk []Placement
		for _, h := range p.Held {
			if h.Channel != o.Channel {
				hk = append(hk, h)
			}
		}
		p.Held = hk
	}
	for _, h := range heldGone {
		if err := checkPlacement(repoName, h); err != nil {
			return nil, fmt.Errorf("removing %s: %w", p.NEVRA, err)
		}
	}
	gone = append(gone, heldGone...)
	if len(keep) == 0 && len(p.Held) == 0 {
		err = r.saveTracked(repoName, nil, []string{p.NEVRA}, res.Dirs, ev, nil, nil)
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
	return r.saveTracked(p.Repo, []*PackageRecord{p}, nil, dirs, events, nil, nil)
}

// publishDirty publishes dirs from the index and then clears their dirty
// marks, recording the publish events.
func (r *Repo) publishDirty(ctx context.Context, dirs []string, a actor) error {
	events, err := r.publishDirs(ctx, dirs, nil, a)
	if err != nil {
		return err
	}
	err = r.st.db.Update(func(tx kv.Tx) error {
		b := tx.Bucket(bucketDirty)
		for _, d := range dirs {
			if err := b.Delete([]byte(d)); err != nil {
				return err
			}
		}
		return appendEvents(tx, events)
	})
	if err != nil {
		return err
	}
	if n, err := r.sweepTrash(ctx); err != nil {
		r.o.log.Warn("deleting files past their grace; retried later", "err", err)
	} else if n > 0 {
		r.o.log.Info("deleted files past their grace", "files", n)
	}
	return nil
}

func appendEvents(tx kv.Tx, events []Event) error {
	for i := range events {
		if err := appendEvent(tx, &events[i]); err != nil {
			return err
		}
	}
	return nil
}
