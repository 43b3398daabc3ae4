package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/internal/safetext"
	"github.com/repoctl/repoctl/repo"
)

func init() {
	var o repo.ListOptions
	cmd := &cobra.Command{
		Use:   "list [PATTERN...]",
		Short: "List the packages in the store; filter by name pattern, channel, arch and release",
		Long: `List prints the packages of the store. PATTERN (or --name, repeatable) is a
name or a glob on the package name, as path.Match reads it: * and ? for any
characters, [a-z] and [^a-z] for a class, \ to escape ("app-*", "lib?").
A package is listed when any pattern matches and every other filter does:
--channel, --arch (the package's arch: x86_64, noarch, src) and --release
(el/9, el9 or common; with --channel, placed there in that channel). A
pattern that does not parse, or a channel, arch or release the root does
not know, is an error (exit 2), not an empty list.`,
		Args:              cobra.ArbitraryArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Names = append(o.Names, args...)
			return query(cmd, func(ctx context.Context, svc repo.Service) ([]repo.PackageRecord, error) {
				return svc.List(ctx, o)
			}, func(w io.Writer, pkgs []repo.PackageRecord) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "REPO\tNEVRA\tCHANNELS\tRELEASE\tKEY\tSHA256")
				for _, p := range pkgs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.12s\n", safetext.Escape(p.Repo), safetext.Escape(p.NEVRA), safetext.Escape(strings.Join(p.Channels(), ",")),
						safetext.Escape(p.Dist), p.KeyID, p.SHA256)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&o.Repo, "repo", "", "only this repository")
	cmd.Flags().StringVar(&o.Channel, "channel", "", "only packages in this channel")
	cmd.Flags().StringArrayVar(&o.Names, "name", nil, "only packages whose name matches this name or glob (repeatable; any matches)")
	cmd.Flags().StringVar(&o.Arch, "arch", "", "only packages of this arch (x86_64, aarch64, noarch, src)")
	cmd.Flags().StringVar(&o.Release, "release", "", "only packages placed in this release, e.g. el/9, el9 or common")
	rootCmd.AddCommand(cmd)
}
