package sign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// Benchmarks run side by side with rpmsign (through gpg, same RSA-4096 key)
// in one run and report ratios. Inputs are cached under os.TempDir().

// benchKey is an RSA-4096 key cached across runs (generation takes seconds).
func benchKey(b *testing.B) (*Key, string) {
	b.Helper()
	path := filepath.Join(os.TempDir(), "repoctl-bench-rsa4096.asc")
	if k, err := LoadKeyFile(path, nil); err == nil {
		return k, path
	}
	if err := os.Remove(path); err != nil {
		b.Fatal(err)
	}
	k, err := GenerateKey("rsa4096", "Repoctl Bench", "bench@example.test")
	if err != nil {
		b.Fatal(err)
	}
	if err := k.WritePrivateFile(path); err != nil {
		b.Fatal(err)
	}
	return k, path
}

// gpgWithKey imports the private key file into a fresh GNUPGHOME for
// rpmsign.
func gpgWithKey(b *testing.B, keyFile string) string {
	b.Helper()
	home, run := gpgHome(b)
	run(readAll(b, keyFile), "--import")
	return home
}

func rpmsign(b *testing.B, home string, k *Key, files ...string) time.Duration {
	b.Helper()
	needTool(b, "rpmsign")
	args := []string{"--define", "__gpg /usr/bin/gpg", "--define", "_gpg_path " + home,
		"--define", "_gpg_name " + k.Fingerprint(), "--addsign"}
	start := time.Now()
	for len(files) > 0 {
		n := min(len(files), 200) // keep argv short
		cmd := exec.Command("rpmsign", append(args, files[:n]...)...)
		cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("rpmsign: %v\n%s", err, out)
		}
		files = files[n:]
	}
	return time.Since(start)
}

func copyDir(b *testing.B, src []string, dst string) []string {
	b.Helper()
	out := make([]string, len(src))
	for i, s := range src {
		out[i] = filepath.Join(dst, filepath.Base(s))
		copyFile(b, s, out[i])
	}
	return out
}

// rsaWork makes n RSA-4096 signatures with rsa.SignPKCS1v15 spread over all
// cores and returns the wall time: the time Go's crypto alone needs for n
// packages, i.e. the RSA limit is n / that time (= cores / time of one
// signature on one core).
func rsaWork(b *testing.B, k *Key, n int) time.Duration {
	rk, ok := k.priv.PrivateKey.(*rsa.PrivateKey)
	if !ok {
		b.Fatal("bench key is not RSA")
	}
	d := sha256.Sum256([]byte("header"))
	cores := runtime.NumCPU()
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < cores; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := c; i < n; i += cores {
				if _, err := rsa.SignPKCS1v15(rand.Reader, rk, crypto.SHA256, d[:]); err != nil {
					panic(err)
				}
			}
		}(c)
	}
	wg.Wait()
	return time.Since(start)
}

// BenchmarkSign1000Small: packages/s on 1,000 small rpmpack RPMs (no
// reserved space, so both tools rewrite each file), repoctl vs rpmsign and
// vs the RSA-4096 limit of Go's crypto.
func BenchmarkSign1000Small(b *testing.B) {
	const n = 1000
	k, keyFile := benchKey(b)
	home := gpgWithKey(b, keyFile)
	cache := filepath.Join(os.TempDir(), fmt.Sprintf("repoctl-bench-small-%d", n))
	if _, err := os.Stat(filepath.Join(cache, testrpm.Small(n-1).FileName())); err != nil {
		if err := os.RemoveAll(cache); err != nil {
			b.Fatal(err)
		}
		if err := os.MkdirAll(cache, 0o755); err != nil {
			b.Fatal(err)
		}
		if _, err := testrpm.Corpus(context.Background(), cache, n); err != nil {
			b.Fatal(err)
		}
	}
	src := make([]string, n)
	for i := range src {
		src[i] = filepath.Join(cache, testrpm.Small(i).FileName())
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ours := copyDir(b, src, b.TempDir())
		theirs := copyDir(b, src, b.TempDir())
		syncAll()
		s, err := NewSigner(k)
		if err != nil {
			b.Fatal(err)
		}
		// The machine's load drifts (CI shares cores), so the three
		// contenders take turns on chunks of 100 packages and each total
		// is summed: all see the same conditions.
		const chunk = 100
		var took, rsaTook, theirTook time.Duration
		for lo := 0; lo < n; lo += chunk {
			hi := min(lo+chunk, n)
			b.StartTimer()
			start := time.Now()
			res, err := s.SignFiles(context.Background(), ours[lo:hi])
			took += time.Since(start)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range res {
				if r.Err != nil || r.Action != ActionSigned {
					b.Fatalf("%s: %s %v", r.Path, r.Action, r.Err)
				}
			}
			rsaTook += rsaWork(b, k, hi-lo)
			theirTook += rpmsign(b, home, k, theirs[lo:hi]...)
		}
		// Both outputs must pass rpm's own check (a sample keeps it short).
		db := newRPMDB(b, pubOf(b, k))
		for _, p := range []string{ours[0], ours[n/2], ours[n-1], theirs[0], theirs[n-1]} {
			if got := db.checksigSummary(b, p); !strings.HasSuffix(got, ": digests signatures OK") {
				b.Fatalf("rpmkeys: %s", got)
			}
		}
		rate := float64(n) / took.Seconds()
		theirRate := float64(n) / theirTook.Seconds()
		limit := float64(n) / rsaTook.Seconds()
		one := rsaTook * time.Duration(runtime.NumCPU()) / n
		b.ReportMetric(rate, "pkgs/s")
		b.ReportMetric(theirRate, "rpmsign-pkgs/s")
		b.ReportMetric(rate/theirRate, "ratio-vs-rpmsign")
		b.ReportMetric(limit, "rsa-limit-pkgs/s")
		b.ReportMetric(100*rate/limit, "pct-of-rsa-limit")
		b.ReportMetric(float64(one.Microseconds())/1000, "rsa4096-sign-ms")
		b.StartTimer()
	}
}

