package repo

import (
	"crypto/rand"
	"errors"
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

// mountTmpfs mounts a tmpfs of size at a new directory and unmounts it on
// cleanup. It needs root, which CI has.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatal("this test needs root to mount a small tmpfs (CI runs as root)")
	}
	dir := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
	})
	return dir
}

// fillDisk writes dir/filler until the filesystem is full, then gives back
// about slack bytes, so that small writes (the store, a socket) still work
// but no package can be rewritten.
func fillDisk(t *testing.T, dir string, slack int64) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		k, err := f.Write(buf)
		n += int64(k)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(max(n-slack, 0)); err != nil {
		t.Fatal(err)
	}
	return p
}

// A full disk while signing is a fault of the machine: every valid
// package waits (in incoming/ or the journal) and lands once space is
// freed; none is rejected.
func TestDiskFullRetriedNotRejected(t *testing.T) {
	root := mountTmpfs(t, "24m")
	port := freePort(t)
	cfg := fmt.Sprintf("[http]\nlisten = \"127.0.0.1:%d\"\n[routing]\ndefault = \"el/9\"\n", port)
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// First start makes the key and the store, then the packages wait in
	// incoming/ while the daemon is down and the disk fills up.
	startDaemon(t, root).stop()
	const n = 25
	inc := filepath.Join(root, "incoming")
	for i := 0; i < n; i++ {
		s := spec(fmt.Sprintf("full%02d", i), "1", "1.el9", "x86_64")
		body := make([]byte, 384<<10) // incompressible: the rewrite needs its size
		if _, err := rand.Read(body); err != nil {
			t.Fatal(err)
		}
		s.Files = append(s.Files, testrpm.File{Name: "/usr/share/full/blob", Body: body})
		b, err := testrpm.Build(s)
		if err != nil {
			t.Fatal(err)
		}
		dropFile(t, inc, s.FileName(), b)
	}
	filler := fillDisk(t, root, 128<<10)

	d := startDaemon(t, root)
	waitFor(t, 2*time.Minute, "a batch failing on the full disk", func() (bool, string) {
		log := d.log()
		return strings.Contains(log, "no space left on device") && strings.Contains(log, "ingest batch failed"), ""
	})
	if got := listDir(t, filepath.Join(root, "rejected")); len(got) != 0 {
		t.Fatalf("rejected while the disk was full: %v", got)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "repo", "main", "staging", "el", "9", "x86_64")
	waitFor(t, 3*time.Minute, "every package published once space is back", func() (bool, string) {
		m, err := repodataPackages(dir)
		return err == nil && len(m) == n, fmt.Sprintf("%d published (%v)", len(m), err)
	})
	if got := listDir(t, filepath.Join(root, "rejected")); len(got) != 0 {
		t.Errorf("rejected: %v", got)
	}
	if got := listDir(t, inc); len(got) != 0 {
		t.Errorf("left in incoming: %v", got)
	}
	d.stop()
	out, _, code := runCLI(t, root, "verify", filepath.Join(dir, "full00-1-1.el9.x86_64.rpm"))
	if code != 0 {
		t.Errorf("verify of a package signed after the fault: exit %d\n%s", code, out)
	}
}
