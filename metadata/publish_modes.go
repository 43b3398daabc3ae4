package metadata

import (
	"fmt"
	"os"
)

// WithModes gives every file of the published generation (repomd.xml,
// its signature, the metadata files, superseded files carried over) the
// mode file, and repodata/ the mode dir, whatever the process's umask: a
// web server running as another user must be able to read what is
// published the moment it is swapped in. Default: files are created 0644
// less the umask, as createrepo_c does, and repodata/ is 0755.
func WithModes(file, dir os.FileMode) PublishOption {
	return func(c *publishConfig) error {
		if file&^os.ModePerm != 0 || dir&^os.ModePerm != 0 {
			return fmt.Errorf("%w: modes %v and %v must be permission bits only", ErrBadOption, file, dir)
		}
		if file != 0 && file&0o600 != 0o600 || dir != 0 && dir&0o700 != 0o700 {
			return fmt.Errorf("%w: modes %v and %v must leave the owner read and write (and search)", ErrBadOption, file, dir)
		}
		c.fileMode, c.dirMode = file, dir
		return nil
	}
}

func (c *publishConfig) genDirMode() os.FileMode {
	if c.dirMode == 0 {
		return 0o755
	}
	return c.dirMode
}

// applyFileMode sets mode on every regular file in the directory gen
// (inside root) before it is swapped in. Files hard-linked from the
// current generation share their inode with it; they get the same mode,
// which is what they should have had.
func applyFileMode(root *os.Root, gen string, mode os.FileMode) error {
	if mode == 0 {
		return nil
	}
	ents, err := readDirRoot(root, gen)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		n := gen + "/" + e.Name()
		fi, err := root.Lstat(n)
		if err != nil {
			return err
		}
		if fi.Mode().Perm() == mode {
			continue
		}
		if err := root.Chmod(n, mode); err != nil {
			return fmt.Errorf("setting the mode of %q: %w", rootPath(root, n), err)
		}
	}
	return nil
}
