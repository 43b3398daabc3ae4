package metadata

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

// specCorpusSubs is how many subpackages one generated spec builds: rpmbuild
// costs a few seconds per run, so 10,000 packages are ~100 runs, not 10,000.
const specCorpusSubs = 100

// specCorpusVersion names the generator's output in the cache key: change
// it when benchSpec changes, so a stale corpus is not measured.
const specCorpusVersion = 1

// benchSpecCorpus returns a directory of n rpmbuild-made packages
// (testdata/specs style: files, a %config, requires/provides/obsoletes, a
// description and a %changelog of several entries), generated once and kept
// under os.TempDir() like benchCorpus. rpmpack packages have no changelog
// and a header laid out by a different writer; this corpus is what real
// repositories hold.
func benchSpecCorpus(b *testing.B, n int) string {
	b.Helper()
	return specCorpus(b, fmt.Sprintf("repoctl-bench-corpus-rpmbuild-%d-v%d", n, specCorpusVersion), 0, n)
}

// benchSpecExtras returns n more rpmbuild-made packages, none of them in
// benchSpecCorpus's (their spec numbers start at 1000): the packages the
// --update benchmarks add.
func benchSpecExtras(b *testing.B, n int) string {
	b.Helper()
	return specCorpus(b, fmt.Sprintf("repoctl-bench-corpus-rpmbuild-extra-%d-v%d", n, specCorpusVersion), 1000, n)
}

// specCorpus builds n packages from specs numbered from firstSpec into
// os.TempDir()/name, once.
func specCorpus(b *testing.B, name string, firstSpec, n int) string {
	rpmbuild, err := exec.LookPath("rpmbuild")
	if err != nil {
		b.Fatalf("rpmbuild is required: %v", err)
	}
	dir := filepath.Join(os.TempDir(), name)
	done := filepath.Join(dir, ".complete")
	if _, err := os.Stat(done); err == nil {
		return dir
	}
	tmp, err := os.MkdirTemp(os.TempDir(), filepath.Base(dir)+".tmp-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "rpms")
	if err := os.Mkdir(out, 0o755); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	g, _ := errgroup.WithContext(context.Background())
	g.SetLimit(runtime.NumCPU())
	for s := 0; s*specCorpusSubs < n; s++ {
		subs := min(specCorpusSubs, n-s*specCorpusSubs)
		s := firstSpec + s
		g.Go(func() error {
			top := filepath.Join(tmp, fmt.Sprintf("top-%d", s))
			spec := filepath.Join(tmp, fmt.Sprintf("bench%d.spec", s))
			if err := os.WriteFile(spec, []byte(benchSpec(s, subs)), 0o644); err != nil {
				return err
			}
			cmd := exec.Command(rpmbuild, "-bb", "--quiet",
				"--define", "_topdir "+top,
				"--define", "_rpmdir "+out,
				"--define", "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
				// Payload compression and the post-install scripts are most
				// of rpmbuild's time and change nothing createrepo reads.
				"--define", "_binary_payload w1.gzdio",
				"--define", "__spec_install_post %{nil}",
				"--define", "_build_id_links none",
				spec)
			cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "SOURCE_DATE_EPOCH=1700000000")
			if o, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("rpmbuild %s: %w\n%s", spec, err, o)
			}
			return os.RemoveAll(top)
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	ents, err := os.ReadDir(out)
	if err != nil {
		b.Fatal(err)
	}
	if len(ents) != n {
		b.Fatalf("rpmbuild made %d packages, want %d", len(ents), n)
	}
	b.Logf("built %d rpmbuild packages in %v (load %s)", n, time.Since(start).Round(time.Second), loadAvg())
	if err := os.WriteFile(filepath.Join(out, ".complete"), nil, 0o644); err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(done); err == nil {
		return dir
	}
	if err := os.RemoveAll(dir); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(out, dir); err != nil {
		if _, serr := os.Stat(done); serr == nil {
			return dir
		}
		b.Fatal(err)
	}
	return dir
}

// benchSpec is spec s of the corpus: subs noarch subpackages, each with six
// files (one %config, one %dir), requires on a sibling, a file and a
// versioned name, provides, an obsoletes, a two-line description, and the
// spec's eight-entry %changelog.
func benchSpec(s, subs int) string {
	var w strings.Builder
	fmt.Fprintf(&w, "Name: benchspec%d\nVersion: 1.%d\nRelease: 1.el9\nSummary: Generated benchmark spec %d\n", s, s, s)
	w.WriteString("License: MIT\nURL: https://example.test/bench\nGroup: Development/Tools\nBuildArch: noarch\nAutoReqProv: no\n\n%description\nGenerated benchmark spec.\n\n")
	for i := range subs {
		p := fmt.Sprintf("bench%03d-sub%03d", s, i)
		fmt.Fprintf(&w, "%%package -n %s\nSummary: Subpackage %d of spec %d, <generated> & tested\n", p, i, s)
		fmt.Fprintf(&w, "Requires: bench%03d-sub%03d >= 1.0\nRequires: /bin/sh\nRequires: libfoo.so.1()(64bit)\n", s, (i+1)%subs)
		fmt.Fprintf(&w, "Provides: %s-api = 1.%d\nProvides: lib%s.so.1()(64bit)\nObsoletes: %s-old < 1.0\n", p, s, p, p)
		fmt.Fprintf(&w, "\n%%description -n %s\nSubpackage %d of the generated benchmark corpus, spec %d.\nIt has files, dependencies and a changelog, as rpmbuild-made packages do.\n\n", p, i, s)
		fmt.Fprintf(&w, "%%files -n %s\n%%config(noreplace) /etc/%s.conf\n%%dir /usr/share/%s\n/usr/share/%s/a.txt\n/usr/share/%s/b.txt\n/usr/share/%s/c.txt\n/usr/bin/%s\n\n", p, p, p, p, p, p, p)
	}
	w.WriteString("%install\nmkdir -p %{buildroot}/etc %{buildroot}/usr/bin\n")
	fmt.Fprintf(&w, "for i in $(seq -f %%03g 0 %d); do p=bench%03d-sub$i; mkdir -p %%{buildroot}/usr/share/$p; for f in a b c; do echo \"$p $f\" > %%{buildroot}/usr/share/$p/$f.txt; done; echo conf > %%{buildroot}/etc/$p.conf; printf '#!/bin/sh\\necho %%s\\n' $p > %%{buildroot}/usr/bin/$p; chmod 755 %%{buildroot}/usr/bin/$p; done\n\n", subs-1, s)
	w.WriteString("%changelog\n")
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	for c := 8; c >= 1; c-- {
		fmt.Fprintf(&w, "* %s Bench Builder <bench@example.test> - 1.%d-%d\n- Change %d: fixed <things> & \"stuff\"\n- Second line of change %d\n\n",
			day.Format("Mon Jan 2 2006"), s, c, c, c)
		day = day.AddDate(0, 0, -9)
	}
	return w.String()
}
