package repo

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/s3test"
	"github.com/repoctl/repoctl/internal/testrpm"
)

// BenchmarkS3PublishPlusOne: one package added to a 10,000-package
// repository, published to the local tree only and to the local tree
// plus an S3 bucket (SeaweedFS on loopback), side by side. The ratio is
// the S3 add's p50 over the local one's; the bytes uploaded per add are
// the new package, the changed repodata and repomd.xml(.asc) only:
// O(changed), against the repository's whole size, which the first sync
// uploaded once.
func BenchmarkS3PublishPlusOne(b *testing.B) {
	needTools(b, "cp")
	b.Setenv("AWS_ACCESS_KEY_ID", "")
	b.Setenv("AWS_SECRET_ACCESS_KEY", "")
	b.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	ctx := context.Background()
	seed := seededRoot(b)
	srv := s3test.Start(b)
	srv.Bucket("bench")
	open := func(name, cfg string) *Repo {
		root := filepath.Join(b.TempDir(), name)
		if out, err := exec.Command("cp", "-a", seed, root).CombinedOutput(); err != nil {
			b.Fatalf("copying the seeded root: %v\n%s", err, out)
		}
		if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(cfg), 0o644); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		r, err := Open(ctx, root)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { r.Close() })
		b.Logf("%s: opened in %v", name, time.Since(t0).Round(time.Millisecond))
		return r
	}
	local := open("local", "")
	t0 := time.Now()
	s3 := open("s3", fmt.Sprintf("[publish]\ntarget = \"s3\"\n[publish.s3]\nendpoint = %q\nbucket = \"bench\"\n", srv.Endpoint))
	firstSync := time.Since(t0)
	firstBytes, firstObjects := s3.tree.mirror.m.Uploaded()
	const dir = "main/staging/el/9/x86_64"
	var repoBytes int64
	filepath.WalkDir(filepath.Join(s3.cfg.Paths.Repo, dir), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				repoBytes += fi.Size()
			}
		}
		return nil
	})
	if n := len(s3.dirs[dir]); n != benchRepoSize {
		b.Fatalf("the seeded repository has %d packages, want %d", n, benchRepoSize)
	}
	b.Logf("first sync to S3: %d objects, %d bytes in %v", firstObjects, firstBytes, firstSync.Round(time.Millisecond))

	in := b.TempDir()
	var tl, ts []time.Duration
	var upBytes, upObjects []int64
	b.ResetTimer()
	for i := 0; i < max(b.N, 7); i++ {
		for _, x := range []struct {
			r    *Repo
			took *[]time.Duration
		}{{local, &tl}, {s3, &ts}} {
			pdir := filepath.Join(in, fmt.Sprint(len(*x.took), x.r == s3))
			if err := os.MkdirAll(pdir, 0o755); err != nil {
				b.Fatal(err)
			}
			p, err := testrpm.Write(pdir, testrpm.Small(2*benchRepoSize+i))
			if err != nil {
				b.Fatal(err)
			}
			bytes0, objects0 := s3.tree.mirror.m.Uploaded()
			t1 := time.Now()
			res, err := x.r.Add(ctx, []string{p}, AddOptions{})
			*x.took = append(*x.took, time.Since(t1))
			if err != nil || res[0].Action != ActionAdded {
				b.Fatalf("add: %+v %v", res, err)
			}
			if x.r == s3 {
				bytes1, objects1 := s3.tree.mirror.m.Uploaded()
				upBytes = append(upBytes, bytes1-bytes0)
				upObjects = append(upObjects, objects1-objects0)
				if pend, err := s3.MirrorPending(); err != nil || len(pend) > 0 {
					b.Fatalf("pending after an add: %v %v", pend, err)
				}
			}
		}
	}
	b.StopTimer()
	pl, ps := percentile(tl, 0.5), percentile(ts, 0.5)
	slices.Sort(upBytes)
	slices.Sort(upObjects)
	mb, mo := upBytes[len(upBytes)/2], upObjects[len(upObjects)/2]
	b.Logf("local adds %v; s3 adds %v; uploaded per add %v bytes, %v objects", tl, ts, upBytes, upObjects)
	b.ReportMetric(ms(pl), "local-add-p50-ms")
	b.ReportMetric(ms(ps), "s3-add-p50-ms")
	b.ReportMetric(ms(ps)/ms(pl), "ratio")
	b.ReportMetric(float64(mb), "uploaded-bytes/add")
	b.ReportMetric(float64(mo), "uploaded-objects/add")
	b.ReportMetric(float64(repoBytes), "repo-bytes")
	b.ReportMetric(float64(mb)/float64(repoBytes), "uploaded/repo")
	b.ReportMetric(firstSync.Seconds(), "first-sync-s")
	b.ReportMetric(0, "ns/op")
}
