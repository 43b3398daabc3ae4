package repo

// The published tree on an S3 bucket ([publish] target = "s3").
//
// ROOT/repo stays the working copy and what fsck, the key rotation and
// the daemon's own HTTP server read; the bucket follows it. After every
// publish of a directory (tree.publish, the one call every publish goes
// through) the directory is mirrored: its packages, then the files its
// new repomd.xml names, then repomd.xml.asc, then repomd.xml, each only
// when the mirror's state (ROOT/publish-s3.db; with the etcd store, its
// "mirror." buckets, shared by an HA pair) does not already have it
// with that size and sha256 (package/target). RPM-GPG-KEY-repoctl goes
// up before any directory.
//
// A failed mirror never fails the change: the change is recorded and
// published locally, and the directory is marked pending in the mirror
// state. /readyz reports it (check "publish") until a sync succeeds.
// Pending directories are synced again by the next publish of the
// directory, by the daemon every sweep interval (at most a minute), and by
// Resume, which also syncs every directory whose repomd.xml the bucket
// does not have yet (a new bucket, or a target that changed).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/repoctl/repoctl/metadata"
	"github.com/repoctl/repoctl/repo/target"
)

// MirrorStateFile is the S3 mirror's state, in ROOT.
const MirrorStateFile = "publish-s3.db"

// ErrMirror: mirroring a directory to the publish target failed. The
// directory stays pending and is retried.
var ErrMirror = errors.New("repo: mirroring to the publish target failed")

// treeMirror is the tree's link to its publish target.
type treeMirror struct {
	m    *target.Mirror
	tgt  target.Target
	root *os.Root // the served tree (tree.root)
	log  *slog.Logger
	// treeDir is the absolute ROOT/repo, kept out of messages.
	treeDir string
}

// openMirror makes the mirror of [publish] target; nil for "local".
func (r *Repo) openMirror(ctx context.Context) (*treeMirror, error) {
	if r.cfg.Publish.Target != TargetS3 {
		return nil, nil
	}
	s3, err := target.OpenS3(ctx, r.cfg.Publish.S3)
	if err != nil {
		return nil, fmt.Errorf("opening the publish target: %w", err)
	}
	var m *target.Mirror
	if r.cfg.Store.Backend == StoreEtcd {
		// Shared, so that whichever daemon of an HA pair leads knows
		// what the bucket holds (ha.go).
		m, err = target.OpenMirrorStore(s3, r.st.db, target.WithGrace(r.cfg.grace()))
	} else {
		m, err = target.OpenMirror(s3, filepath.Join(r.cfg.Root, MirrorStateFile), target.WithGrace(r.cfg.grace()))
	}
	if err != nil {
		return nil, err
	}
	r.o.log.Info("publishing to S3", "target", s3.String(), "url", s3.URL())
	return &treeMirror{m: m, tgt: s3, root: r.tree.root, log: r.o.log, treeDir: r.tree.dir}, nil
}

func (tm *treeMirror) close() error { return tm.m.Close() }

// strip keeps the tree's absolute path out of messages that may face
// hosts (/readyz) or go into reports.
func (tm *treeMirror) strip(s string) string { return strings.ReplaceAll(s, tm.treeDir+"/", "") }

// publish mirrors the directory dir (opened as d) just published with
// entries. The error is for the caller's observer; the directory is
// pending until a sync succeeds.
func (tm *treeMirror) publish(ctx context.Context, dir string, d *os.Root, entries []metadata.Entry) error {
	start := time.Now()
	err := tm.syncKey(ctx)
	var res *target.SyncResult
	if err == nil {
		var man target.DirManifest
		if man, err = dirManifest(dir, d, entries); err == nil {
			res, err = tm.m.SyncDir(ctx, man)
		} else {
			tm.m.MarkPending(dir, err)
		}
	} else {
		tm.m.MarkPending(dir, err)
	}
	if err != nil {
		tm.log.Warn("mirroring to the publish target failed; retried", "dir", dir, "target", tm.tgt.String(), "err", err)
		return fmt.Errorf("%w: %q to %s: %w", ErrMirror, dir, tm.tgt, err)
	}
	tm.log.Info("mirrored", "dir", dir, "target", tm.tgt.String(), "uploaded", res.Uploaded, "copied", res.Copied,
		"skipped", res.Skipped, "bytes", res.Bytes, "retired", res.Retired, "deleted", res.Deleted, "took", time.Since(start))
	return nil
}

// syncKey puts RPM-GPG-KEY-repoctl when it changed: before any
// directory, so that a host never fetches a package signed by a key the
// served key file lacks.
func (tm *treeMirror) syncKey(ctx context.Context) error {
	b, err := tm.root.ReadFile(PublicKeyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", PublicKeyFile, err)
	}
	_, err = tm.m.SyncFiles(ctx, []target.Object{bytesObject(PublicKeyFile, b)})
	return err
}

func bytesObject(key string, b []byte) target.Object {
	h := sha256.Sum256(b)
	return target.Object{Key: key, Size: int64(len(b)), SHA256: hex.EncodeToString(h[:]),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }}
}

