package repo

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// benchCorpus returns n Small packages, generated once per size under
// os.TempDir(). The directory is shared with metadata's benchmarks (same
// files), so it is generated in a private temp dir and renamed into place;
// a concurrent generator winning the rename is fine.
func benchCorpus(b *testing.B, n int) []string {
	b.Helper()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("repoctl-bench-corpus-%d", n))
	complete := func() bool {
		ents, err := os.ReadDir(dir)
		return err == nil && len(ents) == n
	}
	if !complete() {
		if _, err := os.Stat(dir); err == nil {
			// Incomplete leftover: move it aside rather than delete what
			// another process may be reading.
			if err := os.Rename(dir, fmt.Sprintf("%s.stale-%d", dir, os.Getpid())); err != nil {
				b.Fatal(err)
			}
		}
		tmp, err := os.MkdirTemp(os.TempDir(), "repoctl-bench-corpus-gen-")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := testrpm.Corpus(context.Background(), tmp, n); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(tmp, dir); err != nil {
			if err := os.RemoveAll(tmp); err != nil {
				b.Fatal(err)
			}
			if !complete() {
				b.Fatalf("bench corpus %s: %v", dir, err)
			}
		}
	}
	paths := make([]string, n)
	for i := range paths {
		paths[i] = filepath.Join(dir, testrpm.Small(i).FileName())
	}
	return paths
}

// BenchmarkAddOneTo10k measures `repoctl add` of one package (validate,
// sign, place, publish with repomd.xml.asc, record) into a repository of
// 10,000 packages, against the runbook's metadata step alone, createrepo_c
// --update on the same 10,001 files, in the same run.
func BenchmarkAddOneTo10k(b *testing.B) {
	const n = 10000
	needTools(b, "createrepo_c")
	ctx := context.Background()
	paths := benchCorpus(b, n)
	root := filepath.Join(b.TempDir(), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte("[signing]\nalgo = \"ed25519\"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	r, err := Open(ctx, root)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	start := time.Now()
	if _, err := r.Add(ctx, paths, AddOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Logf("initial batch of %d: %v", n, time.Since(start))
	in := b.TempDir()
	var ours, peer []time.Duration
	dir := filepath.Join(root, "repo/main/staging/el/9/x86_64")
	b.ResetTimer()
	for i := 0; i < max(b.N, 5); i++ {
		p, err := testrpm.Write(in, testrpm.Small(n+i))
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		last := t0
		var stages []string
		failpoint = func(s string) error {
			stages = append(stages, fmt.Sprintf("%s +%v", s, time.Since(last).Round(time.Millisecond/10)))
			last = time.Now()
			return nil
		}
		res, err := r.Add(ctx, []string{p}, AddOptions{})
		failpoint = nil
		ours = append(ours, time.Since(t0))
		b.Logf("add %d: %v (%v, recorded +%v)", i, time.Since(t0).Round(time.Millisecond/10), stages, time.Since(last).Round(time.Millisecond/10))
		if err != nil || res[0].Action != ActionAdded {
			b.Fatalf("%+v %v", res, err)
		}
		// The peer: createrepo_c --update on a copy of the same tree.
		peerDir := filepath.Join(b.TempDir(), "peer")
		if i == 0 {
			if out, err := exec.Command("cp", "-al", dir, peerDir).CombinedOutput(); err != nil {
				b.Fatalf("cp: %v %s", err, out)
			}
			if err := os.RemoveAll(filepath.Join(peerDir, "repodata")); err != nil {
				b.Fatal(err)
			}
			if out, err := exec.Command("createrepo_c", "-q", peerDir).CombinedOutput(); err != nil {
				b.Fatalf("createrepo_c: %v %s", err, out)
			}
			q, err := testrpm.Write(peerDir, testrpm.Small(2*n+i))
			if err != nil {
				b.Fatal(err)
			}
			_ = q
			t1 := time.Now()
			if out, err := exec.Command("createrepo_c", "-q", "--update", peerDir).CombinedOutput(); err != nil {
				b.Fatalf("createrepo_c --update: %v %s", err, out)
			}
			peer = append(peer, time.Since(t1))
		}
	}
	b.StopTimer()
	sort.Slice(ours, func(i, j int) bool { return ours[i] < ours[j] })
	p50 := ours[len(ours)/2]
	b.ReportMetric(p50.Seconds(), "repoctl-add-p50-s")
	b.ReportMetric(peer[0].Seconds(), "createrepo_c-update-s")
	b.ReportMetric(p50.Seconds()/peer[0].Seconds(), "ratio")
}
