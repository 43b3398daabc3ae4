package main

import (
	"github.com/repoctl/repoctl/upgrade"
)

// rollouts.db keeps a rollout's SSH timeouts as integer nanoseconds, and
// must go on doing so for older repoctl versions to read it. -o json
// prints durations as Go duration strings ("10s") instead; these views do
// that without touching the stored types (which read both forms back).

type rolloutJSON struct {
	*upgrade.Rollout
	Plan *planJSON `json:"plan"`
}

type planJSON struct {
	*upgrade.Plan
	Settings settingsJSON `json:"settings"`
}

type settingsJSON struct {
	upgrade.Settings
	ConnectTimeout string `json:"connect_timeout"`
	CommandTimeout string `json:"command_timeout"`
}

func rolloutView(r *upgrade.Rollout) *rolloutJSON {
	if r == nil {
		return nil
	}
	return &rolloutJSON{Rollout: r, Plan: planView(&r.Plan)}
}

func rolloutsView(rs []*upgrade.Rollout) []*rolloutJSON {
	out := make([]*rolloutJSON, len(rs))
	for i, r := range rs {
		out[i] = rolloutView(r)
	}
	return out
}

func planView(p *upgrade.Plan) *planJSON {
	if p == nil {
		return nil
	}
	s := p.Settings
	return &planJSON{Plan: p, Settings: settingsJSON{Settings: s,
		ConnectTimeout: s.ConnectTimeout.String(), CommandTimeout: s.CommandTimeout.String()}}
}
