package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
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
    (ROOT/incoming/ by default) and their subdirectories down to 4 levels
    (incoming/x86_64/): validate, sign, place, publish, record; rejected
    files go to ROOT/rejected/ with a .reason file ("repoctl rejected");
  - serves ROOT/repo read-only over HTTP (--listen, else http.listen, default
    127.0.0.1:8080); without http.public_url, "status" and "repofile" name
    the address it bound; /metrics (Prometheus), /healthz and /readyz are
    served there too, or on metrics.listen when that is set;
  - answers the CLI on the control socket ROOT/repoctl.sock (mode 0660), so
    "repoctl add/list/status/..." work while it runs.

A file is taken as soon as its writer closes it or renames it into the
directory (from a dot-name or a .part/.tmp name); one still open, as scp keeps
it over a slow link, once it has not changed for daemon.settle (default 3s). A
drop-in that fails to parse while it was still being written goes back to its
directory instead of rejected/, and is taken again once it settles.

Logs are structured lines on stderr. SIGTERM or SIGINT stops it cleanly.
SIGHUP reloads the config file: drop-in directories, daemon.settle and the
HTTP limits and timeouts change at once; every other changed key is logged
as needing a restart; a config that does not load is logged and ignored.
Under systemd (Type=notify) it reports readiness and, with WatchdogSec= in the
unit, pings the watchdog at half that interval while its store answers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// First thing: SIGHUP's default action would kill the daemon
			// and leave its socket behind.
			reload := notifyReload()
			log, err := newLogger(f.logFormat, f.logLevel)
			if err != nil {
				return err
			}
			opts := []repo.DaemonOption{
				repo.WithDaemonLogger(log),
				repo.WithShutdownGrace(f.grace),
				repo.WithHTTPListen(f.listen),
				repo.WithReload(reload),
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

// notifyReload turns SIGHUP into reload requests for the rest of the
// process's life: one arriving while the daemon stops must not kill it
// either. Signals that arrive while a reload is pending are one reload: it
// reads the file as it is then.
func notifyReload() <-chan struct{} {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	return reload
}
