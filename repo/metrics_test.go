package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	kv "github.com/repoctl/repoctl/repo/store"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// scrape is one parsed /metrics exposition.
type scrape map[string]*dto.MetricFamily

func scrapeMetrics(t testing.TB, base string) scrape {
	t.Helper()
	resp, err := http.Get(base + "metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics: Content-Type %q, want the text exposition format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// value is the counter, gauge or histogram count of the series of name
// whose labels include want; ok is false when there is none.
func (s scrape) value(name string, want map[string]string) (v float64, ok bool) {
	f := s[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, w := range want {
			if labels[k] != w {
				match = false
			}
		}
		if !match {
			continue
		}
		ok = true
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		case m.Histogram != nil:
			v += float64(m.Histogram.GetSampleCount())
		}
	}
	return v, ok
}

func (s scrape) must(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := s.value(name, labels)
	if !ok {
		t.Fatalf("no series %s%v in /metrics", name, labels)
	}
	return v
}

func ingestCounts(t testing.TB, s scrape) (added, unchanged, rejected float64) {
	t.Helper()
	return s.must(t, "repoctl_ingest_packages_total", map[string]string{"result": "added"}),
		s.must(t, "repoctl_ingest_packages_total", map[string]string{"result": "unchanged"}),
		s.must(t, "repoctl_ingest_packages_total", map[string]string{"result": "rejected"})
}

func daemonStatus(t testing.TB, root string) *Status {
	t.Helper()
	c, err := Dial(context.Background(), filepath.Join(root, "repoctl.sock"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func publishEvents(t testing.TB, root string) int {
	t.Helper()
	c, err := Dial(context.Background(), filepath.Join(root, "repoctl.sock"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	evs, err := c.History(context.Background(), HistoryOptions{Action: EventPublish})
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

// metricsTestConfig keeps the tests quick: an EdDSA key and a short settle.
const metricsTestConfig = "[signing]\nalgo = \"ed25519\"\n[daemon]\nsettle = \"100ms\"\n"

// The counters of a real daemon move by exactly what happened: one
// package added, one file rejected, then the same package again
// (unchanged); the gauges say what the store and the directories hold, and
// the histograms counted one signing batch and every publish the event log
// recorded.
func TestMetricsAfterDropInAndRejection(t *testing.T) {
	root, base := newTestRoot(t, metricsTestConfig)
	startDaemon(t, root)
	incoming := filepath.Join(root, "incoming")

	before := scrapeMetrics(t, base)
	a0, u0, r0 := ingestCounts(t, before)
	if a0 != 0 || u0 != 0 || r0 != 0 {
		t.Fatalf("fresh daemon: ingest counters added=%v unchanged=%v rejected=%v, want 0 0 0", a0, u0, r0)
	}
	sign0, _ := before.value("repoctl_sign_duration_seconds", nil)
	pub0, _ := before.value("repoctl_publish_duration_seconds", nil)
	ev0 := publishEvents(t, root)
	if got := before.must(t, "repoctl_build_info", nil); got != 1 {
		t.Errorf("repoctl_build_info = %v, want 1", got)
	}
	if _, ok := before.value("go_goroutines", nil); !ok {
		t.Error("no Go runtime metrics (go_goroutines)")
	}
	if _, ok := before.value("process_resident_memory_bytes", nil); !ok {
		t.Error("no process metrics (process_resident_memory_bytes)")
	}
	if v := before.must(t, "repoctl_ready", nil); v != 1 {
		t.Errorf("repoctl_ready = %v after start, want 1", v)
	}

	// noarch: placed in both arches of el/9, still one package.
	spec := helloSpec("metrics-hello")
	spec.Arch = "noarch"
	b, err := testrpm.Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	dropFile(t, incoming, spec.FileName(), b)
	dropFile(t, incoming, "junk.rpm", []byte("this is not an RPM package"))

	var after scrape
	waitFor(t, 2*time.Minute, "one added and one rejected in /metrics", func() (bool, string) {
		after = scrapeMetrics(t, base)
		a, u, r := ingestCounts(t, after)
		return a >= 1 && r >= 1, fmt.Sprintf("added %v unchanged %v rejected %v", a, u, r)
	})
	if a, u, r := ingestCounts(t, after); a != 1 || u != 0 || r != 1 {
		t.Errorf("after one good and one bad drop-in: added=%v unchanged=%v rejected=%v, want 1 0 1", a, u, r)
	}
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"repo": "main", "channel": "staging"}, 1},
		{map[string]string{"repo": "main", "channel": "prod"}, 0},
	} {
		if got := after.must(t, "repoctl_packages", c.labels); got != c.want {
			t.Errorf("repoctl_packages%v = %v, want %v", c.labels, got, c.want)
		}
	}
	if got := after.must(t, "repoctl_rejected_files", nil); got != 1 {
		t.Errorf("repoctl_rejected_files = %v, want 1", got)
	}
	if got := after.must(t, "repoctl_incoming_files", nil); got != 0 {
		t.Errorf("repoctl_incoming_files = %v, want 0", got)
	}
	// The junk file is rejected before signing: one batch was signed,
	// of one file, however the watcher grouped the two drop-ins.
	if got := after.must(t, "repoctl_sign_duration_seconds", nil) - sign0; got != 1 {
		t.Errorf("repoctl_sign_duration_seconds count moved by %v, want 1", got)
	}
	if got := after.must(t, "repoctl_sign_files_total", nil); got != 1 {
		t.Errorf("repoctl_sign_files_total = %v, want 1", got)
	}
	// Every successful publish is one publish event in the log.
	pub := after.must(t, "repoctl_publish_duration_seconds", nil) - pub0
	if ev := publishEvents(t, root) - ev0; pub != float64(ev) || pub < 1 {
		t.Errorf("publish histogram counted %v publishes, the event log %d (want equal and at least 1)", pub, ev)
	}
	if v, _ := after.value("repoctl_publish_duration_seconds", map[string]string{"repo": "main", "channel": "staging"}); v < 1 {
		t.Errorf("no publish of main/staging counted: %v", v)
	}
	for _, f := range after["repoctl_publish_duration_seconds"].GetMetric() {
		for _, l := range f.GetLabel() {
			if n := l.GetName(); n != "repo" && n != "channel" {
				t.Errorf("publish histogram has label %q: only repo and channel are bounded", n)
			}
		}
	}

	// The same bytes again: unchanged, nothing signed.
	dropFile(t, incoming, "again.rpm", b)
	waitFor(t, 2*time.Minute, "one unchanged in /metrics", func() (bool, string) {
		after = scrapeMetrics(t, base)
		a, u, r := ingestCounts(t, after)
		return u >= 1, fmt.Sprintf("added %v unchanged %v rejected %v", a, u, r)
	})
	if a, u, r := ingestCounts(t, after); a != 1 || u != 1 || r != 1 {
		t.Errorf("after the same package again: added=%v unchanged=%v rejected=%v, want 1 1 1", a, u, r)
	}
	if got := after.must(t, "repoctl_sign_duration_seconds", nil) - sign0; got != 1 {
		t.Errorf("an unchanged package was signed: sign count moved by %v, want 1", got)
	}
	if got := after.must(t, "repoctl_packages", map[string]string{"repo": "main", "channel": "staging"}); got != 1 {
		t.Errorf("repoctl_packages{main,staging} = %v after a duplicate, want 1", got)
	}
}

// httpJSON fetches url and decodes a JSON body into v (if not nil).
func httpJSON(t testing.TB, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: %s: not JSON: %v\n%s", url, resp.Status, err, b)
		}
	}
	return resp.StatusCode
}

func chattr(t testing.TB, flag, path string) {
	t.Helper()
	if out, err := exec.Command("chattr", flag, path).CombinedOutput(); err != nil {
		t.Fatalf("chattr %s %s: %v\n%s", flag, path, err, out)
	}
}

// /healthz and /readyz through a start, a publish that fails (the
// repodata directory made immutable: root cannot replace it either) and the
// recovery once it can be written again.
func TestHealthReadyThroughPublishFailure(t *testing.T) {
	needTools(t, "chattr")
	root, base := newTestRoot(t, metricsTestConfig)
	startDaemon(t, root)
	incoming := filepath.Join(root, "incoming")

	var rd Readiness
	if code := httpJSON(t, base+"healthz", nil); code != http.StatusOK {
		t.Fatalf("/healthz after start: %d, want 200", code)
	}
	if code := httpJSON(t, base+"readyz", &rd); code != http.StatusOK || !rd.Ready || len(rd.Reasons) != 0 {
		t.Fatalf("/readyz after start: %d %+v, want 200 and ready", code, rd)
	}

	// A first package makes the el/9 repositories exist.
	b1, err := testrpm.Build(helloSpec("ready-one"))
	if err != nil {
		t.Fatal(err)
	}
	dropFile(t, incoming, "ready-one.rpm", b1)
	waitFor(t, 2*time.Minute, "the first package", func() (bool, string) {
		st := daemonStatus(t, root)
		return st.Packages == 1 && st.InFlight == 0, fmt.Sprintf("%+v", st)
	})

	repodata := filepath.Join(root, "repo", "main", "staging", "el", "9", "x86_64", "repodata")
	chattr(t, "+i", repodata)
	immutable := true
	t.Cleanup(func() {
		if immutable {
			if out, err := exec.Command("chattr", "-i", repodata).CombinedOutput(); err != nil {
				t.Errorf("chattr -i: %v\n%s", err, out)
			}
		}
	})
	spec := helloSpec("ready-two")
	b2, err := testrpm.Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	dropFile(t, incoming, "ready-two.rpm", b2)
	waitFor(t, 2*time.Minute, "/readyz to report the failed publish", func() (bool, string) {
		rd = Readiness{}
		code := httpJSON(t, base+"readyz", &rd)
		for _, why := range rd.Reasons {
			if why.Check == "publish" && why.Dir == "main/staging/el/9/x86_64" {
				return code == http.StatusServiceUnavailable && !rd.Ready, fmt.Sprintf("%d %+v", code, rd)
			}
		}
		return false, fmt.Sprintf("%d %+v", code, rd)
	})
	for _, why := range rd.Reasons {
		if why.Check == "publish" && (!strings.Contains(why.Message, "publishing failed") || strings.Contains(why.Message, root)) {
			t.Errorf("publish reason says %q: want the failure, without the root's path", why.Message)
		}
	}
	if code := httpJSON(t, base+"healthz", nil); code != http.StatusOK {
		t.Errorf("/healthz while a publish fails: %d, want 200 (the process serves)", code)
	}
	m := scrapeMetrics(t, base)
	if v := m.must(t, "repoctl_publish_failures_total", map[string]string{"repo": "main", "channel": "staging"}); v < 1 {
		t.Errorf("repoctl_publish_failures_total{main,staging} = %v, want at least 1", v)
	}
	if v := m.must(t, "repoctl_ready", nil); v != 0 {
		t.Errorf("repoctl_ready = %v while a publish fails, want 0", v)
	}
	if a, _, r := ingestCounts(t, m); a != 1 || r != 0 {
		t.Errorf("a failed publish counted as an outcome: added=%v rejected=%v, want 1 0", a, r)
	}

	chattr(t, "-i", repodata)
	immutable = false
	waitFor(t, 3*time.Minute, "/readyz to recover", func() (bool, string) {
		rd = Readiness{}
		code := httpJSON(t, base+"readyz", &rd)
		return code == http.StatusOK && rd.Ready, fmt.Sprintf("%d %+v", code, rd)
	})
	pk, err := repodataPackages(filepath.Dir(repodata))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := pk["ready-two-1.0-1.el9.x86_64"]; !ok {
		t.Errorf("after recovery the repodata lacks ready-two: %v", pk)
	}
	// /readyz skips the journal check while a batch holds the change lock
	// (so it does not flap), and the retried batch publishes before it
	// records: the record follows the publish.
	waitFor(t, time.Minute, "the retried batch to be recorded", func() (bool, string) {
		st := daemonStatus(t, root)
		a, _, _ := ingestCounts(t, scrapeMetrics(t, base))
		return st.InFlight == 0 && st.Dirty == 0 && a == 2, fmt.Sprintf("in flight %d, dirty %d, added %v (want 0, 0, 2)", st.InFlight, st.Dirty, a)
	})
}

// Files named like the endpoints in the served tree never stand in for
// them, by any spelling of the path.
func TestOpsPathsNotShadowedByTree(t *testing.T) {
	root, base := newTestRoot(t, metricsTestConfig)
	startDaemon(t, root)
	for _, n := range []string{"metrics", "healthz", "readyz"} {
		if err := os.WriteFile(filepath.Join(root, "repo", n), []byte("shadow\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"metrics", "healthz", "readyz", "./metrics", "main/../readyz"} {
		req, err := http.NewRequest(http.MethodGet, base+p, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Opaque = "/" + p // sent as written, not cleaned by the client
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if err := resp.Body.Close(); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(body), "shadow") {
			t.Errorf("GET /%s served the file from the tree: %s", p, body)
		}
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /%s: %s", p, resp.Status)
		}
	}
	// The endpoints take GET and HEAD only, as the tree does.
	resp, err := http.Post(base+"readyz", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz: %s, want 405", resp.Status)
	}
}

// [metrics] listen moves the three endpoints to their own address; the
// HTTP listener then serves the tree alone.
func TestMetricsOwnListener(t *testing.T) {
	port := freePort(t)
	root, base := newTestRoot(t, metricsTestConfig+fmt.Sprintf("[metrics]\nlisten = \"127.0.0.1:%d\"\n", port))
	startDaemon(t, root)
	ops := fmt.Sprintf("http://127.0.0.1:%d/", port)
	s := scrapeMetrics(t, ops)
	if _, ok := s.value("repoctl_ingest_packages_total", nil); !ok {
		t.Error("no repoctl metrics on the metrics listener")
	}
	var rd Readiness
	if code := httpJSON(t, ops+"readyz", &rd); code != http.StatusOK || !rd.Ready {
		t.Errorf("/readyz on the metrics listener: %d %+v", code, rd)
	}
	for _, p := range []string{"metrics", "healthz", "readyz"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		if err := resp.Body.Close(); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET /%s on the HTTP listener with [metrics] listen set: %s, want 404", p, resp.Status)
		}
	}
	resp, err := http.Get(base + PublicKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the tree is not served beside a metrics listener: %s", resp.Status)
	}
}

func TestMetricsListenConfig(t *testing.T) {
	for _, c := range []struct {
		listen string
		ok     bool
	}{
		{"", true}, {"off", true}, {"127.0.0.1:9464", true}, {"[::1]:9464", true}, {":9464", true},
		{"9464", false}, {"127.0.0.1", false}, {"http://127.0.0.1:9464/", false},
	} {
		root := t.TempDir()
		cfg := fmt.Sprintf("[metrics]\nlisten = %q\n", c.listen)
		if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadConfig(root, "")
		if (err == nil) != c.ok {
			t.Errorf("metrics.listen %q: err %v, want ok=%v", c.listen, err, c.ok)
		}
	}
}

// Rollout steps recorded through the socket are counted by step and
// result; a phase name a client made up does not become a label.
func TestRolloutStepMetrics(t *testing.T) {
	root, _ := newTestRoot(t, metricsTestConfig)
	reg, pm, err := newDaemonRegistry()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(context.Background(), root, WithMetrics(pm))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, e := range []RolloutEvent{
		{Kind: "step-done", Rollout: "r1", Phase: "update", Host: "a"},
		{Kind: "step-done", Rollout: "r1", Phase: "restart web", Host: "a"},
		{Kind: "step-failed", Rollout: "r1", Phase: "restart web", Host: "b"},
		{Kind: "step-done", Rollout: "r1", Phase: "rollback downgrade", Host: "a"},
		{Kind: "step-done", Rollout: "r1", Phase: "made-up-phase-x1y2", Host: "a"},
		{Kind: "rollout-started", Rollout: "r1"},
	} {
		if err := r.RecordRollout(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "repoctl_rollout_steps_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			got[l["step"]+"/"+l["result"]] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{"update/ok": 1, "restart/ok": 1, "restart/failed": 1, "rollback-downgrade/ok": 1, "other/ok": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rollout step counters %v, want %v", got, want)
	}
}

// Readiness counts a backlog in the store only while no change runs (a
// batch journals its own files), and a failed publish until that
// directory publishes again.
func TestReadinessReasons(t *testing.T) {
	root, _ := newTestRoot(t, metricsTestConfig)
	r, err := Open(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	checks := func() string {
		rd := r.Readiness()
		var cs []string
		for _, why := range rd.Reasons {
			cs = append(cs, why.Check+":"+why.Dir)
		}
		if rd.Ready != (len(cs) == 0) {
			t.Errorf("Ready=%v with reasons %v", rd.Ready, cs)
		}
		return strings.Join(cs, " ")
	}
	if got := checks(); got != "" {
		t.Fatalf("fresh root not ready: %s", got)
	}
	ready := make(chan struct{})
	if rd := daemonReadiness(r, ready)(); rd.Ready || len(rd.Reasons) != 1 || rd.Reasons[0].Check != "starting" {
		t.Errorf("daemon before its journal is resumed: %+v, want starting", rd)
	}
	close(ready)
	if rd := daemonReadiness(r, ready)(); !rd.Ready {
		t.Errorf("daemon after resume: %+v, want ready", rd)
	}
	if err := r.st.db.Update(func(tx kv.Tx) error { return markDirty(tx, []string{"main/prod/el/9/x86_64"}) }); err != nil {
		t.Fatal(err)
	}
	if got := checks(); got != "dirty:" {
		t.Errorf("with a dirty directory: %q, want dirty", got)
	}
	r.mu.Lock() // a change in progress owns what it marked
	got := checks()
	r.mu.Unlock()
	if got != "" {
		t.Errorf("while a change runs: %q, want ready", got)
	}
	if err := r.st.db.Update(func(tx kv.Tx) error { return tx.Bucket(bucketDirty).Delete([]byte("main/prod/el/9/x86_64")) }); err != nil {
		t.Fatal(err)
	}
	r.observePublish("main/staging/el/9/x86_64", time.Millisecond, errors.New("disk on fire"))
	r.observePublish("main/staging/el/9/aarch64", time.Millisecond, nil)
	r.mu.Lock()
	got = checks()
	r.mu.Unlock()
	if got != "publish:main/staging/el/9/x86_64" {
		t.Errorf("after a failed publish, while a change runs: %q, want the failed directory", got)
	}
	if why := r.Readiness().Reasons; len(why) != 1 || !strings.Contains(why[0].Message, "disk on fire") || why[0].Since == nil {
		t.Errorf("publish reason %+v lacks the error or its time", why)
	}
	r.observePublish("main/staging/el/9/x86_64", time.Millisecond, nil)
	if got := checks(); got != "" {
		t.Errorf("after the directory published again: %q, want ready", got)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if got := checks(); got != "closed:" {
		t.Errorf("closed store: %q, want closed", got)
	}
}
