package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/metadata"
	"github.com/repoctl/repoctl/repo"
)

func init() {
	group := &cobra.Command{
		Use:   "comps",
		Short: "Set, show or remove a repository's comps (group) file",
		Long: `A repository can have one comps file: the groups "dnf group list" shows and
"dnf group install ID" installs. Every repository directory of that repository
(every channel, release and arch) publishes it as createrepo_c -g does: the
"group" record (the file as given) and "group_gz" (gzip-compressed, also when
the repository is zstd: dnf reads group_gz), signed with repomd.xml.asc.

  set FILE.xml   store FILE.xml (checked: well-formed, a <comps> root, group ids
                 of letters, digits and ._+-, package names as rpm allows, no
                 entity declarations, at most 10 MiB) and republish; exit 2 if
                 it is refused, nothing changed
  show           print the stored file; -o json prints what is known about it
                 (size, sha256, group ids, when and by whom it was set)
  remove         drop it and republish without group records

set and remove record an event (comps.set, comps.remove) and run in the daemon
when it runs. show and remove exit 2 when the repository has no comps file.`,
	}

	var so repo.CompsSetRequest
	set := &cobra.Command{
		Use:   "set FILE.xml [--repo R] [--dry-run]",
		Short: "Store a comps file for a repository and republish its directories",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Read and checked here, with the user's rights; the daemon
			// checks again.
			data, _, err := metadata.ReadCompsFile(args[0])
			if err != nil {
				return err
			}
			svc, done, err := connectService(cmd)
			if err != nil {
				return err
			}
			defer done()
			so.XML, so.Who = data, repo.CurrentUser()
			res, err := svc.CompsSet(cmd.Context(), so)
			if err != nil {
				return err
			}
			return printCompsResult(cmd, res)
		},
	}
	set.Flags().StringVar(&so.Repo, "repo", "", "repository name (default: default_repo)")
	set.Flags().BoolVar(&so.DryRun, "dry-run", false, "check the file and show what would be republished; change nothing")

	var sh repo.CompsShowRequest
	show := &cobra.Command{
		Use:   "show [--repo R]",
		Short: "Print a repository's comps file (-o json: its size, sha256, groups, when and by whom it was set)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, done, err := connectService(cmd)
			if err != nil {
				return err
			}
			defer done()
			c, err := svc.CompsShow(cmd.Context(), sh)
			if err != nil {
				return err
			}
			if globals.output == "json" {
				c.XML = nil
				return printJSONTo(cmd.OutOrStdout(), c)
			}
			_, err = cmd.OutOrStdout().Write(c.XML)
			return err
		},
	}
	show.Flags().StringVar(&sh.Repo, "repo", "", "repository name (default: default_repo)")

	var ro repo.CompsRemoveRequest
	remove := &cobra.Command{
		Use:   "remove [--repo R] [--dry-run]",
		Short: "Drop a repository's comps file and republish its directories without it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, done, err := connectService(cmd)
			if err != nil {
				return err
			}
			defer done()
			ro.Who = repo.CurrentUser()
			res, err := svc.CompsRemove(cmd.Context(), ro)
			if err != nil {
				return err
			}
			return printCompsResult(cmd, res)
		},
	}
	remove.Flags().StringVar(&ro.Repo, "repo", "", "repository name (default: default_repo)")
	remove.Flags().BoolVar(&ro.DryRun, "dry-run", false, "show what would be republished; change nothing")

	group.AddCommand(set, show, remove)
	rootCmd.AddCommand(group)
}

func printCompsResult(cmd *cobra.Command, res *repo.CompsResult) error {
	if globals.output == "json" {
		return printJSONTo(cmd.OutOrStdout(), res)
	}
	verb := map[string]string{repo.CompsActionSet: "set", repo.CompsActionRemoved: "removed", repo.CompsActionUnchanged: "unchanged"}[res.Action]
	if res.DryRun {
		verb = map[string]string{repo.CompsActionSet: "would set", repo.CompsActionRemoved: "would remove", repo.CompsActionUnchanged: "unchanged"}[res.Action]
	}
	w := cmd.OutOrStdout()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tcomps file of %s\n", verb, res.Repo)
	if c := res.Comps; c != nil {
		fmt.Fprintf(tw, "groups:\t%s\n", strings.Join(c.Groups, " "))
		fmt.Fprintf(tw, "size:\t%d\n", c.Size)
		fmt.Fprintf(tw, "sha256:\t%s\n", c.SHA256)
		fmt.Fprintf(tw, "set:\t%s by %s\n", c.Set.UTC().Format(time.RFC3339), c.Who)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	pub := "republished"
	if res.DryRun {
		pub = "would republish"
	}
	for _, d := range res.Dirs {
		if res.Action != repo.CompsActionUnchanged {
			fmt.Fprintf(w, "%s %s\n", pub, d)
		}
	}
	return nil
}
