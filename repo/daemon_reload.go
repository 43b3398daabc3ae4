package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/repoctl/repoctl/repo/dropwatch"
	"github.com/repoctl/repoctl/repo/serve"
)

// WithReload makes the daemon read its config file again each time reload
// receives (the CLI sends on SIGHUP). What can change while it runs
// changes (liveConfigKeys); every other changed key is logged as needing a
// restart, and a config that does not load is logged and ignored: the
// daemon keeps running either way. Default: no reloading.
func WithReload(reload <-chan struct{}) DaemonOption {
	return func(o *daemonOptions) error { o.reload = reload; return nil }
}

// liveConfigKeys are the keys (and the tables whose every key) a reload
// applies. The rest (paths, repositories, channels, signing, publishing,
// routing, listen addresses) is built into the open store, the tree and
// the listeners. [upgrade] is not the daemon's: each rollout reads it.
var liveConfigKeys = []string{"dropin", "daemon.settle", "http.max_connections", "http.idle_timeout", "http.min_rate"}

func isLiveKey(k string) bool {
	for _, l := range liveConfigKeys {
		if k == l || strings.HasPrefix(k, l+".") {
			return true
		}
	}
	return false
}

// flattenConfig is c as dotted key → value, the way its TOML would be
// written: what a reload compares. Arrays (of tables too) are one value.
func flattenConfig(c *Config) (map[string]any, error) {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(c); err != nil {
		return nil, fmt.Errorf("encoding the config: %w", err)
	}
	var m map[string]any
	if _, err := toml.Decode(buf.String(), &m); err != nil {
		return nil, fmt.Errorf("decoding the encoded config: %w", err)
	}
	return flattenTOML(m), nil
}

// flattenTOML is a decoded TOML document as dotted key → value.
func flattenTOML(m map[string]any) map[string]any {
	out := map[string]any{}
	var walk func(prefix toml.Key, m map[string]any)
	walk = func(prefix toml.Key, m map[string]any) {
		for k, v := range m {
			key := append(prefix[:len(prefix):len(prefix)], k)
			if sub, ok := v.(map[string]any); ok {
				walk(key, sub)
				continue
			}
			out[key.String()] = v
		}
	}
	walk(nil, m)
	return out
}

// changedKeys lists, sorted, the keys whose values differ between a and b
// (set in one only included).
func changedKeys(a, b map[string]any) []string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok || !reflect.DeepEqual(v, w) {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// dropIns are the drop-in directories in effect: the config's, or what a
// reload made of them.
func (r *Repo) dropIns() []DropIn {
	if p := r.liveDropIns.Load(); p != nil {
		return *p
	}
	return r.cfg.DropIns
}

// watchRunner runs the daemon's one dropwatch.Watcher and replaces it on reload.
type watchRunner struct {
	parent context.Context // the daemon's stop context
	work   context.Context // batches run under it (see RunDaemon)
	fail   func(what string, err error)
	wg     *sync.WaitGroup

	cancel context.CancelFunc
	done   chan struct{}
}

// start runs a watcher on dirs. A watcher that stops for a reload is not
// a failure; one that stops by itself is, as before reloading existed.
func (wr *watchRunner) start(dirs []string, handle dropwatch.BatchFunc, opts []dropwatch.Option) error {
	w, err := dropwatch.New(dirs, handle, opts...)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(wr.parent)
	done := make(chan struct{})
	wr.wg.Add(1)
	go func() {
		defer wr.wg.Done()
		defer close(done)
		err := w.Run(ctx, wr.work)
		if ctx.Err() == nil || wr.parent.Err() != nil {
			wr.fail("drop-in watcher", err)
		}
	}()
	wr.cancel, wr.done = cancel, done
	return nil
}

// stop ends the watcher; it returns once the batch in progress, if any,
// has returned. Files not yet taken stay in their directories, where the
// next watcher's first scan finds them.
func (wr *watchRunner) stop() {
	if wr.cancel != nil {
		wr.cancel()
		<-wr.done
	}
}

// reloader applies a reloaded config to a running daemon. Reloads run one
// at a time, from one goroutine.
type reloader struct {
	r    *Repo
	log  *slog.Logger
	root string
	file string // --config, "" for the lookup order
	// running is the config in effect, flattened: the file as loaded at
	// start, with the live keys of every reload since.
	running map[string]any

	watch     *watchRunner
	handle    dropwatch.BatchFunc
	byDir     *map[string]DropIn // read by handle, only while a watcher runs
	watchOpts []dropwatch.Option // the daemon's own, after the config's settle
	http      []*serve.Server    // the HTTP and metrics servers, if serving
}

func (d *reloader) run(ctx context.Context, reload <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
			d.reload(ctx)
		}
	}
}