func syncAll() { exec.Command("sync").Run() }

// bigRPM builds (once, cached) a 1 GiB package of random data with an
// uncompressed payload via rpmbuild, so it has rpm's reserved space.
func bigRPM(b *testing.B) string {
	b.Helper()
	cache := filepath.Join(os.TempDir(), "repoctl-bench-1gib")
	out := filepath.Join(cache, "RPMS", "noarch", "bigdata-1.0-1.noarch.rpm")
	if st, err := os.Stat(out); err == nil && st.Size() > 1<<30 {
		return out
	}
	needTool(b, "rpmbuild")
	if err := os.RemoveAll(cache); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(cache, "SPECS"), 0o755); err != nil {
		b.Fatal(err)
	}
	spec := `Name: bigdata
Version: 1.0
Release: 1
Summary: 1 GiB of random data for repoctl's signing benchmark
License: MIT
BuildArch: noarch
%global debug_package %{nil}
%global __os_install_post %{nil}
%global _build_id_links none
%global _binary_payload w0.ufdio
%description
Benchmark fixture.
%install
mkdir -p %{buildroot}/usr/share/bigdata
head -c 1073741824 /dev/urandom > %{buildroot}/usr/share/bigdata/random.bin
%files
/usr/share/bigdata/random.bin
`
	specFile := filepath.Join(cache, "SPECS", "bigdata.spec")
	if err := os.WriteFile(specFile, []byte(spec), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command("rpmbuild", "-bb", "--define", "_topdir "+cache, specFile)
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("rpmbuild: %v\n%s", err, o)
	}
	os.RemoveAll(filepath.Join(cache, "BUILDROOT"))
	return out
}

// BenchmarkSign1GiB: time to sign a 1 GiB package in place, without and
// with the digest check, against openssl dgst -sha256 and rpmsign on the
// same file.
func BenchmarkSign1GiB(b *testing.B) {
	k, keyFile := benchKey(b)
	home := gpgWithKey(b, keyFile)
	needTool(b, "openssl")
	src := bigRPM(b)
	work := filepath.Join(filepath.Dir(src), "work.rpm")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		copyFile64(b, src, work)
		f, err := os.Open(work)
		if err != nil {
			b.Fatal(err)
		}
		p, err := readPkg(f, mustSize(b, work))
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		if err != nil {
			b.Fatal(err)
		}
		if p.sig.get(tagReservedSpace) == nil {
			b.Fatal("rpmbuild output has no reserved space")
		}
		origArea := p.origArea()
		restore := func() {
			f, err := os.OpenFile(work, os.O_RDWR, 0)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.WriteAt(origArea, leadSize); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
		}
		// Warm the page cache the same way for every contender.
		sum := sha256.New()
		wf, err := os.Open(work)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(sum, wf); err != nil {
			b.Fatal(err)
		}
		if err := wf.Close(); err != nil {
			b.Fatal(err)
		}

		// (1) in place, digest check skipped.
		s, err := NewSigner(k)
		if err != nil {
			b.Fatal(err)
		}
		s.skipDigests = true
		b.StartTimer()
		t0 := time.Now()
		r, err := s.SignFile(context.Background(), work)
		noCheck := time.Since(t0)
		b.StopTimer()
		if err != nil || !r.InPlace {
			b.Fatalf("sign: %v in place %v", err, r.InPlace)
		}
		restore()

		// (2) in place with the digest check.
		s2, err := NewSigner(k)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t0 = time.Now()
		r, err = s2.SignFile(context.Background(), work)
		withCheck := time.Since(t0)
		b.StopTimer()
		if err != nil || !r.InPlace {
			b.Fatalf("sign: %v in place %v", err, r.InPlace)
		}
		db := newRPMDB(b, pubOf(b, k))
		if got := db.checksigSummary(b, work); !strings.HasSuffix(got, ": digests signatures OK") {
			b.Fatalf("rpmkeys: %s", got)
		}
		restore()

		// (3) openssl on the same file.
		t0 = time.Now()
		if o, err := exec.Command("openssl", "dgst", "-sha256", work).CombinedOutput(); err != nil {
			b.Fatalf("openssl: %v\n%s", err, o)
		}
		openssl := time.Since(t0)

		// (4) rpmsign on the same file.
		theirs := rpmsign(b, home, k, work)

		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		b.ReportMetric(ms(noCheck), "ms")
		b.ReportMetric(ms(withCheck), "with-check-ms")
		b.ReportMetric(ms(openssl), "openssl-ms")
		b.ReportMetric(withCheck.Seconds()/openssl.Seconds(), "ratio-vs-openssl")
		b.ReportMetric(ms(theirs), "rpmsign-ms")
		b.ReportMetric(theirs.Seconds()/withCheck.Seconds(), "speedup-vs-rpmsign")
		if err := os.Remove(work); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

func mustSize(b *testing.B, p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		b.Fatal(err)
	}
	return st.Size()
}

// copyFile64 copies a big file with copy_file_range and syncs it, so that
// no dirty pages are left for the timed fsyncs to flush.
func copyFile64(b *testing.B, src, dst string) {
	b.Helper()
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		b.Fatal(err)
	}
	if err := out.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
}

var _ = bytes.Equal
