package main

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/repo"
)

type daemonFlags struct {
	logFormat string
	logLevel  string
	listen    string
	grace     time.Duration
}

func init() {
	var f daemonFlags
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Watch the drop-in directories, serve the repositories over HTTP and the control socket",
		Long: `Run the repoctl daemon on ROOT (--root, env REPOCTL_ROOT).

It takes the ROOT lock, finishes ingests that a previous run left in flight,
then:
  - ingests every complete file dropped into the drop-in directories
    (ROOT/incoming/ by default): validate, sign, place, publish, record;
    rejected files go to ROOT/rejected/ with a .reason file;
  - serves ROOT/repo read-only over HTTP (--listen, else http.listen, default
    127.0.0.1:8080); without http.public_url, "status" and "repofile" name
    the address it bound;
  - answers the CLI on the control socket ROOT/repoctl.sock (mode 0660), so
    "repoctl add/list/status/..." work while it runs.

Drop files by writing them under a dot-name or a .part/.tmp name and renaming
them into the directory; a file written in place is taken once it has been
quiet for daemon.settle.

Logs are structured lines on stderr. SIGTERM or SIGINT stops it cleanly.
Under systemd (Type=notify) it reports readiness.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := newLogger(f.logFormat, f.logLevel)
			if err != nil {
				return err
			}
			opts := []repo.DaemonOption{
				repo.WithDaemonLogger(log),
				repo.WithShutdownGrace(f.grace),
				repo.WithHTTPListen(f.listen),
			}
			if globals.config != "" {
				opts = append(opts, repo.WithOpenOptions(repo.WithConfigFile(globals.config)))
			}
			return repo.RunDaemon(cmd.Context(), globals.root, opts...)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.logFormat, "log-format", envOr("REPOCTL_LOG_FORMAT", "text"), "log format: text or json (env REPOCTL_LOG_FORMAT)")
	fl.StringVar(&f.logLevel, "log-level", envOr("REPOCTL_LOG_LEVEL", "info"), "log level: debug, info, warn or error (env REPOCTL_LOG_LEVEL)")
	fl.StringVar(&f.listen, "listen", "", `HTTP listen address, overriding http.listen ("off" disables)`)
	fl.DurationVar(&f.grace, "shutdown-grace", 20*time.Second, "on stop, how long work in progress may take before it is cancelled")
	rootCmd.AddCommand(cmd)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// newLogger builds the daemon's slog logger on stderr.
func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: debug, info, warn or error", errUsage, level)
	}
	ho := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, ho)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, ho)), nil
	}
	return nil, fmt.Errorf("%w: --log-format %q: text or json", errUsage, format)
}