func (d *reloader) reload(ctx context.Context) {
	log := d.log
	if p, err := ConfigPath(d.root, d.file); err == nil {
		log.Info("reloading config", "file", p)
	}
	cfg, err := LoadConfig(d.root, d.file)
	if err != nil {
		log.Error("config reload failed; the running config stays", "err", err)
		return
	}
	flat, err := flattenConfig(cfg)
	if err != nil {
		log.Error("config reload failed; the running config stays", "err", err)
		return
	}
	changed := changedKeys(d.running, flat)
	var live, restart []string
	watchChanged, httpChanged := false, false
	for _, k := range changed {
		if !isLiveKey(k) {
			restart = append(restart, k)
			continue
		}
		live = append(live, k)
		if strings.HasPrefix(k, "http.") {
			httpChanged = true
		} else {
			watchChanged = true
		}
	}
	for _, k := range restart {
		log.Warn("config key changed but cannot change while the daemon runs; restart it to apply", "key", k, "file", cfg.File)
	}
	var applied, failed []string
	apply := func(ok bool, prefix func(string) bool) {
		for _, k := range live {
			if !prefix(k) {
				continue
			}
			if ok {
				applied = append(applied, k)
				d.running[k] = flat[k]
				if _, set := flat[k]; !set {
					delete(d.running, k)
				}
			} else {
				failed = append(failed, k)
			}
		}
	}
	if watchChanged {
		err := d.applyWatch(ctx, cfg)
		if err != nil {
			log.Error("config reload: drop-in directories unchanged", "err", err)
		}
		apply(err == nil, func(k string) bool { return !strings.HasPrefix(k, "http.") })
	}
	if httpChanged {
		for _, h := range d.http {
			h.Apply(httpLimits(cfg.HTTP))
		}
		apply(true, func(k string) bool { return strings.HasPrefix(k, "http.") })
	}
	log.Info("config reloaded", "file", cfg.File, "changed", orEmpty(applied), "needs_restart", orEmpty(restart), "failed", orEmpty(failed))
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// applyWatch replaces the watcher by one on cfg's drop-in directories and
// settle interval. The old one stops first, after its batch in progress.
func (d *reloader) applyWatch(ctx context.Context, cfg *Config) error {
	dirs, err := checkDropIns(cfg)
	if err != nil {
		return err
	}
	// Everything that can fail is tried before the old watcher stops, so
	// that a bad directory leaves the daemon watching the old ones.
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating drop-in dir %q: %w", dir, err)
		}
		f, err := os.Open(dir)
		if err != nil {
			return fmt.Errorf("opening drop-in dir %q: %w", dir, err)
		}
		_, err = f.ReadDir(1)
		f.Close()
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading drop-in dir %q: %w", dir, err)
		}
	}
	opts, err := watchOptionsFor(cfg, d.log, d.watchOpts)
	if err != nil {
		return err
	}
	if _, err := dropwatch.New(dirs, d.handle, opts...); err != nil {
		return err
	}
	d.watch.stop()
	byDir := map[string]DropIn{}
	for _, di := range cfg.DropIns {
		byDir[filepath.Clean(di.Dir)] = di
	}
	// No watcher runs now, so nothing reads the map.
	*d.byDir = byDir
	ds := append([]DropIn(nil), cfg.DropIns...)
	d.r.liveDropIns.Store(&ds)
	if err := d.watch.start(dirs, d.handle, opts); err != nil {
		return fmt.Errorf("restarting the drop-in watcher: %w", err)
	}
	return nil
}

// watchOptionsFor is the watcher's options for cfg: the logger, the
// config's settle interval, then the daemon's own (WithWatchOptions).
func watchOptionsFor(cfg *Config, log *slog.Logger, extra []dropwatch.Option) ([]dropwatch.Option, error) {
	opts := []dropwatch.Option{dropwatch.WithLogger(log)}
	if cfg.Daemon.Settle != "" {
		d, err := time.ParseDuration(cfg.Daemon.Settle)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%w: daemon.settle %q is not a positive duration", ErrBadConfig, cfg.Daemon.Settle)
		}
		opts = append(opts, dropwatch.WithSettle(d))
	}
	return append(opts, extra...), nil
}

// httpWriteFloor is the least time each write of an HTTP response gets
// (serve.Limits.WriteFloor); 0 is serve's default. A variable so that
// tests can change it.
var httpWriteFloor time.Duration

// httpLimits is what [http] says of the HTTP servers' limits. LoadConfig
// validated and defaulted hc; a zero value falls back to serve's default.
func httpLimits(hc HTTPConfig) serve.Limits {
	idle, err := time.ParseDuration(hc.IdleTimeout)
	if err != nil {
		idle = 0
	}
	return serve.Limits{IdleTimeout: idle, MinRate: hc.MinRate, MaxConnections: hc.MaxConnections, WriteFloor: httpWriteFloor}
}
