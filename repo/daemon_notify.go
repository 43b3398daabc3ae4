package repo

import (
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	kv "github.com/repoctl/repoctl/repo/store"
)

// sdNotify tells systemd about the daemon's state when it runs as a
// Type=notify service (NOTIFY_SOCKET set); otherwise it does nothing. A
// failure to send is logged: systemd then times the start out or kills a
// silent watchdog, and the log says why.
func sdNotify(log *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("telling systemd our state", "state", state, "err", err)
	}
}

// watchdog pings systemd's watchdog (WatchdogSec= in the unit, which sets
// WATCHDOG_USEC) from the daemon's main loop at half the interval, the
// rate sd_watchdog_enabled(3) recommends. Without a watchdog its channel
// is nil and never fires.
type watchdog struct {
	ticker *time.Ticker
	C      <-chan time.Time
}

func newWatchdog(log *slog.Logger) *watchdog {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog settings unusable; not pinging", "err", err)
		return &watchdog{}
	}
	if interval <= 0 {
		return &watchdog{}
	}
	t := time.NewTicker(interval / 2)
	log.Info("pinging the systemd watchdog", "interval", interval, "every", interval/2)
	return &watchdog{ticker: t, C: t.C}
}

// ping tells systemd we are alive, as long as the store still answers a
// read: a daemon whose store is closed or wedged stops pinging and is
// restarted by systemd.
func (w *watchdog) ping(log *slog.Logger, r *Repo) {
	if err := r.view(func(kv.Tx) error { return nil }); err != nil {
		log.Error("store does not answer; not pinging the systemd watchdog", "err", err)
		return
	}
	sdNotify(log, daemon.SdNotifyWatchdog)
}

func (w *watchdog) stop() {
	if w.ticker != nil {
		w.ticker.Stop()
	}
}
