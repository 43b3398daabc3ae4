package dropwatch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// closeWatcher reports two inotify events for the files of the directories
// it watches: IN_CLOSE_WRITE (the writer closed the file after writing it:
// cp, scp, curl -o, rpmbuild) and IN_MOVED_TO (the file was renamed into
// place: rsync, mv, an uploader's partial name). Either is the writer's
// word that the file is complete, so the watcher need not wait for the
// settle interval.
//
// fsnotify v1.10 reads both from the kernel but keeps close-write behind
// unexported names (withOps, xUnportableCloseWrite) and reports IN_MOVED_TO
// as a plain Create, so this is a second, minimal inotify instance beside
// fsnotify's that asks for nothing else. Every other event, and the
// bookkeeping of created and removed directories, stays with fsnotify.
type closeWatcher struct {
	f      *os.File
	fd     int
	events chan closeEvent
	done   chan struct{}
	wg     sync.WaitGroup

	mu     sync.Mutex
	byWD   map[int32]string
	byPath map[string]int32
}

// closeEvent is a file that its writer closed or renamed into place.
type closeEvent struct {
	path  string
	moved bool // IN_MOVED_TO; otherwise IN_CLOSE_WRITE
}

func newCloseWatcher() (*closeWatcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	// A non-blocking descriptor becomes a pollable *os.File: Read parks in
	// the runtime's poller and Close wakes it.
	w := &closeWatcher{
		f: os.NewFile(uintptr(fd), "inotify"), fd: fd,
		events: make(chan closeEvent, 1024), done: make(chan struct{}),
		byWD: map[int32]string{}, byPath: map[string]int32{},
	}
	w.wg.Add(1)
	go w.read()
	return w, nil
}

// add watches dir (not recursively). Adding a directory again is harmless.
func (w *closeWatcher) add(dir string) error {
	wd, err := unix.InotifyAddWatch(w.fd, dir,
		unix.IN_CLOSE_WRITE|unix.IN_MOVED_TO|unix.IN_ONLYDIR|unix.IN_DONT_FOLLOW|unix.IN_EXCL_UNLINK)
	if err != nil {
		return fmt.Errorf("inotify_add_watch %q: %w", dir, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// The kernel gives the same descriptor for the same inode: a directory
	// renamed within the tree keeps its watch under its new name.
	if old, ok := w.byWD[int32(wd)]; ok && old != dir {
		delete(w.byPath, old)
	}
	w.byWD[int32(wd)] = dir
	w.byPath[dir] = int32(wd)
	return nil
}

// remove stops watching dir, if it is watched.
func (w *closeWatcher) remove(dir string) {
	w.mu.Lock()
	wd, ok := w.byPath[dir]
	if ok {
		delete(w.byPath, dir)
		delete(w.byWD, wd)
	}
	w.mu.Unlock()
	if ok {
		// EINVAL: the kernel already dropped it (the directory is gone).
		unix.InotifyRmWatch(w.fd, uint32(wd))
	}
}

func (w *closeWatcher) close() {
	close(w.done)
	w.f.Close()
	w.wg.Wait()
}

func (w *closeWatcher) read() {
	defer w.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			// Closed, or a broken descriptor (never seen): without these
			// events every file still settles the slow way.
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			wd := int32(binary.NativeEndian.Uint32(buf[off:]))
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			nameLen := int(binary.NativeEndian.Uint32(buf[off+12:]))
			start := off + unix.SizeofInotifyEvent
			off = start + nameLen
			if off > n {
				break
			}
			name := string(bytes.TrimRight(buf[start:off], "\x00"))
			w.mu.Lock()
			dir := w.byWD[wd]
			if mask&unix.IN_IGNORED != 0 && dir != "" {
				delete(w.byWD, wd)
				if w.byPath[dir] == wd {
					delete(w.byPath, dir)
				}
			}
			w.mu.Unlock()
			if dir == "" || name == "" || mask&unix.IN_ISDIR != 0 || mask&(unix.IN_CLOSE_WRITE|unix.IN_MOVED_TO) == 0 {
				continue
			}
			select {
			case w.events <- closeEvent{path: filepath.Join(dir, name), moved: mask&unix.IN_MOVED_TO != 0}:
			case <-w.done:
				return
			}
		}
	}
}

// OpenForWriting reports whether some process has path open for writing,
// as the kernel tells: a read lease (F_SETLEASE F_RDLCK) is refused with
// EAGAIN exactly then. It catches the writer that stalls longer than the
// settle interval with the file still open (scp over a slow link). known
// is false when the kernel will not say: a lease needs the file's owner
// or CAP_LEASE (a drop-in another user wrote), or the file system has no
// leases; the settle interval and the pipeline's second look then decide.
// The lease is dropped at once, so no opener ever waits for it.
func OpenForWriting(path string) (writing, known bool) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false, false
	}
	switch _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_RDLCK); err {
	case nil:
		unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
		return false, true
	case unix.EAGAIN, unix.EBUSY:
		return true, true
	}
	return false, false
}
