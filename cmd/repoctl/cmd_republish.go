package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/repo"
)

func init() {
	var o repo.RepublishOptions
	cmd := &cobra.Command{
		Use:   "republish [--dry-run] [DIR...]",
		Short: "Rebuild repodata from the store, signed and atomic, for DIR... (relative to ROOT/repo) or all",
		Long: `Rebuilds the repodata of the repository directories DIR... (relative to
ROOT/repo, e.g. main/staging/el/9/x86_64, or a parent such as main/prod) or of
every repository directory, from the store: what repoctl would publish, signed
with the current key under a new revision, swapped in atomically. Use it after
someone wrote repodata by hand (createrepo) or to re-sign every repomd.xml.asc.
Package files are not touched; repoctl fsck checks those.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Dirs, o.Who = args, repo.CurrentUser()
			return query(cmd, func(ctx context.Context, svc repo.Service) (*repo.RepublishResult, error) {
				return svc.Republish(ctx, o)
			}, func(w io.Writer, res *repo.RepublishResult) error {
				for _, d := range res.Dirs {
					what := "same content"
					if d.Changed {
						what = "content differed"
					}
					if res.DryRun {
						fmt.Fprintf(w, "would republish %s: %d packages (%s)\n", d.Dir, d.Packages, what)
					} else {
						fmt.Fprintf(w, "republished %s: %d packages, revision %s (%s)\n", d.Dir, d.Packages, d.Revision, what)
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "list what would be rebuilt and whether it differs; change nothing")
	rootCmd.AddCommand(cmd)
}