// dirManifest is what dir must hold on the target: entries' package
// files (size and sha256 from the store), the files the directory's
// repomd.xml names (from its records), the signature and repomd.xml
// itself, both as read now, so that the repomd.xml that goes up is the
// one whose files went up before it.
func dirManifest(dir string, d *os.Root, entries []metadata.Entry) (target.DirManifest, error) {
	man := target.DirManifest{Dir: dir}
	raw, err := readSmallRoot(d, "repodata/repomd.xml")
	if err != nil {
		return man, err
	}
	md, err := metadata.ParseRepomd(raw)
	if err != nil {
		return man, fmt.Errorf("reading %q: %w", dir+"/repodata/repomd.xml", err)
	}
	for _, e := range entries {
		name := e.Href
		man.Packages = append(man.Packages, target.Object{Key: dir + "/" + name, Size: e.Size, SHA256: e.PkgID,
			Open: func() (io.ReadCloser, error) { return d.Open(name) }})
	}
	for _, rec := range md.Records {
		if rec.Href == "" {
			continue // lives elsewhere (xml:base): not ours
		}
		name := rec.Href
		man.Repodata = append(man.Repodata, target.Object{Key: dir + "/" + name, Size: rec.Size, SHA256: rec.Checksum,
			Open: func() (io.ReadCloser, error) { return d.Open(name) }})
	}
	man.Repomd = bytesObject(dir+"/repodata/repomd.xml", raw)
	switch asc, err := readSmallRoot(d, "repodata/repomd.xml.asc"); {
	case err == nil:
		o := bytesObject(dir+"/repodata/repomd.xml.asc", asc)
		man.Signature = &o
	case !errors.Is(err, fs.ErrNotExist):
		return man, err
	}
	return man, nil
}

// maxSmallFile caps repomd.xml, its signature and the key file as read
// for the mirror.
const maxSmallFile = 16 << 20

func readSmallRoot(d *os.Root, name string) ([]byte, error) {
	f, err := d.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSmallFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading %q: %w", name, err)
	}
	if len(b) > maxSmallFile {
		return nil, fmt.Errorf("reading %q: larger than %d bytes", name, maxSmallFile)
	}
	return b, nil
}

// syncDirLocked mirrors dir from the local tree and the index (a retry
// or a catch-up, not right after a publish). The caller holds r.mu.
func (r *Repo) syncDirLocked(ctx context.Context, dir string) error {
	tm := r.tree.mirror
	d, err := r.tree.root.OpenRoot(dir)
	if err != nil {
		tm.m.MarkPending(dir, err)
		return err
	}
	defer d.Close()
	r.idxMu.RLock()
	entries := make([]metadata.Entry, 0, len(r.dirs[dir]))
	for _, e := range r.dirs[dir] {
		entries = append(entries, *e)
	}
	r.idxMu.RUnlock()
	err = tm.publish(ctx, dir, d, entries)
	r.pubHealth.record(dir, err, r.tree.dir)
	return err
}

// mirrorCatchUp syncs, under r.mu, every directory that is pending or
// whose repomd.xml the target does not hold, and deletes retired objects
// past their grace. Directories the store marks dirty are left to their
// republish. Failures are logged and leave the directory pending.
func (r *Repo) mirrorCatchUp(ctx context.Context, all bool) {
	tm := r.tree.mirror
	if tm == nil {
		return
	}
	if err := tm.syncKey(ctx); err != nil {
		r.o.log.Warn("mirroring the public key failed; retried", "err", err)
	}
	pending, err := tm.m.Pending()
	if err != nil {
		r.o.log.Warn("reading the mirror state", "err", err)
		return
	}
	todo := map[string]bool{}
	for _, p := range pending {
		todo[p.Dir] = true
	}
	if all {
		for _, dir := range r.servedRepoDirs() {
			raw, err := r.tree.readSmall(dir + "/repodata/repomd.xml")
			if err != nil {
				todo[dir] = true
				continue
			}
			o := bytesObject(dir+"/repodata/repomd.xml", raw)
			if ok, err := tm.m.Holds(o.Key, o.Size, o.SHA256); err != nil || !ok {
				todo[dir] = true
			}
		}
	}
	if dirty, err := r.st.dirtyDirs(); err == nil {
		for _, d := range dirty {
			delete(todo, d)
		}
	}
	dirs := make([]string, 0, len(todo))
	for d := range todo {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	for _, d := range dirs {
		if ctx.Err() != nil {
			return
		}
		if !r.tree.hasRepodata(d) {
			// Gone from the tree (a channel or release dropped from the
			// config): nothing to mirror, and nothing to retry.
			tm.m.ClearPending(d)
			continue
		}
		r.syncDirLocked(ctx, d)
	}
	if n, err := tm.m.Sweep(ctx); err != nil {
		r.o.log.Warn("deleting retired objects from the publish target; retried", "err", err)
	} else if n > 0 {
		r.o.log.Info("deleted retired objects past their grace from the publish target", "objects", n)
	}
}

// RetryMirror syncs the pending directories of the publish target and
// deletes its retired objects past their grace, when no change is
// running (it never waits for one: the daemon calls it every sweep
// interval). Without an S3 target it does nothing.
func (r *Repo) RetryMirror(ctx context.Context) {
	if r.tree.mirror == nil || !r.mu.TryLock() {
		return
	}
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.mirrorCatchUp(ctx, false)
}

// MirrorPending lists the directories whose last sync to the publish
// target failed; nil without an S3 target.
func (r *Repo) MirrorPending() ([]target.Pending, error) {
	if r.tree.mirror == nil {
		return nil, nil
	}
	return r.tree.mirror.m.Pending()
}
