package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/internal/safetext"
	"github.com/repoctl/repoctl/repo"
)

func init() {
	var o repo.HistoryOptions
	cmd := &cobra.Command{
		Use:   "history",
		Short: "Show the event log (who did what, when); --verify checks its hash chain",
		Long: `History prints the append-only event log, oldest first. Each event is
hash-chained to the one before it; --verify recomputes the chain and fails
(exit 1) naming the first event that was altered, reordered or removed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, done, err := connectService(cmd)
			if err != nil {
				return err
			}
			defer done()
			evs, err := svc.History(cmd.Context(), o)
			if err != nil {
				return err
			}
			if o.Verify && !globals.quiet {
				fmt.Fprintln(cmd.ErrOrStderr(), "repoctl: event log verified: hash chain intact")
			}
			if globals.output == "json" {
				return printJSONTo(cmd.OutOrStdout(), evs)
			}
			// Who may be a long user name: the columns are aligned over
			// the whole listing.
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			for _, e := range evs {
				writeEvent(w, e)
			}
			return w.Flush()
		},
	}
	cmd.Flags().IntVarP(&o.Limit, "limit", "n", 0, "only the newest N events")
	cmd.Flags().StringVar(&o.NEVRA, "nevra", "", "only events about this NEVRA (a build's promote or restore event included)")
	cmd.Flags().StringVar(&o.Action, "action", "", "only events with this action (add, sign, publish, reject, remove, promote, restore, upgrade …)")
	cmd.Flags().BoolVar(&o.Verify, "verify", false, "verify the hash chain of the whole log first")
	rootCmd.AddCommand(cmd)
}

// writeEvent writes e as one line of tab-separated columns (seq, time,
// who, action, then what it is about and its details), for a tabwriter.
func writeEvent(w io.Writer, e repo.Event) {
	// Paths and details may carry a dropped file's name, or a rollout
	// host's output: one event stays one line, and Escape leaves no tab
	// to shift a column.
	fmt.Fprintf(w, "%d\t%s\t%s\t%s\t", e.Seq, e.Time.Format("2006-01-02T15:04:05Z"), safetext.Escape(e.Who), safetext.Escape(e.Action))
	sep := ""
	for _, s := range []string{e.Repo, e.Channel, e.NEVRA, e.Path} {
		if s != "" {
			fmt.Fprintf(w, "%s%s", sep, safetext.Escape(s))
			sep = " "
		}
	}
	if c := e.Caller; c != nil && c.Name() != e.Who {
		fmt.Fprintf(w, " (%s)", safetext.Escape(c.String()))
	}
	keys := make([]string, 0, len(e.Details))
	for k := range e.Details {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var kv []string
	for _, k := range keys {
		kv = append(kv, k+"="+safetext.Escape(e.Details[k]))
	}
	if len(kv) > 0 {
		fmt.Fprintf(w, "  %s", strings.Join(kv, " "))
	}
	fmt.Fprintln(w)
}
