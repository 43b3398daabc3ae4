// Package testkit holds the test helpers that more than one package's
// tests use: waiting for a condition, and the big file and the client that
// never reads which the HTTP servers' slow-client limits are tested with.
//
// It is for _test.go files only: nothing outside tests may import it.
package testkit

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// WaitFor polls cond until it holds, failing the test after timeout with
// what cond last said. Tests wait for a condition, never for a time.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s; last state: %s", timeout, what, last)
}

// BigFileSize is larger than what the kernel buffers for one loopback
// connection (net.ipv4.tcp_wmem's maximum is 4 MiB by default), so a
// client that does not read blocks the server's writes.
const BigFileSize = 8 << 20

// WriteBigFile writes BigFileSize pseudo-random bytes to path and returns
// them.
func WriteBigFile(t testing.TB, path string) []byte {
	t.Helper()
	b := make([]byte, BigFileSize)
	rand.NewChaCha8([32]byte{42}).Read(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// SlowConn connects to addr with a tiny receive buffer and sends a GET for
// path; it reads nothing.
func SlowConn(t testing.TB, addr, path string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 30 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetWriteDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr); err != nil {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		t.Fatal(err)
	}
	return c
}
