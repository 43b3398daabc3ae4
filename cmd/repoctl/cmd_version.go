package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/internal/buildinfo"
)

func init() {
	info := buildinfo.Read()
	// --version on the root command prints the same line as `version`.
	rootCmd.Version = info.Version
	rootCmd.SetVersionTemplate(info.String() + "\n")
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, VCS revision and Go version of this binary",
		Long: `Print what the Go toolchain recorded in this binary: the module version, the
VCS revision and commit time it was built from (and whether the work tree had
uncommitted changes), the Go version and the platform. -o json gives the same
fields as data.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if globals.output == "json" {
				return printJSONTo(cmd.OutOrStdout(), info)
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), info.String())
			return err
		},
	}
	rootCmd.AddCommand(cmd)
}
