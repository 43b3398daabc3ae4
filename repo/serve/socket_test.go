package serve

import (
	"net"
	"path/filepath"
	"testing"
)

// TestPeerConnReadAfterReset: a client that closes the control socket
// with a reply still unread resets the connection; the daemon's next read
// fails, and must say so with n = 0 (recvmsg's -1 made net/http's bufio
// panic: "reader returned negative count from Read").
func TestPeerConnReadAfterReset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pl := newPeerListener(ln)
	done := make(chan error, 1)
	go func() {
		c, err := net.Dial("unix", path)
		if err != nil {
			done <- err
			return
		}
		_, err = c.Write([]byte("request"))
		done <- err
		// Wait for the reply, then close without reading it: a reset.
		buf := make([]byte, 1)
		c.Read(buf)
		c.Close()
	}()
	c, err := pl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "request" {
		t.Fatalf("first read: %d %q %v", n, buf[:n], err)
	}
	// A reply larger than one byte, so that some stays unread when the
	// client closes.
	if _, err := c.Write(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		n, err = c.Read(buf)
		if n < 0 {
			t.Fatalf("Read returned n = %d (%v)", n, err)
		}
		if err != nil {
			return
		}
	}
	t.Fatal("reads after the peer closed never failed")
}
