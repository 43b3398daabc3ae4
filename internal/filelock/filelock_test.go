package filelock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary play another process: with
// FILELOCK_HOLD=PATH it takes PATH, says "locked" and sleeps until it is
// killed; with FILELOCK_TRY_RO=PATH it tries to take a file it can only
// read.
func TestMain(m *testing.M) {
	if p := os.Getenv("FILELOCK_TRY_RO"); p != "" {
		// The child of TestReadOnlyFileIsNotLocked, as a user who may
		// only read p.
		if _, err := os.ReadFile(p); err != nil {
			fmt.Println("cannot read:", err)
			os.Exit(1)
		}
		if _, err := Acquire(context.Background(), p); !errors.Is(err, os.ErrPermission) {
			fmt.Println("not refused:", err)
			os.Exit(1)
		}
		fmt.Println("refused")
		os.Exit(0)
	}
	if p := os.Getenv("FILELOCK_HOLD"); p != "" {
		if _, err := Acquire(context.Background(), p, Create(0o644), RecordPID()); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		time.Sleep(time.Hour)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func holdInChild(t *testing.T, path string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "FILELOCK_HOLD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "locked" {
		t.Fatalf("holder: %q %v", line, err)
	}
	return cmd
}

// A holder killed with SIGKILL leaves its pid in the file, and blocks no
// one: the kernel dropped its flock.
func TestKilledHolderNeverBlocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	cmd := holdInChild(t, path)
	pid := strconv.Itoa(cmd.Process.Pid)
	_, err := Acquire(context.Background(), path, Create(0o644))
	var held *HeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrHeld) || held.Holder != "pid "+pid || held.Err != nil {
		t.Fatalf("while the child holds it: %v", err)
	}
	if h, err := Held(path); err != nil || !h {
		t.Fatalf("Held while the child holds it: %v %v", h, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(b)) != pid {
		t.Fatalf("lock file after the kill: %q", b)
	}
	if h, err := Held(path); err != nil || h {
		t.Fatalf("Held after the kill: %v %v", h, err)
	}
	l, err := Acquire(context.Background(), path, RecordPID())
	if err != nil {
		t.Fatalf("stale lock blocked: %v", err)
	}
	b, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("lock file names %q, not us", b)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 0 {
		t.Fatalf("released lock still names %q", b)
	}
}

// A waiter is told once whom it waits for, and gives up when its wait
// runs out or its context ends. flock conflicts between two descriptors
// of one process too, so the holder can be this test.
func TestWaitNotifiesThenGivesUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	first, err := Acquire(context.Background(), path, Create(0o600), RecordPID())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	me := "pid " + strconv.Itoa(os.Getpid())
	var told []string
	_, err = Acquire(context.Background(), path, Wait(300*time.Millisecond), Poll(10*time.Millisecond),
		Notify(func(h string) { told = append(told, h) }))
	var held *HeldError
	if !errors.As(err, &held) || held.Err != nil || held.Holder != me || len(told) != 1 || told[0] != me {
		t.Fatalf("wait ran out: %v, told %q", err, told)
	}
	ctx, cancel := context.WithCancel(context.Background())
	_, err = Acquire(ctx, path, Wait(Forever), Notify(func(string) { cancel() }))
	if !errors.As(err, &held) || !errors.Is(err, context.Canceled) || held.Holder != me {
		t.Fatalf("context ended: %v", err)
	}
	// Told it waits, the holder lets go, and the waiter gets the lock.
	got := make(chan error, 1)
	go func() {
		l, err := Acquire(context.Background(), path, Wait(Forever), Poll(10*time.Millisecond),
			Notify(func(string) { first.Close() }))
		if err == nil {
			err = l.Close()
		}
		got <- err
	}()
	if err := <-got; err != nil {
		t.Fatalf("waiting for a released lock: %v", err)
	}
}

// Without Create a missing file is an error and stays missing: Recover
// never brings back a journal its owner removed.
func TestNoCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gone.journal")
	if _, err := Acquire(context.Background(), path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Acquire created %s: %v", path, err)
	}
	if h, err := Held(path); h || err != nil {
		t.Fatalf("Held of a missing file: %v %v", h, err)
	}
}

// AcquireFile locks a file opened through an os.Root, with the same rules,
// and conflicts with a lock taken by path on the same file.
func TestAcquireFile(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	open := func() *os.File {
		f, err := root.OpenFile("r.lock", os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	name := filepath.Join(dir, "r.lock")
	l, err := AcquireFile(context.Background(), open(), name, RecordPID())
	if err != nil {
		t.Fatal(err)
	}
	second := open()
	_, err = AcquireFile(context.Background(), second, name)
	var held *HeldError
	if !errors.As(err, &held) || held.Holder != "pid "+strconv.Itoa(os.Getpid()) || held.Path != name {
		t.Fatalf("second AcquireFile: %v", err)
	}
	if _, err := second.Stat(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("a failed AcquireFile left its file open: %v", err)
	}
	if _, err := Acquire(context.Background(), name); !errors.Is(err, ErrHeld) {
		t.Fatalf("lock by path while the file is locked: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	pl, err := Acquire(context.Background(), name)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	if err := pl.Close(); err != nil {
		t.Fatal(err)
	}
}

// Only a process that may write the lock file can take it: a reader must
// not be able to stall the owner (flock(2) itself would allow it).
func TestReadOnlyFileIsNotLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ro.lock")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		if err := os.Chmod(path, 0o444); err != nil {
			t.Fatal(err)
		}
		if _, err := Acquire(context.Background(), path); !errors.Is(err, os.ErrPermission) {
			t.Fatalf("read-only lock file: %v", err)
		}
		return
	}
	// root passes every permission check: try as nobody, who may read the
	// root-owned 0644 file but not write it.
	for d := filepath.Dir(path); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", os.Args[0])
	cmd.Env = append(os.Environ(), "FILELOCK_TRY_RO="+path)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "refused" {
		t.Fatalf("as nobody: %v: %s", err, out)
	}
}
