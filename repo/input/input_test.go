package input

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Open returns regular files only, checked on the descriptor: a FIFO
// opens without blocking and is refused, a final symlink is refused when
// nofollow and followed otherwise, a directory is refused.
func TestOpen(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "a.rpm")
	if err := os.WriteFile(reg, []byte("rpm"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.rpm")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.rpm")
	if err := os.Symlink(reg, link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path     string
		nofollow bool
		want     string // "" to open
	}{
		{reg, true, ""},
		{link, false, ""},
		{link, true, "not a regular file: a symbolic link"},
		{fifo, false, "not a regular file: a FIFO"},
		{dir, false, "not a regular file: a directory"},
	} {
		f, err := Open(c.path, c.nofollow)
		if c.want == "" {
			if err != nil {
				t.Errorf("Open(%s, %v): %v", c.path, c.nofollow, err)
				continue
			}
			b, err := io.ReadAll(f)
			f.Close()
			if err != nil || string(b) != "rpm" {
				t.Errorf("Open(%s, %v) read %q, %v", c.path, c.nofollow, b, err)
			}
			continue
		}
		if err == nil {
			f.Close()
			t.Errorf("Open(%s, %v) opened it, want %q", c.path, c.nofollow, c.want)
		} else if err.Error() != c.want || !errors.Is(err, errNotRegular) {
			t.Errorf("Open(%s, %v): %v, want %q", c.path, c.nofollow, err, c.want)
		}
	}
}

// Copy writes the whole file whatever the descriptor's offset, private
// (0600) and with the source's mtime; a cancelled copy leaves nothing.
func TestCopy(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "in.rpm")
	body := bytes.Repeat([]byte("0123456789"), 100000)
	if err := os.WriteFile(src, body, 0o644); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	if err := os.Chtimes(src, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	// A descriptor someone else has read from already.
	if _, err := in.Seek(12345, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "spool")
	if err := Copy(context.Background(), in, dst); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("copied %d bytes (%v), want the whole %d", len(got), err, len(body))
	}
	fi, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || !fi.ModTime().Equal(mtime) {
		t.Errorf("copy has mode %v, mtime %v; want 0600, %v", fi.Mode().Perm(), fi.ModTime(), mtime)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	gone := filepath.Join(dir, "cancelled")
	if err := Copy(ctx, in, gone); !errors.Is(err, context.Canceled) {
		t.Errorf("Copy with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := os.Lstat(gone); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a cancelled copy left %s (%v)", gone, err)
	}

	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := Copy(context.Background(), d, filepath.Join(dir, "dir")); err == nil || !strings.HasSuffix(err.Error(), "a directory") {
		t.Errorf("Copy of a directory: %v", err)
	}
}
