package repo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/repoctl/repoctl/repo/dropwatch"
	"github.com/repoctl/repoctl/repo/serve"
)

// DaemonOption configures RunDaemon.
type DaemonOption func(*daemonOptions) error

type daemonOptions struct {
	open       []Option
	log        *slog.Logger
	grace      time.Duration
	httpListen string
	watch      []dropwatch.Option
	ready      func(DaemonInfo)
	reload     <-chan struct{}
}

// DaemonInfo tells a caller where a started daemon can be reached.
type DaemonInfo struct {
	Root    string   `json:"root"`
	Socket  string   `json:"socket"`
	HTTP    string   `json:"http"`     // bound address, "" if HTTP is off
	URL     string   `json:"url"`      // public base URL of ROOT/repo
	DropIns []string `json:"drop_ins"` // watched directories
	// Metrics is the address serving /metrics, /healthz and /readyz: HTTP
	// unless [metrics] listen names its own; "" if none does.
	Metrics  string `json:"metrics,omitempty"`
	KeyID    string `json:"key_id"`
	Packages int    `json:"packages"`
}

// WithOpenOptions passes options to Open (config file, lock wait, …).
func WithOpenOptions(opts ...Option) DaemonOption {
	return func(o *daemonOptions) error { o.open = append(o.open, opts...); return nil }
}

// WithDaemonLogger sets the structured logger; default discards.
func WithDaemonLogger(l *slog.Logger) DaemonOption {
	return func(o *daemonOptions) error {
		if l == nil {
			return errors.New("repo: nil logger")
		}
		o.log = l
		return nil
	}
}

// WithShutdownGrace is how long, on stop, the ingest batch and the control
// requests in progress get to finish before they are cancelled (the
// pipeline's journal makes a cancelled batch safe). Default 20s, below
// systemd's default stop timeout of 90s.
func WithShutdownGrace(d time.Duration) DaemonOption {
	return func(o *daemonOptions) error {
		if d < 0 {
			return fmt.Errorf("repo: negative shutdown grace %v", d)
		}
		o.grace = d
		return nil
	}
}

// WithHTTPListen overrides the config's http.listen ("off" disables).
func WithHTTPListen(addr string) DaemonOption {
	return func(o *daemonOptions) error { o.httpListen = addr; return nil }
}

// WithWatchOptions tunes the drop-in watcher (settle interval and so on);
// they apply after the config's daemon.settle.
func WithWatchOptions(opts ...dropwatch.Option) DaemonOption {
	return func(o *daemonOptions) error { o.watch = append(o.watch, opts...); return nil }
}

// WithReady is called once the daemon serves: socket, HTTP and watcher up,
// journal resumed.
func WithReady(f func(DaemonInfo)) DaemonOption {
	return func(o *daemonOptions) error { o.ready = f; return nil }
}

