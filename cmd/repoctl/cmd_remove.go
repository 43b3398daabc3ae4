package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/repo"
)

func init() {
	var o repo.RemoveOptions
	cmd := &cobra.Command{
		Use:   "remove NEVRA",
		Short: "Remove a package from a channel (or all) and republish",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, done, err := connectService(cmd)
			if err != nil {
				return err
			}
			defer done()
			o.Who = repo.CurrentUser()
			res, err := svc.Remove(cmd.Context(), args[0], o)
			if err != nil {
				return err
			}
			if globals.output == "json" {
				return printJSONTo(cmd.OutOrStdout(), res)
			}
			w := cmd.OutOrStdout()
			verb := "removed"
			if res.DryRun {
				verb = "would remove"
			}
			for _, f := range res.Files {
				fmt.Fprintf(w, "%s %s\n", verb, f)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Repo, "repo", "", "repository name (default: default_repo)")
	cmd.Flags().StringVar(&o.Channel, "channel", "", "remove only from this channel (default: every channel)")
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "show what would be removed, change nothing")
	rootCmd.AddCommand(cmd)
}
