package repo

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// BenchmarkScaleIngest100k: a burst of 100,000 drop-ins into a fresh
// daemon, against the signing rate of the same key on the same corpus
// with the daemon's signer (sign only, same worker count), in one run.
// The key is the daemon's default (rsa4096) unless
// REPOCTL_BENCH_INGEST_ALGO names another; REPOCTL_BENCH_INGEST_N takes
// fewer packages (a quick look, not the figure). It reports both
// rates and their ratio (issue 13: ≥ 0.7), the batches and publishes the
// daemon made, the superseded repodata generations left in the directory
// after the burst (≤ 3), and the daemon's VmHWM.
func BenchmarkScaleIngest100k(b *testing.B) {
	n := scalePackages
	if v := os.Getenv("REPOCTL_BENCH_INGEST_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > scalePackages {
			b.Fatalf("REPOCTL_BENCH_INGEST_N=%q: want 1..%d", v, scalePackages)
		}
	}
	algo := "rsa4096"
	if v := os.Getenv("REPOCTL_BENCH_INGEST_ALGO"); v != "" {
		algo = v
	}
	corpus := scaleCorpus(b, scalePackages)
	ctx := context.Background()
	root := filepath.Join(b.TempDir(), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		b.Fatal(err)
	}
	cfg := fmt.Sprintf("[http]\nlisten = \"off\"\n[signing]\nalgo = %q\n", algo)
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	// The corpus is unsigned and rpmpack leaves no room for a signature,
	// so every signature rewrites the file (temp and rename): hard links
	// keep the corpus intact.
	link := func(dir string) []string {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		out := make([]string, n)
		for i := range out {
			name := testrpm.Small(i).FileName()
			out[i] = filepath.Join(dir, name)
			if err := os.Link(filepath.Join(corpus, name), out[i]); err != nil {
				b.Fatal(err)
			}
		}
		return out
	}

	// Sign only: the daemon's signer (the key Open generates) over the
	// same files.
	r, err := Open(ctx, root)
	if err != nil {
		b.Fatal(err)
	}
	signDir := filepath.Join(filepath.Dir(root), "sign-only")
	signPaths := link(signDir)
	b.ResetTimer()
	cpu0 := selfCPU()
	t0 := time.Now()
	sres, err := r.signFiles(ctx, signPaths)
	signTook := time.Since(t0)
	signCPU := selfCPU() - cpu0
	if err != nil {
		b.Fatal(err)
	}
	for _, x := range sres {
		if x.Err != nil {
			b.Fatalf("signing %s: %v", x.Path, x.Err)
		}
	}
	if err := r.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.RemoveAll(signDir); err != nil {
		b.Fatal(err)
	}
	signRate := float64(n) / signTook.Seconds()
	loadSign := loadAvg()

	// The daemon: everything renamed into incoming/ at once, as an
	// uploader's finished files; timed until repodata lists them all.
	stage := filepath.Join(root, "stage")
	todo := link(stage)
	d := startDaemon(b, root, "--log-level", "info")
	incoming := filepath.Join(root, "incoming")
	repoDir := filepath.Join(root, "repo", "main", "staging", "el", "9", "x86_64")
	t0 = time.Now()
	for _, p := range todo {
		if err := os.Rename(p, filepath.Join(incoming, filepath.Base(p))); err != nil {
			b.Fatal(err)
		}
	}
	deadline := t0.Add(2 * time.Hour)
	var ingestTook time.Duration
	for {
		got, err := repodataCount(repoDir)
		if err == nil && got == n {
			ingestTook = time.Since(t0)
			break
		}
		if err == nil && got > n {
			b.Fatalf("repodata lists %d packages, %d were dropped", got, n)
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d packages visible after %v (%v)", got, n, time.Since(t0), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.StopTimer()
	loadIngest := loadAvg()
	_, hwm, _, err := procStatus(d.cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	daemonCPU, err := procCPU(d.cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	gens, err := supersededGenerations(filepath.Join(repoDir, "repodata"))
	if err != nil {
		b.Fatal(err)
	}
	d.stop()
	var batches, publishes int
	for _, line := range strings.Split(d.log(), "\n") {
		var rec struct {
			Msg string `json:"msg"`
			Dir string `json:"dir"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		switch rec.Msg {
		case "ingest batch":
			batches++
		case "published":
			if rec.Dir == "main/staging/el/9/x86_64" {
				publishes++
			}
		}
	}
	ingestRate := float64(n) / ingestTook.Seconds()
	b.ReportMetric(signRate, "sign-pkg/s")
	b.ReportMetric(ingestRate, "ingest-pkg/s")
	b.ReportMetric(ingestRate/signRate, "ingest/sign")
	// CPU per package: what the wall-clock ratio means on a machine
	// whose load changed between the two halves.
	signCPUPer, daemonCPUPer := signCPU.Seconds()*1000/float64(n), daemonCPU.Seconds()*1000/float64(n)
	b.ReportMetric(signCPUPer, "sign-cpu-ms/pkg")
	b.ReportMetric(daemonCPUPer, "daemon-cpu-ms/pkg")
	b.ReportMetric(float64(batches), "batches")
	b.ReportMetric(float64(publishes), "publishes")
	b.ReportMetric(float64(gens), "superseded-generations")
	b.ReportMetric(float64(hwm)/(1<<20), "daemon-hwm-MB")
	b.ReportMetric(0, "ns/op")
	b.Logf("%d drop-ins, %s key: signing alone %.0f/s (%v, load %s); daemon ingest %.0f/s (%v, load %s) = %.2f× signing; CPU per package %.2f ms signing alone, %.2f ms in the daemon (%.2f×); %d batches, %d publishes; %d superseded generations left; daemon VmHWM %d MB",
		n, algo, signRate, signTook.Round(time.Second), loadSign, ingestRate, ingestTook.Round(time.Second), loadIngest,
		ingestRate/signRate, signCPUPer, daemonCPUPer, signCPUPer/daemonCPUPer, batches, publishes, gens, hwm>>20)
}

// selfCPU is this process's user and system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is a process's user and system CPU time (/proc/PID/stat).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command, which is in parentheses and may hold
	// spaces: utime and stime are the 14th and 15th of the whole line.
	rest := string(b[bytes.LastIndexByte(b, ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %q %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * (time.Second / 100), nil // USER_HZ
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

var packagesAttr = regexp.MustCompile(`<metadata [^>]*packages="(\d+)"`)

// repodataCount is the package count that dir's current primary declares,
// read from its first bytes: polling must not decompress 100,000
// packages of XML beside the daemon it measures.
func repodataCount(dir string) (int, error) {
	repomd, err := os.ReadFile(filepath.Join(dir, "repodata", "repomd.xml"))
	if err != nil {
		return 0, err
	}
	i := bytes.Index(repomd, []byte(`<data type="primary">`))
	if i < 0 {
		return 0, fmt.Errorf("repomd.xml has no primary")
	}
	rest := repomd[i:]
	j := bytes.Index(rest, []byte(`<location href="`))
	if j < 0 {
		return 0, fmt.Errorf("primary has no location")
	}
	rest = rest[j+len(`<location href="`):]
	loc := string(rest[:bytes.IndexByte(rest, '"')])
	f, err := os.Open(filepath.Join(dir, loc))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(loc, ".zst"):
		zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return 0, err
		}
		defer zr.Close()
		r = zr
	case strings.HasSuffix(loc, ".gz"):
		zr, err := gzip.NewReader(f)
		if err != nil {
			return 0, err
		}
		r = zr
	}
	head := make([]byte, 1024)
	k, err := io.ReadFull(r, head)
	if err != nil && err != io.ErrUnexpectedEOF {
		return 0, err
	}
	m := packagesAttr.FindSubmatch(head[:k])
	if m == nil {
		return 0, fmt.Errorf("primary %s declares no package count", loc)
	}
	return strconv.Atoi(string(m[1]))
}

// supersededGenerations counts the primaries in a repodata directory that
// its repomd.xml no longer names: one per superseded generation.
func supersededGenerations(repodata string) (int, error) {
	repomd, err := os.ReadFile(filepath.Join(repodata, "repomd.xml"))
	if err != nil {
		return 0, err
	}
	ents, err := os.ReadDir(repodata)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if strings.Contains(e.Name(), "-primary.") && !bytes.Contains(repomd, []byte("repodata/"+e.Name())) {
			n++
		}
	}
	return n, nil
}