// RunDaemon is `repoctl daemon`: it opens root (taking the ROOT lock),
// listens on the control socket, resumes the ingest journal, serves
// ROOT/repo over HTTP, and ingests files dropped into the drop-in
// directories, until ctx is done. Then it stops watching, lets the batch in
// progress finish within the grace period, closes HTTP and the socket and
// closes the store.
func RunDaemon(ctx context.Context, root string, opts ...DaemonOption) (err error) {
	o := daemonOptions{log: slog.New(slog.DiscardHandler), grace: 20 * time.Second}
	for _, f := range opts {
		if err := f(&o); err != nil {
			return err
		}
	}
	log := o.log
	// A long-lived process whose live heap is mostly the index: collect
	// at half the default growth so that RSS stays near the live heap
	// (issue 13: 100,000 packages in ≤ 200 MB). GOGC, if set, wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	// A second daemon on the same root would wait for the lock; say at
	// once that one is already serving.
	if cfg, err := LoadConfig(root, openConfigFile(o.open)); err == nil {
		if c, err := Dial(ctx, cfg.Paths.Socket, time.Second); err == nil {
			c.Close()
			return fmt.Errorf("%w: a daemon already serves %q on %q", ErrLocked, cfg.Root, cfg.Paths.Socket)
		}
	}
	reg, pm, err := newDaemonRegistry()
	if err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	openOpts := append([]Option{WithLogger(log), WithWho("daemon"), WithResume(false), WithMetrics(pm), withPair(),
		WithNotify(func(msg string) { log.Warn(msg) })}, o.open...)
	r, err := Open(ctx, root, openOpts...)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := r.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("closing store: %w", cerr)
		}
	}()
	cfg := r.Config()
	log.Info("repository opened", "root", cfg.Root, "config", cfg.File, "key_id", r.Key().KeyID())
	// Taken before anything below adjusts cfg (the bound address): what
	// a reload compares the file with.
	running, err := flattenConfig(cfg)
	if err != nil {
		return err
	}
	fixTreeModes(r, log)

	dropDirs, err := checkDropIns(cfg)
	if err != nil {
		return err
	}
	// A reload builds them again the same way (daemon_reload.go).
	watchOpts, err := watchOptionsFor(cfg, log, o.watch)
	if err != nil {
		return err
	}

	// The HTTP port is bound before anything serves, so that every answer
	// (status, repofile, promote URLs) names the address really bound, a
	// --listen flag or port 0 included, and a port in use fails at once.
	listen := cfg.HTTP.Listen
	if o.httpListen != "" {
		listen = o.httpListen
	}
	var hln net.Listener
	var httpRunners []*serve.Server // what a reload gives new HTTP settings
	if listen != "" && listen != "off" {
		if hln, err = net.Listen("tcp", listen); err != nil {
			return fmt.Errorf("serving HTTP on %q: %w", listen, err)
		}
		defer hln.Close() // Shutdown closes it too; a second Close is harmless
		if err := cfg.setServedAddr(hln.Addr().String()); err != nil {
			return err
		}
	}
	// [metrics] listen moves /metrics, /healthz and /readyz off the HTTP
	// listener (to keep them from the hosts, say); bound now for the same
	// reason.
	var mln net.Listener
	if ml := cfg.Metrics.Listen; ml != "" && ml != "off" {
		if mln, err = net.Listen("tcp", ml); err != nil {
			return fmt.Errorf("serving metrics on %q: %w", ml, err)
		}
		defer mln.Close()
	}

	// Everything below runs until stop is cancelled, which happens when
	// ctx is done or any part fails.
	stopCtx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	fail := func(what string, e error) {
		if e == nil {
			return
		}
		errMu.Lock()
		if firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", what, e)
		}
		errMu.Unlock()
		stop()
	}
	// work is cancelled grace after stop: batches and control requests in
	// progress get that long to finish.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	go func() {
		<-stopCtx.Done()
		select {
		case <-time.After(o.grace):
			log.Warn("shutdown grace expired, cancelling work in progress", "grace", o.grace)
			cancelWork()
		case <-work.Done():
		}
	}()

	// Control socket first, so that a CLI started during Resume waits for
	// us instead of for the lock.
	sln, err := serve.ListenSocket(cfg.Paths.Socket, socketPerm)
	if err != nil {
		return err
	}
	ready := make(chan struct{})
	ssrv := serve.NewSocketServer(newSocketHandler(r, cfg.Root, ready, log), log, peerCaller)
	ssrv.BaseContext = func(net.Listener) context.Context { return work }
	wg.Add(1)
	go func() {
		defer wg.Done()
		fail("control socket", serve.Run(stopCtx, sln, ssrv, o.grace))
	}()

	// HTTP serves from here on, during Resume too: /healthz says the
	// process is up and /readyz says 503 until the journal is resumed,
	// while the tree, consistent at every moment, is served as a web
	// server in front of it would.
	readiness := daemonReadiness(r, ready)
	if err := reg.Register(newRepoCollector(r, readiness)); err != nil {
		stop()
		wg.Wait()
		return fmt.Errorf("registering metrics: %w", err)
	}
	ops := newOpsHandler(reg, readiness, log)
	info := DaemonInfo{Root: cfg.Root, Socket: cfg.Paths.Socket, DropIns: dropDirs, KeyID: r.Key().KeyID()}
	if hln != nil {
		h, closeRoot, err := serve.NewFileHandler(cfg.Paths.Repo, log, majorFallback)
		if err != nil {
			stop()
			wg.Wait()
			return err
		}
		defer closeRoot()
		if cfg.Metrics.Listen == "" {
			h = withOps(ops, h)
			info.Metrics = hln.Addr().String()
		}
		info.HTTP = hln.Addr().String()
		info.URL = cfg.HTTP.PublicURL
		// A runner rather than one server, so that a reload can apply
		// new limits and timeouts; it caps connections itself.
		hr := serve.NewServer(hln, h, log, httpLimits(cfg.HTTP), 0)
		httpRunners = append(httpRunners, hr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail("HTTP server", hr.Serve(stopCtx, 5*time.Second))
		}()
		log.Info("serving repositories over HTTP", "listen", info.HTTP, "url", info.URL, "dir", cfg.Paths.Repo)
	}
	if mln != nil {
		info.Metrics = mln.Addr().String()
		// A scraper and a probe or two: a few connections are plenty.
		mr := serve.NewServer(mln, ops, log, httpLimits(cfg.HTTP), 16)
		httpRunners = append(httpRunners, mr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail("metrics server", mr.Serve(stopCtx, 5*time.Second))
		}()
		log.Info("serving metrics and health", "listen", info.Metrics)
	}

	// In an HA pair the daemon starts as a standby: it serves the
	// read-only requests at once and resumes its journal, and watches its
	// drop-ins, only once it leads (ha.go).
	haOn, err := r.joinHA(ctx, haID(cfg, hln), log)
	if err != nil {
		stop()
		wg.Wait()
		return err
	}
	if haOn {
		defer r.leaveHA() // before the store closes: a standby takes over at once
	} else if err := r.Resume(ctx); err != nil {
		stop()
		wg.Wait()
		return fmt.Errorf("resuming ingest journal: %w", err)
	}
	close(ready)

	byDir := map[string]DropIn{}
	for _, d := range cfg.DropIns {
		byDir[filepath.Clean(d.Dir)] = d
	}
	failures := 0
	handle := func(bctx context.Context, paths []string) {
		if ingestBatch(bctx, r, log, byDir, paths) {
			failures = 0
			return
		}
		// A batch that failed as a whole (disk full, key unreadable …) is
		// in the journal. Back off so a persistent fault does not spin,
		// then Resume: it rolls the files back into their drop-in
		// directory, where the watcher finds them again.
		//
		// Resume itself may fail for the same reason (a full disk while
		// publishing what was signed): it is retried with the same
		// back-off until it succeeds, since no new drop-in may come to
		// trigger it, and signed packages must not wait in the journal.
		for {
			failures++
			delay := min(time.Second<<min(failures-1, 6), time.Minute)
			log.Warn("ingest batch failed; resuming after back-off", "in", delay, "failures", failures)
			select {
			case <-time.After(delay):
			case <-stopCtx.Done():
				return
			case <-bctx.Done():
				return
			}
			err := r.Resume(bctx)
			if err == nil {
				return
			}
			log.Error("resume after failed batch", "err", err, "transient", isTransient(err))
		}
	}
	watcher := &watchRunner{parent: stopCtx, work: work, fail: fail, wg: &wg}
	if haOn {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail("HA pair", r.lead(stopCtx, func() error {
				if r.rotationPending() { // only a leader rotates
					wg.Add(1)
					go func() {
						defer wg.Done()
						resumeRotation(stopCtx, r, log)
					}()
				}
				return watcher.start(dropDirs, handle, watchOpts)
			}))
		}()
	} else if err := watcher.start(dropDirs, handle, watchOpts); err != nil {
		stop()
		wg.Wait()
		return err
	}

	if st, err := r.Status(ctx); err == nil {
		info.Packages = st.Packages
	}
	log.Info("daemon ready", "socket", info.Socket, "http", info.HTTP, "drop_ins", info.DropIns, "packages", info.Packages)
	sdNotify(log, "READY=1\nSTATUS=serving")
	if o.ready != nil {
		o.ready(info)
	}
	if o.reload != nil {
		rl := &reloader{r: r, log: log, root: root, file: openConfigFile(o.open), running: running,
			watch: watcher, handle: handle, byDir: &byDir, watchOpts: o.watch, http: httpRunners}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rl.run(stopCtx, o.reload)
		}()
	}
	// An interrupted key rotation is finished in the background, step by
	// step between ingest batches, while both keys stay served.
	if r.rotationPending() && !haOn {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resumeRotation(stopCtx, r, log)
		}()
	}

	// The main loop: it pings the systemd watchdog, so a daemon whose
	// loop or store is stuck gets restarted.
	wd := newWatchdog(log)
	defer wd.stop()
	// Held and pruned files whose grace passed go even when nothing is
	// published for a while.
	sweep := time.NewTicker(min(max(cfg.grace()/2, time.Second), time.Minute))
	defer sweep.Stop()
	// A backlog that coalesced publishes and then vanished (its files
	// removed before a batch could end it) is published once idle.
	flush := time.NewTicker(time.Second)
	defer flush.Stop()
