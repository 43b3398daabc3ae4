package main

// Dynamic shell completion. A completion runs on every <TAB>, so it must be
// quick and must not get in anybody's way: it reads the config, and the
// store only through the daemon's socket or, without a daemon, under the
// ROOT lock for as long as one List takes, waiting at most a moment for
// it. A root that does not exist yet completes nothing rather than being
// created, and nothing it would resume is started.

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/repo"
	"github.com/repoctl/repoctl/upgrade"
)

const (
	completionLockWait = 250 * time.Millisecond
	completionTimeout  = 2 * time.Second
)

// flagCompletions complete flags by name, whichever command has them.
var flagCompletions = map[string]cobra.CompletionFunc{
	"output":        fixedCompletion("text", "json"),
	"channel":       completeChannels,
	"from":          completeChannels,
	"to":            completeChannels,
	"repo":          completeRepos,
	"nevra":         completeNEVRAs,
	"restart":       fixedCompletion(upgrade.RestartGraceful, upgrade.RestartHard),
	"algo":          fixedCompletion("rsa4096", "rsa3072", "ed25519"),
	"compress-type": fixedCompletion("zstd", "gz"),
	"log-format":    fixedCompletion("text", "json"),
	"log-level":     fixedCompletion("debug", "info", "warn", "error"),
}

func registerFlagCompletions(c *cobra.Command) {
	for name, fn := range flagCompletions {
		if c.Flags().Lookup(name) == nil && c.PersistentFlags().Lookup(name) == nil {
			continue
		}
		// A command that registered its own keeps it: the error says so.
		_ = c.RegisterFlagCompletionFunc(name, fn)
	}
}

func fixedCompletion(values ...string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return withPrefix(values, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

func withPrefix(values []string, prefix string) []cobra.Completion {
	var out []cobra.Completion
	for _, v := range values {
		if strings.HasPrefix(v, prefix) {
			out = append(out, v)
		}
	}
	return out
}

func completionConfig() *repo.Config {
	cfg, err := repo.LoadConfig(globals.root, globals.config)
	if err != nil {
		return nil
	}
	return cfg
}

func completeChannels(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if cfg := completionConfig(); cfg != nil {
		return withPrefix(cfg.Channels, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}

func completeRepos(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if cfg := completionConfig(); cfg != nil {
		return withPrefix(cfg.Repos, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}

// completionService is the daemon or the root opened without resuming
// anything, or nil when the root does not exist or stays busy.
func completionService(cmd *cobra.Command) (repo.Service, func()) {
	cfg := completionConfig()
	if cfg == nil {
		return nil, nil
	}
	// A root that was never opened stays so: with etcd there is no store
	// file, but the first open has made the key directory.
	mark := cfg.Paths.DB
	if cfg.Store.Backend != repo.StoreBbolt {
		mark = cfg.Paths.Keys
	}
	if _, err := os.Stat(mark); err != nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	opts := []repo.Option{repo.WithLockWait(completionLockWait), repo.WithResume(false)}
	if globals.config != "" {
		opts = append(opts, repo.WithConfigFile(globals.config))
	}
	svc, done, err := repo.Connect(ctx, globals.root, opts...)
	if err != nil {
		cancel()
		return nil, nil
	}
	return svc, func() { done(); cancel() }
}

// completeNEVRAs completes the first argument with the packages of the
// store (of --repo and --channel when given).
func completeNEVRAs(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 && cmd.Flags().Lookup("nevra") == nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return withPrefix(packageNames(cmd, false), toComplete), cobra.ShellCompDirectiveNoFileComp
}

// completeBuilds is completeNEVRAs plus the builds (N-V-R) and names that
// promote takes.
func completeBuilds(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return withPrefix(packageNames(cmd, true), toComplete), cobra.ShellCompDirectiveNoFileComp
}

func packageNames(cmd *cobra.Command, builds bool) []string {
	svc, done := completionService(cmd)
	if svc == nil {
		return nil
	}
	defer done()
	var o repo.ListOptions
	if f := cmd.Flags().Lookup("repo"); f != nil {
		o.Repo = f.Value.String()
	}
	for _, name := range []string{"channel", "from"} {
		if f := cmd.Flags().Lookup(name); f != nil && f.Value.String() != "" {
			o.Channel = f.Value.String()
		}
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	pkgs, err := svc.List(ctx, o)
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	for _, p := range pkgs {
		seen[p.NEVRA] = true
		if builds {
			nvr := strings.TrimSuffix(p.NEVRA, "."+p.Arch)
			seen[nvr], seen[p.Name] = true, true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// completeRollouts completes a rollout id, newest first. rollouts.db may
// be held by a running rollout for a moment: the answer is given up after
// completionTimeout rather than waited for.
func completeRollouts(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	cfg, err := repo.LoadConfig(globals.root, globals.config)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	if _, err := os.Stat(filepath.Join(globals.root, "rollouts.db")); err != nil && cfg.Store.Backend != repo.StoreEtcd {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	ch := make(chan []cobra.Completion, 1)
	go func() {
		m, done, err := repo.RolloutManager(ctx, cfg)
		if err != nil {
			ch <- nil
			return
		}
		defer done()
		rs, err := m.List(ctx)
		if err != nil {
			ch <- nil
			return
		}
		var out []cobra.Completion
		for i := len(rs) - 1; i >= 0; i-- {
			if strings.HasPrefix(rs[i].ID, toComplete) {
				out = append(out, cobra.CompletionWithDesc(rs[i].ID, string(rs[i].State)+" "+planPackages(&rs[i].Plan)))
			}
		}
		ch <- out
	}()
	select {
	case out := <-ch:
		return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
	case <-ctx.Done():
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeServedKeys completes the key ids `key retire` takes: the served
// keys other than the active one.
func completeServedKeys(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	svc, done := completionService(cmd)
	if svc == nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer done()
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	st, err := svc.KeyStatus(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for _, k := range st.Keys {
		if !k.Active && strings.HasPrefix(k.KeyID, toComplete) {
			out = append(out, cobra.CompletionWithDesc(k.KeyID, k.UserID))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
