package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The control socket knows who is at the other end and takes files as
// open descriptors, so that the daemon (often root) never opens a path
// with its own rights for a client: a client can only publish what it can
// read itself, and a FIFO swapped in behind a path has no window. Both
// come from the kernel: SO_PEERCRED at accept, SCM_RIGHTS with the bytes
// of the request.

// MaxPassFiles is how many descriptors one request carries; the kernel
// takes at most 253 per message (SCM_MAX_FD). A client sends more in
// several requests.
const MaxPassFiles = 200

// ErrTooManyFiles: more descriptors came with a request than it may carry
// (MaxPassFiles); all of them were closed.
var ErrTooManyFiles = fmt.Errorf("serve: more than %d descriptors in one request", MaxPassFiles)

// Peer is the kernel's word on who is at the other end of a control
// connection (SO_PEERCRED, read at accept).
type Peer struct {
	UID, GID uint32
	PID      int32
}

// maxSocketConns bounds concurrent control connections, so that a client
// that opens many cannot take the daemon's descriptors.
const maxSocketConns = 64

// peerListener hands out peerConns, at most maxSocketConns at a time
// (netutil.LimitListener's idea, but its wrapper would hide the
// *net.UnixConn that SCM_RIGHTS needs).
type peerListener struct {
	*net.UnixListener
	slots chan struct{}
}

func newPeerListener(ln *net.UnixListener) net.Listener {
	return &peerListener{UnixListener: ln, slots: make(chan struct{}, maxSocketConns)}
}

func (l *peerListener) Accept() (net.Conn, error) {
	l.slots <- struct{}{}
	c, err := l.AcceptUnix()
	if err != nil {
		<-l.slots
		return nil, err
	}
	release := sync.OnceFunc(func() { <-l.slots })
	raw, err := c.SyscallConn()
	if err != nil {
		c.Close()
		release()
		return nil, err
	}
	var uc *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		uc, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		c.Close()
		release()
		return nil, fmt.Errorf("control socket: reading peer credentials: %w", errors.Join(err, cerr))
	}
	return &peerConn{UnixConn: c, peer: Peer{UID: uc.Uid, GID: uc.Gid, PID: uc.Pid}, release: release,
		oob: make([]byte, unix.CmsgSpace(4*(MaxPassFiles+1)))}, nil
}

// peerConn is one control connection: its peer's credentials, and the
// descriptors that arrived with its bytes until a handler takes them.
type peerConn struct {
	*net.UnixConn
	peer    Peer
	release func() // the listener slot

	mu       sync.Mutex
	oob      []byte
	files    []*os.File
	overflow bool // more descriptors came than one request may carry
}

func (c *peerConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	oob := c.oob
	c.mu.Unlock()
	n, oobn, flags, _, err := c.ReadMsgUnix(b, oob)
	// recvmsg's -1 comes back as is with its error (a peer that reset
	// the connection); io.Reader promises 0 <= n, and bufio panics
	// otherwise.
	n, oobn = max(n, 0), max(oobn, 0)
	if oobn > 0 || flags&unix.MSG_CTRUNC != 0 {
		c.collect(oob[:oobn], flags&unix.MSG_CTRUNC != 0)
	}
	return n, err
}

func (c *peerConn) collect(oob []byte, truncated bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if truncated {
		c.overflow = true
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		c.overflow = true
		return
	}
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if len(c.files) >= MaxPassFiles {
				unix.Close(fd)
				c.overflow = true
				continue
			}
			c.files = append(c.files, os.NewFile(uintptr(fd), "passed"))
		}
	}
}

// takeFiles returns the descriptors received so far and forgets them; the
// caller closes them. It fails if some had to be dropped.
func (c *peerConn) takeFiles() ([]*os.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	files, over := c.files, c.overflow
	c.files, c.overflow = nil, false
	if over {
		closeFiles(files)
		return nil, ErrTooManyFiles
	}
	return files, nil
}

func (c *peerConn) Close() error {
	c.mu.Lock()
	closeFiles(c.files)
	c.files = nil
	c.mu.Unlock()
	c.release()
	return c.UnixConn.Close()
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

type peerConnKey struct{}

// connContext puts the connection into every request's context, then
// whatever the server's user adds for its peer.
func connContext(ctx context.Context, c net.Conn, more func(context.Context, Peer) context.Context) context.Context {
	pc, ok := c.(*peerConn)
	if !ok {
		return ctx
	}
	ctx = context.WithValue(ctx, peerConnKey{}, pc)
	if more != nil {
		ctx = more(ctx, pc.peer)
	}
	return ctx
}

func peerConnFrom(ctx context.Context) *peerConn {
	pc, _ := ctx.Value(peerConnKey{}).(*peerConn)
	return pc
}

// PeerFrom is the peer of the control connection a request of a
// NewSocketServer came over; false for anything else.
func PeerFrom(ctx context.Context) (Peer, bool) {
	pc := peerConnFrom(ctx)
	if pc == nil {
		return Peer{}, false
	}
	return pc.peer, true
}

// TakeFiles returns the descriptors received so far on the control
// connection ctx's request came over, and forgets them; the caller closes
// them. Descriptors arrive with the request's first bytes, so after the
// body is read they are all there. It fails with ErrTooManyFiles if some
// had to be dropped, and returns nothing outside a control connection.
func TakeFiles(ctx context.Context) ([]*os.File, error) {
	pc := peerConnFrom(ctx)
	if pc == nil {
		return nil, nil
	}
	return pc.takeFiles()
}

// ListenSocket binds the unix socket path with mode perm and hands out
// control connections: their peers' credentials are read at accept, and
// at most 64 are open at once. The caller holds whatever lock makes path
// its own, so a socket file left by a killed process is stale and removed.
func ListenSocket(path string, perm os.FileMode) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing stale socket %q: %w", path, err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listening on %q: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(path, perm); err != nil {
		ln.Close()
		return nil, fmt.Errorf("setting mode of %q: %w", path, err)
	}
	return newPeerListener(ln), nil
}

// NewSocketServer serves h on a ListenSocket listener (through Run).
// peerContext, if not nil, adds to each connection's context what its
// user makes of the Peer, once per connection.
func NewSocketServer(h http.Handler, log *slog.Logger, peerContext func(context.Context, Peer) context.Context) *http.Server {
	// No write timeout: an Add of many files legitimately takes long, and
	// the client's context bounds it.
	return &http.Server{
		Handler: h,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return connContext(ctx, c, peerContext)
		},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// SendFiles is the client's side of a control connection: the next Write
// on the returned conn carries files as SCM_RIGHTS, with its first bytes.
// The caller keeps files open until the request is answered.
func SendFiles(c *net.UnixConn, files []*os.File) net.Conn {
	return &fdConn{UnixConn: c, files: files}
}

type fdConn struct {
	*net.UnixConn
	files []*os.File
}

func (c *fdConn) Write(b []byte) (int, error) {
	if len(c.files) == 0 {
		return c.UnixConn.Write(b)
	}
	fds := make([]int, len(c.files))
	for i, f := range c.files {
		fds[i] = int(f.Fd())
	}
	n, _, err := c.WriteMsgUnix(b, unix.UnixRights(fds...), nil)
	if err == nil || n > 0 {
		c.files = nil // sent with the first bytes, once
	}
	return n, err
}
