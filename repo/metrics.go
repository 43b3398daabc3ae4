package repo

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/repoctl/repoctl/internal/buildinfo"
	"github.com/repoctl/repoctl/sign"
)

// Metrics receives what a Repo measures while it works. Every label value
// it is given comes from a fixed set or from the config (repository and
// channel names), never from a package or a client, so an implementation
// may use them as metric labels. Calls come from whichever goroutine did
// the work: implementations must be safe for concurrent use.
type Metrics interface {
	// Ingested counts one file of an Ingest or AddFiles call by its
	// outcome: ActionAdded, ActionUnchanged or ActionRejected.
	Ingested(result string)
	// Published is one publish of a repository directory of repo and
	// channel ("other" for a directory outside the configured ones), and
	// how long it took; err is nil when it succeeded.
	Published(repo, channel string, took time.Duration, err error)
	// Signed is one signing batch of files packages and its duration.
	Signed(files int, took time.Duration)
	// RolloutStep counts a recorded rollout step: step is the phase's
	// step (clean, update, restart, health, …; "other" if unknown),
	// result "ok" or "failed".
	RolloutStep(step, result string)
}

type noMetrics struct{}

func (noMetrics) Ingested(string)                                {}
func (noMetrics) Published(string, string, time.Duration, error) {}
func (noMetrics) Signed(int, time.Duration)                      {}
func (noMetrics) RolloutStep(string, string)                     {}

// WithMetrics reports what the Repo measures to m. Default: nothing is
// measured. The daemon passes a PrometheusMetrics on a registry it owns.
func WithMetrics(m Metrics) Option {
	return func(o *options) error {
		if m == nil {
			return errors.New("repo: nil metrics")
		}
		o.metrics = m
		return nil
	}
}

func (r *Repo) metrics() Metrics {
	if r.o.metrics == nil {
		return noMetrics{}
	}
	return r.o.metrics
}

// countIngest reports the files of a finished Ingest call that were
// unchanged or rejected. Added ones are counted where they are recorded
// (countAdded), which is also where Resume finishes a batch that failed
// after signing. A dry run changes nothing and counts nothing.
func (r *Repo) countIngest(res []AddResult, o AddOptions) {
	if o.DryRun {
		return
	}
	m := r.metrics()
	for _, x := range res {
		switch x.Action {
		case ActionUnchanged, ActionRejected:
			m.Ingested(x.Action)
		}
	}
}

// countAdded counts n packages recorded in the store.
func (r *Repo) countAdded(n int) {
	m := r.metrics()
	for range n {
		m.Ingested(ActionAdded)
	}
}

// signFiles is r.signer.SignFiles, timed.
func (r *Repo) signFiles(ctx context.Context, paths []string) ([]sign.Result, error) {
	start := time.Now()
	res, err := r.signer.SignFiles(ctx, paths)
	if err == nil {
		r.metrics().Signed(len(paths), time.Since(start))
	}
	return res, err
}

// observePublish is called by the tree after each publish of dir: it
// feeds the metrics and the publish failures /readyz reports.
func (r *Repo) observePublish(dir string, took time.Duration, err error) {
	repo, channel := r.dirLabels(dir)
	r.metrics().Published(repo, channel, took, err)
	r.pubHealth.record(dir, err, r.tree.dir)
}

// dirLabels are the repository and channel of a directory relative to
// ROOT/repo when both are configured, else "other": a directory found in
// the tree must not mint a label.
func (r *Repo) dirLabels(dir string) (repo, channel string) {
	parts := strings.SplitN(dir, "/", 3)
	if len(parts) >= 2 && slices.Contains(r.cfg.Repos, parts[0]) && slices.Contains(r.cfg.Channels, parts[1]) {
		return parts[0], parts[1]
	}
	return "other", "other"
}

// rolloutSteps are the step names of upgrade's plans (the first words of a
// phase name: "restart web" is step "restart"); anything else a client
// sends is counted as "other".
var rolloutSteps = []string{"probe", "clean", "update", "verify", "restart", "health", "purge",
	"rollback-downgrade", "rollback-restart", "rollback-verify"}

