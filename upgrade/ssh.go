package upgrade

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// maxOutput bounds what is kept of a command's stdout and of its stderr:
// a runaway command must not fill memory or the state DB.
const maxOutput = 64 << 10

// CommandResult is what one command did on one host.
type CommandResult struct {
	ExitStatus int
	Stdout     string
	Stderr     string
	Duration   time.Duration
}

// boundedBuffer keeps the first maxOutput bytes and counts the rest.
type boundedBuffer struct {
	b       []byte
	dropped int
}

func (w *boundedBuffer) Write(p []byte) (int, error) {
	room := maxOutput - len(w.b)
	if room > len(p) {
		room = len(p)
	}
	if room > 0 {
		w.b = append(w.b, p[:room]...)
	}
	w.dropped += len(p) - room
	return len(p), nil
}

func (w *boundedBuffer) String() string {
	if w.dropped > 0 {
		return string(w.b) + fmt.Sprintf("\n[... %d bytes dropped]", w.dropped)
	}
	return string(w.b)
}

// sshTransport runs commands on hosts, caching one client per host.
type sshTransport struct {
	settings Settings
	hostKeys ssh.HostKeyCallback
	auth     []ssh.AuthMethod
	closers  []func() error

	mu      sync.Mutex
	clients map[string]*ssh.Client
}

func newSSHTransport(s Settings) (*sshTransport, error) {
	hk, err := knownhosts.New(s.KnownHosts)
	if err != nil {
		return nil, fmt.Errorf("reading known_hosts %q: %w", s.KnownHosts, err)
	}
	t := &sshTransport{settings: s, hostKeys: hk, clients: map[string]*ssh.Client{}}
	var signers []ssh.Signer
	if s.IdentityFile != "" {
		b, err := os.ReadFile(s.IdentityFile)
		if err != nil {
			return nil, fmt.Errorf("reading identity %q: %w", s.IdentityFile, err)
		}
		k, err := ssh.ParsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("parsing identity %q: %w", s.IdentityFile, err)
		}
		signers = append(signers, k)
	}
	var ag agent.ExtendedAgent
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		conn, err := net.DialTimeout("unix", sock, s.ConnectTimeout)
		if err != nil {
			return nil, fmt.Errorf("connecting to ssh-agent %q: %w", sock, err)
		}
		t.closers = append(t.closers, conn.Close)
		ag = agent.NewClient(conn)
	}
	if len(signers) == 0 && ag == nil {
		return nil, fmt.Errorf("%w: no identity_file configured and SSH_AUTH_SOCK is not set", ErrInventory)
	}
	t.auth = []ssh.AuthMethod{ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
		out := append([]ssh.Signer(nil), signers...)
		if ag != nil {
			as, err := ag.Signers()
			if err != nil {
				return nil, fmt.Errorf("listing ssh-agent keys: %w", err)
			}
			out = append(out, as...)
		}
		return out, nil
	})}
	return t, nil
}

// hostKeyAlgorithms asks known_hosts which key types it holds for addr, so
// that the server is asked for a key we can check rather than its first
// preference (which would look like a mismatch).
func (t *sshTransport) hostKeyAlgorithms(addr string) []string {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	probe, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil
	}
	tcp, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil
	}
	err = t.hostKeys(addr, tcp, probe.PublicKey())
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return nil
	}
	var algos []string
	for _, k := range ke.Want {
		switch k.Key.Type() {
		case ssh.KeyAlgoRSA:
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			algos = append(algos, k.Key.Type())
		}
	}
	return algos
}