loop:
	for {
		select {
		case <-stopCtx.Done():
			break loop
		case <-flush.C:
			if ok, err := r.FlushDeferred(stopCtx, time.Second, false); err != nil {
				log.Warn("publishing what coalesced batches left; retried", "err", err)
			} else if ok {
				log.Info("published what coalesced batches left")
			}
		case <-wd.C:
			wd.ping(log, r)
		case <-sweep.C:
			if r.standby() {
				continue
			}
			if n, err := r.SweepTrash(stopCtx); err != nil {
				log.Warn("deleting files past their grace; retried", "err", err)
			} else if n > 0 {
				log.Info("deleted files past their grace", "files", n)
			}
			r.RetryMirror(stopCtx)
		}
	}
	log.Info("stopping")
	sdNotify(log, "STOPPING=1")
	wg.Wait()
	// The watcher is done: what its batches left unpublished goes out
	// now rather than at the next start (it is marked dirty either way).
	if _, err := r.FlushDeferred(work, 0, true); err != nil {
		log.Warn("publishing what coalesced batches left; the next start does", "err", err)
	}
	cancelWork()
	log.Info("stopped")
	return firstErr
}

// checkDropIns refuses drop-in directories that overlap the directories the
// pipeline writes to: watching those would re-ingest our own output.
func checkDropIns(cfg *Config) ([]string, error) {
	own := map[string]string{
		"repo": cfg.Paths.Repo, "spool": cfg.Paths.Spool,
		"rejected": cfg.Paths.Rejected, "keys": cfg.Paths.Keys,
	}
	var dirs []string
	seen := map[string]bool{}
	for _, d := range cfg.DropIns {
		dir := filepath.Clean(d.Dir)
		if seen[dir] {
			return nil, fmt.Errorf("%w: drop-in directory %q is listed twice", ErrBadConfig, dir)
		}
		seen[dir] = true
		if dir == filepath.Clean(cfg.Root) {
			return nil, fmt.Errorf("%w: drop-in directory %q is the root itself", ErrBadConfig, dir)
		}
		for what, p := range own {
			if within(dir, p) || within(p, dir) {
				return nil, fmt.Errorf("%w: drop-in directory %q overlaps the %s directory %q", ErrBadConfig, dir, what, p)
			}
		}
		dirs = append(dirs, dir)
	}
	return dirs, nil
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}

