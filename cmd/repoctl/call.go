package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/repo"
)

// query connects to the service (the daemon, or the root when none runs),
// makes one call and prints its result: as JSON under -o json, else with
// text. Errors go back to main, which prints them in the chosen format and
// maps them to the exit code.
func query[T any](cmd *cobra.Command, call func(ctx context.Context, svc repo.Service) (T, error), text func(w io.Writer, v T) error) error {
	svc, done, err := connectService(cmd)
	if err != nil {
		return err
	}
	defer done()
	v, err := call(cmd.Context(), svc)
	if err != nil {
		return err
	}
	if globals.output == "json" {
		return printJSONTo(cmd.OutOrStdout(), v)
	}
	return text(cmd.OutOrStdout(), v)
}
