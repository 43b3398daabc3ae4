package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/repo"
)

func init() {
	var o repo.RemoveOptions
	var yes bool
	cmd := &cobra.Command{
		Use:   "remove NEVRA",
		Short: "Remove a package from a channel (or all) and republish",
		Long: `Remove takes the package NEVRA out of --channel, or out of every channel, and
republishes the directories it was in. Removing it from the last channel
(prod), where hosts install from, asks for confirmation on a terminal, and
is refused elsewhere without --yes; --dry-run shows what would go.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeNEVRAs,
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, done, err := connectService(cmd)
			if err != nil {
				return err
			}
			defer done()
			o.Who = repo.CurrentUser()
			if !o.DryRun && !yes {
				if err := confirmRemove(cmd, svc, args[0], o); err != nil {
					return err
				}
			}
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
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask before removing from the last channel (prod)")
	rootCmd.AddCommand(cmd)
}

// confirmRemove asks before a removal that takes the package out of the
// last channel, the one hosts install from.
func confirmRemove(cmd *cobra.Command, svc repo.Service, nevra string, o repo.RemoveOptions) error {
	cfg, err := repo.LoadConfig(globals.root, globals.config)
	if err != nil {
		return err
	}
	last := cfg.Channels[len(cfg.Channels)-1]
	if o.Channel != "" && o.Channel != last {
		return nil
	}
	o.DryRun = true
	preview, err := svc.Remove(cmd.Context(), nevra, o)
	if err != nil {
		return err
	}
	var prod []string
	for _, f := range preview.Files {
		// Files are REPO/CHANNEL/DIST/VER/ARCH/FILE.
		if parts := strings.Split(f, "/"); len(parts) > 1 && parts[1] == last {
			prod = append(prod, f)
		}
	}
	if len(prod) == 0 {
		return nil
	}
	return confirm(cmd, false, fmt.Sprintf("remove takes %s out of %s", preview.NEVRA, last), func(w io.Writer) {
		for _, f := range preview.Files {
			fmt.Fprintf(w, "would remove %s\n", f)
		}
	})
}
