package repo

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The reload in process, so that the race detector sees it: a drop-in
// directory added by a reload is watched and HTTP keeps serving, its
// server replaced.
func TestDaemonReloadInProcess(t *testing.T) {
	root, url := newTestRoot(t, "[signing]\nalgo = \"ed25519\"\n")
	cfgFile := filepath.Join(root, ConfigFileName)
	base, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	var logBuf syncBuffer
	defer func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", logBuf.String())
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan DaemonInfo, 1)
	errc := make(chan error, 1)
	reload := make(chan struct{})
	go func() {
		errc <- RunDaemon(ctx, root, WithReload(reload), WithReady(func(i DaemonInfo) { ready <- i }),
			WithDaemonLogger(slog.New(slog.NewJSONHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(2 * time.Minute):
		t.Fatal("daemon not ready")
	}
	// [http] is in base already: the new key goes there.
	cfg := strings.Replace(string(base), "[http]\n", "[http]\nmax_connections = 64\n", 1) + "[[dropin]]\ndir = \"incoming\"\n[[dropin]]\ndir = \"more\"\n"
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	in := validInput(t, helloSpec("reloaded-in-process"))
	waitFor(t, time.Minute, "the reload", func() (bool, string) {
		return strings.Contains(logBuf.String(), `"msg":"config reloaded"`), logBuf.String()
	})
	dropFile(t, filepath.Join(root, "more"), in.name, in.body)
	repoDir := filepath.Join(root, "repo", "main", "staging", "el", "9", "x86_64")
	waitFor(t, time.Minute, "the package from the new directory", func() (bool, string) {
		pk, err := repodataPackages(repoDir)
		_, ok := pk[in.nvra]
		return ok && err == nil, fmt.Sprint(len(pk), err)
	})
	resp, err := http.Get(url + PublicKeyFile)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTP after the reload: %v %v", resp, err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logBuf.String(), `"changed":["dropin","http.max_connections"]`) {
		t.Errorf("reload did not log the changed keys")
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
