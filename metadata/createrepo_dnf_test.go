package metadata

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// dnfIn runs dnf 4 against only the repository at repoDir, with an
// installroot, cache and logs in tmp. gpgcheck is off here: signed
// repositories are tested where signing happens.
func dnfIn(t *testing.T, tmp, repoDir string, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("dnf")
	if err != nil {
		t.Fatalf("dnf is required: %v", err)
	}
	for _, d := range []string{"root", "cache", "log"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	base := []string{
		"--installroot=" + filepath.Join(tmp, "root"),
		"--repofrompath=r,file://" + repoDir, "--repo=r",
		"--setopt=reposdir=/dev/null",
		"--setopt=cachedir=" + filepath.Join(tmp, "cache"),
		"--setopt=logdir=" + filepath.Join(tmp, "log"),
		"--setopt=gpgcheck=0", "--setopt=repo_gpgcheck=0",
		"--setopt=install_weak_deps=0",
		"--releasever=1", "--assumeyes",
	}
	cmd := exec.Command(bin, append(base, args...)...)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dnf %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestDnfInstallsFromOurRepodata(t *testing.T) {
	for _, comp := range []string{"zstd", "gz"} {
		t.Run(comp, func(t *testing.T) {
			repo := t.TempDir()
			specs := []testrpm.Spec{
				{Name: "hello", Version: "2.1", Release: "3", Arch: "x86_64", Epoch: 1,
					Summary:  "says <hello> & more",
					Requires: []string{"libhello >= 1.0"},
					Files:    []testrpm.File{{Name: "/usr/share/hello/greeting", Body: []byte("hello from " + comp + "\n")}}},
				{Name: "libhello", Version: "1.5", Release: "1", Arch: "x86_64",
					Provides: []string{"libhello = 1.5"},
					Files:    []testrpm.File{{Name: "/usr/share/libhello/data", Body: []byte("lib\n")}}},
				{Name: "unrelated", Version: "0.1", Release: "1", Arch: "noarch",
					Files: []testrpm.File{{Name: "/usr/share/unrelated", Body: []byte("x\n")}}},
			}
			for _, s := range specs {
				if _, err := testrpm.Write(repo, s); err != nil {
					t.Fatal(err)
				}
			}
			// Many packages, so that the files are made of several blocks
			// (zstd frames / gzip members), plus an update that reuses
			// cached blocks.
			for i := 0; i < 300; i++ {
				writeSmall(t, repo, i)
			}
			ctx := context.Background()
			if _, err := CreateRepo(ctx, repo, WithPublishOptions(WithCompression(comp))); err != nil {
				t.Fatal(err)
			}
			writeSmall(t, repo, 1000)
			res, err := CreateRepo(ctx, repo, WithUpdate(true), WithPublishOptions(WithCompression(comp)))
			if err != nil {
				t.Fatal(err)
			}
			if res.Read != 1 || res.Publish.BlocksReused == 0 {
				t.Fatalf("update: %+v %+v", res, res.Publish)
			}
			for _, r := range res.Publish.Records {
				if want := map[string]string{"zstd": ".xml.zst", "gz": ".xml.gz"}[comp]; !strings.HasSuffix(r.Href, want) {
					t.Fatalf("%s is not %s", r.Href, comp)
				}
			}

			tmp := t.TempDir()
			out := dnfIn(t, tmp, repo, "repoquery", "--queryformat", "%{name}-%{epoch}:%{version}-%{release}.%{arch}")
			for _, want := range []string{"hello-1:2.1-3.x86_64", "libhello-0:1.5-1.x86_64", "unrelated-0:0.1-1.noarch", "bulk00299-0:1.5-1.el9.x86_64", "bulk01000-0:1.6-1.el9.x86_64"} {
				if !strings.Contains(out, want) {
					t.Fatalf("dnf repoquery lacks %s:\n%s", want, out)
				}
			}
			if n := strings.Count(out, ".el9."); n != 301 {
				t.Fatalf("dnf sees %d bulk packages, want 301", n)
			}
			out = dnfIn(t, tmp, repo, "info", "hello")
			if !strings.Contains(out, "says <hello> & more") {
				t.Fatalf("summary lost:\n%s", out)
			}
			dnfIn(t, tmp, repo, "install", "hello")
			b, err := os.ReadFile(filepath.Join(tmp, "root", "usr", "share", "hello", "greeting"))
			if err != nil || string(b) != "hello from "+comp+"\n" {
				t.Fatalf("hello not installed: %q %v", b, err)
			}
			if _, err := os.Stat(filepath.Join(tmp, "root", "usr", "share", "libhello", "data")); err != nil {
				t.Fatalf("dependency libhello not installed: %v", err)
			}
		})
	}
}
