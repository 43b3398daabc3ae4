package repo

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A reload replaces the HTTP server under a listener: a request in
// progress finishes on the old server, new connections go to the new one,
// and a raised max_connections admits a connection the old limit held in
// the accept queue.
func TestHTTPRunnerReload(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	entered := make(chan struct{}, 4)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-release
		}
		fmt.Fprint(w, "ok "+r.URL.Path)
	})
	hc := HTTPConfig{MaxConnections: 1, IdleTimeout: "60s", MinRate: 16384}
	hr := newHTTPRunner(ln, h, slog.New(slog.DiscardHandler), hc, 0)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- hr.serve(ctx, 5*time.Second) }()

	get := func(c net.Conn, path string) (string, error) {
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
			return "", err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	// The one connection the limit allows, busy in a slow request.
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	slow := make(chan string, 1)
	go func() {
		body, err := get(a, "/slow")
		if err != nil {
			body = err.Error()
		}
		slow <- body
	}()
	select {
	case <-entered:
	case <-time.After(time.Minute):
		t.Fatal("the slow request never reached the handler")
	}
	// A second connection waits for a slot; the reload gives it one.
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	hc.MaxConnections = 2
	hc.MinRate = 8192
	hr.apply(hc)
	if err := b.SetDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if body, err := get(b, "/fast"); err != nil || body != "ok /fast" {
		t.Fatalf("new connection after the reload: %q %v", body, err)
	}
	hr.mu.Lock()
	limit := hr.limit
	hr.mu.Unlock()
	if limit != 2 {
		t.Errorf("limit %d after the reload, want 2", limit)
	}
	// The request that began on the old server finishes there.
	close(release)
	select {
	case body := <-slow:
		if body != "ok /slow" {
			t.Errorf("the request in progress during the reload: %q", body)
		}
	case <-time.After(time.Minute):
		t.Fatal("the request in progress never finished")
	}
	cancel()
	select {
	case err := <-served:
		if err != nil && !strings.Contains(err.Error(), "closed") {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the runner did not stop")
	}
}

// The reload in process, so that the race detector sees it: a drop-in
// directory added by a reload is watched and HTTP keeps serving, its
// server replaced.
func TestDaemonReloadInProcess(t *testing.T) {
	root, url := newTestRoot(t, "[signing]\nalgo = \"ed25519\"\n")
	cfgFile := filepath.Join(root, ConfigFileName)
	base, err := os.ReadFile(cfgFile)
	if err != nil {
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
	errc := make(chan error, 1)
	reload := make(chan struct{})
	go func() {
		errc <- RunDaemon(ctx, root, WithReload(reload), WithReady(func(i DaemonInfo) { ready <- i }),
			WithDaemonLogger(slog.New(slog.NewJSONHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(2 * time.Minute):
		t.Fatal("daemon not ready")
	}
	// [http] is in base already: the new key goes there.
	cfg := strings.Replace(string(base), "[http]\n", "[http]\nmax_connections = 64\n", 1) + "[[dropin]]\ndir = \"incoming\"\n[[dropin]]\ndir = \"more\"\n"
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	in := validInput(t, helloSpec("reloaded-in-process"))
	waitFor(t, time.Minute, "the reload", func() (bool, string) {
		return strings.Contains(logBuf.String(), `"msg":"config reloaded"`), logBuf.String()
	})
	dropFile(t, filepath.Join(root, "more"), in.name, in.body)
	repoDir := filepath.Join(root, "repo", "main", "staging", "el", "9", "x86_64")
	waitFor(t, time.Minute, "the package from the new directory", func() (bool, string) {
		pk, err := repodataPackages(repoDir)
		_, ok := pk[in.nvra]
		return ok && err == nil, fmt.Sprint(len(pk), err)
	})
	resp, err := http.Get(url + PublicKeyFile)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTP after the reload: %v %v", resp, err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logBuf.String(), `"changed":["dropin","http.max_connections"]`) {
		t.Errorf("reload did not log the changed keys")
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
