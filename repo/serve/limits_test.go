//go:build linux

package serve

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/repoctl/repoctl/internal/testkit"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The slow-client helpers are shared with repo's tests.
const bigFileSize = testkit.BigFileSize

var (
	writeBigFile = testkit.WriteBigFile
	slowConn     = testkit.SlowConn
	waitFor      = testkit.WaitFor
)

// trackingListener counts the connections the server has closed.
type trackingListener struct {
	net.Listener
	closed atomic.Int64
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &trackingConn{Conn: c, l: l}, nil
}

type trackingConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

func (c *trackingConn) Close() error {
	c.once.Do(func() { c.l.closed.Add(1) })
	return c.Conn.Close()
}

// startLimitedHTTP serves h with the limits of a Server (newHTTPServer
// behind limitListener) and the given write floor, until the test ends.
func startLimitedHTTP(t *testing.T, h http.Handler, lim Limits, floor time.Duration) (addr string, tl *trackingListener) {
	t.Helper()
	lim.WriteFloor = floor
	srv := newHTTPServer(h, slog.New(slog.DiscardHandler), lim)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl = &trackingListener{Listener: ln}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Run(ctx, limitListener(tl, lim.MaxConnections), srv, time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("serving HTTP: %v", err)
		}
	})
	return ln.Addr().String(), tl
}

// A client that reads slower than min_rate is disconnected; a normal one
// downloads the whole file, and Range and HEAD requests work through the
// rate-enforcing writer.
func TestHTTPMinRate(t *testing.T) {
	dir := t.TempDir()
	want := writeBigFile(t, filepath.Join(dir, "big.bin"))
	h, closeRoot, err := NewFileHandler(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeRoot()
	lim := Limits{MaxConnections: 8, IdleTimeout: 60 * time.Second, MinRate: 1 << 20}

	t.Run("slow reader", func(t *testing.T) {
		addr, tl := startLimitedHTTP(t, h, lim, 100*time.Millisecond)
		c := slowConn(t, addr, "/big.bin")
		defer c.Close()
		if err := c.SetReadDeadline(time.Now().Add(2 * time.Minute)); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReaderSize(c, 4096)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || resp.ContentLength != bigFileSize {
			t.Fatalf("status %d, length %d", resp.StatusCode, resp.ContentLength)
		}
		first := make([]byte, 100)
		if _, err := io.ReadFull(resp.Body, first); err != nil {
			t.Fatal(err)
		}
		// Stop reading until the server gives up on us.
		waitFor(t, 2*time.Minute, "the server to close the slow connection", func() (bool, string) {
			n := tl.closed.Load()
			return n >= 1, fmt.Sprintf("%d connections closed", n)
		})
		// What the kernel had buffered still arrives, then the stream
		// ends short of the file.
		if err := c.SetReadDeadline(time.Now().Add(2 * time.Minute)); err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		got := int64(len(first)) + n
		if err == nil || got >= bigFileSize {
			t.Fatalf("slow reader got %d of %d bytes, err %v; want cut off", got, bigFileSize, err)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the server did not close the connection: %v", err)
		}
		t.Logf("slow reader cut off after %d of %d bytes: %v", got, bigFileSize, err)
	})

	t.Run("normal reader", func(t *testing.T) {
		addr, _ := startLimitedHTTP(t, h, lim, defaultWriteFloor)
		url := "http://" + addr + "/big.bin"
		client := &http.Client{Timeout: 2 * time.Minute}
		defer client.CloseIdleConnections()
		do := func(method string, hdr map[string]string) (*http.Response, []byte) {
			t.Helper()
			req, err := http.NewRequest(method, url, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("%s %v: reading body: %v", method, hdr, err)
			}
			return resp, b
		}

		resp, b := do("GET", nil)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(b, want) {
			t.Fatalf("GET: status %d, %d bytes, equal %v", resp.StatusCode, len(b), bytes.Equal(b, want))
		}

		resp, b = do("HEAD", nil)
		if resp.StatusCode != http.StatusOK || len(b) != 0 || resp.Header.Get("Content-Length") != strconv.Itoa(bigFileSize) {
			t.Fatalf("HEAD: status %d, %d bytes, Content-Length %q", resp.StatusCode, len(b), resp.Header.Get("Content-Length"))
		}

		const from, to = 1_000_000, 2_999_999
		resp, b = do("GET", map[string]string{"Range": fmt.Sprintf("bytes=%d-%d", from, to)})
		if cr := resp.Header.Get("Content-Range"); resp.StatusCode != http.StatusPartialContent ||
			cr != fmt.Sprintf("bytes %d-%d/%d", from, to, bigFileSize) || !bytes.Equal(b, want[from:to+1]) {
			t.Fatalf("Range: status %d, Content-Range %q, %d bytes", resp.StatusCode, cr, len(b))
		}

		resp, b = do("GET", map[string]string{"Range": "bytes=0-99,-65536"})
		mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if resp.StatusCode != http.StatusPartialContent || err != nil || mt != "multipart/byteranges" {
			t.Fatalf("multi-range: status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		mr := multipart.NewReader(bytes.NewReader(b), params["boundary"])
		for i, wantPart := range [][]byte{want[:100], want[bigFileSize-65536:]} {
			p, err := mr.NextPart()
			if err != nil {
				t.Fatalf("multi-range part %d: %v", i, err)
			}
			got, err := io.ReadAll(p)
			if err != nil || !bytes.Equal(got, wantPart) {
				t.Fatalf("multi-range part %d (%s): %d bytes, %v", i, p.Header.Get("Content-Range"), len(got), err)
			}
		}
		if _, err := mr.NextPart(); err != io.EOF {
			t.Fatalf("multi-range: more than two parts (%v)", err)
		}

		// A response without a body goes through the writer too.
		resp, b = do("GET", map[string]string{"If-Modified-Since": time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)})
		if resp.StatusCode != http.StatusNotModified || len(b) != 0 {
			t.Fatalf("conditional GET: status %d, %d bytes; want 304", resp.StatusCode, len(b))
		}
	})
}
