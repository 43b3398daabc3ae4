// Package sshtest runs real sshd processes for tests: one per loopback
// address, with a client key, an authorized_keys file and a known_hosts
// file listing every host key, so that rollouts run real commands over
// real SSH (on this machine, as root).
//
// It is for tests only: nothing in repoctl's commands imports it. A test
// that needs sshd fails, never skips, without it or without root.
package sshtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Host is one real sshd started for a test.
type Host struct {
	Name    string
	Address string
	Port    int
	cmd     *exec.Cmd
}

// Lab is a set of real sshd processes, one per loopback address, with a
// client key (Identity) and a known_hosts file listing each host key.
type Lab struct {
	Dir        string
	Identity   string
	KnownHosts string
	Hosts      []*Host
}

func writeKey(t testing.TB, path string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// FreePort is a port nothing listens on at addr now.
func FreePort(t testing.TB, addr string) int {
	t.Helper()
	l, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Fatalf("no free port on %s: %v", addr, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start starts one sshd per address, named by names; they are killed
// when the test ends. It needs root (sshd privilege
// separation) and /usr/sbin/sshd: without them the test fails, it does not
// skip.
func Start(t testing.TB, names, addrs []string) *Lab {
	t.Helper()
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		sshd = "/usr/sbin/sshd"
		if _, err := os.Stat(sshd); err != nil {
			t.Fatalf("sshd is required (apt-get install openssh-server): %v", err)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatalf("the SSH tests start real sshd processes and must run as root")
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	lab := &Lab{Dir: dir, Identity: filepath.Join(dir, "id_ed25519"), KnownHosts: filepath.Join(dir, "known_hosts")}
	clientPub := writeKey(t, lab.Identity)
	ak := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(ak, ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		t.Fatal(err)
	}
	var kh strings.Builder
	for i, addr := range addrs {
		h := &Host{Name: names[i], Address: addr, Port: FreePort(t, addr)}
		hd := filepath.Join(dir, "sshd-"+h.Name)
		if err := os.MkdirAll(hd, 0o700); err != nil {
			t.Fatal(err)
		}
		hostPub := writeKey(t, filepath.Join(hd, "host_key"))
		kh.WriteString(knownhosts.Line([]string{knownhosts.Normalize(fmt.Sprintf("%s:%d", addr, h.Port))}, hostPub) + "\n")
		cfg := fmt.Sprintf(`ListenAddress %s:%d
HostKey %s
PidFile %s
AuthorizedKeysFile %s
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
MaxSessions 64
MaxStartups 64:30:128
LogLevel ERROR
`, addr, h.Port, filepath.Join(hd, "host_key"), filepath.Join(hd, "sshd.pid"), ak)
		cf := filepath.Join(hd, "sshd_config")
		if err := os.WriteFile(cf, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		h.cmd = exec.Command(sshd, "-D", "-e", "-f", cf)
		h.cmd.Stderr = LogWriter(t, "sshd "+h.Name+": ")
		// Session children may hold stderr after sshd is killed.
		h.cmd.WaitDelay = 2 * time.Second
		if err := h.cmd.Start(); err != nil {
			t.Fatalf("starting sshd for %s: %v", h.Name, err)
		}
		lab.Hosts = append(lab.Hosts, h)
	}
	t.Cleanup(func() {
		for _, h := range lab.Hosts {
			_ = h.cmd.Process.Kill()
			_ = h.cmd.Wait()
		}
	})
	if err := os.WriteFile(lab.KnownHosts, []byte(kh.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// sshd writes its pid file once it listens; probing the port instead
	// would make every sshd log an aborted key exchange.
	deadline := time.Now().Add(20 * time.Second)
	for _, h := range lab.Hosts {
		for {
			if b, err := os.ReadFile(filepath.Join(lab.Dir, "sshd-"+h.Name, "sshd.pid")); err == nil && len(b) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("sshd for %s never started on %s:%d", h.Name, h.Address, h.Port)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return lab
}

// LogWriter logs every line written to it with t.Log, after prefix.
func LogWriter(t testing.TB, prefix string) io.Writer { return &prefixWriter{t: t, prefix: prefix} }

type prefixWriter struct {
	t      testing.TB
	prefix string
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if l != "" {
			w.t.Log(w.prefix + l)
		}
	}
	return len(p), nil
}
