package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/repoctl/repoctl/metadata"

	"github.com/repoctl/repoctl/internal/nevra"
)

// ErrEscape is a path built from a package or the store that would leave
// the repository directory it was meant for. The header checks come first
// (nevra.Check); this is the second wall, for a check missed today.
var ErrEscape = errors.New("repo: path leaves its repository directory")

// tree is the served tree, ROOT/repo, opened once as an os.Root: every
// placement, link, removal and publish goes through it, so that no name
// (a ".." or a symlink planted in the tree) can reach outside it. Within
// the tree, placements are checked element by element, so that a staging
// name cannot reach a prod directory either.
type tree struct {
	dir  string // absolute ROOT/repo
	root *os.Root
	// observe, if set, hears of every publish: metrics and /readyz.
	observe func(dir string, took time.Duration, err error)
	// loader, if set, supplies the fragments of dir's light entries
	// (Repo.fragmentLoader).
	loader func(dir string) func(ctx context.Context, es []*metadata.Entry) error
	// fileMode and dirMode are what every file and directory placed or
	// published gets, whatever the umask (0: 0644 and 0755).
	fileMode, dirMode fs.FileMode
	// mirror, if set ([publish] target = "s3"), copies each published
	// directory to the bucket (publish_target.go).
	mirror *treeMirror
}

func openTree(dir string) (*tree, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating served tree %q: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening served tree %q: %w", dir, err)
	}
	return &tree{dir: dir, root: root}, nil
}

func (t *tree) close() error {
	if t.mirror != nil {
		t.mirror.close()
	}
	return t.root.Close()
}

// plainName reports whether s is one path element that names a file in its
// directory: not empty, ".", ".." or hidden, and free of separators,
// NUL and control bytes.
func plainName(s string) bool {
	if s == "" || len(s) > 255 || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '/' || c == '\\' || c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// newPlacement is the one way a placement is made: repo and channel are
// config names, release a config or dist-tag release ("el/9"), archDir an
// arch or SRPMS, fileName N-V-R.A.rpm from nevra.FileName. Each is checked
// again here, so that the result is always dir = repo/channel/release/arch
// and file = dir/fileName.
func newPlacement(repo, channel, release, archDir, fileName string) (Placement, error) {
	pl := Placement{Channel: channel, Release: release, Arch: archDir}
	pl.Dir = RepoDir(repo, channel, release, archDir)
	pl.File = pl.Dir + "/" + fileName
	return pl, checkPlacement(repo, pl)
}

// checkPlacement validates a placement, also one read from a store that an
// older repoctl wrote before header fields were checked.
func checkPlacement(repo string, pl Placement) error {
	bad := func(what, v string) error {
		return fmt.Errorf("%w: %s %q in placement %q", ErrEscape, what, v, pl.File)
	}
	switch {
	case !nameRE().MatchString(repo):
		return bad("repository", repo)
	case !nameRE().MatchString(pl.Channel):
		return bad("channel", pl.Channel)
	case !releaseRE().MatchString(pl.Release):
		return bad("release", pl.Release)
	case pl.Arch != "SRPMS" && nevra.Arch(pl.Arch) != nil:
		return bad("arch", pl.Arch)
	}
	want := repo + "/" + pl.Channel + "/" + pl.Release + "/" + pl.Arch
	if pl.Dir != want {
		return bad("directory", pl.Dir)
	}
	dir, file := path.Split(pl.File)
	if dir != want+"/" || !plainName(file) || !strings.HasSuffix(file, ".rpm") {
		return bad("file", pl.File)
	}
	return nil
}

// linkIn places src (an absolute path outside the tree: a spool file) at
// pl.File. It links (same inode, so the bytes and mtime the entry
// describes are exactly what is served) and copies where linking is
// impossible.
func (t *tree) linkIn(src string, pl Placement) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	return t.place(fi, pl, func(dirfd int, name string) error {
		return unix.Linkat(unix.AT_FDCWD, src, dirfd, name, 0)
	}, func() (*os.File, error) { return os.Open(src) })
}

