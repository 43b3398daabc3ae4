package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/repoctl/repoctl/repo"
	"github.com/repoctl/repoctl/upgrade"
)

type promoteFlags struct {
	repo, from, to, restart, inventory string
	phased, dryRun, yes, rollback      bool
}

func init() {
	var f promoteFlags
	cmd := &cobra.Command{
		Use:   "promote NAME[-VERSION-RELEASE]",
		Short: "Place the exact signed package in the target channel; with --phased, roll it out to the app hosts",
		Long: `Promote places the exact signed package of --from (staging) into --to (prod)
and republishes the target. NAME alone means the newest NAME in --from.

With --phased it then upgrades the app hosts of the [upgrade] inventory in
ROOT/repoctl.toml (or --inventory, an Ansible INI/YAML file): clean metadata
and install the exact NEVRA on every app host, check it with rpm -q, then per
group restart (graceful, or --restart=hard) and pass the HTTP health gate,
and finally purge the proxies' caches. Any failed step or gate halts before
the next group (exit status 5) and prints what ran on each host and what it
printed. --rollback-on-failure then downgrades the updated hosts to the
version the channel had before, restarts them and restores the channel.

--dry-run prints the whole plan (every host, every command, in order) and
changes nothing, not even the channel. Without --yes, promote asks on a
terminal and refuses otherwise.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runPromote(cmd, args[0], f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.repo, "repo", "", "repository name (default: default_repo)")
	fl.StringVar(&f.from, "from", "", "channel to promote from (default: the first channel, staging)")
	fl.StringVar(&f.to, "to", "", "channel to promote to (default: the last channel, prod)")
	fl.BoolVar(&f.phased, "phased", false, "roll the package out to the app hosts after promoting")
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
	req := repo.PromoteRequest{Package: pkg, Repo: f.repo, From: f.from, To: f.to, DryRun: true, Who: repo.CurrentUser()}
	preview, err := svc.Promote(ctx, req)
	if err != nil {
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
				Plan    *upgrade.Plan       `json:"plan,omitempty"`
			}{preview, plan})
		}
		printPromotePreview(w, preview, plan)
		return nil
	}
	if !f.yes {
		if !term.IsTerminal(int(os.Stdin.Fd())) {
			return fmt.Errorf("%w: promote changes %s; pass --yes when not on a terminal", errUsage, orDefault(preview.To, "the target channel"))
		}
		printPromotePreview(cmd.ErrOrStderr(), preview, plan)
		fmt.Fprint(cmd.ErrOrStderr(), "Proceed? [y/N] ")
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			return fmt.Errorf("%w: not confirmed", errUsage)
		}
	}
	var m *upgrade.Manager
	if f.phased {
		if m, err = rolloutManager(cmd, svc); err != nil {
			return err
		}
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
		fmt.Fprintf(w, "promoted %s %s → %s (previous: %s)\n", res.NEVRA, res.From, res.To, orNoneCmd(res.Previous))
		return nil
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "promoted %s %s → %s (previous: %s)\n", res.NEVRA, res.From, res.To, orNoneCmd(res.Previous))
	// Re-plan from the real result: it is what rollback must undo.
	if plan, err = newRolloutPlan(inv, res, f); err != nil {
		return err
	}
	r, err := m.Start(ctx, plan)
	if r == nil && err != nil {
		// The rollout never started: put the channel back.
		if rerr := svc.Restore(ctx, res); rerr != nil {
			return errors.Join(err, fmt.Errorf("restoring %s after the rollout failed to start: %w", res.NEVRA, rerr))
		}
		return fmt.Errorf("%w (channel %s restored)", err, res.To)
	}
	return finishRollout(cmd, r, err)
}

func newRolloutPlan(inv *upgrade.Inventory, pr *repo.PromoteResult, f promoteFlags) (*upgrade.Plan, error) {
	raw, err := json.Marshal(pr)
	if err != nil {
		return nil, err
	}
	return upgrade.NewPlan(inv, upgrade.PlanRequest{NEVRA: pr.NEVRA, Previous: pr.Previous, Restart: f.restart,
		RollbackOnFailure: f.rollback, Meta: map[string]string{"promote": string(raw), "repo": pr.Repo, "channel": pr.To}})
}

// loadInventory reads the [upgrade] section of the config file; an Ansible
// inventory, if given, replaces its host lists.
func loadInventory(ansible string) (*upgrade.Inventory, error) {
	file := globals.config
	if file == "" {
		file = filepath.Join(globals.root, repo.ConfigFileName)
	}
	c := &upgrade.Config{}
	if _, err := os.Stat(file); err == nil || globals.config != "" {
		var lerr error
		if c, lerr = upgrade.LoadConfigFile(file); lerr != nil {
			return nil, lerr
		}
	} else if ansible == "" {
		return nil, fmt.Errorf("%w: --phased needs an [upgrade] inventory in %q or --inventory FILE", errUsage, file)
	}
	return c.Resolve(ansible)
}

func printPromotePreview(w interface{ Write([]byte) (int, error) }, pr *repo.PromoteResult, plan *upgrade.Plan) {
	verb := "would promote"
	if pr.AlreadyPresent {
		verb = "already in target:"
	}
	fmt.Fprintf(w, "%s %s %s → %s (previous: %s)\n", verb, pr.NEVRA, pr.From, pr.To, orNoneCmd(pr.Previous))
	for _, d := range pr.Dirs {
		fmt.Fprintf(w, "  republish %s\n", d)
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
