package upgrade

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// BenchmarkRollout50Hosts rolls out over 50 real sshd hosts on 127.0.1.x in
// two groups, each step a cheap `sleep 0.2`. It reports the rollout's
// wall time for the steps (parallel-s) against the sum of every host's
// step time (serial-s, what a one-host-at-a-time runbook would take), and
// the mean step wall time against the mean slowest host of a step: with
// bounded parallel steps, a step costs about its slowest host, not the sum.
func BenchmarkRollout50Hosts(b *testing.B) {
	const n = 50
	var names, addrs []string
	for i := 0; i < n; i++ {
		names, addrs = append(names, fmt.Sprintf("app%02d", i+1)), append(addrs, fmt.Sprintf("127.0.1.%d", i+2))
	}
	lab := startSSHLab(b, names, addrs)
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") }))
	defer health.Close()
	c := lab.config(n/2, n/2)
	c.Concurrency = n
	step := "sleep 0.2"
	c.Commands = Commands{Clean: step, Update: step, Verify: step, Restart: step, HardRestart: step, Downgrade: step, Purge: step}
	c.Health = Health{URL: health.URL + "/{{.Host}}", ExpectStatus: 200, Retries: 1, Timeout: Duration{5 * time.Second}}
	inv, err := c.Resolve("")
	if err != nil {
		b.Fatal(err)
	}
	plan, err := NewPlan(inv, PlanRequest{NEVRA: "app-2.0-1.el9.x86_64"})
	if err != nil {
		b.Fatal(err)
	}
	var wall, serial, stepWall, slowest time.Duration
	steps := 0
	for i := 0; i < b.N; i++ {
		m, err := NewManager(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		r, err := m.Start(context.Background(), plan)
		if err != nil {
			b.Fatal(err)
		}
		wall += time.Since(start)
		r, err = m.Get(context.Background(), r.ID)
		if err != nil {
			b.Fatal(err)
		}
		type span struct {
			first, last time.Time
			max         time.Duration
		}
		phases := map[string]*span{}
		for _, s := range r.Steps {
			if strings.HasPrefix(s.Phase, "health") {
				continue
			}
			d := s.Finished.Sub(s.Started)
			serial += d
			sp := phases[s.Phase]
			if sp == nil {
				sp = &span{first: s.Started, last: s.Finished}
				phases[s.Phase] = sp
			}
			if s.Started.Before(sp.first) {
				sp.first = s.Started
			}
			if s.Finished.After(sp.last) {
				sp.last = s.Finished
			}
			sp.max = max(sp.max, d)
		}
		for _, sp := range phases {
			stepWall += sp.last.Sub(sp.first)
			slowest += sp.max
			steps++
		}
	}
	b.StopTimer()
	var parallel time.Duration
	parallel = stepWall
	b.ReportMetric(parallel.Seconds()/float64(b.N), "parallel-s")
	b.ReportMetric(serial.Seconds()/float64(b.N), "serial-s")
	b.ReportMetric(serial.Seconds()/parallel.Seconds(), "ratio")
	b.ReportMetric(stepWall.Seconds()/float64(steps), "step-s")
	b.ReportMetric(slowest.Seconds()/float64(steps), "slowest-host-s")
	b.ReportMetric(wall.Seconds()/float64(b.N), "rollout-s")
}
