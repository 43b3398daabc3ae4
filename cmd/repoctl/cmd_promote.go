package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/repo"
	"github.com/repoctl/repoctl/upgrade"
)

type promoteFlags struct {
	repo, from, to, restart, inventory string
	arches                             []string
	phased, dryRun, yes, rollback      bool
}

func init() {
	var f promoteFlags
	cmd := &cobra.Command{
		Use:   "promote NAME[-VERSION-RELEASE] | NEVRA",
		Short: "Place the exact signed build in the target channel; with --phased, roll it out to the app hosts",
		Long: `Promote places the exact signed files of --from (staging) into --to (prod)
and republishes the target. NAME-VERSION-RELEASE is the whole build: every
arch and its source package, promoted as one change (one event, each
repository directory republished once). NAME alone means the newest such
build in --from. A full NEVRA (NAME-VERSION-RELEASE.ARCH) is that package
alone. --arch narrows a build to the arches named (repeat it or give a
comma list); the source package then comes along only if "src" is named.

With --phased it then upgrades the app hosts of the [upgrade] inventory in
ROOT/repoctl.toml (or --inventory, an Ansible INI/YAML file): clean metadata
and install the exact NEVRA on every app host, check it with rpm -q, then per
group restart (graceful, or --restart=hard) and pass the HTTP health gate,
and finally purge the proxies' caches. Of a multi-arch build each host
installs the package of its arch (or the noarch one; never the source
package): the host's "arch" in the inventory, else its answer to
"rpm --eval %{_arch}" (or "uname -m"), asked over SSH before the update.
Any failed step or gate halts before the next group (exit status 5) and
prints what ran on each host and what it printed. --rollback-on-failure then downgrades the updated hosts to the
version the channel had before, restarts them and restores the channel.

--dry-run prints every file it would place, every directory it would
republish and the whole plan (every host, every command, in order), and
changes nothing, not even the channel. Without --yes, promote asks on a
terminal and refuses otherwise.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeBuilds,
		RunE:              func(cmd *cobra.Command, args []string) error { return runPromote(cmd, args[0], f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.repo, "repo", "", "repository name (default: default_repo)")
	fl.StringVar(&f.from, "from", "", "channel to promote from (default: the first channel, staging)")
	fl.StringVar(&f.to, "to", "", "channel to promote to (default: the last channel, prod)")
	fl.StringSliceVar(&f.arches, "arch", nil, "only these package arches of the build (x86_64, noarch, src, …; repeatable or comma separated)")
	fl.BoolVar(&f.phased, "phased", false, "roll the build out to the app hosts after promoting")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the plan and change nothing")
	fl.BoolVarP(&f.yes, "yes", "y", false, "do not ask for confirmation")
	fl.BoolVar(&f.rollback, "rollback-on-failure", false, "on a failed step or gate, downgrade updated hosts and restore the channel")
	fl.StringVar(&f.restart, "restart", upgrade.RestartGraceful, "restart mode: graceful or hard (WSGI app or its config changed)")
	fl.StringVar(&f.inventory, "inventory", "", "Ansible INI or YAML inventory to take the hosts from")
	rootCmd.AddCommand(cmd)
}

func runPromote(cmd *cobra.Command, pkg string, f promoteFlags) error {
	if f.restart != upgrade.RestartGraceful && f.restart != upgrade.RestartHard {
		return fmt.Errorf("%w: --restart must be graceful or hard, not %q", errUsage, f.restart)
	}
	if !f.phased && (f.rollback || f.inventory != "" || cmd.Flags().Changed("restart")) {
		return fmt.Errorf("%w: --rollback-on-failure, --restart and --inventory need --phased", errUsage)
	}
	// The inventory is read before anything changes, so that a bad one
	// never leaves a promoted package without its rollout.
	var inv *upgrade.Inventory
	if f.phased {
		var err error
		if inv, err = loadInventory(f.inventory); err != nil {
			return err
		}
	}
	svc, done, err := connectService(cmd)
	if err != nil {
		return err
	}
	defer done()
	ctx := cmd.Context()
	req := repo.PromoteRequest{Package: pkg, Repo: f.repo, From: f.from, To: f.to, Arches: f.arches, DryRun: true, Who: repo.CurrentUser()}
	preview, err := svc.Promote(ctx, req)
	if err != nil {
		return err
	}
	if err := checkArches(preview, f.arches); err != nil {
		return err
	}
	var plan *upgrade.Plan
	if f.phased {
		if plan, err = newRolloutPlan(inv, preview, f); err != nil {
			return err
		}
	}
	w := cmd.OutOrStdout()
	if f.dryRun {
		if globals.output == "json" {
			return printJSONTo(w, struct {
				Promote *repo.PromoteResult `json:"promote"`
				Plan    *planJSON           `json:"plan,omitempty"`
			}{preview, planView(plan)})
		}
		printPromotePreview(w, preview, plan)
		return nil
	}
	if err := confirm(cmd, f.yes, "promote changes "+orDefault(preview.To, "the target channel"), func(w io.Writer) {
		printPromotePreview(w, preview, plan)
	}); err != nil {
		return err
	}
	var m *upgrade.Manager
	if f.phased {
		var mdone func() error
		if m, mdone, err = rolloutManager(cmd, svc); err != nil {
			return err
		}
		defer mdone()
		// Refuse before the channel changes if another rollout owns a host
		// or the SSH settings are unusable.
		if err := m.Preflight(ctx, plan); err != nil {
			return err
		}
	}
	req.DryRun = false
	res, err := svc.Promote(ctx, req)
	if err != nil {
		return err
	}
	if !f.phased {
		if globals.output == "json" {
			return printJSONTo(w, res)
		}
		printPromoted(w, res)
		return nil
	}
	if !globals.quiet {
		printPromoted(cmd.ErrOrStderr(), res)
	}
	// Re-plan from the real result: it is what rollback must undo.
	if plan, err = newRolloutPlan(inv, res, f); err != nil {
		return err
	}
	r, err := m.Start(ctx, plan)
	if r == nil && err != nil {
		// The rollout never started: put the channel back.
		if rerr := svc.Restore(ctx, res); rerr != nil {
			return errors.Join(err, fmt.Errorf("restoring %s after the rollout failed to start: %w", buildName(res), rerr))
		}
		return fmt.Errorf("%w (channel %s restored)", err, res.To)
	}
	return finishRollout(cmd, m, r, err)
}

// newRolloutPlan plans the rollout of pr's binary packages: hosts never
// install the source package, and each host gets the one of its arch.
func newRolloutPlan(inv *upgrade.Inventory, pr *repo.PromoteResult, f promoteFlags) (*upgrade.Plan, error) {
	raw, err := json.Marshal(pr)
	if err != nil {
		return nil, err
	}
	req := upgrade.PlanRequest{Restart: f.restart, RollbackOnFailure: f.rollback,
		Meta: map[string]string{"promote": string(raw), "repo": pr.Repo, "channel": pr.To}}
	for _, p := range pr.All() {
		if p.Arch != "src" && p.Arch != "nosrc" {
			req.Builds = append(req.Builds, upgrade.Build{NEVRA: p.NEVRA, Previous: p.Previous})
		}
	}
	switch len(req.Builds) {
	case 0:
		return nil, fmt.Errorf("%w: %s has no binary package to roll out", errUsage, buildName(pr))
	case 1:
		// One package: the plan an older repoctl made, byte for byte.
		req.NEVRA, req.Previous, req.Builds = req.Builds[0].NEVRA, req.Builds[0].Previous, nil
	}
	return upgrade.NewPlan(inv, req)
}

// checkArches refuses a preview that holds a package of an arch that was
// not asked for: an older daemon ignores --arch, and must not promote more
// than the user named.
func checkArches(pr *repo.PromoteResult, arches []string) error {
	if len(arches) == 0 {
		return nil
	}
	want := map[string]bool{}
	for _, a := range arches {
		want[a] = true
	}
	for _, p := range pr.All() {
		if !want[p.Arch] {
			return fmt.Errorf("the repository answered with %s although --arch %s was given (an older daemon?); nothing was changed",
				p.NEVRA, strings.Join(arches, ","))
		}
	}
	return nil
}

// buildName is N-V-R for a build of several packages, else the NEVRA.
func buildName(pr *repo.PromoteResult) string {
	all := pr.All()
	if len(all) > 1 {
		nvr := pr.Name + "-" + pr.Version + "-" + pr.Release
		if pr.Epoch != "" && pr.Epoch != "0" {
			nvr = pr.Name + "-" + pr.Epoch + ":" + pr.Version + "-" + pr.Release
		}
		return nvr
	}
	return pr.NEVRA
}

// printPromoted says what a promote did: one line for one package, else
// the build and a line per package.
func printPromoted(w io.Writer, res *repo.PromoteResult) {
	all := res.All()
	if len(all) <= 1 {
		fmt.Fprintf(w, "promoted %s %s → %s (previous: %s)\n", res.NEVRA, res.From, res.To, orNoneCmd(res.Previous))
		return
	}
	verb := "already in " + res.To + ":"
	for _, p := range all {
		if !p.AlreadyPresent {
			verb = "promoted"
		}
	}
	fmt.Fprintf(w, "%s %s (%d packages) %s → %s\n", verb, buildName(res), len(all), res.From, res.To)
	for _, p := range all {
		note := ""
		if p.AlreadyPresent {
			note = ", already there"
		}
		fmt.Fprintf(w, "  %s (previous: %s%s)\n", p.NEVRA, orNoneCmd(p.Previous), note)
	}
}

// loadInventory reads the [upgrade] section of the config file; an Ansible
// inventory, if given, replaces its host lists.
func loadInventory(ansible string) (*upgrade.Inventory, error) {
	// The config lookup order every command uses (--config,
	// REPOCTL_CONFIG, ROOT/repoctl.toml, /etc/repoctl/repoctl.toml).
	file, err := repo.ConfigPath(globals.root, globals.config)
	if err != nil {
		return nil, err
	}
	c := &upgrade.Config{}
	if file != "" {
		var lerr error
		if c, lerr = upgrade.LoadConfigFile(file); lerr != nil {
			return nil, lerr
		}
	} else if ansible == "" {
		return nil, fmt.Errorf("%w: --phased needs an [upgrade] inventory in %q, %q or --inventory FILE", errUsage,
			filepath.Join(globals.root, repo.ConfigFileName), repo.SystemConfigFile)
	}
	return c.Resolve(ansible)
}

// printPromotePreview shows every file that would be placed and every
// directory that would be republished.
func printPromotePreview(w io.Writer, pr *repo.PromoteResult, plan *upgrade.Plan) {
	all := pr.All()
	dirs := map[string]bool{}
	if len(all) <= 1 {
		verb := "would promote"
		if pr.AlreadyPresent {
			verb = "already in target:"
		}
		fmt.Fprintf(w, "%s %s %s → %s (previous: %s)\n", verb, pr.NEVRA, pr.From, pr.To, orNoneCmd(pr.Previous))
	} else {
		fmt.Fprintf(w, "would promote %s (%d packages) %s → %s\n", buildName(pr), len(all), pr.From, pr.To)
	}
	for _, p := range all {
		if len(all) > 1 {
			if p.AlreadyPresent {
				fmt.Fprintf(w, "  %s: already in target\n", p.NEVRA)
			} else {
				fmt.Fprintf(w, "  %s (previous: %s)\n", p.NEVRA, orNoneCmd(p.Previous))
			}
		}
		if p.AlreadyPresent {
			continue
		}
		for _, f := range p.Files {
			fmt.Fprintf(w, "    place %s\n", f)
		}
		for _, d := range p.Dirs {
			dirs[d] = true
		}
	}
	for _, d := range pr.Dirs {
		if dirs[d] {
			fmt.Fprintf(w, "  republish %s\n", d)
		}
	}
	if plan != nil {
		fmt.Fprint(w, plan.Text())
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