// linkWithin places the in-tree file srcFile (relative to the tree) at
// pl.File: promotion, and Resume from an already placed copy.
func (t *tree) linkWithin(srcFile string, pl Placement) error {
	fi, err := t.root.Lstat(srcFile)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %q is not a regular file", ErrEscape, srcFile)
	}
	return t.place(fi, pl, func(int, string) error {
		return t.root.Link(srcFile, pl.File)
	}, func() (*os.File, error) { return t.root.Open(srcFile) })
}

func (t *tree) place(src os.FileInfo, pl Placement, link func(dirfd int, name string) error, open func() (*os.File, error)) error {
	if err := t.mkdirAll(pl.Dir); err != nil {
		return err
	}
	if cur, err := t.root.Lstat(pl.File); err == nil {
		if os.SameFile(src, cur) {
			return nil
		}
		// Left over from an interrupted run that never recorded it.
		if err := t.root.Remove(pl.File); err != nil {
			return err
		}
	}
	d, err := t.root.Open(pl.Dir)
	if err != nil {
		return err
	}
	defer d.Close()
	name := path.Base(pl.File)
	if err := link(int(d.Fd()), name); err == nil {
		return nil
	} else if !errors.Is(err, syscall.EXDEV) && !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EMLINK) {
		return err
	}
	in, err := open()
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := pl.Dir + "/.place-" + name
	t.root.Remove(tmp)
	out, err := t.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.root.Remove(tmp)
		return err
	}
	if err := out.Chmod(t.filePerm()); err != nil {
		out.Close()
		t.root.Remove(tmp)
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := t.root.Chtimes(tmp, src.ModTime(), src.ModTime()); err != nil {
		return err
	}
	return t.root.Rename(tmp, pl.File)
}

// publish writes the repodata of the repository directory dir through a
// root opened beneath the tree, so the publisher cannot leave dir either.
func (t *tree) publish(ctx context.Context, dir string, entries []metadata.Entry, opts ...metadata.PublishOption) (*metadata.PublishResult, error) {
	refs := make([]*metadata.Entry, len(entries))
	for i := range entries {
		refs[i] = &entries[i]
	}
	return t.publishRefs(ctx, dir, refs, opts...)
}

// publishRefs is publish for entries held by pointer (the index's).
func (t *tree) publishRefs(ctx context.Context, dir string, entries []*metadata.Entry, opts ...metadata.PublishOption) (pr *metadata.PublishResult, err error) {
	var mirrorErr error
	if t.observe != nil {
		start := time.Now()
		defer func() { t.observe(dir, time.Since(start), errors.Join(err, mirrorErr)) }()
	}
	if err := t.mkdirAll(dir); err != nil {
		return nil, err
	}
	d, err := t.root.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	opts = append(opts[:len(opts):len(opts)], metadata.WithModes(t.filePerm(), t.dirPerm()))
	if t.loader != nil {
		// The index's entries are light: whoever publishes, the
		// fragments can be found.
		opts = append([]metadata.PublishOption{metadata.WithFragmentLoader(t.loader(dir))}, opts...)
	}
	pr, err = metadata.PublishRootRefs(ctx, d, entries, opts...)
	if err == nil && t.mirror != nil && !pr.DryRun {
		// The bucket follows the tree; a failure leaves the directory
		// pending and is retried, it does not fail the change.
		vals := make([]metadata.Entry, len(entries))
		for i, e := range entries {
			vals[i] = *e // the manifest needs href, size and sha256 only
		}
		mirrorErr = t.mirror.publish(ctx, dir, d, vals)
	}
	return pr, err
}

// exists reports whether the placed file is there.
func (t *tree) exists(file string) bool {
	fi, err := t.root.Lstat(file)
	return err == nil && fi.Mode().IsRegular()
}

// remove deletes a placed file; a missing one is not an error.
func (t *tree) remove(file string) error {
	if err := t.root.Remove(file); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// syncDir makes a directory's entries durable.
func (t *tree) syncDir(dir string) error {
	d, err := t.root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %q: %w", dir, err)
	}
	return nil
}

// readDir lists a repository directory inside the tree.
func (t *tree) readDir(dir string) ([]fs.DirEntry, error) {
	return fs.ReadDir(t.root.FS(), dir)
}
