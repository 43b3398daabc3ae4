package repo

import (
	"fmt"
	"path"
	"slices"
	"time"
)

// RetentionConfig is [retention]: how many versions of each package a
// channel keeps (prune.go) and how many channel versions the store keeps
// (chanver.go). [retention.channel.NAME] overrides keep, keep_days and
// exclude for one channel.
type RetentionConfig struct {
	// Keep is how many versions of each package name and arch a channel
	// lists; 0 (default) keeps all.
	Keep int `toml:"keep"`
	// KeepDays drops versions added more than this many days ago, never
	// the newest of a name and arch; 0 (default) keeps them.
	KeepDays int `toml:"keep_days"`
	// Exclude names packages (path.Match globs) that are never pruned.
	Exclude []string `toml:"exclude"`
	// ChannelVersions is how many versions of each channel the store
	// keeps for log, diff and rollback; default 20. The current version
	// is always kept. Files of packages only old versions name are kept
	// until those versions expire.
	ChannelVersions int `toml:"channel_versions"`
	// ChannelVersionDays also expires versions older than this many days
	// (never the current one); 0 (default) keeps them by count only.
	ChannelVersionDays int `toml:"channel_version_days"`

	Channel map[string]RetentionRule `toml:"channel"`
}

// RetentionRule is one channel's override; an unset field inherits.
type RetentionRule struct {
	Keep     *int     `toml:"keep"`
	KeepDays *int     `toml:"keep_days"`
	Exclude  []string `toml:"exclude"`
}

// Retention is the effective rule of one channel.
type Retention struct {
	Keep     int      `json:"keep"`
	KeepDays int      `json:"keep_days"`
	Exclude  []string `json:"exclude,omitempty"`
}

// Active is whether the rule prunes anything.
func (r Retention) Active() bool { return r.Keep > 0 || r.KeepDays > 0 }

// Excluded is whether name is never pruned.
func (r Retention) Excluded(name string) bool {
	for _, g := range r.Exclude {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// RetentionFor is channel's effective rule.
func (c *Config) RetentionFor(channel string) Retention {
	r := Retention{Keep: c.Retention.Keep, KeepDays: c.Retention.KeepDays, Exclude: c.Retention.Exclude}
	if o, ok := c.Retention.Channel[channel]; ok {
		if o.Keep != nil {
			r.Keep = *o.Keep
		}
		if o.KeepDays != nil {
			r.KeepDays = *o.KeepDays
		}
		if o.Exclude != nil {
			r.Exclude = o.Exclude
		}
	}
	return r
}

// DefaultChannelVersions is [retention] channel_versions' default.
const DefaultChannelVersions = 20

// grace is how long superseded repodata and package files that left the
// repodata stay for clients holding an older repomd.xml.
func (c *Config) grace() time.Duration {
	d, err := time.ParseDuration(c.Publish.Grace)
	if err != nil {
		return time.Hour
	}
	return d
}

func (c *Config) retentionDefaults() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadConfig, fmt.Sprintf(format, a...))
	}
	if c.Publish.Grace == "" {
		c.Publish.Grace = "1h"
	}
	if d, err := time.ParseDuration(c.Publish.Grace); err != nil || d < 0 {
		return bad("publish.grace %q is not a duration such as \"1h\"", c.Publish.Grace)
	}
	rt := &c.Retention
	switch {
	case rt.ChannelVersions < 0:
		return bad("retention.channel_versions %d: must be at least 1 (0 means the default, %d)", rt.ChannelVersions, DefaultChannelVersions)
	case rt.ChannelVersions == 0:
		rt.ChannelVersions = DefaultChannelVersions
	}
	if rt.ChannelVersionDays < 0 {
		return bad("retention.channel_version_days %d: must not be negative", rt.ChannelVersionDays)
	}
	check := func(where string, keep, days int, exclude []string) error {
		if keep < 0 {
			return bad("%s.keep %d: must not be negative (0 keeps all)", where, keep)
		}
		if days < 0 {
			return bad("%s.keep_days %d: must not be negative (0 keeps all)", where, days)
		}
		for _, g := range exclude {
			if _, err := path.Match(g, ""); err != nil || g == "" {
				return bad("%s.exclude %q is not a name or glob", where, g)
			}
		}
		return nil
	}
	if err := check("retention", rt.Keep, rt.KeepDays, rt.Exclude); err != nil {
		return err
	}
	for ch, o := range rt.Channel {
		if !slices.Contains(c.Channels, ch) {
			return bad("retention.channel.%s: no such channel (channels: %v)", ch, c.Channels)
		}
		var keep, days int
		if o.Keep != nil {
			keep = *o.Keep
		}
		if o.KeepDays != nil {
			days = *o.KeepDays
		}
		if err := check("retention.channel."+ch, keep, days, o.Exclude); err != nil {
			return err
		}
	}
	return nil
}
