// Package input reads a file that someone hands repoctl (a drop-in, an
// `add` argument, a descriptor a socket client passed, an advisory file)
// without trusting what it is: Open opens it non-blocking, so that a FIFO
// cannot wedge the reader, optionally without following a final symlink,
// and checks the open descriptor, never stat-then-open; Copy copies such a
// file into a private working copy (0600, its mtime kept) within a time
// bound and reading by position; Reader stops a long read once its
// context is done; Describe names what a non-regular file is for messages.
//
// It is not the ingest pipeline nor the spool's layout or journal (package
// repo decides where a file goes, renames drop-ins into the spool and
// rejects what fails), does not parse RPMs and never decides what to do
// with a file. It must not import repo.
package input

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// errNotRegular is what Open and Copy say of anything but a regular file;
// its message is part of the rejection reasons repo writes.
var errNotRegular = errors.New("not a regular file")

// NotRegular is the error for a file of mode m that is not a regular
// file, in the words Open and Copy use.
func NotRegular(m fs.FileMode) error {
	return fmt.Errorf("%w: %s", errNotRegular, Describe(m))
}

// Open opens path for reading without blocking (a FIFO opens at once)
// and without following a final symlink when nofollow, and checks the
// open descriptor: only a regular file is returned.
func Open(path string, nofollow bool) (*os.File, error) {
	flags := os.O_RDONLY | syscall.O_NONBLOCK
	if nofollow {
		flags |= syscall.O_NOFOLLOW
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%w: a symbolic link", errNotRegular)
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, NotRegular(fi.Mode())
	}
	return f, nil
}

// Describe says what a file of mode m is, for messages: "a FIFO", "a
// symbolic link" and so on.
func Describe(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a directory"
	}
	return "not a regular file (" + m.String() + ")"
}

// Timeout bounds reading one input in Copy: a file on a hung network
// mount must not hold the batch (and the daemon) forever. A variable so
// that tests can shorten it.
var Timeout = 10 * time.Minute

// Copy copies the regular file in into dst (0600: a rejected copy of
// whatever a socket client passed must not become readable to others),
// keeping its mtime. It reads by position, since a descriptor passed twice
// shares its offset, and gives up after Timeout or once ctx is done. It
// does not fsync dst: the caller makes a batch of copies durable at once.
func Copy(ctx context.Context, in *os.File, dst string) error {
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return NotRegular(fi.Mode())
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, Reader(ctx, io.NewSectionReader(in, 0, 1<<62)))
	if err == nil {
		err = out.Close()
	} else {
		out.Close()
	}
	if err != nil {
		os.Remove(dst)
		return err
	}
	return os.Chtimes(dst, fi.ModTime(), fi.ModTime())
}

// Reader reads r until ctx is done: a copy or hash of a large file stops
// between reads.
func Reader(ctx context.Context, r io.Reader) io.Reader {
	return &ctxReader{ctx: ctx, r: r}
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, fmt.Errorf("reading input: %w", err)
	}
	return c.r.Read(p)
}
