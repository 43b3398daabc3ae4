package repo

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path"
	"slices"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	kv "github.com/repoctl/repoctl/repo/store"
)

// Readiness is what /readyz answers: whether the daemon is fit to serve
// hosts, and if not, every reason why.
type Readiness struct {
	Ready   bool          `json:"ready"`
	Reasons []ReadyReason `json:"reasons"` // [] when ready
}

// ReadyReason is one thing that keeps the daemon from being ready.
type ReadyReason struct {
	// Check is "starting" (the journal is being resumed), "closed",
	// "journal" (ingested files in flight outside a running batch),
	// "dirty" (directories whose repodata awaits a publish) or "publish"
	// (the last publish of Dir failed).
	Check   string     `json:"check"`
	Message string     `json:"message"`
	Dir     string     `json:"dir,omitempty"`
	Since   *time.Time `json:"since,omitempty"`
}

func (rd *Readiness) add(why ReadyReason) {
	rd.Ready = false
	rd.Reasons = append(rd.Reasons, why)
}

// Readiness reports whether what the store and the tree say is published
// matches: no ingest journal items or dirty directories left behind by a
// failed batch, and no directory whose last publish failed.
//
// A batch in progress journals its files and may mark directories dirty
// for its own run; that is work, not a backlog. So the store is consulted
// only when no change is running (the change lock is free); while one
// runs, only the publish failures count, which the batch clears when it
// publishes those directories again.
func (r *Repo) Readiness() Readiness {
	rd := Readiness{Ready: true, Reasons: []ReadyReason{}}
	if r.isClosed.Load() {
		rd.add(ReadyReason{Check: "closed", Message: "the store is closed"})
		return rd
	}
	if r.mu.TryLock() {
		var inFlight, dirty int
		var err error
		if r.closed {
			err = ErrClosed
		} else {
			err = r.st.db.View(func(tx kv.Tx) error {
				inFlight = tx.Bucket(bucketJournal).Stats().KeyN
				dirty = tx.Bucket(bucketDirty).Stats().KeyN
				return nil
			})
		}
		r.mu.Unlock()
		switch {
		case err != nil:
			rd.add(ReadyReason{Check: "closed", Message: fmt.Sprintf("reading the store: %v", err)})
		case inFlight > 0:
			rd.add(ReadyReason{Check: "journal", Message: fmt.Sprintf("ingested files in flight outside a batch (a failed batch awaits its retry): %d", inFlight)})
		}
		if dirty > 0 {
			rd.add(ReadyReason{Check: "dirty", Message: fmt.Sprintf("repository directories await a publish: %d", dirty)})
		}
	}
	failed := r.pubHealth.snapshot()
	dirs := make([]string, 0, len(failed))
	for d := range failed {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	for _, d := range dirs {
		f := failed[d]
		rd.add(ReadyReason{Check: "publish", Dir: d, Since: &f.since, Message: "publishing failed: " + f.err})
	}
	return rd
}

// daemonReadiness is r.Readiness once ready is closed (the journal is
// resumed), and "starting" before.
func daemonReadiness(r *Repo, ready <-chan struct{}) func() Readiness {
	return func() Readiness {
		select {
		case <-ready:
			return r.Readiness()
		default:
			return Readiness{Reasons: []ReadyReason{{Check: "starting", Message: "resuming the ingest journal"}}}
		}
	}
}

// opsPaths are answered by the daemon itself. They are matched before the
// served tree, so no file in the tree can stand in for them.
var opsPaths = []string{"/metrics", "/healthz", "/readyz"}

// newOpsHandler serves /metrics from reg (Prometheus text exposition),
// /healthz (200 while the process serves) and /readyz (200 when ready()
// says so, else 503, with the Readiness as JSON either way).
func newOpsHandler(reg *prometheus.Registry, ready func() Readiness, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		MaxRequestsInFlight: 4,
		Timeout:             30 * time.Second,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, req *http.Request) {
		writeJSONStatus(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, req *http.Request) {
		rd := ready()
		code := http.StatusOK
		if !rd.Ready {
			code = http.StatusServiceUnavailable
		}
		writeJSONStatus(w, code, rd)
	})
	return mux
}

func writeJSONStatus(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// withOps answers the ops paths with ops and everything else with files.
// The path is cleaned first, so /./metrics is the endpoint too.
func withOps(ops, files http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if p := path.Clean("/" + req.URL.Path); slices.Contains(opsPaths, p) {
			r2 := *req
			u := *req.URL
			u.Path, u.RawPath = p, ""
			r2.URL = &u
			ops.ServeHTTP(w, &r2)
			return
		}
		files.ServeHTTP(w, req)
	})
}

// checkMetricsListen validates [metrics] listen: "" (beside the tree on
// the HTTP listener), "off", or a host:port.
func checkMetricsListen(listen string) error {
	if listen == "" || listen == "off" {
		return nil
	}
	if _, _, err := net.SplitHostPort(listen); err != nil {
		return fmt.Errorf("%w: metrics.listen %q: %v (an address such as \"127.0.0.1:9464\", or \"off\")", ErrBadConfig, listen, err)
	}
	return nil
}
