package serve

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server serves a listener through an http.Server with Limits, which a
// reload can replace while it serves (Apply): new connections get the new
// server (its idle timeout, minimum rate), the old one finishes the
// requests it has and goes. One accept loop takes the connections, at
// most the limit open at once across both servers; more wait in the
// kernel's accept queue, as with netutil.LimitListener, and a reload may
// change the limit.
type Server struct {
	ln    net.Listener
	h     http.Handler
	log   *slog.Logger
	fixed int // a connection limit of its own (the metrics listener); 0: the Limits'

	mu      sync.Mutex
	cond    *sync.Cond
	limit   int
	active  int
	stopped bool
	cur     *connQueue
	srv     *http.Server
	// retire ends with the runner: servers replaced by a reload still
	// finishing their requests are closed then.
	retire    context.Context
	endRetire context.CancelFunc
	retiring  sync.WaitGroup
}

// retireGrace bounds how long a replaced server may take for the
// requests it still has (a large download on a slow link).
const retireGrace = 10 * time.Minute

// NewServer serves h on ln with lim once Serve runs. fixedLimit, if
// positive, is the connection limit whatever lim and later Applies say.
func NewServer(ln net.Listener, h http.Handler, log *slog.Logger, lim Limits, fixedLimit int) *Server {
	hr := &Server{ln: ln, h: h, log: log, fixed: fixedLimit}
	hr.cond = sync.NewCond(&hr.mu)
	hr.retire, hr.endRetire = context.WithCancel(context.Background())
	hr.Apply(lim)
	return hr
}

// Apply installs a server built for lim for the connections from now on.
func (hr *Server) Apply(lim Limits) {
	q := &connQueue{addr: hr.ln.Addr(), conns: make(chan net.Conn), done: make(chan struct{})}
	srv := newHTTPServer(hr.h, hr.log, lim)
	go func() {
		if err := srv.Serve(q); err != nil && !errors.Is(err, http.ErrServerClosed) {
			hr.log.Error("HTTP server", "err", err)
		}
	}()
	limit := hr.fixed
	if limit <= 0 {
		limit = lim.MaxConnections
	}
	if limit <= 0 {
		limit = 128
	}
	hr.mu.Lock()
	old := hr.srv
	hr.cur, hr.srv, hr.limit = q, srv, limit
	stopped := hr.stopped
	hr.cond.Broadcast()
	hr.mu.Unlock()
	if stopped {
		srv.Close()
	}
	if old != nil {
		hr.retiring.Add(1)
		go func() {
			defer hr.retiring.Done()
			ctx, cancel := context.WithTimeout(hr.retire, retireGrace)
			defer cancel()
			if err := old.Shutdown(ctx); err != nil {
				old.Close()
			}
		}()
	}
}

// Serve accepts until ctx is done, then shuts the server down within
// grace (and closes what is left), like Run.
func (hr *Server) Serve(ctx context.Context, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- hr.acceptLoop() }()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	hr.mu.Lock()
	hr.stopped = true
	hr.cond.Broadcast()
	srv := hr.srv
	hr.mu.Unlock()
	hr.ln.Close()
	if err == nil {
		err = <-errc
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	serr := srv.Shutdown(sctx)
	if errors.Is(serr, context.DeadlineExceeded) {
		serr = srv.Close()
	}
	hr.endRetire()
	hr.retiring.Wait()
	if err != nil {
		return err
	}
	return serr
}

// acceptLoop takes connections while fewer than the limit are open and
// hands each to the current server. It returns nil once stopped.
func (hr *Server) acceptLoop() error {
	var delay time.Duration
	for {
		if !hr.acquire() {
			return nil
		}
		c, err := hr.ln.Accept()
		if err != nil {
			hr.release()
			hr.mu.Lock()
			stopped := hr.stopped
			hr.mu.Unlock()
			if stopped || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of descriptors and the like: wait and retry, as
			// http.Server does.
			if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				hr.log.Warn("HTTP accept failed; retrying", "err", err, "in", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		hr.dispatch(&countedConn{Conn: c, release: hr.release})
	}
}

func (hr *Server) dispatch(c net.Conn) {
	for {
		hr.mu.Lock()
		q, stopped := hr.cur, hr.stopped
		hr.mu.Unlock()
		if stopped {
			c.Close()
			return
		}
		select {
		case q.conns <- c:
			return
		case <-q.done:
			// Replaced by a reload (or stopping): ask again.
			if hr.curIs(q) {
				c.Close()
				return
			}
		}
	}
}

func (hr *Server) curIs(q *connQueue) bool {
	hr.mu.Lock()
	defer hr.mu.Unlock()
	return hr.cur == q
}

func (hr *Server) acquire() bool {
	hr.mu.Lock()
	defer hr.mu.Unlock()
	for !hr.stopped && hr.active >= hr.limit {
		hr.cond.Wait()
	}
	if hr.stopped {
		return false
	}
	hr.active++
	return true
}

func (hr *Server) release() {
	hr.mu.Lock()
	hr.active--
	hr.cond.Broadcast()
	hr.mu.Unlock()
}

// countedConn gives its slot back when it is closed, once.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// connQueue is the listener one http.Server accepts from: the runner's
// accept loop hands it connections.
type connQueue struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
