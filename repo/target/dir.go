package target

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
)

// Dir is a Target in a local directory: an object is the file of its key
// below the directory. Every operation goes through one os.Root, so no
// key (and no symbolic link planted in the directory) reaches outside it.
//
// ROOT/repo, which publishing writes directly, is the default target;
// Dir is the same layout behind the Target interface, for the
// conformance suite and for a Mirror into another directory.
type Dir struct {
	dir  string
	root *os.Root
	// FileMode is given to every file Put writes; 0 means 0644.
	FileMode fs.FileMode
}

var (
	_ Target = (*Dir)(nil)
	_ Copier = (*Dir)(nil)
)

// OpenDir opens (creating it if need be) a directory target.
func OpenDir(dir string) (*Dir, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("opening target directory %q: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening target directory %q: %w", dir, err)
	}
	return &Dir{dir: dir, root: root}, nil
}

// Close releases the directory.
func (d *Dir) Close() error { return d.root.Close() }

func (d *Dir) String() string { return d.dir }

func (d *Dir) mode() fs.FileMode {
	if d.FileMode == 0 {
		return 0o644
	}
	return d.FileMode
}

// Put writes a hidden temporary file beside the object, fsyncs it and
// renames it into place. Hidden names are never keys, so a temporary
// file cannot be mistaken for an object.
func (d *Dir) Put(ctx context.Context, key string, body io.Reader, size int64, sum string, _ PutOptions) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if dir := path.Dir(key); dir != "." {
		if err := d.root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("putting %q: %w", key, err)
		}
	}
	tmp := path.Join(path.Dir(key), ".put-"+randHex()+"-"+path.Base(key))
	f, err := d.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, d.mode())
	if err != nil {
		return fmt.Errorf("putting %q: %w", key, err)
	}
	defer d.root.Remove(tmp)
	vr := newVerifier(body, size, sum)
	_, err = io.Copy(f, vr)
	if err == nil {
		err = vr.check()
	}
	if err == nil {
		err = f.Chmod(d.mode())
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("putting %q: %w", key, err)
	}
	if err := d.root.Rename(tmp, key); err != nil {
		return fmt.Errorf("putting %q: %w", key, err)
	}
	return nil
}

// Get opens the object's file; a directory or anything else that is not
// a regular file is no object.
func (d *Dir) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	f, err := d.root.Open(key)
	if err != nil {
		return nil, d.notExist(key, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("getting %q: %w", key, ErrNotExist)
	}
	return f, nil
}

// Stat hashes the file: a directory target is local and the caller asked.
func (d *Dir) Stat(ctx context.Context, key string) (Info, error) {
	rc, err := d.Get(ctx, key)
	if err != nil {
		return Info{}, err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return Info{}, fmt.Errorf("reading %q: %w", key, err)
	}
	return Info{Key: key, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Delete removes the file; directories left empty stay (they are cheap,
// and a concurrent Put may be about to use one).
func (d *Dir) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if err := d.root.Remove(key); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting %q: %w", key, err)
	}
	return nil
}

// Copy hard-links src to dst (a temporary link renamed over dst), and
// copies where links are impossible.
func (d *Dir) Copy(ctx context.Context, src, dst string, o PutOptions) error {
	if err := CheckKey(src); err != nil {
		return err
	}
	if err := CheckKey(dst); err != nil {
		return err
	}
	if dir := path.Dir(dst); dir != "." {
		if err := d.root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("copying %q to %q: %w", src, dst, err)
		}
	}
	tmp := path.Join(path.Dir(dst), ".link-"+randHex()+"-"+path.Base(dst))
	if err := d.root.Link(src, tmp); err == nil {
		defer d.root.Remove(tmp)
		if err := d.root.Rename(tmp, dst); err != nil {
			return fmt.Errorf("copying %q to %q: %w", src, dst, err)
		}
		return nil
	} else if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("copying %q to %q: %w", src, dst, ErrNotExist)
	}
	info, err := d.Stat(ctx, src)
	if err != nil {
		return err
	}
	rc, err := d.Get(ctx, src)
	if err != nil {
		return err
	}
	defer rc.Close()
	return d.Put(ctx, dst, rc, info.Size, info.SHA256, o)
}

func (d *Dir) notExist(key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("getting %q: %w", key, ErrNotExist)
	}
	return fmt.Errorf("getting %q: %w", key, err)
}

func randHex() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// verifier passes a body through and checks, at its end, that it was
// exactly size bytes with sha256 sum ("" skips the sum). It never reads
// more than size+1 bytes, so an overlong body is caught without reading
// it all.
type verifier struct {
	r    io.Reader
	h    hashWriter
	n    int64
	size int64
	sum  string
	done bool
}

type hashWriter interface {
	io.Writer
	Sum([]byte) []byte
}

func newVerifier(r io.Reader, size int64, sum string) *verifier {
	return &verifier{r: io.LimitReader(r, size+1), h: sha256.New(), size: size, sum: sum}
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.n += int64(n)
	v.h.Write(p[:n])
	// A bad body's last bytes are held back with the error: an uploader
	// that already sent them could have let the store complete the
	// object; one byte short, the request cannot complete.
	switch {
	case v.n > v.size:
		return 0, fmt.Errorf("%w: more than the %d bytes announced", ErrMismatch, v.size)
	case v.n == v.size && !v.done:
		// Checked as the last byte is read, not at EOF: an uploader that
		// reads exactly size bytes never asks for EOF.
		v.done = true
		if cerr := v.check(); cerr != nil {
			return 0, cerr
		}
	case err == io.EOF:
		if cerr := v.check(); cerr != nil {
			return 0, cerr
		}
	}
	return n, err
}

// check says whether what was read is the announced content.
func (v *verifier) check() error {
	if v.n != v.size {
		return fmt.Errorf("%w: %d bytes read, %d announced", ErrMismatch, v.n, v.size)
	}
	if got := hex.EncodeToString(v.h.Sum(nil)); v.sum != "" && got != v.sum {
		return fmt.Errorf("%w: sha256 %s, announced %s", ErrMismatch, got, v.sum)
	}
	return nil
}
