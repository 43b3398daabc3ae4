package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/metadata"
	"github.com/repoctl/repoctl/repo"
)

func init() {
	var (
		update, noWait, noDatabase, dryRun, force, skipStat bool
		workers, changelogLimit, retainOld                  int
		compress, baseURL, revision, groupFile              string
	)
	cmd := &cobra.Command{
		Use:   "createrepo [--update [--skip-stat]] [--retain-old-md N] [--dry-run] [--force] [--workers N] [--compress-type zstd|gz] [-g comps.xml] [--changelog-limit N] [--baseurl URL] [--revision R] DIR",
		Short: "Write repodata for a directory of RPMs, like createrepo_c, published atomically",
		Long: `Scans DIR for *.rpm (recursively, skipping repodata/ and dot directories) and
writes DIR/repodata: primary, filelists and other XML byte-identical to
createrepo_c's (zstd by default, gz for EL7's yum), and repomd.xml. No sqlite
databases are written: dnf and yum read the XML. --no-database is accepted for
compatibility.

-g comps.xml publishes a comps (group) file as createrepo_c 0.17.3 -g does: the
file as it is ("group") and gzip-compressed ("group_gz", also with zstd, since
dnf reads group_gz), after primary, filelists and other. The file is checked
first (well-formed, a <comps> root, safe ids and package names, no entity
declarations, at most 10 MiB); an invalid one exits 2. Like createrepo_c,
--update without -g drops the group records; pass -g again to keep them.

The new repodata is built beside the old one and swapped in with one atomic
directory exchange; superseded files stay for an hour for clients holding an
older repomd.xml, the newest --retain-old-md generations of them (default 2). An unchanged repository is not rewritten. A second writer
waits for the lock (or, with --no-wait, exits 4). Compressed blocks are cached
in DIR/.repoctl-cache so that --update after a few new packages recompresses
only what changed.

Files that are not valid RPMs are skipped with a message; the rest is
published and the exit status is 3.

A directory inside a repoctl root or a tree repoctl publishes is refused (exit
2): its repodata comes from the store and carries repomd.xml.asc, which this
would drop, and it would list packages the store does not know. Use
repoctl republish to rebuild it and repoctl fsck to check it; --force writes
it anyway.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%w: createrepo takes exactly one DIR", errUsage)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			batchGC()
			ro := metadata.RenderOptions{BaseURL: baseURL}
			if cmd.Flags().Changed("changelog-limit") {
				ro.ChangelogLimit = metadata.ChangelogLimitFromFlag(changelogLimit)
			}
			if workers < 0 {
				return fmt.Errorf("%w: --workers must be positive", errUsage)
			}
			if skipStat && !update {
				return fmt.Errorf("%w: --skip-stat needs --update", errUsage)
			}
			if !force {
				if err := refuseManaged(args[0]); err != nil {
					return err
				}
			}
			pub := []metadata.PublishOption{
				metadata.WithCompression(compress),
				metadata.WithLockWait(!noWait),
				metadata.WithDryRun(dryRun),
				metadata.WithRetainOld(retainOld),
			}
			if revision != "" {
				pub = append(pub, metadata.WithRevision(revision))
			}
			// A bar on a terminal; notices (skipped files, lock waits)
			// unless -q.
			bar := &createrepoProgress{stageBar: newStageBar(nil)}
			if f := stderrTerminal(cmd); f != nil {
				bar.stageBar = newStageBar(f)
			}
			if !globals.quiet {
				bar.notices = cmd.ErrOrStderr()
			}
			pub = append(pub, metadata.WithProgress(bar))
			res, err := metadata.CreateRepo(cmd.Context(), args[0],
				metadata.WithUpdate(update),
				metadata.WithGroupFile(groupFile),
				metadata.WithSkipStat(skipStat),
				metadata.WithReadWorkers(workers),
				metadata.WithRenderOptions(ro),
				metadata.WithPublishOptions(pub...))
			bar.finish()
			if res == nil {
				return err
			}
			out := cmd.OutOrStdout()
			if globals.output == "json" {
				if jerr := printJSONTo(out, res); jerr != nil && err == nil {
					err = jerr
				}
				return err
			}
			state := "published"
			switch {
			case res.Publish != nil && dryRun && res.Publish.Changed:
				state = "would publish"
			case res.Publish != nil && !res.Publish.Changed:
				state = "unchanged"
			}
			fmt.Fprintf(out, "%s %d packages to %s/repodata (read %d, reused %d, skipped %d)\n",
				state, res.Packages, strings.TrimSuffix(args[0], "/"), res.Read, res.Reused, len(res.Skipped))
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVar(&update, "update", false, "reuse existing repodata for packages whose path, size and mtime are unchanged")
	f.BoolVar(&skipStat, "skip-stat", false, "with --update, take files the existing repodata lists as unchanged without a stat (as createrepo_c)")
	f.IntVar(&retainOld, "retain-old-md", metadata.DefaultRetainOld, "superseded generations of repodata kept (each for an hour), 0 for none")
	f.IntVar(&workers, "workers", 0, "packages read in parallel (default: number of CPUs)")
	f.StringVar(&compress, "compress-type", "zstd", "compression of primary, filelists and other: zstd or gz")
	f.StringVarP(&groupFile, "groupfile", "g", "", "comps file to publish as the group and group_gz records")
	f.IntVar(&changelogLimit, "changelog-limit", 10, "changelog entries kept per package (newest), -1 for all")
	f.StringVarP(&baseURL, "baseurl", "u", "", "base URL written as location xml:base of every package")
	f.StringVar(&revision, "revision", "", "repomd.xml revision (default: current unix time when content changes)")
	f.BoolVar(&noWait, "no-wait", false, "fail with exit status 4 instead of waiting when another writer holds the lock")
	f.BoolVar(&dryRun, "dry-run", false, "read and compare everything, write nothing; say whether repodata would change")
	f.BoolVar(&noDatabase, "no-database", true, "accepted for createrepo_c compatibility; sqlite databases are never written")
	f.BoolVar(&force, "force", false, "write repodata even into a directory a repoctl root manages")
	rootCmd.AddCommand(cmd)
}

// refuseManaged fails with a usage error when dir belongs to a repoctl
// root: writing repodata there behind the store's back is what fsck and
// republish exist to undo.
func refuseManaged(dir string) error {
	m, managed, err := repo.ManagedBy(dir)
	if err != nil || !managed {
		return err
	}
	at, rootArg, dirArg := "a repoctl root", "", ""
	if m.Root != "" {
		at = "the repoctl root " + m.Root
		rootArg = " --root " + m.Root
	}
	if m.Dir != "" && m.Dir != "." {
		dirArg = " " + m.Dir
	}
	return fmt.Errorf("%w: %s is managed by %s: its repodata is published from the store with repomd.xml.asc, and createrepo would drop the signature and list packages the store does not know; "+
		"rebuild it with `repoctl%s republish%s`, check it with `repoctl%s fsck%s`, or pass --force to write it anyway",
		errUsage, dir, at, rootArg, dirArg, rootArg, dirArg)
}
