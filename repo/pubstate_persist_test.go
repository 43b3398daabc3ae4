package repo

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/repoctl/repoctl/metadata"
)

// TestPublishStateRestart: the publish state is saved at Close and the
// first publish after the next Open restores it (the published bytes the
// same as a stateless publish's); a stale state file (one that no longer
// matches the served repomd.xml) is refused and the publish does the
// full work.
func TestPublishStateRestart(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(plConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var logBuf syncBuffer
	open := func() *Repo {
		t.Helper()
		r, err := Open(ctx, root, WithLockWait(5*time.Second), WithLogger(slog.New(slog.NewTextHandler(&logBuf, nil))))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	src := t.TempDir()
	add := func(r *Repo, names ...string) {
		t.Helper()
		var paths []string
		for _, n := range names {
			paths = append(paths, writeSpec(t, src, spec(n, "1.0", "1.el9", "x86_64")))
		}
		res, err := r.Add(ctx, paths, AddOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range res {
			if x.Action != ActionAdded {
				t.Fatalf("adding %s: %+v", x.Path, x)
			}
		}
	}
	const dir = "main/staging/el/9/x86_64"
	r := open()
	var names []string
	for i := range 300 {
		names = append(names, fmt.Sprintf("pkg%03d", i))
	}
	add(r, names...)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	file := pubStateFile(r.cfg, dir)
	stale, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("no publish state saved at Close: %v", err)
	}

	r = open()
	add(r, "extra1")
	if !strings.Contains(logBuf.String(), "restored the publish state") {
		t.Fatalf("the first publish after Open did not restore the state:\n%s", logBuf.String())
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the state file is still there after it was read: %v", err)
	}
	docs := func() map[string]metadata.RepomdRecord {
		out := map[string]metadata.RepomdRecord{}
		for _, rec := range repomdRecords(t, r, dir).Records {
			if rec.Type == "primary" || rec.Type == "filelists" || rec.Type == "other" {
				rec.Timestamp = 0
				out[rec.Type] = rec
			}
		}
		return out
	}
	withState := docs()
	r.noPubState = true
	if _, err := r.Republish(ctx, RepublishOptions{Dirs: []string{dir}}); err != nil {
		t.Fatal(err)
	}
	r.noPubState = false
	if got := docs(); fmt.Sprint(got) != fmt.Sprint(withState) {
		t.Errorf("a stateless publish of the same packages differs:\n got %v\nwant %v", got, withState)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	// A state from before the last publishes, as a crash would leave.
	if err := os.WriteFile(file, stale, 0o600); err != nil {
		t.Fatal(err)
	}
	logBuf.mu.Lock()
	logBuf.b.Reset()
	logBuf.mu.Unlock()
	r = open()
	add(r, "extra2")
	if log := logBuf.String(); !strings.Contains(log, "not using the saved publish state") || strings.Contains(log, "restored the publish state") {
		t.Errorf("a stale state was not refused:\n%s", log)
	}
	rep, err := r.Fsck(ctx, FsckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(); err != nil {
		t.Errorf("fsck after a publish past a stale state: %v\n%+v", err, rep.Findings)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}
