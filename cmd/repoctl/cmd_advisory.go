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
	group := &cobra.Command{
		Use:   "advisory",
		Short: "Add, import, list, show or remove advisories (updateinfo.xml)",
		Long: `Advisories tell hosts which updates fix what: dnf updateinfo, dnf upgrade
--security, dnf upgrade --advisory=ID. Every repository directory serving one
of an advisory's packages publishes updateinfo.xml (compressed like the rest,
listed in repomd.xml, signed with repomd.xml.asc) with the advisories whose
packages it serves, in createrepo_c's format.

  add FILE      one advisory in TOML (like the config) or JSON
  import FILE   every advisory of an updateinfo.xml (createrepo_c's, modifyrepo_c's)
  list          the advisories, by repository and id
  show ID       one advisory, with the directories that publish it
  remove ID     delete it and republish

An advisory's packages must be NEVRAs in the store; an id that exists with
other content is refused (remove it first). Invalid advisories exit 2 and
change nothing. add, import and remove record an event each.`,
	}

	var ro repo.AdvisoryRequest
	add := &cobra.Command{
		Use:   "add FILE",
		Short: "Add one advisory written in TOML or JSON",
		Long: `Reads one advisory from FILE (TOML, or JSON: by the extension .toml or
.json, else by the content) and publishes it in every repository directory
that serves one of its packages. Keys: id, type (security, bugfix,
enhancement, newpackage), severity, title, description, issued, updated,
packages (NEVRAs in the store), references (type, id, href, title),
reboot_suggested, and optionally status, from, version, release, pushcount,
rights, summary, solution. Dates are 2026-12-01, 2026-12-01 10:00:00, RFC 3339
or epoch seconds. Adding the same advisory again changes nothing.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAdvisoryFile(cmd, args[0], ro, repo.Service.AdvisoryAdd)
		},
	}
	add.Flags().StringVar(&ro.Repo, "repo", "", "repository (default: default_repo)")
	add.Flags().BoolVar(&ro.DryRun, "dry-run", false, "validate against the store; store and publish nothing")

	var imo repo.AdvisoryRequest
	imp := &cobra.Command{
		Use:   "import FILE",
		Short: "Import every advisory of an updateinfo.xml",
		Long: `Reads an updateinfo.xml as createrepo_c and modifyrepo_c write it and stores
every advisory in it, all or none: each is checked as "advisory add" checks
one (its packages, from every pkglist collection, must be in the store).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAdvisoryFile(cmd, args[0], imo, repo.Service.AdvisoryImport)
		},
	}
	imp.Flags().StringVar(&imo.Repo, "repo", "", "repository (default: default_repo)")
	imp.Flags().BoolVar(&imo.DryRun, "dry-run", false, "validate against the store; store and publish nothing")

	var lo repo.AdvisoryOptions
	list := &cobra.Command{
		Use:   "list",
		Short: "List the advisories, by repository and id",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(cmd, func(ctx context.Context, svc repo.Service) ([]repo.Advisory, error) {
				return svc.AdvisoryList(ctx, lo)
			}, func(w io.Writer, advs []repo.Advisory) error {
				return printAdvisories(w, advs)
			})
		},
	}
	list.Flags().StringVar(&lo.Repo, "repo", "", "only this repository (default: every one)")

	var so repo.AdvisoryOptions
	show := &cobra.Command{
		Use:               "show ID",
		Short:             "Show one advisory and the directories that publish it",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeAdvisories,
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(cmd, func(ctx context.Context, svc repo.Service) (*repo.Advisory, error) {
				return svc.AdvisoryShow(ctx, args[0], so)
			}, func(w io.Writer, a *repo.Advisory) error {
				return printAdvisory(w, a)
			})
		},
	}
	show.Flags().StringVar(&so.Repo, "repo", "", "repository (default: default_repo)")

	var rmo repo.AdvisoryOptions
	remove := &cobra.Command{
		Use:               "remove ID",
		Short:             "Remove an advisory and republish the directories that listed it",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeAdvisories,
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, done, err := connectService(cmd)
			if err != nil {
				return err
			}
			defer done()
			rmo.Who = repo.CurrentUser()
			res, err := svc.AdvisoryRemove(cmd.Context(), args[0], rmo)
			if err != nil {
				return err
			}
			return printAdvisoryResult(cmd.OutOrStdout(), res)
		},
	}
	remove.Flags().StringVar(&rmo.Repo, "repo", "", "repository (default: default_repo)")
	remove.Flags().BoolVar(&rmo.DryRun, "dry-run", false, "show what would be removed and republished; change nothing")

	group.AddCommand(add, imp, list, show, remove)
	rootCmd.AddCommand(group)
}

