package metadata

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/testrpm"
)

const benchPackages = 10000

// benchCorpus returns a directory of n small RPMs, generated once and kept
// under os.TempDir() keyed by n. It is built beside and renamed into place,
// so a concurrent `go test -bench` never sees half a corpus.
func benchCorpus(b *testing.B, n int) string {
	b.Helper()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("repoctl-bench-corpus-%d", n))
	done := filepath.Join(dir, ".complete")
	if _, err := os.Stat(done); err == nil {
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
	if _, err := os.Stat(done); err == nil {
		return dir // someone else finished first
	}
	// An incomplete directory (an interrupted generation) is replaced.
	if err := os.RemoveAll(dir); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(done); serr == nil {
			return dir
		}
		b.Fatal(err)
	}
	return dir
}

// linkCorpus makes a fresh repository directory of hard links to the
// corpus (same inodes, so same sizes and mtimes, and a warm page cache).
func linkCorpus(b *testing.B, corpus string) string {
	b.Helper()
	dst := filepath.Join(b.TempDir(), "repo")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		b.Fatal(err)
	}
	ents, err := os.ReadDir(corpus)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range ents {
		if filepath.Ext(e.Name()) != ".rpm" {
			continue
		}
		if err := os.Link(filepath.Join(corpus, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			b.Fatal(err)
		}
	}
	return dst
}

// buildRepoctl builds the command so that it is measured as a process,
// like createrepo_c.
func buildRepoctl(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "repoctl")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/repoctl/repoctl/cmd/repoctl")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("building repoctl: %v\n%s", err, out)
	}
	return bin
}

type runStat struct {
	wall   time.Duration
	cpu    time.Duration // user + system
	maxRSS int64         // bytes
}

// runProc runs a command and returns its wall time and peak RSS. Go starts
// children with CLONE_VM, and Linux carries the parent's peak RSS into the
// child's at exec, so the command is started from a small helper process
// (this test binary, see helperMeasure) that reports the grandchild's
// own figures.
func runProc(b *testing.B, name string, args ...string) runStat {
	b.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], append([]string{"--", path}, args...)...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "REPOCTL_MEASURE=1")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		b.Fatalf("%s %v: %v\n%s%s", name, args, err, out, stderr)
	}
	var s runStat
	var wallNS, cpuNS int64
	if _, err := fmt.Sscanf(lastLine(string(out)), "measured %d %d %d", &wallNS, &s.maxRSS, &cpuNS); err != nil {
		b.Fatalf("measuring %s: %v\n%s", name, err, out)
	}
	s.wall, s.cpu = time.Duration(wallNS), time.Duration(cpuNS)
	return s
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// helperMeasure is the child that runProc starts: the test binary with
// REPOCTL_MEASURE set (TestMain dispatches) and the command after "--".
func helperMeasure() {
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	start := time.Now()
	out, err := cmd.Output()
	wall := time.Since(start)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s\n%v\n", out, err)
		os.Exit(1)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	fmt.Printf("measured %d %d %d\n", wall.Nanoseconds(), ru.Maxrss*1024, cpu.Nanoseconds())
	os.Exit(0)
}

// best keeps the fastest of repeated runs (the machine is shared; the
// minimum is the least noisy estimate) and the largest peak RSS.
type best struct{ runStat }

func (x *best) add(s runStat) {
	if x.wall == 0 || s.wall < x.wall {
		x.wall = s.wall
	}
	if x.cpu == 0 || s.cpu < x.cpu {
		x.cpu = s.cpu
	}
	if s.maxRSS > x.maxRSS {
		x.maxRSS = s.maxRSS
	}
}

// On a shared machine wall times are noisy: each figure is the best of
// benchReps interleaved runs, and CPU time (less sensitive to load) is
// reported beside it.
const benchReps = 5