// ingestBatch runs the pipeline on one batch, one Ingest per drop-in
// directory (each has its own repository, channel and release; a file of
// a subdirectory goes with the drop-in directory above it), and logs every
// outcome. Errors are logged, never fatal; it reports whether every Ingest
// call completed (rejections are completions).
func ingestBatch(ctx context.Context, r *Repo, log *slog.Logger, byDir map[string]DropIn, paths []string) bool {
	allOK := true
	groups := map[string][]string{}
	var order []string
	for _, p := range paths {
		d, ok := dropInOf(byDir, p)
		if !ok {
			d = filepath.Dir(p)
		}
		if _, ok := groups[d]; !ok {
			order = append(order, d)
		}
		groups[d] = append(groups[d], p)
	}
	for _, d := range order {
		di, ok := byDir[d]
		if !ok {
			log.Error("file outside every drop-in directory", "dir", d)
			continue
		}
		start := time.Now()
		opts := AddOptions{Repo: di.Repo, Channel: di.Channel, Release: di.Release, Who: "daemon", Move: true}
		opts.drop = dropBatchFrom(ctx)
		res, err := r.Ingest(ctx, groups[d], opts)
		var added, unchanged, rejected, deferred int
		for _, x := range res {
			switch x.Action {
			case ActionDeferred:
				deferred++
				log.Info("package deferred: still being written, back in its drop-in directory", "file", x.Path, "why", x.Reason)
			case ActionAdded:
				added++
				log.Info("package added", "file", x.Path, "nevra", x.NEVRA, "key_id", x.KeyID, "paths", x.RepoPaths)
			case ActionUnchanged:
				unchanged++
				log.Info("package unchanged", "file", x.Path, "nevra", x.NEVRA)
			case ActionRejected:
				rejected++
				log.Warn("package rejected", "file", x.Path, "nevra", x.NEVRA, "reason", x.Reason, "kept", x.Rejected)
			}
		}
		attrs := []any{"dir", d, "repo", di.Repo, "channel", di.Channel, "files", len(groups[d]),
			"added", added, "unchanged", unchanged, "rejected", rejected, "deferred", deferred,
			"took", time.Since(start).Round(time.Millisecond)}
		if err != nil && !errors.Is(err, ErrRejected) {
			log.Error("ingest batch failed", append(attrs, "err", err)...)
			allOK = false
			continue
		}
		log.Info("ingest batch", attrs...)
	}
	return allOK
}

// openConfigFile is the config file that opts passed to Open name, if any.
func openConfigFile(opts []Option) string {
	var o options
	for _, f := range opts {
		f(&o)
	}
	return o.configFile
}
