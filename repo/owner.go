package repo

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/repoctl/repoctl/internal/filelock"
	"github.com/repoctl/repoctl/internal/rootowner"
)

// CheckOwner returns an error matching ErrNotOwner unless the process runs
// as the owner of root (or root does not exist yet). Everything that works
// on ROOT without the daemon checks it first: Open, and the rollout
// commands, which keep their state in ROOT/rollouts.db.
func CheckOwner(root string) error {
	abs, err := filepath.Abs(root)
	if err != nil {
		return fmt.Errorf("resolving root %q: %w", root, err)
	}
	return rootowner.Check(abs)
}

// prepareRoot creates ROOT and its directories, after making sure that
// this process is ROOT's owner: nothing may be created that the owner
// cannot write. A ROOT it creates is rootDirMode, so that a web server
// reaches ROOT/repo; the spool and rejected/ are privateDirMode less the
// umask; the served tree's top gets the configured directory mode
// whatever the umask.
func prepareRoot(cfg *Config, log *slog.Logger) error {
	if err := rootowner.Check(cfg.Root); err != nil {
		return err
	}
	if _, err := os.Stat(cfg.Root); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(cfg.Root, 0o755); err != nil {
			return fmt.Errorf("creating root %q: %w", cfg.Root, err)
		}
		if err := os.Chmod(cfg.Root, rootDirMode); err != nil {
			return fmt.Errorf("creating root %q: %w", cfg.Root, err)
		}
	}
	for _, d := range []string{cfg.Paths.Spool, cfg.Paths.Rejected, signJournalDir(cfg)} {
		if err := os.MkdirAll(d, privateDirMode); err != nil {
			return fmt.Errorf("creating %q: %w", d, err)
		}
	}
	_, dirMode := cfg.treeModes()
	if err := os.MkdirAll(cfg.Paths.Repo, dirMode); err != nil {
		return fmt.Errorf("creating %q: %w", cfg.Paths.Repo, err)
	}
	if err := chmodServedTop(cfg.Paths.Repo, dirMode); err != nil {
		// A tree the operator placed elsewhere and owns: theirs to set.
		log.Warn("served tree keeps its mode", "err", err)
	}
	return nil
}

// lockHeld reports whether some process holds the ROOT lock at path. It
// creates nothing: it is asked by a process that must not.
func lockHeld(path string) bool {
	held, _ := filelock.Held(path)
	return held
}
