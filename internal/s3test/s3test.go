// Package s3test runs a real S3 server for tests: SeaweedFS's `weed
// server` with its S3 gateway, on free loopback ports and a temporary
// directory, with anonymous access. .ci/build-weed builds the binary once
// (from the Go module version in .ci/weed.version) and caches it outside
// the tree; .ci/install-test-deps runs it.
//
// It is for tests only: nothing in repoctl's commands imports it. A test
// that needs the server fails, never skips, when the binary is missing.
package s3test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Binary is the cached weed binary: $REPOCTL_WEED if set, else
// CACHE/weed-VERSION, CACHE being $REPOCTL_TEST_CACHE, else
// $XDG_CACHE_HOME/repoctl-test, else ~/.cache/repoctl-test, the paths
// .ci/build-weed writes. The test fails when it is not there.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("REPOCTL_WEED"); p != "" {
		return p
	}
	p, err := binaryPath()
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("the SeaweedFS binary %s is missing: run .ci/install-test-deps (or .ci/build-weed) once", p)
	}
	return p
}

func binaryPath() (string, error) {
	mod, err := moduleRoot()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(mod, ".ci", "weed.version"))
	if err != nil {
		return "", fmt.Errorf("reading the SeaweedFS version: %w", err)
	}
	cache := os.Getenv("REPOCTL_TEST_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", err
			}
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "repoctl-test")
	}
	return filepath.Join(cache, "weed-"+strings.TrimSpace(string(b))), nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("s3test: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Server is a running weed server. Endpoint is its S3 URL
// (http://127.0.0.1:PORT).
type Server struct {
	Endpoint string
	t        testing.TB
	bin      string
	dir      string
	ports    []int
	cmd      *exec.Cmd
	done     chan error
	log      string
	Client   *minio.Client
}

// Start runs a weed server on free ports (master, volume, filer and S3,
// each with its gRPC port, so that parallel test packages do not
// collide) and waits until its S3 gateway creates a bucket and stores
// and returns an object. It is stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t), dir: t.TempDir()}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		s.ports = freePorts(t, 8)
		if err = s.start(); err == nil {
			break
		}
		// A port another process took between picking and binding:
		// another set.
		t.Logf("weed server did not start (attempt %d): %v", attempt+1, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(s.log)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("weed log %s (tail):\n%s", s.log, b)
		}
	})
	return s
}

// Restart starts the server again on its directory and ports after Stop.
func (s *Server) Restart() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatal("s3test: Restart of a running server")
	}
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}

func (s *Server) start() error {
	p := s.ports
	s.Endpoint = "http://127.0.0.1:" + strconv.Itoa(p[6])
	logf, err := os.CreateTemp(filepath.Dir(s.dir), "weed-*.log")
	if err != nil {
		return err
	}
	s.log = logf.Name()
	args := []string{"server", "-dir=" + s.dir, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-master.port=" + strconv.Itoa(p[0]), "-master.port.grpc=" + strconv.Itoa(p[1]),
		"-volume.port=" + strconv.Itoa(p[2]), "-volume.port.grpc=" + strconv.Itoa(p[3]),
		"-filer", "-filer.port=" + strconv.Itoa(p[4]), "-filer.port.grpc=" + strconv.Itoa(p[5]),
		"-s3", "-s3.port=" + strconv.Itoa(p[6]), "-s3.port.grpc=" + strconv.Itoa(p[7]),
		"-s3.port.iceberg=0", "-s3.port.lance=0",
		"-master.telemetry=false", "-master.volumeSizeLimitMB=256", "-volume.max=0",
		"-filer.localSocket=" + filepath.Join(s.dir, "filer.sock"),
		"-s3.localSocket=" + filepath.Join(s.dir, "s3.sock"),
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %w", s.bin, err)
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

// waitReady polls until the gateway stores and returns an object: the
// master, a volume and the filer are all up by then.
func (s *Server) waitReady() error {
	c, err := minio.New(strings.TrimPrefix(s.Endpoint, "http://"), &minio.Options{
		Creds: credentials.NewStatic("", "", "", credentials.SignatureAnonymous), MaxRetries: 1})
	if err != nil {
		return err
	}
	s.Client = c
	deadline := time.Now().Add(3 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			s.cmd = nil
			return fmt.Errorf("weed server exited: %v (last: %v)", err, last)
		case <-time.After(200 * time.Millisecond):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		last = s.probe(ctx)
		cancel()
		if last == nil {
			return nil
		}
	}
	return fmt.Errorf("weed server's S3 gateway %s not ready within 3m: %v", s.Endpoint, last)
}

func (s *Server) probe(ctx context.Context) error {
	const b = "s3test-ready"
	if ok, err := s.Client.BucketExists(ctx, b); err != nil {
		return err
	} else if !ok {
		if err := s.Client.MakeBucket(ctx, b, minio.MakeBucketOptions{}); err != nil {
			return err
		}
	}
	body := []byte("ready\n")
	if _, err := s.Client.PutObject(ctx, b, "probe", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		return err
	}
	o, err := s.Client.GetObject(ctx, b, "probe", minio.GetObjectOptions{})
	if err != nil {
		return err
	}
	defer o.Close()
	var got bytes.Buffer
	if _, err := got.ReadFrom(o); err != nil {
		return err
	}
	if !bytes.Equal(got.Bytes(), body) {
		return fmt.Errorf("probe object reads %q", got.Bytes())
	}
	return nil
}

// Bucket creates a bucket and returns its name.
func (s *Server) Bucket(name string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Client.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		s.t.Fatalf("creating bucket %q: %v", name, err)
	}
	return name
}

// Stop kills the server (SIGKILL: its state is on disk, and a test that
// stops it wants it gone now) and waits for it.
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

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	var out []int
	for len(out) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, l)
		// All held open until all are picked, so none repeats.
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out
}
