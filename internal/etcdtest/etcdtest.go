// Package etcdtest runs a real etcd server for tests: Debian's etcd-server
// (/usr/bin/etcd, installed by .ci/install-test-deps) as a one-member
// cluster on free loopback ports and a temporary data directory, with
// limits raised (MaxTxnOps, MaxRequestBytes) or etcd's own (StartWith
// Stock).
//
// It is for tests only: nothing in repoctl's commands imports it. A test
// that needs the server fails, never skips, when the binary is missing.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Limits the server runs with (its --max-txn-ops, --max-request-bytes)
// when started by Start.
const (
	MaxTxnOps       = 20000
	MaxRequestBytes = 32 << 20
)

// Limits are a server's --max-txn-ops and --max-request-bytes.
type Limits struct {
	MaxTxnOps, MaxRequestBytes int
}

// Stock are etcd's own defaults: what a server started without those
// flags allows.
var Stock = Limits{MaxTxnOps: 128, MaxRequestBytes: 1536 * 1024}

// Server is a running etcd. Endpoint is its client URL.
type Server struct {
	Endpoint string
	t        testing.TB
	dir      string
	log      string
	ports    [2]int
	cmd      *exec.Cmd
	done     chan error
	limits   Limits
}

// Binary is $REPOCTL_ETCD if set, else etcd on PATH or /usr/bin/etcd.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("REPOCTL_ETCD"); p != "" {
		return p
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	t.Fatal("etcd is missing: run .ci/install-test-deps (apt-get install etcd-server)")
	return ""
}

// Start runs etcd with the raised limits MaxTxnOps and MaxRequestBytes
// and waits until it answers a write and a read. It is killed when the
// test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Limits{MaxTxnOps: MaxTxnOps, MaxRequestBytes: MaxRequestBytes})
}

// StartWith is Start with the server's limits l (Stock: etcd's own).
func StartWith(t testing.TB, l Limits) *Server {
	t.Helper()
	s := &Server{t: t, dir: t.TempDir(), limits: l}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		s.ports = freePorts(t)
		if err = s.start(); err == nil {
			break
		}
		t.Logf("etcd did not start (attempt %d): %v", attempt+1, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(s.log)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("etcd log %s (tail):\n%s", s.log, b)
		}
	})
	return s
}

func (s *Server) start() error {
	client := "http://127.0.0.1:" + strconv.Itoa(s.ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(s.ports[1])
	s.Endpoint = client
	logf, err := os.CreateTemp(filepath.Dir(s.dir), "etcd-*.log")
	if err != nil {
		return err
	}
	s.log = logf.Name()
	cmd := exec.Command(Binary(s.t),
		"--name=etcdtest", "--data-dir="+filepath.Join(s.dir, "data"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=etcdtest="+peer, "--initial-cluster-state=new",
		"--max-txn-ops="+strconv.Itoa(s.limits.MaxTxnOps), "--max-request-bytes="+strconv.Itoa(s.limits.MaxRequestBytes),
		"--quota-backend-bytes="+strconv.Itoa(4<<30))
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: a test binary killed on a timeout takes its etcd along.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting etcd: %w", err)
	}
	logf.Close()
	s.cmd, s.done = cmd, make(chan error, 1)
	go func() { s.done <- cmd.Wait() }()
	if err := s.waitReady(); err != nil {
		s.Stop()
		b, _ := os.ReadFile(s.log)
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		return fmt.Errorf("%w\n%s", err, b)
	}
	return nil
}

func (s *Server) waitReady() error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(2 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			s.cmd = nil
			return fmt.Errorf("etcd exited: %v (last: %v)", err, last)
		case <-time.After(100 * time.Millisecond):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, last = cli.Put(ctx, "/etcdtest-ready", "1")
		if last == nil {
			_, last = cli.Get(ctx, "/etcdtest-ready")
		}
		cancel()
		if last == nil {
			return nil
		}
	}
	return fmt.Errorf("etcd %s not ready within 2m: %v", s.Endpoint, last)
}

// Client is a new client of the server, closed when the test ends.
func (s *Server) Client() *clientv3.Client {
	s.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { cli.Close() })
	return cli
}

// Stop kills etcd (SIGKILL; its data directory stays) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
	}
	s.cmd = nil
}

func freePorts(t testing.TB) [2]int {
	t.Helper()
	var out [2]int
	for i := range out {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close() // held until both are picked, so they differ
		out[i] = l.Addr().(*net.TCPAddr).Port
	}
	return out
}
