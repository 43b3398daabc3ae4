package repo

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"strconv"
	"strings"
)

// The served tree is read by a web server running as another user (Apache,
// nginx), so its modes are set explicitly, never left to the umask: the
// unit runs with UMask=0007 to keep the store, keys and spool from others,
// and a umask of 0077 is common for root shells. Everything else under
// ROOT stays as private as the umask makes it.
const (
	defaultFileMode fs.FileMode = 0o644
	defaultDirMode  fs.FileMode = 0o755
	// rootDirMode is the mode of a ROOT that repoctl creates: others may
	// pass through to ROOT/repo but not list what else is there.
	rootDirMode fs.FileMode = 0o751
	// privateDirMode is for the spool and rejected/ when repoctl creates
	// them: the owner and its group (operators), never others; the umask
	// may take more away.
	privateDirMode fs.FileMode = 0o750
)

// parseMode reads an octal mode such as "0644", "644" or "0o644".
func parseMode(s string) (fs.FileMode, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O")
	v, err := strconv.ParseUint(t, 8, 32)
	if err != nil || t == "" || v > 0o777 {
		return 0, fmt.Errorf("%q is not an octal mode between 0000 and 0777 such as \"0644\"", s)
	}
	return fs.FileMode(v), nil
}

// setOpsDefaults fills and checks what setDefaults does not: the tree's
// modes.
func (c *Config) setOpsDefaults() error {
	if c.Publish.FileMode == "" {
		c.Publish.FileMode = "0644"
	}
	if c.Publish.DirMode == "" {
		c.Publish.DirMode = "0755"
	}
	fm, err := parseMode(c.Publish.FileMode)
	if err != nil {
		return fmt.Errorf("%w: publish.file_mode %v", ErrBadConfig, err)
	}
	// repoctl rewrites files of the tree in place (key rotation) and
	// replaces them: the owner must keep read and write.
	if fm&0o600 != 0o600 || fm&0o111 != 0 {
		return fmt.Errorf("%w: publish.file_mode %q must give the owner read and write and nobody execute (e.g. \"0644\", or \"0640\" for a web server in repoctl's group)", ErrBadConfig, c.Publish.FileMode)
	}
	dm, err := parseMode(c.Publish.DirMode)
	if err != nil {
		return fmt.Errorf("%w: publish.dir_mode %v", ErrBadConfig, err)
	}
	if dm&0o700 != 0o700 {
		return fmt.Errorf("%w: publish.dir_mode %q must give the owner rwx (e.g. \"0755\", or \"0750\" for a web server in repoctl's group)", ErrBadConfig, c.Publish.DirMode)
	}
	// A reader allowed to read the files but not to enter the directories
	// only gets 403s.
	for _, read := range []fs.FileMode{0o040, 0o004} {
		if fm&read != 0 && dm&(read>>2) == 0 {
			return fmt.Errorf("%w: publish.file_mode %q lets a class read files that dir_mode %q does not let it reach (x)", ErrBadConfig, c.Publish.FileMode, c.Publish.DirMode)
		}
	}
	return nil
}

// treeModes are the configured modes, defaults for a config that was not
// loaded through LoadConfig (tests build some by hand).
func (c *Config) treeModes() (file, dir fs.FileMode) {
	file, dir = defaultFileMode, defaultDirMode
	if m, err := parseMode(c.Publish.FileMode); err == nil && c.Publish.FileMode != "" {
		file = m
	}
	if m, err := parseMode(c.Publish.DirMode); err == nil && c.Publish.DirMode != "" {
		dir = m
	}
	return file, dir
}

func (t *tree) filePerm() fs.FileMode {
	if t.fileMode == 0 {
		return defaultFileMode
	}
	return t.fileMode
}

func (t *tree) dirPerm() fs.FileMode {
	if t.dirMode == 0 {
		return defaultDirMode
	}
	return t.dirMode
}

// mkdirAll is os.Root.MkdirAll with the tree's directory mode on every
// directory it creates, whatever the umask.
func (t *tree) mkdirAll(dir string) error {
	dir = path.Clean(dir)
	if fi, err := t.root.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	mode := t.dirPerm()
	cur := ""
	for _, part := range strings.Split(dir, "/") {
		if part == "." || part == "" {
			continue
		}
		cur = path.Join(cur, part)
		err := t.root.Mkdir(cur, mode)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := t.root.Chmod(cur, mode); err != nil {
			return err
		}
	}
	return nil
}

// fixModes gives every directory and regular file of the tree (dot entries
// aside: locks and work directories, which are not served) the tree's
// modes: a tree left by an older repoctl, written under a umask, or after a
// change of file_mode or dir_mode. Symbolic links are left alone. It
// returns how many entries it changed.
func (t *tree) fixModes() (int, error) {
	fm, dm := t.filePerm(), t.dirPerm()
	changed := 0
	fix := func(name string, fi fs.FileInfo, want fs.FileMode) error {
		if fi.Mode().Perm() == want && fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) == 0 {
			return nil
		}
		if err := t.root.Chmod(name, want); err != nil {
			return err
		}
		changed++
		return nil
	}
	var errs []error
	err := fs.WalkDir(t.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		if p != "." && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		fi, err := t.root.Lstat(p)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		switch {
		case fi.IsDir():
			err = fix(p, fi, dm)
		case fi.Mode().IsRegular():
			err = fix(p, fi, fm)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("setting the mode of %q: %w", path.Join(t.dir, p), err))
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return changed, errors.Join(errs...)
}

// chmodServedTop gives the top of the served tree its mode; it may exist
// from an older repoctl, or have been made under a umask.
func chmodServedTop(dir string, mode fs.FileMode) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if fi.Mode().Perm() == mode {
		return nil
	}
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("setting the mode of the served tree %q: %w", dir, err)
	}
	return nil
}

// fixTreeModes runs tree.fixModes when the daemon starts, and logs what it
// did: a tree it cannot fix is served as it is.
func fixTreeModes(r *Repo, log *slog.Logger) {
	n, err := r.tree.fixModes()
	if err != nil {
		log.Warn("served tree: some modes could not be set", "err", err)
	}
	if n > 0 {
		fm, dm := r.tree.filePerm(), r.tree.dirPerm()
		log.Info("served tree: modes set", "entries", n, "file_mode", fmt.Sprintf("%04o", fm), "dir_mode", fmt.Sprintf("%04o", dm))
	}
}
