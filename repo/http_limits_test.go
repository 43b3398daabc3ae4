//go:build linux

package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/repoctl/repoctl/internal/testkit"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The slow-client helpers are shared with repo/serve's tests.
var (
	writeBigFile = testkit.WriteBigFile
	slowConn     = testkit.SlowConn
)

// countFDs is the number of open file descriptors of this process.
func countFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// setHTTPWriteFloor sets httpWriteFloor until the test ends. httpLimits
// reads it, so set it before the server is made.
func setHTTPWriteFloor(t testing.TB, d time.Duration) {
	old := httpWriteFloor
	httpWriteFloor = d
	t.Cleanup(func() { httpWriteFloor = old })
}

// Many HTTP clients that never read a large file must neither take more
// file descriptors than [http] max_connections allows nor keep the control
// socket and ingest from working; once they go, HTTP serves again.
func TestHTTPConnectionLimitKeepsDaemonServing(t *testing.T) {
	const limit = 8
	const clients = 3 * limit
	// Hold the slow connections for the whole test: the limit alone must
	// protect the daemon, not the minimum rate.
	setHTTPWriteFloor(t, 10*time.Minute)

	root := t.TempDir()
	cfg := fmt.Sprintf("[http]\nmax_connections = %d\n[signing]\nalgo = \"ed25519\"\n", limit)
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var logBuf syncBuffer
	defer func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", logBuf.String())
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan DaemonInfo, 1)
	done := make(chan struct{})
	var daemonErr error
	go func() {
		defer close(done)
		daemonErr = RunDaemon(ctx, root, WithHTTPListen("127.0.0.1:0"), WithReady(func(i DaemonInfo) { ready <- i }),
			WithShutdownGrace(10*time.Second),
			WithDaemonLogger(slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelInfo}))))
	}()
	// Registered after t.TempDir, so it runs before ROOT is removed.
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			t.Error("daemon did not stop")
		}
	})
	var info DaemonInfo
	select {
	case info = <-ready:
	case <-done:
		t.Fatal(daemonErr)
	case <-time.After(2 * time.Minute):
		t.Fatal("daemon not ready")
	}
	writeBigFile(t, filepath.Join(root, "repo", "big.bin"))

	base := countFDs(t)
	conns := make([]net.Conn, 0, clients)
	closeConns := func() {
		for _, c := range conns {
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
		}
		conns = nil
	}
	defer closeConns()
	for range clients {
		conns = append(conns, slowConn(t, info.HTTP, "/big.bin"))
	}
	// Our own ends of the connections are ours; each connection the
	// daemon accepts costs it a socket and the open file it serves.
	// Wait until it has accepted as many as it may.
	waitFor(t, 2*time.Minute, "the daemon to accept max_connections slow clients", func() (bool, string) {
		n := countFDs(t) - base
		return n >= clients+2*limit, fmt.Sprintf("%d more fds (%d of them our client ends)", n, clients)
	})
	// Without the limit the daemon would hold 2 fds for each of the
	// clients; with it, at most 2 for each of limit, plus a margin for
	// the control connection, the store and the ingest below.
	const margin = 16
	maxFDs := clients + 2*limit + margin
	peak := 0
	sample := func(when string) {
		n := countFDs(t) - base
		peak = max(peak, n)
		if n > maxFDs {
			t.Errorf("%s: %d more fds than before the slow clients, want at most %d (%d clients, max_connections %d)",
				when, n, maxFDs, clients, limit)
		}
	}
	sample("slow clients held")

	// (a) The control socket and ingest still work.
	actx, acancel := context.WithTimeout(ctx, 2*time.Minute)
	defer acancel()
	c, err := Dial(actx, info.Socket, 30*time.Second)
	if err != nil {
		t.Fatalf("control socket while HTTP is saturated: %v", err)
	}
	defer c.Close()
	sample("control connection open")
	in := validInput(t, helloSpec("held-http"))
	pkgPath := filepath.Join(t.TempDir(), in.name)
	if err := os.WriteFile(pkgPath, in.body, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := c.Add(actx, []string{pkgPath}, AddOptions{})
	if err != nil {
		t.Fatalf("add while HTTP is saturated: %v", err)
	}
	if len(res) != 1 || res[0].Action != ActionAdded {
		t.Fatalf("add: %+v, want one added", res)
	}
	sample("after add")
	list, err := c.List(actx, ListOptions{Name: "held-http"})
	if err != nil {
		t.Fatalf("list while HTTP is saturated: %v", err)
	}
	if len(list) != 1 || list[0].Name != "held-http" {
		t.Fatalf("list: %+v, want held-http", list)
	}
	// (b) Still within bounds once the work is done.
	sample("after list")
	t.Logf("fds above base: peak %d, bound %d (%d client ends, max_connections %d)", peak, maxFDs, clients, limit)

	// (c) Once the slow clients go, HTTP serves again.
	closeConns()
	repomdPath := filepath.Join("main", "staging", "el", "9", "x86_64", "repodata", "repomd.xml")
	want, err := os.ReadFile(filepath.Join(root, "repo", repomdPath))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	url := "http://" + info.HTTP + "/" + filepath.ToSlash(repomdPath)
	waitFor(t, 2*time.Minute, "GET repomd.xml after the slow clients closed", func() (bool, string) {
		resp, err := hc.Get(url)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return false, err.Error()
		}
		return resp.StatusCode == http.StatusOK && bytes.Equal(b, want),
			fmt.Sprintf("status %d, %d bytes (want %d)", resp.StatusCode, len(b), len(want))
	})

	hc.CloseIdleConnections()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-done:
		if daemonErr != nil {
			t.Fatal(daemonErr)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("daemon did not stop")
	}
}

// The [http] limits default when unset or 0 and are refused when invalid.
func TestHTTPConfigLimits(t *testing.T) {
	for name, tc := range map[string]struct {
		toml    string
		ok      bool
		maxConn int
		idle    string
		minRate int
	}{
		"defaults":               {"", true, 128, "60s", 16384},
		"zero means default":     {"[http]\nmax_connections = 0\nmin_rate = 0\nidle_timeout = \"\"\n", true, 128, "60s", 16384},
		"set":                    {"[http]\nmax_connections = 8\nmin_rate = 1048576\nidle_timeout = \"5s\"\n", true, 8, "5s", 1 << 20},
		"negative connections":   {"[http]\nmax_connections = -1\n", false, 0, "", 0},
		"negative rate":          {"[http]\nmin_rate = -5\n", false, 0, "", 0},
		"bogus idle timeout":     {"[http]\nidle_timeout = \"bogus\"\n", false, 0, "", 0},
		"negative idle timeout":  {"[http]\nidle_timeout = \"-1s\"\n", false, 0, "", 0},
		"zero idle timeout":      {"[http]\nidle_timeout = \"0s\"\n", false, 0, "", 0},
		"wrong type connections": {"[http]\nmax_connections = \"many\"\n", false, 0, "", 0},
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(tc.toml), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := LoadConfig(root, "")
			if !tc.ok {
				if !errors.Is(err, ErrBadConfig) {
					t.Fatalf("got %v, want ErrBadConfig", err)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.HTTP.MaxConnections != tc.maxConn || c.HTTP.IdleTimeout != tc.idle || c.HTTP.MinRate != tc.minRate {
				t.Errorf("got max_connections %d, idle_timeout %q, min_rate %d; want %d, %q, %d",
					c.HTTP.MaxConnections, c.HTTP.IdleTimeout, c.HTTP.MinRate, tc.maxConn, tc.idle, tc.minRate)
			}
		})
	}
}
