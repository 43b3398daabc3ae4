package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/repo"
)

func init() {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the signing key, package counts, in-flight work and repository directories",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return query(cmd, func(ctx context.Context, svc repo.Service) (*repo.Status, error) {
				return svc.Status(ctx)
			}, func(w io.Writer, st *repo.Status) error {
				via := "local (no daemon)"
				if st.Daemon {
					via = "daemon"
				}
				http := st.HTTP
				if st.Listen != "" {
					http += " (the daemon listens on " + st.Listen + ")"
				}
				fmt.Fprintf(w, "root:      %s (%s)\nkey:       %s (%s)\nhttp:      %s\npackages:  %d\nevents:    %d\n",
					st.Root, via, st.KeyID, st.Fingerprint, http, st.Packages, st.Events)
				cfg := st.Config
				if cfg == "" {
					cfg = "(none: embedded defaults)"
				}
				fmt.Fprintf(w, "config:    %s\nin flight: %d\ndirty:     %d\nincoming:  %d\nrejected:  %d\n", cfg, st.InFlight, st.Dirty, st.Incoming, st.Rejected)
				fmt.Fprintf(w, "target:    %s\n", st.Target)
				if ha := st.HA; ha != nil {
					lead := ha.Leader
					if lead == "" {
						lead = "(none elected)"
					}
					lease := fmt.Sprintf("ttl %s", ha.LeaseTTL)
					if ha.LeaseRemaining >= 0 {
						lease += fmt.Sprintf(", %ds left", ha.LeaseRemaining)
					}
					fmt.Fprintf(w, "role:      %s (node %s)\nleader:    %s\nlease:     %s\netcd:      %s (prefix %s)\n",
						ha.Role, ha.Node, lead, lease, strings.Join(ha.Endpoints, ", "), ha.Prefix)
				}
				if st.Skipped > 0 {
					fmt.Fprintf(w, "skipped:   %d (directories nested more than %d levels below a drop-in directory are not ingested)\n", st.Skipped, repo.DropInDepth)
				}
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "\nDIRECTORY\tPACKAGES")
				for _, r := range st.Repos {
					fmt.Fprintf(tw, "%s\t%d\n", r.Dir, r.Packages)
				}
				return tw.Flush()
			})
		},
	}
	rootCmd.AddCommand(cmd)
}