// runAdvisoryFile runs add or import on file: the service reads it (the
// socket client with the caller's rights, and sends its content).
func runAdvisoryFile(cmd *cobra.Command, file string, req repo.AdvisoryRequest,
	op func(repo.Service, context.Context, repo.AdvisoryRequest) (*repo.AdvisoryResult, error)) error {
	svc, done, err := connectService(cmd)
	if err != nil {
		return err
	}
	defer done()
	req.File, req.Who = file, repo.CurrentUser()
	res, err := op(svc, cmd.Context(), req)
	if err != nil {
		return err
	}
	return printAdvisoryResult(cmd.OutOrStdout(), res)
}

func printAdvisoryResult(w io.Writer, res *repo.AdvisoryResult) error {
	if globals.output == "json" {
		return printJSONTo(w, res)
	}
	for _, c := range res.Advisories {
		fmt.Fprintf(w, "%s %s (%s, %s)\n", strings.ReplaceAll(c.Action, "-", " "), c.ID, c.Type, packages(len(c.Packages)))
	}
	verb := "republished"
	if res.DryRun {
		verb = "would republish"
	}
	for _, d := range res.Dirs {
		fmt.Fprintf(w, "%s %s\n", verb, d)
	}
	return nil
}

// printAdvisories is the table of advisory list.
func printAdvisories(w io.Writer, advs []repo.Advisory) error {
	if len(advs) == 0 {
		_, err := fmt.Fprintln(w, "no advisories")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPO\tID\tTYPE\tSEVERITY\tISSUED\tPACKAGES\tDIRS\tTITLE")
	for _, a := range advs {
		title := a.Title
		if r := []rune(title); len(r) > 80 {
			title = string(r[:80]) + "…" // show has it whole
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", a.Repo, a.ID, a.Type, orDefault(safetext.Escape(a.Severity), "-"),
			a.Issued, len(a.Packages), len(a.Published), safetext.Escape(title))
	}
	return tw.Flush()
}

// printAdvisory is advisory show: the fields, then the description.
func printAdvisory(w io.Writer, a *repo.Advisory) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, safetext.Escape(v))
		}
	}
	line("id", a.ID)
	line("repo", a.Repo)
	line("type", a.Type)
	line("severity", a.Severity)
	line("title", a.Title)
	line("issued", a.Issued)
	line("updated", a.Updated)
	line("status", a.Status)
	line("from", a.From)
	line("version", a.Version)
	line("release", a.Release)
	line("pushcount", a.Pushcount)
	if a.RebootSuggested {
		line("reboot suggested", "yes")
	}
	for _, p := range a.Packages {
		line("package", p)
	}
	for _, r := range a.References {
		line("reference", strings.TrimSpace(strings.Join([]string{r.Type, r.ID, r.Href, r.Title}, " ")))
	}
	for _, d := range a.Published {
		line("published in", d)
	}
	if !a.Added.IsZero() {
		line("added", a.Added.UTC().Format(time.RFC3339)+" by "+a.AddedBy)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, t := range []struct{ name, text string }{{"summary", a.Summary}, {"description", a.Description}, {"solution", a.Solution}, {"rights", a.Rights}} {
		if t.text == "" {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", t.name)
		for _, l := range strings.Split(t.text, "\n") {
			fmt.Fprintf(w, "  %s\n", safetext.Escape(l))
		}
	}
	return nil
}

// completeAdvisories completes the advisory ids of --repo (or every
// repository).
func completeAdvisories(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	svc, done := completionService(cmd)
	if svc == nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer done()
	repoName, _ := cmd.Flags().GetString("repo")
	advs, err := svc.AdvisoryList(cmd.Context(), repo.AdvisoryOptions{Repo: repoName})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var ids []string
	for _, a := range advs {
		ids = append(ids, a.ID)
	}
	return withPrefix(ids, toComplete), cobra.ShellCompDirectiveNoFileComp
}
