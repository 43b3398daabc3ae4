package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/repo"
)

func init() {
	var o repo.RepoFileOptions
	cmd := &cobra.Command{
		Use:   "repofile [--channel C] [--repo R] [--dist el|fc|…] [--release el/9]",
		Short: "Print the .repo file for the hosts of one dist in one channel (gpgcheck=1, repo_gpgcheck=1)",
		Long: `Repofile prints the dnf/yum .repo file a host of one kind installs as
/etc/yum.repos.d/repoctl.repo: for each repository, a section with
baseurl .../REPO/CHANNEL/DIST/$releasever/$basearch/, a disabled -source
section, and the same two for the shared release "common" (packages
without a dist tag). dnf expands $releasever to 8 on EL8, 9 on EL9, 40 on
Fedora 40, so one file serves every release of a dist.

Every release repoctl knows has repodata in every channel and arch (empty
where no package is), so no section of the file can fail with 404, even
on hosts with skip_if_unavailable=False.

--channel defaults to the last channel (prod); staging hosts ask for
--channel staging. --dist is needed only when the repositories hold several
dists (el and fc). --release el/9 (or el9) pins one release instead of
$releasever, e.g. for hosts whose releasever is a minor release such as 9.4
behind a web server other than repoctl's. The URL is http.public_url, else
the address the running daemon serves.

An unknown repository, channel, dist or release exits with 2. -o json gives
the sections as data.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(cmd, func(ctx context.Context, svc repo.Service) (*repo.RepoFileResult, error) {
				return svc.RepoFile(ctx, o)
			}, func(w io.Writer, f *repo.RepoFileResult) error {
				_, err := fmt.Fprint(w, f.Render())
				return err
			})
		},
	}
	cmd.Flags().StringVar(&o.Repo, "repo", "", "only this repository (default: every one)")
	cmd.Flags().StringVar(&o.Channel, "channel", "", "the hosts' channel (default: the last channel, prod)")
	cmd.Flags().StringVar(&o.Dist, "dist", "", "the hosts' dist family, e.g. el or fc (needed when there are several)")
	cmd.Flags().StringVar(&o.Release, "release", "", "pin one release, e.g. el/9 or el9, instead of $releasever")
	cmd.Flags().StringVar(&o.BaseURL, "base-url", "", "URL the tree is served at (default http.public_url or the daemon's address)")
	rootCmd.AddCommand(cmd)

}
