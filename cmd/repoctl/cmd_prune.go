package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/internal/safetext"
	"github.com/repoctl/repoctl/repo"
)

func init() {
	var req repo.PruneRequest
	var keep int
	cmd := &cobra.Command{
		Use:   "prune [--channel C] [--keep N] [--dry-run]",
		Short: "Apply retention: take old package versions out of channels and publish",
		Long: `Prune applies [retention] (keep, keep_days, exclude; [retention.channel.NAME]
overrides) to every channel, or to --channel, and publishes what it changes;
--keep N replaces the configured keep for this run. It prints each package
it takes out. A pruned package stays in every other channel that lists it;
its file in this channel goes after [publish] grace once no kept channel
version names it (so a rollback can bring it back until then). Retention
also runs after every add and promote into a channel with a rule.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("keep") {
				req.Keep = &keep
			}
			req.Who = repo.CurrentUser()
			return query(cmd, func(ctx context.Context, svc repo.Service) (*repo.PruneResult, error) {
				return svc.Prune(ctx, req)
			}, func(w io.Writer, res *repo.PruneResult) error {
				verb := "pruned"
				if res.DryRun {
					verb = "would prune"
				}
				if len(res.Channels) == 0 && !globals.quiet {
					fmt.Fprintln(cmd.ErrOrStderr(), "repoctl: no retention rule applies (set [retention] keep or keep_days, or pass --keep)")
				}
				for _, c := range res.Channels {
					for _, n := range c.Removed {
						fmt.Fprintf(w, "%s %s from %s\n", verb, safetext.Escape(n), c.Channel)
					}
					if c.Version > 0 {
						fmt.Fprintf(w, "# %s is now version %d\n", c.Channel, c.Version)
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&req.Repo, "repo", "", "repository name (default: default_repo)")
	cmd.Flags().StringVar(&req.Channel, "channel", "", "only this channel (default: every channel)")
	cmd.Flags().IntVar(&keep, "keep", 0, "keep this many newest versions of each package name and arch (default: [retention] keep)")
	cmd.Flags().BoolVar(&req.DryRun, "dry-run", false, "show what would be pruned, change nothing")
	_ = cmd.RegisterFlagCompletionFunc("channel", completeChannels)
	rootCmd.AddCommand(cmd)
}
