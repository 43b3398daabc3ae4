// Command repoctl signs RPMs, publishes yum/dnf repositories and rolls
// packages out to app hosts. Each subcommand lives in its own cmd_*.go file,
// parses flags and calls one library function; exit codes are decided here
// and nowhere else.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/repo"
)

// Exit codes. Scripts depend on these; keep them stable and documented in
// README.md.
const (
	exitOK          = 0
	exitError       = 1 // anything not listed below
	exitUsage       = 2 // bad flags or arguments
	exitRejected    = 3 // some inputs were rejected, the rest was done
	exitBusy        = 4 // a lock is held by someone else and we did not wait
	exitHalted      = 5 // a rollout stopped at a failed step or health gate
	exitInterrupted = 130
)

// errUsage marks errors that come from bad command-line input.
var errUsage = errors.New("usage")

// exitCoders lets library packages contribute sentinel errors to the one
// exit-code table without cmd importing every package here. Each cmd_*.go
// file appends the sentinels it knows about in init.
var exitCoders []func(error) (int, bool)

func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.Is(err, errUsage):
		return exitUsage
	}
	for _, f := range exitCoders {
		if code, ok := f(err); ok {
			return code
		}
	}
	return exitError
}

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
