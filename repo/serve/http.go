package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/net/netutil"
)

// Fallback maps a request path that the tree does not hold to one it
// does, or reports false; root is the served tree. repo's answers a
// host's minor releasever (DIST/9.4/) from the major one (DIST/9/).
type Fallback func(root *os.Root, urlPath string) (string, bool)

// NewFileHandler serves the tree under dir read-only: GET and HEAD only,
// nothing outside dir (os.Root refuses "..", absolute names and symlinks
// that leave the tree), and no dotfiles, which is where the publisher keeps
// its lock and staging directories. fallback, if not nil, may serve a
// request from another path of the tree. It is meant for development and
// small setups; production puts Apache or nginx in front of the same tree.
// The returned func closes the tree.
func NewFileHandler(dir string, log *slog.Logger, fallback Fallback) (http.Handler, func() error, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("creating served tree %q: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("opening served tree %q: %w", dir, err)
	}
	files := http.FileServerFS(root.FS())
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			log.Debug("http", "method", r.Method, "path", r.URL.Path, "status", sw.status,
				"bytes", sw.n, "remote", r.RemoteAddr, "took", time.Since(start))
		}()
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			sw.Header().Set("Allow", "GET, HEAD")
			http.Error(sw, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		for _, seg := range strings.Split(r.URL.Path, "/") {
			if strings.HasPrefix(seg, ".") {
				http.NotFound(sw, r)
				return
			}
		}
		// repomd.xml and its signature change on every publish; the
		// content-addressed files beside them never do.
		if strings.HasSuffix(r.URL.Path, "/repomd.xml") || strings.HasSuffix(r.URL.Path, "/repomd.xml.asc") {
			sw.Header().Set("Cache-Control", "no-cache")
		}
		if fallback != nil {
			if p, ok := fallback(root, r.URL.Path); ok {
				r2 := *r
				u := *r.URL
				u.Path, u.RawPath = p, ""
				r2.URL = &u
				r = &r2
			}
		}
		files.ServeHTTP(sw, r)
	})
	return h, root.Close, nil
}

type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the writer below.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Limits bound what slow or idle HTTP clients can hold. A zero field is
// its default.
type Limits struct {
	// IdleTimeout closes a keep-alive connection idle that long (60s).
	IdleTimeout time.Duration
	// MinRate is the slowest a client may read a response, in bytes per
	// second (16384).
	MinRate int
	// MaxConnections is how many connections may be open at once (128).
	MaxConnections int
	// WriteFloor is the least time each write of a response gets, however
	// small, on top of the time its size takes at MinRate (10s).
	WriteFloor time.Duration
}

// defaultWriteFloor is Limits.WriteFloor's default.
const defaultWriteFloor = 10 * time.Second

// writeChunk is the most a single write sends under one deadline.
const writeChunk = 64 << 10

// newHTTPServer wraps h with limits that keep slow or idle clients from
// holding connections forever while still letting a large RPM download:
// the request must arrive within ReadHeaderTimeout and ReadTimeout, a
// keep-alive connection is closed after lim.IdleTimeout, and instead of one
// WriteTimeout for the whole response (which would cut off a big download
// on a slow but honest link) every write of at most 64 KiB gets its own
// deadline: lim.WriteFloor plus its size at lim.MinRate. A client that
// reads slower than that is disconnected. Listen through limitListener
// with lim.MaxConnections, or serve it from a Server, which does.
func newHTTPServer(h http.Handler, log *slog.Logger, lim Limits) *http.Server {
	idle := lim.IdleTimeout
	if idle <= 0 {
		idle = 60 * time.Second
	}
	minRate := lim.MinRate
	if minRate <= 0 {
		minRate = 16384
	}
	floor := lim.WriteFloor
	if floor <= 0 {
		floor = defaultWriteFloor
	}
	return &http.Server{
		Handler:           minRateHandler(h, minRate, floor),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       idle,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// limitListener lets at most n connections be open at once (n <= 0: the
// default, 128); further clients wait in the kernel's accept queue, where
// they cost the daemon no file descriptor.
func limitListener(ln net.Listener, n int) net.Listener {
	if n <= 0 {
		n = 128
	}
	return netutil.LimitListener(ln, n)
}

// minRateHandler serves h with a write deadline per chunk written, see
// newHTTPServer. The deadline is also set before h runs, so that a response
// without a body (HEAD, 304, an error) is bounded when it is flushed.
func minRateHandler(h http.Handler, minRate int, floor time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &rateWriter{ResponseWriter: w, rc: http.NewResponseController(w), minRate: minRate, floor: floor}
		rw.deadline(0)
		h.ServeHTTP(rw, r)
	})
}

// rateWriter enforces the minimum transfer rate on each write.
type rateWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	minRate int
	floor   time.Duration
	err     error // from SetWriteDeadline; the server does not support it
}

func (w *rateWriter) deadline(n int) {
	if w.err != nil {
		return
	}
	d := w.floor + time.Duration(int64(n)*int64(time.Second)/int64(w.minRate))
	w.err = w.rc.SetWriteDeadline(time.Now().Add(d))
}

func (w *rateWriter) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		chunk := b[:min(len(b), writeChunk)]
		w.deadline(len(chunk))
		n, err := w.ResponseWriter.Write(chunk)
		written += n
		if err == nil && n < len(chunk) {
			err = io.ErrShortWrite
		}
		if err != nil {
			return written, err
		}
		b = b[n:]
	}
	return written, nil
}

// FlushError is what http.ResponseController.Flush calls.
func (w *rateWriter) FlushError() error {
	w.deadline(0)
	return w.rc.Flush()
}

func (w *rateWriter) Flush() { w.FlushError() }

// Unwrap lets http.ResponseController reach the server's writer.
func (w *rateWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Run serves srv on ln until ctx is done, then shuts it down gracefully
// within grace and closes what is left.
func Run(ctx context.Context, ln net.Listener, srv *http.Server, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}
