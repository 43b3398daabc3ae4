package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/sign"
)

// errVerifyFailed: at least one package failed verification.
var errVerifyFailed = errors.New("verification failed")

func init() {
	var keys []string
	cmd := &cobra.Command{
		Use:   "verify [--key FILE]... FILE...",
		Short: "Check RPM digests and signatures, like rpmkeys -K",
		Long: `Checks each package's digests and its signatures against the given keys
(public or private key files; default ROOT/keys/signing.pub.asc). A package
passes when every digest matches and at least one signature verifies with a
given key and none is bad or from an unknown key. Exit code 3 if any fails.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(keys) == 0 {
				_, pub := sign.DefaultKeyPaths(globals.root)
				keys = []string{pub}
			}
			reps, err := sign.VerifyFilesWithKeys(cmd.Context(), keys, args)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if globals.output == "json" {
				if err := printJSONTo(w, reps); err != nil {
					return err
				}
			} else {
				printReports(w, reps)
			}
			for _, r := range reps {
				if !r.OK {
					return errVerifyFailed
				}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&keys, "key", nil, "key file to trust (repeatable; default ROOT/keys/signing.pub.asc)")
	rootCmd.AddCommand(cmd)
}

func printReports(w io.Writer, reps []sign.FileReport) {
	for _, r := range reps {
		if r.Error != "" {
			fmt.Fprintf(w, "%s: NOT OK: %s\n", r.Path, r.Error)
			continue
		}
		fmt.Fprintf(w, "%s: %s\n", r.Path, r.Summary())
		for _, c := range append(append([]sign.Check(nil), r.Signatures...), r.Digests...) {
			line := "    " + c.Name
			if c.KeyID != "" {
				line += ", key ID " + c.KeyID
			}
			line += ": " + c.Status
			if c.Detail != "" && c.Status != "OK" {
				line += " (" + c.Detail + ")"
			}
			switch c.Reader {
			case "rpm4":
				line += "  [rpm 4 only]"
			case "rpm6":
				line += "  [rpm 6 only]"
			}
			fmt.Fprintln(w, line)
		}
	}
}
