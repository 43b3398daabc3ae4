package repo

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// untar unpacks a .tar.gz fixture into dir.
func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if !filepath.IsLocal(h.Name) {
			t.Fatalf("fixture entry %q", h.Name)
		}
		p := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, os.FileMode(h.Mode)&0o777); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, os.FileMode(h.Mode)&0o777)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(out, tr); err != nil {
				t.Fatal(err)
			}
			if err := out.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, h.ModTime, h.ModTime); err != nil {
				t.Fatal(err)
			}
		case tar.TypeLink:
			if err := os.Link(filepath.Join(dir, h.Linkname), p); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// A root that repoctl 0.1 (commit ebb1eaa, before header checks, caller
// identity, keyrings and the common release) left behind opens in place:
// its packages, placements and hash-chained log are read as they are, the
// tree is brought up to date (empty repodata for known releases, the
// served key file from the new keyring), fsck is clean, and new work
// lands beside the old. testdata/upgrade/root-v0.1.tar.gz was made by
// that version: ed25519 key, app 1.0/1.1 (+src) and hello added, app-1.0
// and hello promoted to prod, one junk file rejected.
func TestUpgradeInPlaceFromV01(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	untar(t, "../testdata/upgrade/root-v0.1.tar.gz", root)
	ctx := context.Background()
	r := openPL(t, root)
	list, err := r.List(ctx, ListOptions{})
	if err != nil || len(list) != 4 {
		t.Fatalf("List: %d records, %v", len(list), err)
	}
	prod, err := r.List(ctx, ListOptions{Channel: "prod"})
	if err != nil || len(prod) != 2 {
		t.Errorf("prod: %+v %v", prod, err)
	}
	evs, err := r.History(ctx, HistoryOptions{Verify: true})
	if err != nil {
		t.Fatalf("the old log must verify unchanged: %v", err)
	}
	if len(evs) < 19 || evs[0].Caller != nil {
		t.Errorf("old events: %d, first caller %+v", len(evs), evs[0].Caller)
	}
	rep, err := r.Fsck(ctx, FsckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(); err != nil {
		t.Errorf("fsck of the upgraded tree: %v\n%+v", err, rep.Findings)
	}
	// The store is migrated to schema 2: each channel the old repoctl
	// filled gets version 1, cause import, holding what it listed.
	for _, ch := range []string{"staging", "prod"} {
		want, err := r.List(ctx, ListOptions{Channel: ch})
		if err != nil {
			t.Fatal(err)
		}
		log, err := r.ChannelLog(ctx, ChannelLogOptions{Channel: ch})
		if err != nil || len(log) != 1 || log[0].Version != 1 || log[0].Cause != "import" || log[0].Packages != len(want) {
			t.Errorf("%s log after migration: %+v %v (want one import of %d)", ch, log, err, len(want))
		}
	}
	// New work beside the old: the event names its caller.
	p := writeSpec(t, t.TempDir(), spec("app", "1.2", "1.el9", "x86_64"))
	res, err := r.Add(ctx, []string{p}, AddOptions{})
	if err != nil || res[0].Action != ActionAdded {
		t.Fatalf("add after upgrade: %+v %v", res, err)
	}
	if _, err := r.Promote(ctx, PromoteRequest{Package: "app-1.2-1.el9"}); err != nil {
		t.Fatal(err)
	}
	// The promote made prod's version 2, and rolling back to the
	// imported version 1 gives the old prod set again.
	if log, err := r.ChannelLog(ctx, ChannelLogOptions{Channel: "prod", Limit: 1}); err != nil || log[0].Version != 2 {
		t.Fatalf("prod after a promote on the migrated store: %+v %v", log, err)
	}
	if rb, err := r.ChannelRollback(ctx, ChannelRollbackRequest{Channel: "prod", To: 1}); err != nil || len(rb.Removed) != 1 {
		t.Fatalf("rollback to the imported version: %+v %v", rb, err)
	}
	if _, err := r.ChannelRollback(ctx, ChannelRollbackRequest{Channel: "prod", To: 2}); err != nil {
		t.Fatalf("roll forward: %v", err)
	}
	evs, err = r.History(ctx, HistoryOptions{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	if last := evs[len(evs)-1]; last.Caller == nil {
		t.Errorf("new event without caller: %+v", last)
	}
	// A host installs from the upgraded prod tree, old and new packages,
	// with gpgcheck and repo_gpgcheck.
	rf, err := r.RepoFile(ctx, RepoFileOptions{Channel: "prod", BaseURL: "file://" + filepath.Join(root, "repo") + "/"})
	if err != nil {
		t.Fatal(err)
	}
	text := rf.Render()
	if !strings.Contains(text, "$releasever") {
		t.Errorf("repofile:\n%s", text)
	}
	dnfInstall(t, text, "hello")
	dnfInstall(t, text, "app-1.2")
}
