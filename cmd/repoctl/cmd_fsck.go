package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/internal/safetext"
	"github.com/repoctl/repoctl/repo"
)

func init() {
	var o repo.FsckOptions
	cmd := &cobra.Command{
		Use:   "fsck [--repair] [DIR...]",
		Short: "Check the served tree against the store; --repair fixes what differs",
		Long: `Checks the served tree (or the repository directories DIR..., relative to
ROOT/repo, and below them) against the store:

  - every package file the store records exists with the recorded size and
    sha256, and its signature verifies with a current key (the signing key and
    the keys of the served RPM-GPG-KEY-repoctl);
  - every repository directory's repodata is what the store would publish, and
    every file repomd.xml names matches its checksum;
  - every repomd.xml.asc verifies with a current key;
  - no repodata lists, and no repository directory holds, an .rpm the store
    does not place there.

Each finding is printed with its kind and what --repair does about it; the exit
status is 3 when something is wrong (with --repair: when something is left).

--repair restores a missing or modified package file from another placement of
the same package that still has the recorded bytes (a hard link), republishes
the repodata of every directory that differs (signed, under a new revision,
atomically), and then moves stray .rpm files to ROOT/rejected/ (with a .reason),
once no repodata lists them. It never changes the store: a package no placed
copy of which is intact is reported as not repairable. Every repair is recorded
in the event log as fsck.repair.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, done, err := connectService(cmd)
			if err != nil {
				return err
			}
			defer done()
			o.Dirs, o.Who = args, repo.CurrentUser()
			rep, err := svc.Fsck(cmd.Context(), o)
			if err != nil {
				return err
			}
			if globals.output == "json" {
				if err := printJSONTo(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
				return rep.Err()
			}
			printFsck(cmd.OutOrStdout(), rep)
			return rep.Err()
		},
	}
	cmd.Flags().BoolVar(&o.Repair, "repair", false, "repair what can be repaired (see above); without it fsck changes nothing")
	rootCmd.AddCommand(cmd)
}

func printFsck(w io.Writer, rep *repo.FsckReport) {
	repaired := 0
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	for _, f := range rep.Findings {
		fmt.Fprintf(tw, "%s\t%s\n", f.Kind, safetext.Escape(f.Message))
		label := "repair:"
		switch {
		case f.Repaired:
			label = "repaired:"
			repaired++
		case rep.Repair && f.Repairable:
			label = "left:"
		}
		if f.Repair != "" {
			fmt.Fprintf(tw, "\t%s %s\n", label, safetext.Escape(f.Repair))
		}
	}
	tw.Flush()
	summary := fmt.Sprintf("%d repository directories, %d package files", len(rep.Dirs), rep.Packages)
	switch {
	case len(rep.Findings) == 0:
		fmt.Fprintf(w, "clean: %s\n", summary)
	case rep.Repair:
		fmt.Fprintf(w, "%s: %d findings, %d repaired, %d left\n", summary, len(rep.Findings), repaired, len(rep.Findings)-repaired)
	default:
		fmt.Fprintf(w, "%s: %d findings (run fsck --repair to fix the repairable ones)\n", summary, len(rep.Findings))
	}
}