// countRollout counts a recorded step event ("step-done", "step-failed").
func (r *Repo) countRollout(e RolloutEvent) {
	var result string
	switch e.Kind {
	case "step-done":
		result = "ok"
	case "step-failed":
		result = "failed"
	default:
		return
	}
	f := strings.Fields(e.Phase)
	step := "other"
	if len(f) > 0 {
		s := f[0]
		if s == "rollback" && len(f) > 1 {
			s += "-" + f[1]
		}
		if slices.Contains(rolloutSteps, s) {
			step = s
		}
	}
	r.metrics().RolloutStep(step, result)
}

// PrometheusMetrics is Metrics on a Prometheus registry that the caller
// owns (never the global default one).
type PrometheusMetrics struct {
	ingest      *prometheus.CounterVec
	publish     *prometheus.HistogramVec
	publishFail *prometheus.CounterVec
	sign        prometheus.Histogram
	signFiles   prometheus.Counter
	rollout     *prometheus.CounterVec
}

var _ Metrics = (*PrometheusMetrics)(nil)

// NewPrometheusMetrics registers repoctl's counters and histograms on reg.
func NewPrometheusMetrics(reg prometheus.Registerer) (*PrometheusMetrics, error) {
	// Publishing a directory takes from milliseconds (a few packages) to
	// a minute (tens of thousands); signing a batch likewise.
	buckets := []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}
	m := &PrometheusMetrics{
		ingest: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "repoctl_ingest_packages_total",
			Help: "Files taken by ingest (drop-ins and add), by outcome: added, unchanged or rejected.",
		}, []string{"result"}),
		publish: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "repoctl_publish_duration_seconds",
			Help:    "Time to write and sign the repodata of one repository directory, successful publishes.",
			Buckets: buckets,
		}, []string{"repo", "channel"}),
		publishFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "repoctl_publish_failures_total",
			Help: "Publishes of a repository directory that failed.",
		}, []string{"repo", "channel"}),
		sign: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "repoctl_sign_duration_seconds",
			Help:    "Time to sign one batch of packages (ingest or key rotation).",
			Buckets: buckets,
		}),
		signFiles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "repoctl_sign_files_total",
			Help: "Files given to the signer, in the batches repoctl_sign_duration_seconds times.",
		}),
		rollout: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "repoctl_rollout_steps_total",
			Help: "Rollout steps recorded, by step (clean, update, verify, restart, health, purge, probe, rollback-*) and result (ok, failed).",
		}, []string{"step", "result"}),
	}
	for _, c := range []prometheus.Collector{m.ingest, m.publish, m.publishFail, m.sign, m.signFiles, m.rollout} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Every outcome is exported from the start, so that increase() sees
	// the first rejection instead of a series appearing at 1.
	for _, a := range []string{ActionAdded, ActionUnchanged, ActionRejected} {
		m.ingest.WithLabelValues(a)
	}
	return m, nil
}

func (m *PrometheusMetrics) Ingested(result string) { m.ingest.WithLabelValues(result).Inc() }

func (m *PrometheusMetrics) Published(repo, channel string, took time.Duration, err error) {
	if err != nil {
		m.publishFail.WithLabelValues(repo, channel).Inc()
		return
	}
	m.publish.WithLabelValues(repo, channel).Observe(took.Seconds())
}

func (m *PrometheusMetrics) Signed(files int, took time.Duration) {
	m.sign.Observe(took.Seconds())
	m.signFiles.Add(float64(files))
}

func (m *PrometheusMetrics) RolloutStep(step, result string) {
	m.rollout.WithLabelValues(step, result).Inc()
}

