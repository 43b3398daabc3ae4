package metadata

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rpmutils "github.com/sassoftware/go-rpmutils"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// readBenchCorpus returns n testrpm.Small packages, generated once and
// cached under os.TempDir() (a marker file says the set is complete). It
// shares the directory and marker with BenchmarkCreateRepo's corpus, so
// `make bench` generates the 10,000 packages once.
func readBenchCorpus(b *testing.B, n int) []string {
	b.Helper()
	dir := filepath.Join(os.TempDir(), "repoctl-bench-corpus-"+strconv.Itoa(n))
	marker := filepath.Join(dir, ".complete")
	paths := make([]string, n)
	for i := range n {
		paths[i] = filepath.Join(dir, testrpm.Small(i).FileName())
	}
	if _, err := os.Stat(marker); err == nil {
		return paths
	}
	// An interrupted earlier generation.
	if err := os.RemoveAll(dir); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	got, err := testrpm.Corpus(context.Background(), dir, n)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return got
}

// BenchmarkReadFile reads and renders the 10,000-package corpus with one
// worker per CPU, as the publisher does, and reports the cost per package.
func BenchmarkReadFile(b *testing.B) {
	paths := readBenchCorpus(b, 10000)
	ctx := context.Background()
	workers := runtime.GOMAXPROCS(0)
	b.ResetTimer()
	for range b.N {
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= len(paths) {
						return
					}
					p, err := ReadFile(ctx, paths[i])
					if err == nil {
						_, err = p.Entry(filepath.Base(paths[i]), RenderOptions{})
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(paths)), "ns/pkg")
	b.ReportMetric(float64(b.Elapsed().Seconds())/float64(b.N), "s/10k-pkgs")
}

// BenchmarkReadPackageSerial measures one header parse plus rendering on
// one core, without file system cost.
func BenchmarkReadPackageSerial(b *testing.B) {
	data, err := testrpm.Build(testrpm.Small(5))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		p, err := ReadPackage(bytesReader(data))
		if err != nil {
			b.Fatal(err)
		}
		p.PkgID = "x"
		if _, err := p.Entry("x.rpm", RenderOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// BenchmarkHeaderDecode compares, in one run, ReadPackage (rpmhdr's
// validation, go-rpmutils' decoding, createrepo_c's rules) with
// go-rpmutils' ReadHeader plus the getters the same fields need, alone:
// the ratio is what the hardening and extraction cost on top.
func BenchmarkHeaderDecode(b *testing.B) {
	data, err := testrpm.Build(testrpm.Small(5))
	if err != nil {
		b.Fatal(err)
	}
	const n = 20000
	start := time.Now()
	for range n {
		if _, err := ReadPackage(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
	ours := time.Since(start)
	start = time.Now()
	for range n {
		h, err := rpmutils.ReadHeader(bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		for _, tag := range []int{tagName, tagVersion, tagRelease, tagSummary, tagDescription, tagURL, tagLicense,
			tagVendor, tagGroup, tagBuildHost, tagSourceRPM, tagPackager, tagBaseNames, tagDirNames,
			1047, 1113, 1049, 1050, 1054, 1055, 1090, 1115, tagChangelogName, tagChangelogText} {
			h.GetStrings(tag)
		}
		for _, tag := range []int{tagEpoch, tagBuildTime, tagSize, tagDirIndexes, tagFileFlags, tagFileModes,
			1112, 1048, 1053, 1114, tagChangelogTime} {
			h.GetUint64s(tag)
		}
	}
	theirs := time.Since(start)
	b.ReportMetric(float64(ours.Nanoseconds())/n, "repoctl-ns/pkg")
	b.ReportMetric(float64(theirs.Nanoseconds())/n, "go-rpmutils-ns/pkg")
	b.ReportMetric(ours.Seconds()/theirs.Seconds(), "ratio")
	b.ReportMetric(0, "ns/op")
}
