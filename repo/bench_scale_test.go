package repo

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// scalePackages is the size of the scale benchmarks' repository (issue 13:
// Copr and internal mirrors run to the hundreds of thousands).
const scalePackages = 100000

// scaleCorpus returns the directory of n Small packages that metadata's
// benchmarks use too (same name, same ".complete" marker), generating it
// once under os.TempDir().
func scaleCorpus(b *testing.B, n int) string {
	b.Helper()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("repoctl-bench-corpus-%d", n))
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir
	}
	tmp, err := os.MkdirTemp(os.TempDir(), fmt.Sprintf("repoctl-bench-corpus-%d.tmp-", n))
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	if _, err := testrpm.Corpus(context.Background(), tmp, n); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		b.Fatal(err)
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, ".complete")); serr != nil {
			b.Fatal(err)
		}
	}
	return dir
}

// scaleSourceKey is benchSourceKey without config.go: the seeded root has
// no config file, and reseeding 100,000 packages for every new config key
// costs a quarter of an hour.
func scaleSourceKey(b *testing.B) string {
	h := sha256.New()
	fmt.Fprintf(h, "v%d\n", benchSeedVersion)
	for _, f := range []string{"store.go", "service.go", "../metadata/entry.go", "../go.sum"} {
		body, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(h, "%s %d\n", f, len(body))
		h.Write(body)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// seededScaleRoot returns a ROOT holding n published packages in
// main/staging/el/9/x86_64, signed with an ed25519 key (RSA-4096 would
// make seeding 100,000 packages take a quarter of an hour; what is
// measured after seeding signs one package at a time, and the repodata
// do not depend on the algorithm). Cached under os.TempDir(); callers
// clone it (cloneRoot).
func seededScaleRoot(b *testing.B, n int) string {
	b.Helper()
	base := filepath.Join(os.TempDir(), "repoctl-bench-cache")
	cache := filepath.Join(base, fmt.Sprintf("scale-%d-%s", n, scaleSourceKey(b)))
	root := filepath.Join(cache, "root")
	if _, err := os.Stat(filepath.Join(cache, "complete")); err == nil {
		return root
	}
	old, _ := filepath.Glob(filepath.Join(base, fmt.Sprintf("scale-%d-*", n)))
	for _, o := range old {
		os.RemoveAll(o)
	}
	corpus := scaleCorpus(b, n)
	start := time.Now()
	stage := filepath.Join(cache, "stage")
	if err := os.MkdirAll(stage, 0o755); err != nil {
		b.Fatal(err)
	}
	paths := make([]string, n)
	for i := range paths {
		name := testrpm.Small(i).FileName()
		paths[i] = filepath.Join(stage, name)
		if err := os.Link(filepath.Join(corpus, name), paths[i]); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	r, err := Open(ctx, root, WithKeyAlgo("ed25519"))
	if err != nil {
		b.Fatal(err)
	}
	const batch = 5000
	for i := 0; i < len(paths); i += batch {
		// The daemon's way with a burst: while more wait, batches record
		// and leave the publish to a later one (coalesced publishes).
		end := min(i+batch, len(paths))
		drop := &dropBatch{files: map[string]dropSeen{}, more: len(paths) - end}
		res, err := r.Ingest(ctx, paths[i:end], AddOptions{Move: true, Who: "bench-seed", drop: drop})
		if err != nil {
			r.Close()
			b.Fatalf("seeding: %v", err)
		}
		for _, x := range res {
			if x.Action != ActionAdded {
				r.Close()
				b.Fatalf("seeding %s: %s %s", x.Path, x.Action, x.Reason)
			}
		}
	}
	if err := r.Close(); err != nil {
		b.Fatal(err)
	}
	os.RemoveAll(stage)
	if err := os.WriteFile(filepath.Join(cache, "complete"), nil, 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d packages into %s in %v (cached for later runs)", n, root, time.Since(start).Round(time.Second))
	return root
}

// newVersion is a new release of an existing package of the seeded
// repository (chosen by i, spread over it): it sorts right after its
// predecessor, at a random place, as most real updates do.
func newVersion(i int) testrpm.Spec {
	s := testrpm.Small((i*7919 + 13) % scalePackages)
	s.Release = fmt.Sprintf("%d.el9", 2+i/scalePackages)
	return s
}

// cloneRoot copies a seeded root cheaply: package files and repodata are
// hard links (repoctl never changes a published file in place: it writes
// new ones and renames), the store, keys and lock file are real copies.
func cloneRoot(b *testing.B, seed string) string {
	b.Helper()
	root := filepath.Join(b.TempDir(), "root")
	if out, err := exec.Command("cp", "-al", seed, root).CombinedOutput(); err != nil {
		b.Fatalf("cloning the seeded root: %v\n%s", err, out)
	}
	// The lock file too: a hard link would share one flock with every
	// other clone of the seed (another benchmark's daemon).
	for _, p := range []string{"repoctl.db", "keys", "repoctl.lock"} {
		if err := os.RemoveAll(filepath.Join(root, p)); err != nil {
			b.Fatal(err)
		}
		if out, err := exec.Command("cp", "-a", filepath.Join(seed, p), filepath.Join(root, p)).CombinedOutput(); err != nil {
			b.Fatalf("copying %s: %v\n%s", p, err, out)
		}
	}
	return root
}

// tookHandler collects the "took" of every "published" log record.
type tookHandler struct {
	mu    sync.Mutex
	took  []time.Duration
	notes []string // the publish state restored, or not
}

func (h *tookHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *tookHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "publish state") {
		h.mu.Lock()
		h.notes = append(h.notes, r.Message)
		h.mu.Unlock()
	}
	if r.Message != "published" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "took" {
			h.mu.Lock()
			h.took = append(h.took, a.Value.Duration())
			h.mu.Unlock()
		}
		return true
	})
	return nil
}
func (h *tookHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *tookHandler) WithGroup(string) slog.Handler      { return h }

// BenchmarkScalePublish100k: one package at a time added (validate, sign,
// place, publish, record) into a directory of 100,000, in process. The
// first add after Open (reported as cold-publish) restores the publish
// state saved when the seeding process closed; then a few stateless
// publishes, and a first one with the state again (it catches up on
// them); the next ones are what a running daemon does. With
// REPOCTL_BENCH_PROFILE=DIR, CPU and heap profiles of the warm adds are
// written to DIR/publish-cpu.pprof and DIR/publish-heap.pprof.
func BenchmarkScalePublish100k(b *testing.B) {
	root := cloneRoot(b, seededScaleRoot(b, scalePackages))
	stage := filepath.Join(b.TempDir(), "stage")
	if err := os.MkdirAll(stage, 0o755); err != nil {
		b.Fatal(err)
	}
	const adds, stateless = 11, 4
	var todo []string
	for i := range adds*b.N + stateless + 1 {
		p, err := testrpm.Write(stage, newVersion(i))
		if err != nil {
			b.Fatal(err)
		}
		todo = append(todo, p)
	}
	h := &tookHandler{}
	ctx := context.Background()
	r, err := Open(ctx, root, WithLogger(slog.New(h)))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	add := func(p string) time.Duration {
		t0 := time.Now()
		res, err := r.Add(ctx, []string{p}, AddOptions{Move: true})
		if err != nil || len(res) != 1 || res[0].Action != ActionAdded {
			b.Fatalf("adding %s: %v %+v", p, err, res)
		}
		return time.Since(t0)
	}
	b.ResetTimer()
	// The first publish after Open: it restores the publish state the
	// seeding process saved at Close, if that still matches.
	add(todo[0])
	h.mu.Lock()
	cold := h.took[0]
	h.took = nil
	h.mu.Unlock()
	// Before PublishState: every publish from scratch.
	r.noPubState = true
	var before []time.Duration
	for _, p := range todo[1 : 1+stateless] {
		add(p)
	}
	h.mu.Lock()
	before = slices.Clone(h.took)
	h.took = nil
	h.mu.Unlock()
	todo = todo[1+stateless:]
	r.noPubState = false
	add(todo[0])
	var prof *os.File
	if d := os.Getenv("REPOCTL_BENCH_PROFILE"); d != "" {
		if prof, err = os.Create(filepath.Join(d, "publish-cpu.pprof")); err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(prof); err != nil {
			b.Fatal(err)
		}
	}
	var addT []time.Duration
	for _, p := range todo[1:] {
		// Drops come apart: the publish state's speculation for the
		// next add (metadata/midstate.go) runs in between.
		time.Sleep(300 * time.Millisecond)
		addT = append(addT, add(p))
	}
	b.StopTimer()
	if prof != nil {
		pprof.StopCPUProfile()
		prof.Close()
		f, err := os.Create(filepath.Join(os.Getenv("REPOCTL_BENCH_PROFILE"), "publish-heap.pprof"))
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		pprof.WriteHeapProfile(f)
		f.Close()
	}
	h.mu.Lock()
	took := slices.Clone(h.took)
	h.mu.Unlock()
	if len(took) != len(todo) {
		b.Fatalf("%d publishes logged for %d adds", len(took), len(todo))
	}
	b.Logf("publish state: %q", h.notes)
	var ms0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	pub := took[1:]
	b.ReportMetric(ms(percentile(before, 0.5)), "stateless-publish-p50-ms")
	b.ReportMetric(ms(cold), "cold-publish-ms")
	b.ReportMetric(ms(percentile(pub, 0.5)), "publish-p50-ms")
	b.ReportMetric(ms(percentile(pub, 0.9)), "publish-p90-ms")
	b.ReportMetric(ms(percentile(addT, 0.5)), "add-p50-ms")
	b.ReportMetric(float64(ms0.HeapInuse)/(1<<20), "heap-inuse-MB")
	b.ReportMetric(0, "ns/op")
	b.Logf("+1 into %d packages: publish p50 %v p90 %v (stateless p50 %v; first after Open %v), whole add p50 %v, heap in use %d MB",
		scalePackages, percentile(pub, 0.5).Round(time.Millisecond), percentile(pub, 0.9).Round(time.Millisecond),
		percentile(before, 0.5).Round(time.Millisecond),
		cold.Round(time.Millisecond), percentile(addT, 0.5).Round(time.Millisecond), ms0.HeapInuse>>20)
}

// procStatus reads VmRSS, VmHWM and RssAnon (bytes) of a process.
func procStatus(pid int) (rss, hwm, anon int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			rss = v << 10
		case "VmHWM:":
			hwm = v << 10
		case "RssAnon:":
			anon = v << 10
		}
	}
	return rss, hwm, anon, sc.Err()
}

