package repo

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	kv "github.com/repoctl/repoctl/repo/store"
)

// EventPrune is the action of a retention change's event.
const EventPrune = "prune"

// PruneRequest applies retention ([retention], or Keep) to one channel or
// every channel of a repository.
type PruneRequest struct {
	Repo    string `json:"repo,omitempty"`
	Channel string `json:"channel,omitempty"` // "": every channel
	// Keep, if set, replaces the configured keep for this run.
	Keep   *int   `json:"keep,omitempty"`
	DryRun bool   `json:"dry_run,omitempty"`
	Who    string `json:"who,omitempty"`
}

// PrunedChannel is what retention took out of one channel.
type PrunedChannel struct {
	Channel string    `json:"channel"`
	Rule    Retention `json:"rule"`
	// Removed are the NEVRAs taken out of the channel's repodata; their
	// files go after the grace once no kept channel version names them.
	Removed []string `json:"removed"`
	Version uint64   `json:"version,omitempty"` // the channel version made
	Dirs    []string `json:"dirs"`
}

// PruneResult lists, per channel with an active rule, what was pruned.
type PruneResult struct {
	Repo     string          `json:"repo"`
	DryRun   bool            `json:"dry_run,omitempty"`
	Channels []PrunedChannel `json:"channels"`
}

// Prune applies retention and publishes what it changes. A package kept by
// the rule in another channel stays there; only this channel's listing
// changes.
func (r *Repo) Prune(ctx context.Context, req PruneRequest) (*PruneResult, error) {
	repoName, err := r.cfg.checkRepo(req.Repo)
	if err != nil {
		return nil, err
	}
	channels := r.cfg.Channels
	if req.Channel != "" {
		ch, err := r.cfg.checkChannel(req.Channel, "")
		if err != nil {
			return nil, err
		}
		channels = []string{ch}
	}
	if req.Keep != nil && *req.Keep < 1 {
		return nil, fmt.Errorf("%w: --keep %d: keep at least one version", ErrBadOption, *req.Keep)
	}
	act := r.actor(ctx, req.Who)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	res := &PruneResult{Repo: repoName, DryRun: req.DryRun, Channels: []PrunedChannel{}}
	for _, ch := range channels {
		rule := r.cfg.RetentionFor(ch)
		if req.Keep != nil {
			rule.Keep = *req.Keep
		}
		if !rule.Active() {
			continue
		}
		pc, err := r.pruneChannel(ctx, act, chanKey{repoName, ch}, rule, req.DryRun)
		if err != nil {
			return nil, fmt.Errorf("pruning channel %q: %w", ch, err)
		}
		res.Channels = append(res.Channels, *pc)
	}
	return res, nil
}

// applyRetention prunes the channels a change brought packages into, by
// their configured rule. The caller holds r.mu. A failure is logged, not
// returned: the change itself is done, and the next one or `repoctl
// prune` applies the rule again.
func (r *Repo) applyRetention(ctx context.Context, act actor, repo string, channels []string) {
	for _, ch := range channels {
		rule := r.cfg.RetentionFor(ch)
		if !rule.Active() {
			continue
		}
		pc, err := r.pruneChannel(ctx, act, chanKey{repo, ch}, rule, false)
		if err != nil {
			r.o.log.Warn("applying retention; retried at the next change", "repo", repo, "channel", ch, "err", err)
			continue
		}
		if len(pc.Removed) > 0 {
			r.o.log.Info("pruned", "repo", repo, "channel", ch, "packages", len(pc.Removed), "version", pc.Version)
		}
	}
}

// pruneChannel takes out of k what rule does not keep. The caller holds r.mu.
func (r *Repo) pruneChannel(ctx context.Context, act actor, k chanKey, rule Retention, dryRun bool) (*PrunedChannel, error) {
	var pkgs []*PackageRecord
	err := r.st.db.View(func(tx kv.Tx) error {
		return eachPackage(tx, k.repo, func(p *PackageRecord) error {
			if p.InChannel(k.channel) {
				pkgs = append(pkgs, p)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	drop := pruneSet(pkgs, rule, time.Now())
	pc := &PrunedChannel{Channel: k.channel, Rule: rule, Removed: drop, Dirs: []string{}}
	if len(drop) == 0 {
		return pc, nil
	}
	d := map[string]string{"keep": strconv.Itoa(rule.Keep)}
	if rule.KeepDays > 0 {
		d["keep_days"] = strconv.Itoa(rule.KeepDays)
	}
	if len(rule.Exclude) > 0 {
		d["exclude"] = strings.Join(rule.Exclude, " ")
	}
	ch, err := r.changeChannel(ctx, act, k, nil, drop, EventPrune, d, 0, dryRun)
	if err != nil {
		return nil, err
	}
	pc.Version, pc.Dirs = ch.Version, ch.Dirs
	return pc, nil
}

// pruneSet is the NEVRAs of pkgs (one channel's) that rule drops: per
// name and arch, those beyond the newest Keep, and those added more than
// KeepDays ago except the newest. Excluded names are never dropped.
func pruneSet(pkgs []*PackageRecord, rule Retention, now time.Time) []string {
	groups := map[string][]*PackageRecord{}
	for _, p := range pkgs {
		if rule.Excluded(p.Name) {
			continue
		}
		key := p.Name + "." + p.Arch
		groups[key] = append(groups[key], p)
	}
	var out []string
	for _, g := range groups {
		sort.Slice(g, func(i, j int) bool { return cmpEVR(g[i], g[j]) > 0 })
		for rank, p := range g {
			old := rule.KeepDays > 0 && now.Sub(p.Added) > time.Duration(rule.KeepDays)*24*time.Hour
			if (rule.Keep > 0 && rank >= rule.Keep) || (rank > 0 && old) {
				out = append(out, p.NEVRA)
			}
		}
	}
	sort.Strings(out)
	return out
}
