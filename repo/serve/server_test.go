package serve

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A reload replaces the HTTP server under a listener: a request in
// progress finishes on the old server, new connections go to the new one,
// and a raised max_connections admits a connection the old limit held in
// the accept queue.
func TestServerReload(t *testing.T) {
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
	lim := Limits{MaxConnections: 1, IdleTimeout: 60 * time.Second, MinRate: 16384}
	hr := NewServer(ln, h, slog.New(slog.DiscardHandler), lim, 0)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- hr.Serve(ctx, 5*time.Second) }()

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
	lim.MaxConnections = 2
	lim.MinRate = 8192
	hr.Apply(lim)
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
