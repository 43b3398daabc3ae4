package metadata

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeSign stands in for an OpenPGP signer: the "signature" is a digest
// of the exact repomd bytes, so a reader can tell a stale one.
func fakeSign(_ context.Context, b []byte) ([]byte, error) {
	s := sha256.Sum256(b)
	return []byte("sig:" + hex.EncodeToString(s[:]) + "\n"), nil
}

type recProgress struct {
	mu      sync.Mutex
	notices []string
	noticed chan struct{}
}

func (p *recProgress) Stage(string, int) {}
func (p *recProgress) Step(int)          {}
func (p *recProgress) Notice(m string) {
	p.mu.Lock()
	p.notices = append(p.notices, m)
	p.mu.Unlock()
	if p.noticed != nil {
		select {
		case p.noticed <- struct{}{}:
		default:
		}
	}
}

func TestPublishSecondWriterFailsOrWaits(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	held, err := acquireLock(ctx, dir, false, NoProgress{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Publish(ctx, dir, fakeEntries(5, "a"), WithLockWait(false))
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("want ErrLocked naming our pid, got %v", err)
	}

	// A cancelled wait gives up with the context's error.
	cctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
	_, err = Publish(cctx, dir, fakeEntries(5, "a"))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled wait: %v", err)
	}

	// A waiting writer says whom it waits for, and proceeds on release.
	p := &recProgress{noticed: make(chan struct{}, 1)}
	done := make(chan error, 1)
	go func() {
		_, err := Publish(ctx, dir, fakeEntries(5, "a"), WithProgress(p))
		done <- err
	}()
	select {
	case <-p.noticed:
	case err := <-done:
		t.Fatalf("second writer did not wait: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no waiting notice")
	}
	p.mu.Lock()
	msg := p.notices[0]
	p.mu.Unlock()
	if !strings.Contains(msg, "waiting for lock") || !strings.Contains(msg, "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("notice %q", msg)
	}
	select {
	case err := <-done:
		t.Fatalf("second writer finished while lock held: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	held.release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkRepodata(t, dir, fakeEntries(5, "a"))
}

// helperHoldLock is the child of the killed-holder test: the test binary
// with REPOCTL_HOLD_LOCK set (TestMain dispatches) takes the lock.
func helperHoldLock(dir string) {
	if _, err := acquireLock(context.Background(), dir, false, NoProgress{}); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	time.Sleep(time.Hour)
}

func TestPublishLockOfKilledProcessDoesNotBlock(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "REPOCTL_HOLD_LOCK="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "locked" {
		cmd.Process.Kill()
		t.Fatalf("helper: %q %v", line, err)
	}
	ctx := context.Background()
	_, err = Publish(ctx, dir, fakeEntries(3, "a"), WithLockWait(false))
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(cmd.Process.Pid)) {
		cmd.Process.Kill()
		t.Fatalf("while child holds lock: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// The lock file is still there, with the dead pid in it.
	b, err := os.ReadFile(filepath.Join(dir, LockFileName))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(b)) != strconv.Itoa(cmd.Process.Pid) {
		t.Fatalf("lock file content %q", b)
	}
	if _, err := Publish(ctx, dir, fakeEntries(3, "a"), WithLockWait(false)); err != nil {
		t.Fatalf("stale lock blocked: %v", err)
	}
}

func TestPublishGracePeriod(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	clock := time.Unix(1800000000, 0)
	now := func(c *publishConfig) error { c.now = func() time.Time { return clock }; return nil }
	if _, err := Publish(ctx, dir, fakeEntries(10, "a"), now); err != nil {
		t.Fatal(err)
	}
	first, err := ParseRepomd(mustRead(t, filepath.Join(dir, "repodata", "repomd.xml")))
	if err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(time.Minute)
	res, err := Publish(ctx, dir, fakeEntries(10, "b"), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Kept) != 3 || len(res.Removed) != 0 {
		t.Fatalf("kept %v removed %v", res.Kept, res.Removed)
	}
	for _, r := range first.Records {
		if !pathExists(filepath.Join(dir, r.Href)) {
			t.Fatalf("%s gone within grace", r.Href)
		}
	}
	// Unchanged publish after the grace period prunes in place.
	clock = clock.Add(DefaultGrace + time.Second)
	before := mustRead(t, filepath.Join(dir, "repodata", "repomd.xml"))
	res, err = Publish(ctx, dir, fakeEntries(10, "b"), now)
	if err != nil || res.Changed || len(res.Removed) != 3 {
		t.Fatalf("prune: %v %+v", err, res)
	}
	for _, r := range first.Records {
		if pathExists(filepath.Join(dir, r.Href)) {
			t.Fatalf("%s kept past grace", r.Href)
		}
	}
	if !bytes.Equal(before, mustRead(t, filepath.Join(dir, "repodata", "repomd.xml"))) {
		t.Fatal("prune rewrote repomd.xml")
	}
	checkRepodata(t, dir, fakeEntries(10, "b"))
	// Grace 0 drops superseded files at once.
	res, err = Publish(ctx, dir, fakeEntries(10, "c"), now, WithGrace(0))
	if err != nil || len(res.Removed) != 3 || len(res.Kept) != 0 {
		t.Fatalf("grace 0: %v %+v", err, res)
	}
	ents, err := os.ReadDir(filepath.Join(dir, "repodata"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 4 {
		t.Fatalf("repodata has %d files", len(ents))
	}
}

func TestPublishSignatureTravelsWithRepomd(t *testing.T) {
	for _, inPlace := range []bool{false, true} {
		t.Run(fmt.Sprint("inplace=", inPlace), func(t *testing.T) {
			forceInPlace = inPlace
			defer func() { forceInPlace = false }()
			dir := t.TempDir()
			ctx := context.Background()
			asc := filepath.Join(dir, "repodata", "repomd.xml.asc")
			res, err := Publish(ctx, dir, fakeEntries(10, "a"), WithSigner(fakeSign))
			if err != nil {
				t.Fatal(err)
			}
			check := func() {
				want, err := fakeSign(ctx, mustRead(t, filepath.Join(dir, "repodata", "repomd.xml")))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(mustRead(t, asc), want) {
					t.Fatal("repomd.xml.asc does not match repomd.xml")
				}
			}
			check()
			// Unsigned before: signing alone is a change.
			if err := os.Remove(asc); err != nil {
				t.Fatal(err)
			}
			if res, err = Publish(ctx, dir, fakeEntries(10, "a"), WithSigner(fakeSign)); err != nil || !res.Changed {
				t.Fatalf("re-sign: %v %+v", err, res)
			}
			check()
			if res, err = Publish(ctx, dir, fakeEntries(11, "a"), WithSigner(fakeSign)); err != nil || !res.Changed || res.InPlace != inPlace {
				t.Fatalf("%v %+v", err, res)
			}
			check()
			checkRepodata(t, dir, fakeEntries(11, "a"))
			// Publishing without a signer must not leave the old signature.
			if _, err = Publish(ctx, dir, fakeEntries(12, "a")); err != nil {
				t.Fatal(err)
			}
			if pathExists(asc) {
				t.Fatal("stale repomd.xml.asc left beside new repomd.xml")
			}
			checkRepodata(t, dir, fakeEntries(12, "a"))
		})
	}
}

// TestRepublishWhileReading reads repomd.xml and every file it names in a
// loop, directly and over HTTP, while the repository is republished 50
// times with changing content. No reader may ever see a missing file or a
// checksum mismatch; readers holding the directory open must see a
// signature that matches the repomd.xml beside it.
func TestRepublishWhileReading(t *testing.T) {
	t.Run("exchange", func(t *testing.T) { republishWhileReading(t, false) })
	// Without RENAME_EXCHANGE, files still never go missing or mismatch
	// (the signature may be briefly absent, so it is not checked).
	t.Run("in-place fallback", func(t *testing.T) {
		forceInPlace = true
		defer func() { forceInPlace = false }()
		republishWhileReading(t, true)
	})
}

func republishWhileReading(t *testing.T, inPlace bool) {
	dir := t.TempDir()
	ctx := context.Background()
	if _, err := Publish(ctx, dir, fakeEntries(50, "gen0"), WithSigner(fakeSign)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()

	var stop atomic.Bool
	var reads [3]atomic.Int64
	readers := 3
	if inPlace {
		readers = 2
	}
	errs := make(chan error, readers)
	verify := func(get func(string) ([]byte, error)) error {
		raw, err := get("repodata/repomd.xml")
		if err != nil {
			return fmt.Errorf("repomd.xml: %w", err)
		}
		md, err := ParseRepomd(raw)
		if err != nil {
			return fmt.Errorf("parsing repomd.xml: %w (%q)", err, raw)
		}
		if len(md.Records) != 3 {
			return fmt.Errorf("repomd.xml has %d records", len(md.Records))
		}
		for _, r := range md.Records {
			b, err := get(r.Href)
			if err != nil {
				return fmt.Errorf("revision %s names %s: %w", md.Revision, r.Href, err)
			}
			if s := sha256.Sum256(b); hex.EncodeToString(s[:]) != r.Checksum || int64(len(b)) != r.Size {
				return fmt.Errorf("revision %s: %s does not match its checksum", md.Revision, r.Href)
			}
		}
		return nil
	}
	run := func(i int, f func() error) {
		for !stop.Load() {
			if err := f(); err != nil {
				errs <- err
				return
			}
			reads[i].Add(1)
		}
		errs <- nil
	}
	go run(0, func() error {
		return verify(func(p string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, p)) })
	})
	go run(1, func() error {
		return verify(func(p string) ([]byte, error) {
			resp, err := http.Get(srv.URL + "/" + p)
			if err != nil {
				return nil, err
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				return nil, fmt.Errorf("HTTP %s", resp.Status)
			}
			return io.ReadAll(resp.Body)
		})
	})
	// Through a directory descriptor: one generation, seen whole.
	dirfdReader := func() error {
		fd, err := unix.Open(filepath.Join(dir, "repodata"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		read := func(name string) ([]byte, error) {
			f, err := unix.Openat(fd, name, unix.O_RDONLY, 0)
			if err != nil {
				return nil, err
			}
			file := os.NewFile(uintptr(f), name)
			defer file.Close()
			return io.ReadAll(file)
		}
		// A generation is never changed while it is live; after the
		// swap the old one is emptied and removed. So a missing file is
		// fine only if fd no longer is the live repodata/.
		gone := func() bool {
			var a, b unix.Stat_t
			if unix.Fstat(fd, &a) != nil {
				return false
			}
			if unix.Stat(filepath.Join(dir, "repodata"), &b) != nil {
				return false
			}
			return a.Ino != b.Ino || a.Dev != b.Dev
		}
		raw, err1 := read("repomd.xml")
		asc, err2 := read("repomd.xml.asc")
		if err1 != nil || err2 != nil {
			if gone() {
				return nil // a retired generation being removed
			}
			return fmt.Errorf("live generation lacks repomd.xml or .asc: %v %v", err1, err2)
		}
		want, err := fakeSign(ctx, raw)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(asc, want) {
			return fmt.Errorf("repomd.xml.asc does not match repomd.xml in one generation")
		}
		return nil
	}
	if !inPlace {
		go run(2, dirfdReader)
	}

	for i := 1; i <= 50; i++ {
		es := fakeEntries(50+i*3, fmt.Sprintf("gen%d", i))
		// Every generation kept: a reader may hold a repomd.xml many
		// publishes old here (2 ms apart); what is tested is the swap,
		// not the retention bound (TestRetainOldGenerations).
		res, err := Publish(ctx, dir, es, WithSigner(fakeSign), WithRevision(strconv.Itoa(i)), WithRetainOld(100))
		if err != nil {
			stop.Store(true)
			t.Fatal(err)
		}
		if !res.Changed || res.InPlace != inPlace {
			t.Fatalf("publish %d: changed %v, in place %v", i, res.Changed, res.InPlace)
		}
		time.Sleep(2 * time.Millisecond)
	}
	stop.Store(true)
	for range readers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("reads during 50 publishes: direct %d, http %d, dirfd %d", reads[0].Load(), reads[1].Load(), reads[2].Load())
	for i := range readers {
		if reads[i].Load() < 1 {
			t.Fatalf("reader %d only completed %d reads", i, reads[i].Load())
		}
	}
	checkRepodata(t, dir, fakeEntries(200, "gen50"))
}
