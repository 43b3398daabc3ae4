package repo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// The control socket knows who is at the other end and takes files as
// open descriptors, so that the daemon (often root) never opens a path
// with its own rights for a client: a client can only publish what it can
// read itself, and a FIFO swapped in behind a path has no window. Both
// come from the kernel: SO_PEERCRED at accept, SCM_RIGHTS with the bytes
// of the request.

// maxPassFiles is how many descriptors one request carries; the kernel
// takes at most 253 per message (SCM_MAX_FD). The client sends larger adds
// in several requests.
const maxPassFiles = 200

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
	return &peerConn{UnixConn: c, caller: newCaller(uc.Uid, uc.Gid, uc.Pid), release: release,
		oob: make([]byte, unix.CmsgSpace(4*(maxPassFiles+1)))}, nil
}

// peerConn is one control connection: its peer's credentials, and the
// descriptors that arrived with its bytes until a handler takes them.
type peerConn struct {
	*net.UnixConn
	caller  *Caller
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
			if len(c.files) >= maxPassFiles {
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
		return nil, fmt.Errorf("%w: more than %d descriptors in one request", ErrBadRequest, maxPassFiles)
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

// peerConnContext puts the connection into every request's context.
func peerConnContext(ctx context.Context, c net.Conn) context.Context {
	if pc, ok := c.(*peerConn); ok {
		return context.WithValue(ctx, peerConnKey{}, pc)
	}
	return ctx
}

func peerConnFrom(ctx context.Context) *peerConn {
	pc, _ := ctx.Value(peerConnKey{}).(*peerConn)
	return pc
}

// fdConn is the client's side: the next Write carries files as SCM_RIGHTS.
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
