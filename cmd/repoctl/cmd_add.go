package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

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
same NEVRA is rejected. Rejected files are copied to ROOT/rejected/ with a
.reason file, and the exit status is 3.

When the daemon runs, the work is done by the daemon through its socket;
otherwise add takes the ROOT lock itself (waiting for it if needed).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, done, err := connectService(cmd)
			if err != nil {
				return err
			}
			defer done()
			o.Who = repo.CurrentUser()
			res, err := svc.Add(cmd.Context(), args, o)
			if err != nil {
				return err
			}
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
				return fmt.Errorf("%w: %d of %d files", repo.ErrRejected, n, len(res))
			}
			return nil
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
		case errors.Is(err, repo.ErrLocked):
			return exitBusy, true
		case errors.Is(err, repo.ErrAmbiguous), errors.Is(err, repo.ErrInvalidName):
			return exitUsage, true
		}
		return 0, false
	})
}

// connectService opens the daemon's socket or, without a daemon, the root
// itself, telling the user on stderr when it has to wait for the lock.
func connectService(cmd *cobra.Command) (repo.Service, func() error, error) {
	opts := []repo.Option{repo.WithNotify(func(msg string) {
		fmt.Fprintf(cmd.ErrOrStderr(), "repoctl: %s\n", msg)
	})}
	if globals.config != "" {
		opts = append(opts, repo.WithConfigFile(globals.config))
	}
	if f, ok := cmd.ErrOrStderr().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		opts = append(opts, repo.WithProgress(stageProgress{f}))
	}
	return repo.Connect(cmd.Context(), globals.root, opts...)
}

// stageProgress shows the pipeline's stages on a terminal when the CLI does
// the work itself (a daemon does not stream progress over its socket).
type stageProgress struct{ w io.Writer }

func (p stageProgress) Stage(stage string, n int) {
	unit := "files"
	if stage == "publishing" {
		unit = "repositories"
	}
	fmt.Fprintf(p.w, "repoctl: %s %d %s…\n", stage, n, unit)
}

func printJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printAddResults(w io.Writer, res []repo.AddResult) error {
	if globals.output == "json" {
		return printJSONTo(w, res)
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
	return nil
}
