package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Drop-in directories that overlap what the pipeline writes would feed our
// own output back into it; the daemon refuses them at start.
func TestCheckDropIns(t *testing.T) {
	root := t.TempDir()
	for name, tc := range map[string]struct {
		toml string
		ok   bool
	}{
		"default":           {"", true},
		"two dirs":          {"[[dropin]]\ndir = \"incoming\"\n[[dropin]]\ndir = \"/srv/uploads\"\n", true},
		"rejected":          {"[[dropin]]\ndir = \"rejected\"\n", false},
		"inside repo":       {"[[dropin]]\ndir = \"repo/main\"\n", false},
		"above spool":       {"[[dropin]]\ndir = \".\"\n", false},
		"spool":             {"[[dropin]]\ndir = \"spool\"\n", false},
		"keys":              {"[[dropin]]\ndir = \"keys\"\n", false},
		"twice":             {"[[dropin]]\ndir = \"in\"\n[[dropin]]\ndir = \"in/\"\n", false},
		"sibling prefix ok": {"[[dropin]]\ndir = \"repo-uploads\"\n", true},
	} {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "repoctl.toml")
			if err := os.WriteFile(f, []byte(tc.toml), 0o644); err != nil {
				t.Fatal(err)
			}
			// LoadConfig refuses them already (config check does too);
			// the daemon checks again.
			cfg, err := LoadConfig(root, f)
			if err == nil {
				_, err = checkDropIns(cfg)
			} else if !errors.Is(err, ErrConfigFile) {
				t.Errorf("LoadConfig: %v, want ErrConfigFile", err)
			}
			if tc.ok && err != nil {
				t.Errorf("refused: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrBadConfig) {
				t.Errorf("got %v, want ErrBadConfig", err)
			}
		})
	}
}

// A batch that fails as a whole (here: the pipeline dies right after
// journaling, then right after signing) is resumed after a back-off; the
// file ends up published without a new event or a restart.
func TestDaemonRetriesFailedBatch(t *testing.T) {
	root, _ := newTestRoot(t, "")
	var mu sync.Mutex
	var hits []string
	failpoint = func(state string) error {
		mu.Lock()
		defer mu.Unlock()
		if (state == stateReceived && len(hits) == 0) || (state == stateSigned && len(hits) == 1) {
			hits = append(hits, state)
			return errors.New("injected failure at " + state)
		}
		return nil
	}
	defer func() { failpoint = nil }()

	var logBuf syncBuffer
	defer func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", logBuf.String())
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan DaemonInfo, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- RunDaemon(ctx, root, WithHTTPListen("off"), WithReady(func(i DaemonInfo) { ready <- i }),
			WithDaemonLogger(slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(2 * time.Minute):
		t.Fatal("daemon not ready")
	}
	in := validInput(t, helloSpec("retry-me"))
	dropFile(t, filepath.Join(root, "incoming"), in.name, in.body)
	repoDir := filepath.Join(root, "repo", "main", "staging", "el", "9", "x86_64")
	waitFor(t, time.Minute, "the package after two failed batches", func() (bool, string) {
		pk, err := repodataPackages(repoDir)
		mu.Lock()
		defer mu.Unlock()
		_, ok := pk[in.nvra]
		return ok && err == nil, fmt.Sprintf("failures %v, %d packages, %v", hits, len(pk), err)
	})
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hits) != 2 {
		t.Errorf("injected failures %v, want both", hits)
	}
	checkAccounted(t, root, []stormInput{in})
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Under systemd (Type=notify) the daemon says READY=1 once it serves and
// STOPPING=1 when it stops.
func TestDaemonSdNotify(t *testing.T) {
	root, _ := newTestRoot(t, "[signing]\nalgo = \"ed25519\"\n")
	dir, err := os.MkdirTemp("", "notify")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	// WatchdogSec=200ms as systemd passes it: pings every 100ms.
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- RunDaemon(ctx, root, WithHTTPListen("127.0.0.1:0")) }()
	read := func() string {
		if err := conn.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 512)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("reading notify socket: %v", err)
		}
		return string(buf[:n])
	}
	if msg := read(); !strings.Contains(msg, "READY=1") {
		t.Fatalf("first notification %q, want READY=1", msg)
	}
	// Ready means ready: the control socket answers.
	c, err := Dial(context.Background(), filepath.Join(root, "repoctl.sock"), time.Second)
	if err != nil {
		t.Fatalf("READY=1 but the socket does not answer: %v", err)
	}
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// The main loop pings the watchdog while it serves.
	if msg := read(); msg != "WATCHDOG=1" {
		t.Fatalf("notification after READY=1 %q, want WATCHDOG=1", msg)
	}
	if msg := read(); msg != "WATCHDOG=1" {
		t.Fatalf("second notification after READY=1 %q, want WATCHDOG=1 again", msg)
	}
	cancel()
	for {
		msg := read()
		if msg == "WATCHDOG=1" {
			continue // sent before the loop saw the stop
		}
		if !strings.Contains(msg, "STOPPING=1") {
			t.Fatalf("notification on stop %q, want STOPPING=1", msg)
		}
		break
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// Nothing after STOPPING=1: the watchdog stopped with the loop.
	if err := conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if n, err := conn.Read(make([]byte, 512)); err == nil {
		t.Errorf("a notification after the daemon stopped (%d bytes)", n)
	}
}
