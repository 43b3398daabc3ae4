// Command repoctl signs RPMs, publishes yum/dnf repositories and rolls
// packages out to app hosts. Each subcommand lives in its own cmd_*.go file,
// parses flags and calls one library function; exit codes are decided in
// exitcodes.go and nowhere else.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/repo"
)

// globalOptions are the flags every subcommand shares.
type globalOptions struct {
	root   string
	config string
	output string // "text" or "json"
	quiet  bool   // -q: no text output, progress or notices; errors still go to stderr
}

var globals globalOptions

var rootCmd = &cobra.Command{
	Use:           "repoctl",
	Short:         "Sign RPMs, publish yum/dnf repositories and roll packages out to app hosts",
	SilenceUsage:  true,
	SilenceErrors: true,
	PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
		if globals.output != "text" && globals.output != "json" {
			return fmt.Errorf("%w: --output must be text or json, not %q", errUsage, globals.output)
		}
		return nil
	},
}

func init() {
	def := os.Getenv("REPOCTL_ROOT")
	if def == "" {
		def = "./var"
	}
	pf := rootCmd.PersistentFlags()
	pf.StringVar(&globals.root, "root", def, "directory where repoctl keeps everything (env REPOCTL_ROOT)")
	pf.StringVar(&globals.config, "config", os.Getenv("REPOCTL_CONFIG"),
		"config file (env REPOCTL_CONFIG; default ROOT/repoctl.toml, else "+repo.SystemConfigFile+", else built-in defaults)")
	pf.StringVarP(&globals.output, "output", "o", "text", "output format: text or json (with json, errors are JSON too)")
	pf.BoolVarP(&globals.quiet, "quiet", "q", false, "print nothing but errors (and the JSON of -o json)")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	wireCommands(rootCmd)
	cmd, err := rootCmd.ExecuteContextC(ctx)
	stop()
	if err != nil && !hasStarted() {
		// Cobra's own errors (unknown command, argument count, a
		// required flag) are all about the command line.
		err = newUsageError(cmd, err)
	}
	code := exitCode(err)
	if err != nil {
		fmt.Fprintf(os.Stderr, "repoctl: %v\n", err)
	}
	if globals.output == "json" || (!hasStarted() && jsonRequested(os.Args[1:])) {
		if jerr := flushJSON(os.Stdout, err, code); jerr != nil && err == nil {
			fmt.Fprintf(os.Stderr, "repoctl: writing output: %v\n", jerr)
			code = exitError
		}
	}
	os.Exit(code)
}
