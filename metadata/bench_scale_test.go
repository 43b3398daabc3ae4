package metadata

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// scalePackages is issue 13's size: Copr and internal mirrors run to the
// hundreds of thousands of packages.
const scalePackages = 100000

// BenchmarkScaleCreateRepo100k: `repoctl createrepo` against createrepo_c
// on 100,000 small packages, one run each (createrepo_c takes minutes at
// this size), gz for both: a full run, then --update after one new
// package, then (ours) --update --skip-stat; wall, CPU and peak RSS of
// each.
func BenchmarkScaleCreateRepo100k(b *testing.B) {
	if _, err := exec.LookPath("createrepo_c"); err != nil {
		b.Fatalf("createrepo_c is required: %v", err)
	}
	corpus := benchCorpus(b, scalePackages)
	bin := buildRepoctl(b)
	for range b.N {
		oursDir, theirsDir := linkCorpus(b, corpus), linkCorpus(b, corpus)
		var full, fullC best
		full.add(runProc(b, bin, "createrepo", "-q", "--compress-type", "gz", oursDir))
		fullC.add(runProc(b, "createrepo_c", "-q", "--no-database", theirsDir))
		for _, d := range []string{oursDir, theirsDir} {
			if _, err := testrpm.Write(d, testrpm.Small(scalePackages)); err != nil {
				b.Fatal(err)
			}
		}
		var upd, updC, skip best
		upd.add(runProc(b, bin, "createrepo", "-q", "--compress-type", "gz", "--update", oursDir))
		updC.add(runProc(b, "createrepo_c", "-q", "--no-database", "--update", theirsDir))
		if _, err := testrpm.Write(oursDir, testrpm.Small(scalePackages+1)); err != nil {
			b.Fatal(err)
		}
		skip.add(runProc(b, bin, "createrepo", "-q", "--compress-type", "gz", "--update", "--skip-stat", oursDir))
		b.ReportMetric(full.wall.Seconds(), "full-repoctl-s")
		b.ReportMetric(fullC.wall.Seconds(), "full-createrepo_c-s")
		b.ReportMetric(float64(full.maxRSS)/(1<<20), "full-repoctl-maxrss-MB")
		b.ReportMetric(float64(fullC.maxRSS)/(1<<20), "full-createrepo_c-maxrss-MB")
		b.ReportMetric(upd.wall.Seconds(), "update1-repoctl-s")
		b.ReportMetric(updC.wall.Seconds(), "update1-createrepo_c-s")
		b.ReportMetric(float64(upd.maxRSS)/(1<<20), "update1-repoctl-maxrss-MB")
		b.ReportMetric(float64(updC.maxRSS)/(1<<20), "update1-createrepo_c-maxrss-MB")
		b.ReportMetric(skip.wall.Seconds(), "update1-skip-stat-repoctl-s")
		b.ReportMetric(full.wall.Seconds()/fullC.wall.Seconds(), "full-ratio")
		b.ReportMetric(upd.wall.Seconds()/updC.wall.Seconds(), "update1-ratio")
		b.ReportMetric(0, "ns/op")
		b.Logf("100k: full %v / createrepo_c %v (ratio %.3f, peak %d / %d MB); --update +1 %v / %v (ratio %.3f, peak %d / %d MB); --update --skip-stat +1 %v; load %s",
			full.wall, fullC.wall, full.wall.Seconds()/fullC.wall.Seconds(), full.maxRSS>>20, fullC.maxRSS>>20,
			upd.wall, updC.wall, upd.wall.Seconds()/updC.wall.Seconds(), upd.maxRSS>>20, updC.maxRSS>>20, skip.wall, loadAvg())
	}
}

// BenchmarkScalePublishState100k: Publish of 100,000 packages' entries
// (read once from the corpus) after one new package, with a PublishState
// (what the daemon does) and without (every block key rehashed and every
// block fetched from the cache), zstd, with a block cache. With
// REPOCTL_BENCH_PROFILE=DIR, a CPU profile of the stateful publishes goes
// to DIR/publish-state-cpu.pprof.
func BenchmarkScalePublishState100k(b *testing.B) {
	corpus := benchCorpus(b, scalePackages)
	ctx := context.Background()
	entries := make([]Entry, scalePackages+20)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.NumCPU())
	for i := range entries {
		g.Go(func() error {
			name := testrpm.Small(i).FileName()
			p := filepath.Join(corpus, name)
			if i >= scalePackages {
				// A new release of an existing package: it sorts
				// after its predecessor, somewhere in the middle.
				sp := testrpm.Small((i*7919 + 13) % scalePackages)
				sp.Release = "2.el9"
				name = sp.FileName()
				var err error
				if p, err = testrpm.Write(b.TempDir(), sp); err != nil {
					return err
				}
			}
			e, err := readEntry(gctx, scannedFile{href: name, dir: filepath.Dir(p)}, RenderOptions{})
			if err == nil {
				entries[i] = *e
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	cache, err := NewDirCache(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	state := NewPublishState(b.TempDir())
	t0 := time.Now()
	if _, err := Publish(ctx, dir, entries[:scalePackages], WithBlockCache(cache), WithState(state)); err != nil {
		b.Fatal(err)
	}
	cold := time.Since(t0)
	// As the daemon does: packages the state knows are given light.
	light := func(n int) []Entry {
		out := slices.Clone(entries[:n])
		for i := range out {
			if state.Knows(&out[i]) {
				out[i].Primary, out[i].Filelists, out[i].Other = nil, nil, nil
			}
		}
		return out
	}
	timed := func(n int, opts ...PublishOption) time.Duration {
		es := entries[:n]
		if len(opts) > 0 {
			es = light(n)
		}
		t0 := time.Now()
		if _, err := Publish(ctx, dir, es, append([]PublishOption{WithBlockCache(cache)}, opts...)...); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	var stateless, withState []time.Duration
	n := scalePackages
	for range 3 {
		n++
		stateless = append(stateless, timed(n))
	}
	timed(n, WithState(state)) // the state learns the stateless publishes' packages
	var prof *os.File
	if d := os.Getenv("REPOCTL_BENCH_PROFILE"); d != "" {
		if prof, err = os.Create(filepath.Join(d, "publish-state-cpu.pprof")); err != nil {
			b.Fatal(err)
		}
		pprof.StartCPUProfile(prof)
	}
	for range 10 {
		n++
		time.Sleep(300 * time.Millisecond) // the speculation runs between drops
		withState = append(withState, timed(n, WithState(state)))
	}
	if prof != nil {
		pprof.StopCPUProfile()
		prof.Close()
	}
	slices.Sort(stateless)
	slices.Sort(withState)
	b.ReportMetric(float64(cold.Milliseconds()), "cold-ms")
	b.ReportMetric(float64(stateless[1].Milliseconds()), "stateless-p50-ms")
	b.ReportMetric(float64(withState[5].Milliseconds()), "state-p50-ms")
	b.ReportMetric(0, "ns/op")
	b.Logf("+1 at 100k: stateless %v, with state %v (p50 of %d, max %v), first %v", stateless[1], withState[5], len(withState), withState[9], cold)
}