// BenchmarkScaleDaemon100k: the daemon over a 100,000-package directory
// (the seeded root: ed25519 key), 20 single drops into incoming/, each
// timed until repomd.xml → primary lists it; the daemon's own publish
// times, and its memory (VmRSS, VmHWM, RssAnon) once it holds them all.
func BenchmarkScaleDaemon100k(b *testing.B) {
	root := cloneRoot(b, seededScaleRoot(b, scalePackages))
	port := freePort(b)
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(fmt.Sprintf("[http]\nlisten = \"127.0.0.1:%d\"\n", port)), 0o644); err != nil {
		b.Fatal(err)
	}
	repoDir := filepath.Join(root, "repo", "main", "staging", "el", "9", "x86_64")
	stage := filepath.Join(root, "stage")
	if err := os.Mkdir(stage, 0o755); err != nil {
		b.Fatal(err)
	}
	drops := 20 * b.N
	var todo []string
	for i := range drops {
		p, err := testrpm.Write(stage, newVersion(i))
		if err != nil {
			b.Fatal(err)
		}
		todo = append(todo, p)
	}
	// Debug: the daemon's "ingest stages" and "batch handled" records
	// break each drop's latency down.
	d := startDaemon(b, root, "--log-level", "debug")
	incoming := filepath.Join(root, "incoming")
	repomdPath := filepath.Join(repoDir, "repodata", "repomd.xml")
	b.ResetTimer()
	var lat []time.Duration
	for i, staged := range todo {
		name := filepath.Base(staged)
		if i > 0 {
			// Single drops come apart, as in BenchmarkScalePublish100k:
			// the daemon's speculation for the next add (and the record
			// of the last one) runs in between. A burst is
			// BenchmarkScaleIngest100k's.
			time.Sleep(500 * time.Millisecond)
		}
		prev, err := os.ReadFile(repomdPath)
		if err != nil {
			b.Fatal(err)
		}
		part := filepath.Join(incoming, "."+name+".part")
		if err := os.Rename(staged, part); err != nil {
			b.Fatal(err)
		}
		now := time.Now()
		if err := os.Chtimes(part, now, now); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := os.Rename(part, filepath.Join(incoming, name)); err != nil {
			b.Fatal(err)
		}
		deadline := t0.Add(5 * time.Minute)
		for {
			cur, err := os.ReadFile(repomdPath)
			if err == nil && !bytes.Equal(cur, prev) {
				// Visible from the moment this repomd.xml is read, if its
				// primary lists the drop; decompressing 100,000 packages
				// to check is the poller's time, not the daemon's.
				seen := time.Since(t0)
				ok, err := primaryLists(repoDir, cur, name)
				if err != nil {
					b.Fatalf("reading published repodata: %v", err)
				}
				if ok {
					lat = append(lat, seen)
					break
				}
				prev = cur
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s not visible after 5 minutes", name)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	b.StopTimer()
	rss, hwm, anon, err := procStatus(d.cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	d.stop()
	var pub []time.Duration
	stages := map[string][]time.Duration{}
	for _, line := range strings.Split(d.log(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		num := func(k string) time.Duration { f, _ := m[k].(float64); return time.Duration(f) }
		switch m["msg"] {
		case "published":
			pub = append(pub, num("took"))
		case "batch handled":
			stages["watcher-wait"] = append(stages["watcher-wait"], num("ready_for"))
		case "ingest stages":
			for k, v := range m {
				str, ok := v.(string)
				if !ok || k == "time" || k == "level" || k == "msg" {
					continue
				}
				dur, err := time.ParseDuration(str)
				if err != nil {
					continue
				}
				stages[k] = append(stages[k], dur)
			}
		}
		if msg, _ := m["msg"].(string); strings.Contains(msg, "publish state") {
			b.Log(line) // restored, or why not
		}
	}
	var breakdown []string
	for _, k := range []string{"watcher-wait", "resume", "journal-received", "receive", "read", "validate", "sign",
		"reread", "syncfs", "journal-signed", "place", "publish", "record", "after", "took"} {
		if v := stages[k]; len(v) > 0 {
			breakdown = append(breakdown, fmt.Sprintf("%s %v", k, percentile(v, 0.5).Round(100*time.Microsecond)))
		}
	}
	b.Logf("p50 per stage of a drop's batch: %s", strings.Join(breakdown, ", "))
	round := func(ds []time.Duration) []time.Duration {
		out := make([]time.Duration, len(ds))
		for i, d := range ds {
			out[i] = d.Round(time.Millisecond)
		}
		return out
	}
	b.Logf("each drop: visible after %v; batch took %v; publish %v; record %v", round(lat), round(stages["took"]), round(stages["publish"]), round(stages["record"]))
	if len(pub) < 2 {
		b.Fatalf("daemon logged %d publishes", len(pub))
	}
	warm := pub[1:] // the first after start builds the directory's state
	b.ReportMetric(ms(percentile(lat, 0.5)), "drop-visible-p50-ms")
	b.ReportMetric(ms(percentile(lat, 0.9)), "drop-visible-p90-ms")
	b.ReportMetric(ms(percentile(warm, 0.5)), "publish-p50-ms")
	b.ReportMetric(ms(pub[0]), "first-publish-ms")
	b.ReportMetric(float64(rss)/(1<<20), "daemon-rss-MB")
	b.ReportMetric(float64(hwm)/(1<<20), "daemon-hwm-MB")
	b.ReportMetric(float64(anon)/(1<<20), "daemon-rss-anon-MB")
	b.ReportMetric(0, "ns/op")
	b.Logf("daemon over %d packages, %d drops: drop→visible p50 %v p90 %v; publish p50 %v (first after start %v); VmRSS %d MB, VmHWM %d MB, RssAnon %d MB",
		scalePackages, len(lat), percentile(lat, 0.5).Round(time.Millisecond), percentile(lat, 0.9).Round(time.Millisecond),
		percentile(warm, 0.5).Round(time.Millisecond), pub[0].Round(time.Millisecond), rss>>20, hwm>>20, anon>>20)
}
