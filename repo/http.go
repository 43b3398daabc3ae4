package repo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// NewFileHandler serves the tree under dir read-only: GET and HEAD only,
// nothing outside dir (os.Root refuses "..", absolute names and symlinks
// that leave the tree), and no dotfiles, which is where the publisher keeps
// its lock and staging directories. It is meant for development and small
// setups; production puts Apache or nginx in front of the same tree.
func NewFileHandler(dir string, log *slog.Logger) (http.Handler, func() error, error) {
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

// newHTTPServer wraps h with timeouts that keep slow or idle clients from
// holding connections forever while still letting a large RPM download.
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// serveHTTP serves h on addr until ctx is done, then shuts down gracefully
// within grace. ready receives the bound address (useful with port 0).
func serveHTTP(ctx context.Context, ln net.Listener, srv *http.Server, grace time.Duration) error {
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
