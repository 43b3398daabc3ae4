package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/internal/safetext"
	"github.com/repoctl/repoctl/repo"
)

func init() {
	ch := &cobra.Command{
		Use:   "channel",
		Short: "Numbered versions of a channel: log, show, diff and rollback",
		Long: `Every change to a channel's package set (add, promote, remove, restore,
rollback, prune) makes a new numbered version of that channel, recorded with
its time, the caller and the cause. "channel log" lists them, "channel show"
prints the set of one, "channel diff" compares two, and "channel rollback"
makes a new version equal to an old one and publishes it atomically.`,
	}
	var repoName string
	ch.PersistentFlags().StringVar(&repoName, "repo", "", "repository name (default: default_repo)")

	var limit int
	logCmd := &cobra.Command{
		Use:   "log CHANNEL",
		Short: "List a channel's versions, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(cmd, func(ctx context.Context, svc repo.Service) ([]repo.ChannelVersion, error) {
				return svc.ChannelLog(ctx, repo.ChannelLogOptions{Repo: repoName, Channel: args[0], Limit: limit})
			}, func(w io.Writer, vs []repo.ChannelVersion) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "VERSION\tTIME\tWHO\tCAUSE\tPACKAGES\tCHANGE")
				for _, v := range vs {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", v.Version, v.Time.Format("2006-01-02T15:04:05Z"),
						safetext.Escape(v.Who), cause(v), v.Packages, change(v.Added, v.Removed))
				}
				return tw.Flush()
			})
		},
	}
	logCmd.Flags().IntVar(&limit, "limit", 0, "show at most this many versions (0: all kept)")

	showCmd := &cobra.Command{
		Use:   "show CHANNEL [VERSION]",
		Short: "Print the packages of a channel at one version (default: the current one)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := repo.ChannelShowOptions{Repo: repoName, Channel: args[0]}
			if len(args) == 2 {
				v, err := parseVersion(args[1])
				if err != nil {
					return err
				}
				o.Version = v
			}
			return query(cmd, func(ctx context.Context, svc repo.Service) (*repo.ChannelSnapshot, error) {
				return svc.ChannelShow(ctx, o)
			}, func(w io.Writer, snap *repo.ChannelSnapshot) error {
				cur := ""
				if snap.Current {
					cur = " (current)"
				}
				fmt.Fprintf(w, "# %s %s version %d%s: %s, %s by %s\n", snap.Repo, snap.Channel, snap.Version, cur,
					packages(len(snap.NEVRAs)), cause(snap.ChannelVersion), safetext.Escape(snap.Who))
				for _, n := range snap.NEVRAs {
					fmt.Fprintln(w, safetext.Escape(n))
				}
				return nil
			})
		},
	}

	diffCmd := &cobra.Command{
		Use:   "diff CHANNEL V1 [V2]",
		Short: "Compare two versions of a channel (V2 default: the current one)",
		Args:  cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := repo.ChannelDiffOptions{Repo: repoName, Channel: args[0]}
			var err error
			if o.From, err = parseVersion(args[1]); err != nil {
				return err
			}
			if len(args) == 3 {
				if o.To, err = parseVersion(args[2]); err != nil {
					return err
				}
			}
			return query(cmd, func(ctx context.Context, svc repo.Service) (*repo.ChannelDiff, error) {
				return svc.ChannelDiff(ctx, o)
			}, func(w io.Writer, d *repo.ChannelDiff) error {
				printDiff(w, d)
				return nil
			})
		},
	}

	var rb repo.ChannelRollbackRequest
	var yes bool
	rollbackCmd := &cobra.Command{
		Use:   "rollback CHANNEL --to VERSION",
		Short: "Make a channel's package set equal to an older version and publish it",
		Long: `Rollback makes a new version of CHANNEL whose package set equals version
--to, and publishes every directory it affects atomically. Packages it takes
out keep their files while a kept version names them, so a later rollback
can list them again; it refuses (changing nothing) when a package of the
target version has no file left (removed with "remove", or expired).
On a terminal it shows the change and asks; elsewhere pass --yes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rb.Repo, rb.Channel, rb.Who = repoName, args[0], repo.CurrentUser()
			svc, done, err := connectService(cmd)
			if err != nil {
				return err
			}
			defer done()
			if !rb.DryRun && !yes {
				pre := rb
				pre.DryRun = true
				plan, err := svc.ChannelRollback(cmd.Context(), pre)
				if err != nil {
					return err
				}
				if !plan.Unchanged {
					if err := confirm(cmd, false, fmt.Sprintf("rollback changes channel %s", plan.Channel), func(w io.Writer) {
						printChange(w, plan)
					}); err != nil {
						return err
					}
				}
			}
			res, err := svc.ChannelRollback(cmd.Context(), rb)
			if err != nil {
				return err
			}
			if globals.output == "json" {
				return printJSONTo(cmd.OutOrStdout(), res)
			}
			printChange(cmd.OutOrStdout(), res)
			return nil
		},
	}
	rollbackCmd.Flags().Uint64Var(&rb.To, "to", 0, "the version to make current again (see channel log)")
	rollbackCmd.Flags().BoolVar(&rb.DryRun, "dry-run", false, "show what would change, change nothing")
	rollbackCmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	_ = rollbackCmd.MarkFlagRequired("to")

	for _, c := range []*cobra.Command{logCmd, showCmd, diffCmd, rollbackCmd} {
		c.ValidArgsFunction = completeChannels
		ch.AddCommand(c)
	}
	rootCmd.AddCommand(ch)
}

func parseVersion(s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("%w: version %q is not a channel version number (see channel log)", errUsage, s)
	}
	return v, nil
}

func cause(v repo.ChannelVersion) string {
	if v.RolledBackTo > 0 {
		return fmt.Sprintf("%s to %d", safetext.Escape(v.Cause), v.RolledBackTo)
	}
	return safetext.Escape(v.Cause)
}

func packages(n int) string {
	if n == 1 {
		return "1 package"
	}
	return fmt.Sprintf("%d packages", n)
}

func change(added, removed []string) string {
	var parts []string
	for _, n := range added {
		parts = append(parts, "+"+safetext.Escape(n))
	}
	for _, n := range removed {
		parts = append(parts, "-"+safetext.Escape(n))
	}
	s := strings.Join(parts, " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

func printDiff(w io.Writer, d *repo.ChannelDiff) {
	fmt.Fprintf(w, "# %s %s: version %d → %d\n", d.Repo, d.Channel, d.From, d.To)
	for _, c := range d.Upgraded {
		fmt.Fprintf(w, "upgraded   %s.%s %s → %s\n", safetext.Escape(c.Name), safetext.Escape(c.Arch), safetext.Escape(c.From), safetext.Escape(c.To))
	}
	for _, c := range d.Downgraded {
		fmt.Fprintf(w, "downgraded %s.%s %s → %s\n", safetext.Escape(c.Name), safetext.Escape(c.Arch), safetext.Escape(c.From), safetext.Escape(c.To))
	}
	for _, n := range d.Added {
		fmt.Fprintf(w, "added      %s\n", safetext.Escape(n))
	}
	for _, n := range d.Removed {
		fmt.Fprintf(w, "removed    %s\n", safetext.Escape(n))
	}
}

func printChange(w io.Writer, c *repo.ChannelChange) {
	if c.Unchanged {
		fmt.Fprintf(w, "channel %s is already equal to version %d: nothing to do\n", c.Channel, c.RolledBackTo)
		return
	}
	add, del := "lists again", "takes out"
	switch {
	case c.DryRun:
		add, del = "would list again", "would take out"
		fmt.Fprintf(w, "# %s %s: would make a new version equal to %d (current: %d)\n", c.Repo, c.Channel, c.RolledBackTo, c.From)
	default:
		fmt.Fprintf(w, "# %s %s: version %d, equal to %d (was %d)\n", c.Repo, c.Channel, c.Version, c.RolledBackTo, c.From)
	}
	for _, n := range c.Added {
		fmt.Fprintf(w, "%s %s\n", add, safetext.Escape(n))
	}
	for _, n := range c.Removed {
		fmt.Fprintf(w, "%s %s\n", del, safetext.Escape(n))
	}
	for _, d := range c.Dirs {
		fmt.Fprintf(w, "publishes %s\n", safetext.Escape(d))
	}
}