// BenchmarkCreateRepo compares `repoctl createrepo` with Debian's
// createrepo_c 0.17.3 on 10,000 packages, process against process: a full
// run, then --update after adding one package. The rpmbuild corpus
// (benchSpecCorpus: changelogs, descriptions, rpm's header layout) is what
// issue 13's targets are about; the rpmpack corpus (testrpm.Small) is
// kept for comparison with earlier figures. Debian's createrepo_c cannot
// write zstd, so it runs with its default gz; repoctl runs with its
// default zstd and, for reference, with gz. createrepo_c runs with
// --no-database since repoctl writes no sqlite (its default run, with
// databases, is reported as createrepo_c-default-s).
func BenchmarkCreateRepo(b *testing.B) {
	if _, err := exec.LookPath("createrepo_c"); err != nil {
		b.Fatalf("createrepo_c is required: %v", err)
	}
	bin := buildRepoctl(b)
	b.Run("rpmbuild", func(b *testing.B) {
		corpus, extras := benchSpecCorpus(b, benchPackages), benchSpecExtras(b, benchReps)
		benchCreateRepo(b, bin, corpus, func(i int, dir string) error {
			name := fmt.Sprintf("bench1000-sub%03d-1.1000-1.el9.noarch.rpm", i)
			return os.Link(filepath.Join(extras, name), filepath.Join(dir, name))
		})
	})
	b.Run("rpmpack", func(b *testing.B) {
		benchCreateRepo(b, bin, benchCorpus(b, benchPackages), func(i int, dir string) error {
			_, err := testrpm.Write(dir, testrpm.Small(benchPackages+i))
			return err
		})
	})
}

// benchCreateRepo runs the full and update1 comparisons on corpus; add
// puts the i-th new package into a repository directory.
func benchCreateRepo(b *testing.B, bin, corpus string, add func(i int, dir string) error) {
	b.Run("full", func(b *testing.B) {
		for range b.N {
			var ours, oursGz, theirs, theirsDefault best
			for range benchReps {
				ours.add(runProc(b, bin, "createrepo", "-q", linkCorpus(b, corpus)))
				oursGz.add(runProc(b, bin, "createrepo", "-q", "--compress-type", "gz", linkCorpus(b, corpus)))
				theirs.add(runProc(b, "createrepo_c", "-q", "--no-database", linkCorpus(b, corpus)))
			}
			theirsDefault.add(runProc(b, "createrepo_c", "-q", linkCorpus(b, corpus)))
			report(b, ours, theirs)
			b.ReportMetric(oursGz.wall.Seconds(), "repoctl-gz-s")
			b.ReportMetric(oursGz.wall.Seconds()/theirs.wall.Seconds(), "ratio-gz")
			b.ReportMetric(oursGz.cpu.Seconds()/theirs.cpu.Seconds(), "cpu-ratio-gz")
			b.ReportMetric(theirsDefault.wall.Seconds(), "createrepo_c-default-s")
			b.ReportMetric(ours.wall.Seconds()/theirsDefault.wall.Seconds(), "ratio-vs-default")
		}
	})

	b.Run("update1", func(b *testing.B) {
		for range b.N {
			oursDir, theirsDir := linkCorpus(b, corpus), linkCorpus(b, corpus)
			runProc(b, bin, "createrepo", "-q", oursDir)
			runProc(b, "createrepo_c", "-q", "--no-database", theirsDir)
			var ours, theirs best
			for i := range benchReps {
				// One new package each round, the same for both.
				for _, d := range []string{oursDir, theirsDir} {
					if err := add(i, d); err != nil {
						b.Fatal(err)
					}
				}
				ours.add(runProc(b, bin, "createrepo", "-q", "--update", oursDir))
				theirs.add(runProc(b, "createrepo_c", "-q", "--no-database", "--update", theirsDir))
			}
			report(b, ours, theirs)
		}
	})
}

func report(b *testing.B, ours, theirs best) {
	b.ReportMetric(ours.wall.Seconds(), "repoctl-s")
	b.ReportMetric(theirs.wall.Seconds(), "createrepo_c-s")
	b.ReportMetric(ours.wall.Seconds()/theirs.wall.Seconds(), "ratio")
	b.ReportMetric(ours.cpu.Seconds(), "repoctl-cpu-s")
	b.ReportMetric(theirs.cpu.Seconds(), "createrepo_c-cpu-s")
	b.ReportMetric(ours.cpu.Seconds()/theirs.cpu.Seconds(), "cpu-ratio")
	b.ReportMetric(float64(ours.maxRSS)/(1<<20), "repoctl-maxrss-MB")
	b.ReportMetric(float64(theirs.maxRSS)/(1<<20), "createrepo_c-maxrss-MB")
	// ns/op would time the whole comparison; it means nothing here.
	b.ReportMetric(0, "ns/op")
	b.Logf("repoctl %v / createrepo_c %v: ratio %.3f (cpu %.3f), peak %d / %d MB; load %s",
		ours.wall, theirs.wall, ours.wall.Seconds()/theirs.wall.Seconds(), ours.cpu.Seconds()/theirs.cpu.Seconds(),
		ours.maxRSS>>20, theirs.maxRSS>>20, loadAvg())
}

// loadAvg is the machine's load (1, 5 and 15 minutes): figures from a
// shared machine mean little without it.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
