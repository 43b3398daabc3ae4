package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	kv "github.com/repoctl/repoctl/repo/store"

	"github.com/repoctl/repoctl/metadata"
)

// A directory's PublishState is saved when the Repo closes, into
// ROOT/spool/.publish-state/, so that the first publish after a restart
// reuses the last build instead of loading and hashing every package
// (metadata.LoadPublishState checks it against the published repomd.xml
// first). The file is read once and removed: a process that crashes
// leaves none, or one that no longer matches its repodata.

func pubStateDir(cfg *Config) string { return filepath.Join(cfg.Paths.Spool, ".publish-state") }

func pubStateFile(cfg *Config, dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return filepath.Join(pubStateDir(cfg), hex.EncodeToString(sum[:16])+".state")
}

// maxRepomdRead caps the repomd.xml read to check a saved state.
const maxRepomdRead = 16 << 20

// restorePubState returns dir's saved state, or nil when there is none
// or it cannot be used (logged).
func (r *Repo) restorePubState(ctx context.Context, dir string) *metadata.PublishState {
	name := pubStateFile(r.cfg, dir)
	f, err := os.Open(name)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.o.log.Warn("not using the saved publish state", "dir", dir, "err", err)
		}
		return nil
	}
	defer os.Remove(name)
	defer f.Close()
	repomd, err := r.readServed(filepath.Join(dir, metadata.RepodataDir, "repomd.xml"), maxRepomdRead)
	if err == nil {
		var s *metadata.PublishState
		s, err = metadata.LoadPublishState(ctx, r.cfg.Paths.Spool, f, repomd, blockCache{r.st, dir}, r.knownHref(dir))
		// It read every block of dir from the store.
		r.st.db.View(func(tx kv.Tx) error { kv.DropResident(tx); return nil })
		if err == nil {
			r.o.log.Info("restored the publish state", "dir", dir)
			return s
		}
	}
	r.o.log.Warn("not using the saved publish state", "dir", dir, "err", err)
	return nil
}

// knownHref returns the index's own strings for a package of dir.
func (r *Repo) knownHref(dir string) func(string) (string, string, bool) {
	return func(href string) (string, string, bool) {
		r.idxMu.RLock()
		defer r.idxMu.RUnlock()
		e := r.dirs[dir][r.hrefs[dir][href]]
		if e == nil {
			return "", "", false
		}
		return e.Href, e.PkgID, true
	}
}

// readServed reads a file of the served tree, at most limit bytes.
func (r *Repo) readServed(name string, limit int64) ([]byte, error) {
	f, err := r.tree.root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("%q is larger than %d bytes", name, limit)
	}
	return b, err
}

// savePubStates writes every directory's state (at Close).
func (r *Repo) savePubStates() error {
	var errs []error
	r.pubStates.Range(func(d, s any) bool {
		if err := r.savePubState(d.(string), s.(*metadata.PublishState)); err != nil {
			errs = append(errs, err)
		}
		return true
	})
	return errors.Join(errs...)
}

func (r *Repo) savePubState(dir string, s *metadata.PublishState) error {
	if err := os.MkdirAll(pubStateDir(r.cfg), 0o700); err != nil {
		return fmt.Errorf("saving the publish state of %q: %w", dir, err)
	}
	name := pubStateFile(r.cfg, dir)
	f, err := os.CreateTemp(pubStateDir(r.cfg), ".tmp-*")
	if err != nil {
		return fmt.Errorf("saving the publish state of %q: %w", dir, err)
	}
	defer os.Remove(f.Name())
	err = s.Save(f)
	if err == nil {
		err = f.Sync()
	}
	if e := f.Close(); err == nil {
		err = e
	}
	if errors.Is(err, metadata.ErrStaleState) {
		return nil // nothing built
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		return fmt.Errorf("saving the publish state of %q: %w", dir, err)
	}
	return nil
}
