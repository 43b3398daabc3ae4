package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/repo"
)

func init() {
	var o repo.ListOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the packages in the store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, done, err := connectService(cmd)
			if err != nil {
				return err
			}
			defer done()
			pkgs, err := svc.List(cmd.Context(), o)
			if err != nil {
				return err
			}
			if globals.output == "json" {
				return printJSONTo(cmd.OutOrStdout(), pkgs)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REPO\tNEVRA\tCHANNELS\tRELEASE\tKEY\tSHA256")
			for _, p := range pkgs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.12s\n", p.Repo, p.NEVRA, strings.Join(p.Channels(), ","), p.Dist, p.KeyID, p.SHA256)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&o.Repo, "repo", "", "only this repository")
	cmd.Flags().StringVar(&o.Channel, "channel", "", "only packages in this channel")
	cmd.Flags().StringVar(&o.Name, "name", "", "only packages with this name")
	rootCmd.AddCommand(cmd)
}