// newDaemonRegistry is the daemon's own registry: repoctl's metrics, the
// build info and the Go runtime and process collectors.
func newDaemonRegistry() (*prometheus.Registry, *PrometheusMetrics, error) {
	reg := prometheus.NewRegistry()
	bi := buildinfo.Read()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "repoctl_build_info",
		Help:        "The running build: always 1, labelled with the module version, VCS revision and Go version.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion},
	})
	build.Set(1)
	for _, c := range []prometheus.Collector{build, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			return nil, nil, err
		}
	}
	m, err := NewPrometheusMetrics(reg)
	if err != nil {
		return nil, nil, err
	}
	return reg, m, nil
}

// repoCollector exports the Repo's state when scraped: packages per
// repository and channel (from the in-memory index, not the store), the
// files waiting in drop-in directories and in rejected/, and readiness.
type repoCollector struct {
	r                                  *Repo
	packages, incoming, rejected, read *prometheus.Desc
	ready                              func() Readiness
}

func newRepoCollector(r *Repo, ready func() Readiness) *repoCollector {
	return &repoCollector{
		r: r, ready: ready,
		packages: prometheus.NewDesc("repoctl_packages", "Packages (distinct NEVRAs) placed in each repository and channel.", []string{"repo", "channel"}, nil),
		incoming: prometheus.NewDesc("repoctl_incoming_files", "Files waiting in the drop-in directories.", nil, nil),
		rejected: prometheus.NewDesc("repoctl_rejected_files", "Files kept in the rejected directory.", nil, nil),
		read:     prometheus.NewDesc("repoctl_ready", "1 when /readyz answers 200, else 0.", nil, nil),
	}
}

func (c *repoCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.packages
	ch <- c.incoming
	ch <- c.rejected
	ch <- c.read
}

func (c *repoCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.r
	for key, n := range r.packagesByChannel() {
		ch <- prometheus.MustNewConstMetric(c.packages, prometheus.GaugeValue, float64(n), key[0], key[1])
	}
	incoming, _, rejected := r.waitingFiles()
	ch <- prometheus.MustNewConstMetric(c.incoming, prometheus.GaugeValue, float64(incoming))
	ch <- prometheus.MustNewConstMetric(c.rejected, prometheus.GaugeValue, float64(rejected))
	ready := 0.0
	if c.ready().Ready {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(c.read, prometheus.GaugeValue, ready)
}

// packagesByChannel counts distinct NEVRAs per configured repository and
// channel (a noarch package in two arch directories is one package), with
// a zero for every pair that has none.
func (r *Repo) packagesByChannel() map[[2]string]int {
	sets := map[[2]string]map[string]bool{}
	for _, repo := range r.cfg.Repos {
		for _, ch := range r.cfg.Channels {
			sets[[2]string{repo, ch}] = map[string]bool{}
		}
	}
	r.idxMu.RLock()
	for dir, m := range r.dirs {
		parts := strings.SplitN(dir, "/", 3)
		if len(parts) < 2 {
			continue
		}
		set := sets[[2]string{parts[0], parts[1]}]
		if set == nil {
			continue // not configured (any more): no label for it
		}
		for n := range m {
			set[n] = true
		}
	}
	r.idxMu.RUnlock()
	out := make(map[[2]string]int, len(sets))
	for k, s := range sets {
		out[k] = len(s)
	}
	return out
}

// publishHealth remembers the directories whose last publish failed, for
// /readyz. The zero value is ready to use.
type publishHealth struct {
	mu     sync.Mutex
	failed map[string]publishFailure
}

type publishFailure struct {
	since time.Time
	err   string
}

// record notes the outcome of a publish of dir. The error is kept without
// the served tree's absolute path (treeDir): /readyz may face the hosts.
func (p *publishHealth) record(dir string, err error, treeDir string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		delete(p.failed, dir)
		return
	}
	if p.failed == nil {
		p.failed = map[string]publishFailure{}
	}
	f, ok := p.failed[dir]
	if !ok {
		f.since = time.Now().UTC()
	}
	f.err = strings.ReplaceAll(err.Error(), treeDir+"/", "")
	p.failed[dir] = f
}

func (p *publishHealth) snapshot() map[string]publishFailure {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]publishFailure, len(p.failed))
	for d, f := range p.failed {
		out[d] = f
	}
	return out
}
