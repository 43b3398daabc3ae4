package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/internal/safetext"
	"github.com/repoctl/repoctl/repo"
)

func init() {
	group := &cobra.Command{
		Use:   "rejected",
		Short: "List, show, retry or purge the files in ROOT/rejected",
		Long: `A drop-in that the pipeline rejects is moved to ROOT/rejected/NAME, with
NAME.reason beside it: the reason code and message, the path it came from, the
repository and channel it was meant for. (A file given to "repoctl add" is never
copied there: the caller keeps it and gets the reason.)

  list            every entry, oldest rejection first
  show NAME       one entry with its whole .reason
  retry NAME...   run entries through the pipeline again, for instance after
                  fixing one in place: what goes in leaves rejected/, what is
                  rejected again stays under its name with a new .reason
  purge [NAME...] remove entries (all, the named ones, or --older-than D)

retry and purge record one event per entry (rejected.retry, rejected.purge) and
run in the daemon when it runs.`,
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List ROOT/rejected, oldest rejection first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(cmd, func(ctx context.Context, svc repo.Service) ([]repo.RejectedEntry, error) {
				return svc.RejectedList(ctx)
			}, func(w io.Writer, entries []repo.RejectedEntry) error {
				return printRejected(w, entries)
			})
		},
	}

	show := &cobra.Command{
		Use:               "show NAME",
		Short:             "Show one entry of ROOT/rejected with its whole .reason",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRejected,
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(cmd, func(ctx context.Context, svc repo.Service) (*repo.RejectedEntry, error) {
				return svc.RejectedShow(ctx, args[0])
			}, func(w io.Writer, e *repo.RejectedEntry) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintf(tw, "name:\t%s\n", safetext.Escape(e.Name))
				fmt.Fprintf(tw, "type:\t%s\n", e.Type)
				fmt.Fprintf(tw, "size:\t%d\n", e.Size)
				fmt.Fprintf(tw, "rejected:\t%s\n", e.Time.UTC().Format(time.RFC3339))
				if err := tw.Flush(); err != nil {
					return err
				}
				if e.Reason != "" {
					fmt.Fprintf(w, "\n%s", e.Reason)
				}
				return nil
			})
		},
	}

	var ro repo.RejectedRetryRequest
	retry := &cobra.Command{
		Use:   "retry NAME...",
		Short: "Run entries of ROOT/rejected through the pipeline again",
		Long: `Runs each NAME of ROOT/rejected through the pipeline again, with the repository,
channel and release its .reason names (--repo, --channel, --release override
them). What is added, or found already there unchanged, leaves rejected/ with
its .reason; what is rejected again stays as rejected/NAME with a new .reason,
and the exit status is 3. Fix a file in place (replace rejected/NAME with the
right bytes) and retry it to publish it.`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeRejected,
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, done, err := connectService(cmd)
			if err != nil {
				return err
			}
			defer done()
			ro.Names, ro.Who = args, repo.CurrentUser()
			res, err := svc.RejectedRetry(cmd.Context(), ro)
			if err != nil {
				return err
			}
			return reportAdd(cmd, res, "entries rejected again")
		},
	}
	retry.Flags().StringVar(&ro.Repo, "repo", "", "repository to add to (default: the one its .reason names)")
	retry.Flags().StringVar(&ro.Channel, "channel", "", "channel to add to (default: the one its .reason names)")
	retry.Flags().StringVar(&ro.Release, "release", "", "release to add to, e.g. el/9 (default: its .reason's, else route by dist tag)")
	retry.Flags().BoolVar(&ro.DryRun, "dry-run", false, "validate, route and check for duplicates only; change nothing")

	var po repo.RejectedPurgeRequest
	purge := &cobra.Command{
		Use:   "purge [NAME...] [--older-than D]",
		Short: "Remove entries of ROOT/rejected (the file and its .reason)",
		Long: `Removes entries of ROOT/rejected: every entry, the NAMEs given, and with
--older-than only those rejected longer ago than D (30d, 12h, 90m; the age is
that of the entry's .reason). --dry-run lists what it would remove.`,
		ValidArgsFunction: completeRejected,
		RunE: func(cmd *cobra.Command, args []string) error {
			if po.OlderThan != "" {
				if _, err := repo.ParseAge(po.OlderThan); err != nil {
					return fmt.Errorf("--older-than: %w", err) // ErrBadOption: exit 2
				}
			}
			po.Names, po.Who = args, repo.CurrentUser()
			return query(cmd, func(ctx context.Context, svc repo.Service) (*repo.RejectedPurgeResult, error) {
				return svc.RejectedPurge(ctx, po)
			}, func(w io.Writer, res *repo.RejectedPurgeResult) error {
				verb := "purged"
				if res.DryRun {
					verb = "would purge"
				}
				for _, e := range res.Purged {
					fmt.Fprintf(w, "%s %s (%s, rejected %s)\n", verb, safetext.Escape(e.Name), orDefault(e.Code, "no reason"), e.Time.UTC().Format(time.RFC3339))
				}
				fmt.Fprintf(w, "%s %d entries, %d kept\n", verb, len(res.Purged), res.Kept)
				return nil
			})
		},
	}
	purge.Flags().StringVar(&po.OlderThan, "older-than", "", "only entries rejected longer ago than this (30d, 12h, 90m)")
	purge.Flags().BoolVar(&po.DryRun, "dry-run", false, "list what would be removed; remove nothing")

	group.AddCommand(list, show, retry, purge)
	rootCmd.AddCommand(group)
}

// printRejected is the table of rejected list.
func printRejected(w io.Writer, entries []repo.RejectedEntry) error {
	if len(entries) == 0 {
		_, err := fmt.Fprintln(w, "rejected/ is empty")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCODE\tREJECTED\tSIZE\tMESSAGE")
	for _, e := range entries {
		size := fmt.Sprint(e.Size)
		if e.Type == repo.RejectedMissing {
			size = "(gone)"
		}
		msg := e.Message
		if r := []rune(msg); len(r) > 100 {
			msg = string(r[:100]) + "…" // show has it whole
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", safetext.Escape(e.Name), orDefault(e.Code, "-"),
			e.Time.UTC().Format(time.RFC3339), size, strings.TrimSpace(safetext.Escape(msg)))
	}
	return tw.Flush()
}

// completeRejected completes entry names of ROOT/rejected.
func completeRejected(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if cmd.Name() == "show" && len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	svc, done := completionService(cmd)
	if svc == nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer done()
	entries, err := svc.RejectedList(cmd.Context())
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
	}
	return withPrefix(names, toComplete), cobra.ShellCompDirectiveNoFileComp
}
