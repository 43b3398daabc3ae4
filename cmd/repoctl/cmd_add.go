package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/internal/safetext"
	"github.com/repoctl/repoctl/repo"
)

func init() {
	var o repo.AddOptions
	cmd := &cobra.Command{
		Use:   "add FILE...",
		Short: "Validate, sign, place and publish RPMs (new packages land in staging)",
		Long: `Add runs the ingest pipeline on each FILE: validate the header, sign a private
copy with the repository key (your file is not modified), place it into every
target directory (routed by dist tag and arch, or into --release; noarch into
every arch; packages without a dist tag into the shared release "common"), publish
repodata with repomd.xml.asc, and record it in the event log.

Re-adding identical bytes is a no-op ("unchanged"). A different file with the
same NEVRA is rejected: its reason is printed, your file stays where it is
(nothing is copied into ROOT/rejected/), and the exit status is 3.

When the daemon runs, the work is done by the daemon through its socket;
otherwise add takes the ROOT lock itself (waiting for it if needed). On a
terminal a bar shows each stage with its count of files (through the
daemon: the files sent so far); with more than one file, a summary line
ends the output.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, done, err := connectService(cmd)
			if err != nil {
				return err
			}
			defer done()
			o.Who = repo.CurrentUser()
			res, err := svc.Add(cmd.Context(), args, o)
			finishProgress()
			if err != nil {
				return err
			}
			return reportAdd(cmd, res, "files")
		},
	}
	cmd.Flags().StringVar(&o.Repo, "repo", "", "repository name (default: the config's default_repo)")
	cmd.Flags().StringVar(&o.Channel, "channel", "", "channel to add to (default: the config's default_channel, staging)")
	cmd.Flags().StringVar(&o.Release, "release", "", "release to add to, e.g. el/9 or el9, whatever the dist tag says (default: route by dist tag)")
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "validate, route and check for duplicates only; change nothing")
	rootCmd.AddCommand(cmd)

	exitCoders = append(exitCoders, func(err error) (int, bool) {
		switch {
		case errors.Is(err, repo.ErrRejected), errors.Is(err, repo.ErrDuplicateNEVRA):
			return exitRejected, true
		case errors.Is(err, repo.ErrLocked), errors.Is(err, repo.ErrNotLeader):
			return exitBusy, true
		case errors.Is(err, repo.ErrAmbiguous), errors.Is(err, repo.ErrInvalidName):
			return exitUsage, true
		}
		return 0, false
	})
}

// connectService opens the daemon's socket or, without a daemon, the root
// itself, telling the user on stderr when it has to wait for the lock. On
// a terminal the work's progress is drawn there (ingest stages with
// counts); finishProgress takes the bar away before results are printed.
var finishProgress = func() {}

func connectService(cmd *cobra.Command) (repo.Service, func() error, error) {
	opts := []repo.Option{repo.WithNotify(func(msg string) {
		if !globals.quiet {
			fmt.Fprintf(cmd.ErrOrStderr(), "repoctl: %s\n", msg)
		}
	})}
	if globals.config != "" {
		opts = append(opts, repo.WithConfigFile(globals.config))
	}
	if f := stderrTerminal(cmd); f != nil {
		p := addProgress{newStageBar(f)}
		opts = append(opts, repo.WithProgress(p))
		finishProgress = p.finish
	}
	svc, done, err := repo.Connect(cmd.Context(), globals.root, opts...)
	if err != nil {
		finishProgress()
		return nil, nil, err
	}
	return svc, func() error { finishProgress(); return done() }, nil
}

func printAddResults(w io.Writer, res []repo.AddResult) error {
	if globals.output == "json" {
		return printJSONTo(w, res)
	}
	counts := map[string]int{}
	for _, r := range res {
		counts[r.Action]++
	}
	for _, r := range res {
		switch r.Action {
		case repo.ActionRejected:
			fmt.Fprintf(w, "rejected   %s\n           %s\n", safetext.Escape(r.Path), safetext.Escape(r.Reason))
			if r.Rejected != "" {
				fmt.Fprintf(w, "           kept as %s\n", r.Rejected)
			}
		default:
			key := ""
			if r.KeyID != "" {
				key = "  key " + r.KeyID
			}
			fmt.Fprintf(w, "%-10s %s%s\n", r.Action, r.NEVRA, key)
			if r.Reason != "" {
				fmt.Fprintf(w, "           (%s)\n", r.Reason)
			}
			for _, p := range r.RepoPaths {
				fmt.Fprintf(w, "           %s\n", p)
			}
		}
	}
	if len(res) > 1 {
		var parts []string
		for _, a := range []string{repo.ActionAdded, repo.ActionWouldAdd, repo.ActionUnchanged, repo.ActionRejected} {
			if counts[a] > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", counts[a], strings.ReplaceAll(a, "-", " ")))
			}
		}
		fmt.Fprintf(w, "%d files: %s\n", len(res), strings.Join(parts, ", "))
	}
	return nil
}

// reportAdd prints add results and turns rejections into ErrRejected
// (exit 3), counting them as "N of M what".
func reportAdd(cmd *cobra.Command, res []repo.AddResult, what string) error {
	if err := printAddResults(cmd.OutOrStdout(), res); err != nil {
		return err
	}
	n := 0
	for _, r := range res {
		if r.Action == repo.ActionRejected {
			n++
		}
	}
	if n > 0 {
		return fmt.Errorf("%w: %d of %d %s", repo.ErrRejected, n, len(res), what)
	}
	return nil
}