func (t *sshTransport) client(ctx context.Context, tg Target) (*ssh.Client, error) {
	addr := tg.Addr()
	key := tg.User + "@" + addr
	t.mu.Lock()
	c := t.clients[key]
	t.mu.Unlock()
	if c != nil {
		return c, nil
	}
	cfg := &ssh.ClientConfig{
		User: tg.User, Auth: t.auth, Timeout: t.settings.ConnectTimeout,
		HostKeyAlgorithms: t.hostKeyAlgorithms(addr),
		HostKeyCallback: func(hostname string, remote net.Addr, k ssh.PublicKey) error {
			err := t.hostKeys(hostname, remote, k)
			var ke *knownhosts.KeyError
			if errors.As(err, &ke) {
				if len(ke.Want) == 0 {
					return fmt.Errorf("%w: %s (%s %s) is not in %q; verify it and add it (ssh-keyscan)",
						ErrUnknownHost, hostname, k.Type(), ssh.FingerprintSHA256(k), t.settings.KnownHosts)
				}
				return fmt.Errorf("%w: %s offered %s %s, %q has another key",
					ErrHostKeyMismatch, hostname, k.Type(), ssh.FingerprintSHA256(k), t.settings.KnownHosts)
			}
			return err
		},
	}
	dctx, cancel := context.WithTimeout(ctx, t.settings.ConnectTimeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s (%s): %w", tg.Host, addr, err)
	}
	// The handshake shares the connect deadline; it is lifted once done.
	deadline, _ := dctx.Deadline()
	_ = conn.SetDeadline(deadline)
	cc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ssh handshake with %s (%s): %w", tg.Host, addr, err)
	}
	_ = conn.SetDeadline(time.Time{})
	c = ssh.NewClient(cc, chans, reqs)
	t.mu.Lock()
	if old := t.clients[key]; old != nil {
		t.mu.Unlock()
		c.Close()
		return old, nil
	}
	t.clients[key] = c
	t.mu.Unlock()
	return c, nil
}

func (t *sshTransport) drop(tg Target, c *ssh.Client) {
	key := tg.User + "@" + tg.Addr()
	t.mu.Lock()
	if t.clients[key] == c {
		delete(t.clients, key)
	}
	t.mu.Unlock()
	c.Close()
}

// Run executes cmd on the host with the command timeout. A non-zero exit is
// reported in the result, not as an error; errors are transport failures
// and timeouts.
func (t *sshTransport) Run(ctx context.Context, tg Target, cmd string) (CommandResult, error) {
	start := time.Now()
	var res CommandResult
	c, err := t.client(ctx, tg)
	if err != nil {
		return res, err
	}
	sess, err := c.NewSession()
	if err != nil {
		// A cached client may have died; retry once on a fresh one.
		t.drop(tg, c)
		if c, err = t.client(ctx, tg); err != nil {
			return res, err
		}
		if sess, err = c.NewSession(); err != nil {
			t.drop(tg, c)
			return res, fmt.Errorf("opening session on %s: %w", tg.Host, err)
		}
	}
	defer sess.Close()
	var stdout, stderr boundedBuffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	if err := sess.Start(cmd); err != nil {
		return res, fmt.Errorf("starting command on %s: %w", tg.Host, err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	timer := time.NewTimer(t.settings.CommandTimeout)
	defer timer.Stop()
	select {
	case err = <-done:
	case <-timer.C:
		_ = sess.Signal(ssh.SIGKILL)
		sess.Close()
		err = fmt.Errorf("command on %s timed out after %s", tg.Host, t.settings.CommandTimeout)
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGKILL)
		sess.Close()
		err = ctx.Err()
	}
	res.Duration = time.Since(start)
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	var ee *ssh.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.ExitStatus = ee.ExitStatus()
		err = nil
	default:
		var me *ssh.ExitMissingError
		if errors.As(err, &me) {
			t.drop(tg, c)
			err = fmt.Errorf("command on %s ended without exit status (connection lost?)", tg.Host)
		}
		res.ExitStatus = -1
	}
	return res, err
}

// Close closes every cached connection.
func (t *sshTransport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, c := range t.clients {
		c.Close()
		delete(t.clients, k)
	}
	for _, f := range t.closers {
		f()
	}
	return nil
}
