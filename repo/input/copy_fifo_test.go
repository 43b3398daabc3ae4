package input

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestCopyRefusesFIFO: Copy checks the descriptor it is given itself, not
// only what Open let through: a FIFO (opened here without Open) is
// refused and no file is made, rather than copied as the empty file its
// missing writer reads as.
func TestCopyRefusesFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.rpm")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dst := filepath.Join(dir, "copy.rpm")
	if err := Copy(context.Background(), f, dst); !errors.Is(err, errNotRegular) {
		t.Fatalf("Copy of a FIFO: %v, want not a regular file", err)
	}
	if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Copy of a FIFO left %q: %v", dst, err)
	}
}
