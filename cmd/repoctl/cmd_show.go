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
	var o repo.ShowOptions
	cmd := &cobra.Command{
		Use:   "show NEVRA",
		Short: "Show one package: its store record, where it is published, its events",
		Long: `Show prints everything the store records about one package (NEVRA, files,
checksums and sizes of the original and the signed file, key, release, when
and by whom it was added), each place it is published with its URL and
whether that directory's served repodata lists it, and every event that names
it (a build's promote or restore included), oldest first. NEVRA may also be
N-V-R.A.rpm, or any name promote takes that resolves to one package.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeNEVRAs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(cmd, func(ctx context.Context, svc repo.Service) (*repo.ShowResult, error) {
				return svc.Show(ctx, args[0], o)
			}, func(w io.Writer, res *repo.ShowResult) error {
				return printShow(w, res)
			})
		},
	}
	cmd.Flags().StringVar(&o.Repo, "repo", "", "repository name (default: default_repo)")
	rootCmd.AddCommand(cmd)
}

// printShow writes res as a key: value block, then the placements and the
// events as tables. Everything from the store is escaped: a record an
// older repoctl wrote may hold any bytes.
func printShow(w io.Writer, res *repo.ShowResult) error {
	e := safetext.Escape
	orNone := func(s string) string {
		if s == "" {
			return "(none)"
		}
		return e(s)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"nevra", e(res.NEVRA)},
		{"repo", e(res.Repo)},
		{"name", e(res.Name)},
		{"epoch", orNone(res.Epoch)},
		{"version", e(res.Version)},
		{"release", e(res.Release)},
		{"arch", e(res.Arch)},
		{"file", e(res.FileName)},
		{"dist", e(res.Dist)},
		{"sha256", fmt.Sprintf("%s (signed, %d bytes)", e(res.SHA256), res.Size)},
		{"orig sha256", fmt.Sprintf("%s (as given, %d bytes)", e(res.OrigSHA256), res.OrigSize)},
		{"content sha256", e(res.ContentSHA256)},
		{"key", e(res.KeyID)},
		{"added", res.Added.UTC().Format(time.RFC3339) + " by " + orNone(res.AddedBy)},
		{"channels", orNone(strings.Join(res.Channels(), ", "))},
		{"advisories", orNone(strings.Join(res.Advisories, ", "))},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nPublished (%d):\n", len(res.Published))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHANNEL\tRELEASE\tARCH\tLISTED\tURL")
	for _, p := range res.Published {
		listed := "yes"
		switch {
		case !p.Listed && p.Pending:
			listed = "no (publish pending)"
		case !p.Listed:
			listed = "no"
		}
		where := p.URL
		if where == "" {
			where = p.Dir + "/"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e(p.Channel), e(p.Release), e(p.Arch), listed, e(where))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range res.Published {
		if p.Problem != "" {
			fmt.Fprintf(w, "  %s: %s\n", e(p.Dir), e(p.Problem))
		}
	}

	fmt.Fprintf(w, "\nEvents (%d):\n", len(res.Events))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, ev := range res.Events {
		writeEvent(tw, ev)
	}
	return tw.Flush()
}
