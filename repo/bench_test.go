package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/repoctl/repoctl/internal/testrpm"
)

const benchRepoSize = 10000

// benchSeedVersion is bumped by hand when a seeded root of an older
// version can no longer be read or published by the current code.
const benchSeedVersion = 1

// benchSourceKey changes whenever the files that define what a seeded root
// holds (store layout, records, config, the per-package Entry) change, so a
// cached root is never read by code that no longer understands it. Other
// code (pipeline, daemon, publisher) may change freely: the bench drives
// the current code over the cached state.
func benchSourceKey(b *testing.B) string {
	h := sha256.New()
	fmt.Fprintf(h, "v%d\n", benchSeedVersion)
	for _, f := range []string{"store.go", "service.go", "config.go", "../metadata/entry.go", "../go.sum"} {
		body, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(h, "%s %d\n", f, len(body))
		h.Write(body)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// seededRoot returns a ROOT holding benchRepoSize signed and published
// packages in main/staging/el/9/x86_64. It is built once (about a minute:
// RSA-4096 signing dominates) and cached under os.TempDir(); callers copy
// it before use.
func seededRoot(b *testing.B) string {
	b.Helper()
	base := filepath.Join(os.TempDir(), "repoctl-bench-cache")
	cache := filepath.Join(base, fmt.Sprintf("dropvisible-%d-%s", benchRepoSize, benchSourceKey(b)))
	root := filepath.Join(cache, "root")
	if _, err := os.Stat(filepath.Join(cache, "complete")); err == nil {
		return root
	}
	// Stale caches of older code go.
	old, err := filepath.Glob(filepath.Join(base, fmt.Sprintf("dropvisible-%d-*", benchRepoSize)))
	if err != nil {
		b.Fatal(err)
	}
	for _, o := range old {
		if err := os.RemoveAll(o); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	corpus := filepath.Join(cache, "corpus")
	if err := os.MkdirAll(corpus, 0o755); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	paths, err := testrpm.Corpus(ctx, corpus, benchRepoSize)
	if err != nil {
		b.Fatal(err)
	}
	r, err := Open(ctx, root)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < len(paths); i += 1000 {
		res, err := r.Ingest(ctx, paths[i:min(i+1000, len(paths))], AddOptions{Move: true, Who: "bench-seed"})
		if err != nil {
			if err := r.Close(); err != nil {
				b.Fatal(err)
			}
			b.Fatalf("seeding: %v", err)
		}
		for _, x := range res {
			if x.Action != ActionAdded {
				if err := r.Close(); err != nil {
					b.Fatal(err)
				}
				b.Fatalf("seeding %s: %s %s", x.Path, x.Action, x.Reason)
			}
		}
	}
	if err := r.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.RemoveAll(corpus); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cache, "complete"), nil, 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d packages into %s in %v (cached for later runs)", benchRepoSize, root, time.Since(start).Round(time.Second))
	return root
}

// primaryLists reports whether the repodata of dir, read through the given
// repomd.xml bytes, lists href. It looks for the location element in the
// decompressed primary rather than parsing 10,000 packages of XML, so the
// poller stays cheap next to the daemon it measures.
func primaryLists(dir string, repomd []byte, href string) (bool, error) {
	i := bytes.Index(repomd, []byte(`<data type="primary">`))
	if i < 0 {
		return false, fmt.Errorf("repomd.xml has no primary")
	}
	rest := repomd[i:]
	j := bytes.Index(rest, []byte(`<location href="`))
	if j < 0 {
		return false, fmt.Errorf("primary has no location")
	}
	rest = rest[j+len(`<location href="`):]
	loc := string(rest[:bytes.IndexByte(rest, '"')])
	f, err := os.Open(filepath.Join(dir, loc))
	if err != nil {
		return false, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(loc, ".zst") {
		zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return false, err
		}
		defer zr.Close()
		r = zr
	}
	body, err := io.ReadAll(r)
	if err != nil {
		return false, err
	}
	return bytes.Contains(body, []byte(`<location href="`+href+`"/>`)), nil
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p+0.5)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkDropToVisible: a daemon over a 10,000-package repository; one
// package at a time is renamed into incoming/, and we time until
// repomd.xml → primary lists it. Side by side, the runbook's way for the
// same single-package add: cp into the directory + createrepo_c --update.
func BenchmarkDropToVisible(b *testing.B) {
	needTools(b, "createrepo_c", "cp")
	seed := seededRoot(b)
	root := filepath.Join(b.TempDir(), "root")
	if out, err := exec.Command("cp", "-a", seed, root).CombinedOutput(); err != nil {
		b.Fatalf("copying the seeded root: %v\n%s", err, out)
	}
	port := freePort(b)
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(fmt.Sprintf("[http]\nlisten = \"127.0.0.1:%d\"\n", port)), 0o644); err != nil {
		b.Fatal(err)
	}
	repoDir := filepath.Join(root, "repo", "main", "staging", "el", "9", "x86_64")
	pk, err := repodataPackages(repoDir)
	if err != nil || len(pk) != benchRepoSize {
		b.Fatalf("seeded repository has %d packages (%v), want %d", len(pk), err, benchRepoSize)
	}

	drops := 25 * b.N
	type drop struct{ name, staged string }
	stage := filepath.Join(root, "stage")
	if err := os.Mkdir(stage, 0o755); err != nil {
		b.Fatal(err)
	}
	var todo []drop
	for i := 0; i < drops+5; i++ {
		p, err := testrpm.Write(stage, testrpm.Small(benchRepoSize+i))
		if err != nil {
			b.Fatal(err)
		}
		todo = append(todo, drop{name: filepath.Base(p), staged: p})
	}
	d := startDaemon(b, root, "--log-level", "info")
	incoming := filepath.Join(root, "incoming")
	repomdPath := filepath.Join(repoDir, "repodata", "repomd.xml")

	b.ResetTimer()
	var lat []time.Duration
	for _, x := range todo[:drops] {
		prev, err := os.ReadFile(repomdPath)
		if err != nil {
			b.Fatal(err)
		}
		// Stage inside incoming/ under a partial name so the timed rename
		// is the same one an uploader does.
		part := filepath.Join(incoming, "."+x.name+".part")
		if err := os.Rename(x.staged, part); err != nil {
			b.Fatal(err)
		}
		// A fresh upload: the daemon must not get to skip the stability
		// check because of an old mtime.
		now := time.Now()
		if err := os.Chtimes(part, now, now); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := os.Rename(part, filepath.Join(incoming, x.name)); err != nil {
			b.Fatal(err)
		}
		deadline := t0.Add(time.Minute)
		for {
			cur, err := os.ReadFile(repomdPath)
			if err == nil && !bytes.Equal(cur, prev) {
				ok, err := primaryLists(repoDir, cur, x.name)
				if err != nil {
					b.Fatalf("reading published repodata: %v", err)
				}
				if ok {
					lat = append(lat, time.Since(t0))
					break
				}
				prev = cur
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s not visible after a minute", x.name)
			}
			time.Sleep(time.Millisecond)
		}
	}
	b.StopTimer()
	d.stop()
	p50, p90 := percentile(lat, 0.5), percentile(lat, 0.9)
	// The daemon's own account of each batch (validate, sign, place,
	// publish, record) separates the pipeline from watching and polling.
	var pipe []time.Duration
	for _, line := range strings.Split(d.log(), "\n") {
		var rec struct {
			Msg  string `json:"msg"`
			Took int64  `json:"took"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "ingest batch" {
			pipe = append(pipe, time.Duration(rec.Took))
		}
	}
	if len(pipe) == 0 {
		b.Fatal("daemon logged no ingest batch")
	}
	pipeP50 := percentile(pipe, 0.5)

	// The peer on the same 10,000 packages: cp + createrepo_c --update.
	peerDir := filepath.Join(b.TempDir(), "peer")
	if err := os.MkdirAll(peerDir, 0o755); err != nil {
		b.Fatal(err)
	}
	ents, err := os.ReadDir(repoDir)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".rpm") {
			if err := os.Link(filepath.Join(repoDir, e.Name()), filepath.Join(peerDir, e.Name())); err != nil {
				b.Fatal(err)
			}
		}
	}
	if out, err := exec.Command("createrepo_c", "--quiet", peerDir).CombinedOutput(); err != nil {
		b.Fatalf("createrepo_c: %v\n%s", err, out)
	}
	var peer []time.Duration
	for _, x := range todo[drops:] {
		t0 := time.Now()
		if out, err := exec.Command("cp", x.staged, peerDir+"/").CombinedOutput(); err != nil {
			b.Fatalf("cp: %v\n%s", err, out)
		}
		if out, err := exec.Command("createrepo_c", "--quiet", "--update", peerDir).CombinedOutput(); err != nil {
			b.Fatalf("createrepo_c --update: %v\n%s", err, out)
		}
		peer = append(peer, time.Since(t0))
	}
	peerP50 := percentile(peer, 0.5)
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(p90), "p90-ms")
	b.ReportMetric(ms(pipeP50), "pipeline-p50-ms")
	b.ReportMetric(ms(peerP50), "createrepo_c-p50-ms")
	b.ReportMetric(ms(p50)/ms(peerP50), "ratio")
	b.ReportMetric(0, "ns/op")
	b.Logf("drop-to-visible over %d packages, %d drops: p50 %v, p90 %v, max %v (pipeline p50 %v in %d batches); cp+createrepo_c --update p50 %v (%d runs); ratio %.2f",
		benchRepoSize, len(lat), p50.Round(time.Millisecond), p90.Round(time.Millisecond), slices.Max(lat).Round(time.Millisecond),
		pipeP50.Round(time.Millisecond), len(pipe),
		peerP50.Round(time.Millisecond), len(peer), ms(p50)/ms(peerP50))
}
