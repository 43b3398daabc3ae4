package repo

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/repoctl/repoctl/internal/fsutil"
)

// TreeMarkerFile is left at the top of the served tree by Open, so that a
// standalone tool (`repoctl createrepo`) can tell that repoctl publishes
// the tree, also when [paths] repo lies outside ROOT. It is a dot file:
// the built-in server does not serve it.
const TreeMarkerFile = ".repoctl-tree"

const treeMarkerText = "This tree is published by repoctl from its store. Writing repodata here by hand\n" +
	"(createrepo, createrepo_c) breaks it: use `repoctl republish` and `repoctl fsck`.\n"

// writeTreeMarker writes TreeMarkerFile unless it already says the same.
func writeTreeMarker(cfg *Config) error {
	want := treeMarkerText + "root: " + cfg.Root + "\n"
	p := filepath.Join(cfg.Paths.Repo, TreeMarkerFile)
	if old, err := os.ReadFile(p); err == nil && string(old) == want {
		return nil
	}
	return fsutil.WriteFileAtomic(p, []byte(want), 0o644)
}

// Managed says which repoctl root a directory belongs to.
type Managed struct {
	Root string // the root; "" when only a marker without a usable root line says so
	Tree string // the served tree (ROOT/repo or [paths] repo); "" if unknown
	// Dir is the directory relative to Tree ("." for the tree itself), ""
	// when it is not inside the tree (elsewhere in the root).
	Dir string
}

// ManagedBy reports whether dir is inside a repoctl root (a directory
// holding repoctl.toml or repoctl.db) or inside a tree repoctl publishes
// (marked with TreeMarkerFile). It walks up from dir and only stats a few
// names per level. A dir that does not exist is not managed.
func ManagedBy(dir string) (*Managed, bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, false, err
	}
	real, err := filepath.EvalSymlinks(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	for a := real; ; a = filepath.Dir(a) {
		if b, ok := readMarker(filepath.Join(a, TreeMarkerFile)); ok {
			m := &Managed{Root: markerRoot(b), Tree: a}
			m.Dir, _ = filepath.Rel(a, real)
			return m, true, nil
		}
		for _, n := range []string{ConfigFileName, "repoctl.db"} {
			if fi, err := os.Stat(filepath.Join(a, n)); err == nil && fi.Mode().IsRegular() {
				m := &Managed{Root: a}
				if cfg, err := LoadConfig(a, ""); err == nil {
					m.Tree = cfg.Paths.Repo
					if tree, err := filepath.EvalSymlinks(cfg.Paths.Repo); err == nil && insideDir(tree, real) {
						m.Dir, _ = filepath.Rel(tree, real)
					}
				}
				return m, true, nil
			}
		}
		if parent := filepath.Dir(a); parent == a {
			return nil, false, nil
		}
	}
}

// readMarker reads a marker file, capped: its content only names a root.
func readMarker(p string) ([]byte, bool) {
	f, err := os.Open(p)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, false
	}
	b, err := io.ReadAll(io.LimitReader(f, 8192))
	return b, err == nil
}

// markerRoot is the root a marker names, "" if it names none sensibly.
func markerRoot(b []byte) string {
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "root: "); ok && filepath.IsAbs(v) && len(v) < 4096 && escapeText(v) == v {
			return v
		}
	}
	return ""
}
