package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/repo"
)

func init() {
	cfgCmd := &cobra.Command{
		Use:   "config",
		Short: "Check a config file, or show the config in effect",
		Long: `The config is looked up in this order: --config FILE, env REPOCTL_CONFIG,
ROOT/repoctl.toml, ` + repo.SystemConfigFile + `; without any, the built-in defaults
apply (testdata/repoctl.example.toml lists them). Every key must be known: an
unknown key, a value of the wrong type or a bad duration is an error naming
FILE:LINE, and every command (the daemon too) refuses to run with exit 2.`,
	}

	check := &cobra.Command{
		Use:   "check [FILE]",
		Short: "Validate a config file (default: the one in effect) without touching the root",
		Long: `Validate FILE (default: the config the lookup order finds) and its [upgrade]
inventory, as a start of the daemon would: unknown keys, wrong types, bad
durations, modes and names, overlapping directories. Nothing is opened,
locked, created or generated. Exit 0 when it is valid, 2 when it is not (each
problem as FILE:LINE: message; with -o json, the problems in "result").`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := globals.config
			if len(args) == 1 {
				file = args[0]
			}
			res, err := repo.CheckConfig(globals.root, file)
			if err != nil {
				if globals.output == "json" {
					printJSONTo(cmd.OutOrStdout(), configProblemsJSON(err))
				}
				return err
			}
			return printConfigCheck(cmd.OutOrStdout(), res)
		},
	}
	cfgCmd.AddCommand(check)

	show := &cobra.Command{
		Use:   "show",
		Short: "Print the config in effect, defaults filled in (TOML, or -o json)",
		Long: `Print the config the lookup order finds, with every default filled in and
paths made absolute, as TOML (a valid repoctl.toml) or with -o json as
{"root", "file", "config"}. signing.passphrase_file is shown as the path it
is; the passphrase is never read or shown.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ec, err := repo.ShowConfig(globals.root, globals.config)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if globals.output == "json" {
				return printJSONTo(w, ec)
			}
			file := ec.File
			if file == "" {
				file = "none (built-in defaults)"
			}
			fmt.Fprintf(w, "# root: %s\n# file: %s\n\n", ec.Root, file)
			_, err = io.WriteString(w, ec.TOML)
			return err
		},
	}
	cfgCmd.AddCommand(show)
	rootCmd.AddCommand(cfgCmd)
}

type configProblemJSON struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Key     string `json:"key,omitempty"`
	Message string `json:"message"`
}

func configProblemsJSON(err error) any {
	out := []configProblemJSON{}
	for _, p := range repo.ConfigProblems(err) {
		out = append(out, configProblemJSON{File: p.File, Line: p.Line, Key: p.Key, Message: p.Msg})
	}
	return map[string]any{"problems": out}
}

func printConfigCheck(w io.Writer, res *repo.ConfigCheck) error {
	if globals.output == "json" {
		return printJSONTo(w, res)
	}
	if res.File == "" {
		_, err := fmt.Fprintf(w, "no config file (%s/%s, %s): the built-in defaults apply\n", res.Root, repo.ConfigFileName, repo.SystemConfigFile)
		return err
	}
	fmt.Fprintf(w, "%s: valid\n", res.File)
	if u := res.Upgrade; u != nil {
		fmt.Fprintf(w, "[upgrade]: %d groups, %d hosts, %d proxies\n", u.Groups, u.Hosts, u.Proxies)
	}
	return nil
}
