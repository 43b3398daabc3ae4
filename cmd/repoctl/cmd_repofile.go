package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/repo"
)

func init() {
	var o repo.RepoFileOptions
	cmd := &cobra.Command{
		Use:   "repofile",
		Short: "Print a .repo file for dnf/yum (gpgcheck=1, repo_gpgcheck=1)",
		Long: `Repofile prints a dnf/yum .repo file with one section per repository,
channel and release, pointing at the HTTP server (http.public_url, default
http://127.0.0.1:8080/) and at the public key it serves. Save it as
/etc/yum.repos.d/repoctl.repo; app hosts usually want --channel prod.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, done, err := connectService(cmd)
			if err != nil {
				return err
			}
			defer done()
			s, err := svc.RepoFile(cmd.Context(), o)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), s)
			return err
		},
	}
	cmd.Flags().StringVar(&o.Repo, "repo", "", "only this repository")
	cmd.Flags().StringVar(&o.Channel, "channel", "", "only this channel (e.g. prod for app hosts)")
	cmd.Flags().StringVar(&o.Release, "release", "", "only this release, e.g. el/9")
	cmd.Flags().StringVar(&o.BaseURL, "base-url", "", "URL the tree is served at (default http.public_url)")
	rootCmd.AddCommand(cmd)
}
