package sign

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/repoctl/repoctl/internal/filelock"
	"github.com/repoctl/repoctl/internal/fsutil"
)

// A journal makes in-place patches crash safe. Before any file of a batch
// is patched, the original bytes of every region to be overwritten are
// written to one journal file, with the sha256 of the original and of the
// new bytes, and the journal is fsynced. After the patched files are synced
// the journal is removed. If the process dies in between, Recover finds the
// journal and puts every listed file back into a whole state: new bytes
// complete → kept (roll forward), anything else → original bytes restored
// (roll back). Only the signature area is ever patched, so the payload and
// main header never need journaling.
//
// The journal holds a flock while its batch runs, so Recover never touches a
// batch that is still alive.

const (
	journalPrefix = ".repoctl-sign-"
	journalSuffix = ".journal"
	tempMarker    = ".repoctl-sign-"
	maxJournal    = 512 << 20
)

type journalRecord struct {
	Path    string `json:"path"`
	Off     int64  `json:"off"`
	Size    int64  `json:"size"`
	MTime   int64  `json:"mtime_ns"`
	Orig    []byte `json:"orig"`
	OrigSum string `json:"orig_sha256"`
	NewSum  string `json:"new_sha256"`
	// The main header that follows the patched area identifies the
	// package, so Recover never writes into a different file that
	// happens to have the same size.
	MainLen int    `json:"main_len"`
	MainSum string `json:"main_sha256"`
}

type journalEnd struct {
	End int    `json:"end"`
	Sum string `json:"sha256"`
}

type journal struct {
	// f is the lock that keeps Recover out while the batch runs; closing
	// it (or the process dying) lets Recover at the journal.
	f    *filelock.Lock
	path string
}

func sum256(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// writeJournal writes and syncs a journal for recs in dir and keeps it
// locked until close.
func writeJournal(dir string, recs []journalRecord) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating journal directory %q: %w", dir, err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i := range recs {
		if err := enc.Encode(&recs[i]); err != nil {
			return nil, fmt.Errorf("writing journal in %q: %w", dir, err)
		}
	}
	end := journalEnd{End: len(recs), Sum: sum256(buf.Bytes())}
	if err := enc.Encode(&end); err != nil {
		return nil, fmt.Errorf("writing journal in %q: %w", dir, err)
	}
	// Between creating the file and locking it, another process's
	// Recover may take the empty journal for a dead one and remove it;
	// then the lock is on an unlinked file, and we start over.
	for try := 0; ; try++ {
		j, err := createJournal(dir, buf.Bytes())
		if !errors.Is(err, errJournalLost) || try == 2 {
			return j, err
		}
	}
}

var errJournalLost = errors.New("removed while being locked")

func createJournal(dir string, body []byte) (*journal, error) {
	f, err := os.CreateTemp(dir, journalPrefix+strconv.Itoa(os.Getpid())+"-*"+journalSuffix)
	if err != nil {
		return nil, fmt.Errorf("creating journal in %q: %w", dir, err)
	}
	defer f.Close() // the lock has its own descriptor
	path := f.Name()
	fail := func(lk *filelock.Lock, err error) (*journal, error) {
		os.Remove(path)
		lk.Close()
		return nil, fmt.Errorf("writing journal %q: %w", path, err)
	}
	// Recover holds a journal only for as long as it reads one, so
	// waiting for it is short.
	lk, err := filelock.Acquire(context.Background(), path, filelock.Wait(filelock.Forever))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("writing journal %q: %w", path, errJournalLost)
	}
	if err != nil {
		return fail(nil, err)
	}
	if a, err := lk.Stat(); err != nil || !sameInode(a, f) || !stillNamed(path, f) {
		lk.Close()
		return nil, fmt.Errorf("writing journal %q: %w", path, errJournalLost)
	}
	if _, err := f.Write(body); err != nil {
		return fail(lk, err)
	}
	if err := f.Sync(); err != nil {
		return fail(lk, err)
	}
	if err := fsutil.SyncDir(dir); err != nil {
		return fail(lk, err)
	}
	return &journal{f: lk, path: path}, nil
}

// stillNamed says whether path still names f.
func stillNamed(path string, f *os.File) bool {
	a, err := os.Stat(path)
	return err == nil && sameInode(a, f)
}

func sameInode(a os.FileInfo, f *os.File) bool {
	b, err := f.Stat()
	return err == nil && os.SameFile(a, b)
}

// finish removes the journal once its patches are durable, and only then
// lets go of its lock.
func (j *journal) finish() error {
	err := os.Remove(j.path)
	if err == nil {
		err = fsutil.SyncDir(filepath.Dir(j.path))
	}
	j.f.Close()
	return err
}

// parseJournal returns the records of a complete journal, or ok=false if
// the journal was never completed (then no file was touched yet).
func parseJournal(b []byte) (recs []journalRecord, ok bool) {
	lines := bytes.SplitAfter(b, []byte("\n"))
	var body int
	for _, ln := range lines {
		if len(bytes.TrimSpace(ln)) == 0 {
			continue
		}
		var end journalEnd
		if bytes.HasPrefix(ln, []byte(`{"end":`)) {
			if json.Unmarshal(ln, &end) != nil || end.Sum != sum256(b[:body]) || end.End != len(recs) {
				return nil, false
			}
			return recs, true
		}
		var r journalRecord
		if json.Unmarshal(ln, &r) != nil || !bytes.HasSuffix(ln, []byte("\n")) {
			return nil, false
		}
		recs = append(recs, r)
		body += len(ln)
	}
	return nil, false
}

// Recover finishes or rolls back patches interrupted by a crash, for every
// journal in journalDir, and removes temporary files left by interrupted
// rewrites of dead processes. Journals of live batches are left alone. It is
// safe to call at any time, and SignFiles calls it for its own directories.
func Recover(ctx context.Context, journalDir string) error {
	ents, err := os.ReadDir(journalDir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("recovering in %q: %w", journalDir, err)
	}
	var errs []error
	for _, de := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := de.Name()
		switch {
		case strings.HasPrefix(name, journalPrefix) && strings.HasSuffix(name, journalSuffix):
			if err := recoverJournal(filepath.Join(journalDir, name)); err != nil {
				errs = append(errs, err)
			}
		case strings.HasPrefix(name, ".") && strings.Contains(name, tempMarker) && strings.HasSuffix(name, ".tmp"):
			if pid, ok := tempPID(name); ok && !alive(pid) {
				os.Remove(filepath.Join(journalDir, name))
			}
		}
	}
	return errors.Join(errs...)
}

func tempPID(name string) (int, bool) {
	i := strings.Index(name, tempMarker)
	rest := name[i+len(tempMarker):]
	n, _, _ := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(n)
	return pid, err == nil && pid > 0
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func recoverJournal(path string) error {
	lk, err := filelock.Acquire(context.Background(), path)
	if err != nil {
		if errors.Is(err, filelock.ErrHeld) || errors.Is(err, os.ErrNotExist) {
			return nil // a live batch owns it, or it finished since ReadDir
		}
		return fmt.Errorf("%w: %v", ErrJournal, err)
	}
	defer lk.Close()
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("%w: opening %q: %v", ErrJournal, path, err)
	}
	defer f.Close()
	// The owner may have finished and removed it between ReadDir and the
	// lock; then what we locked is gone and f is nothing of ours.
	if a, err := lk.Stat(); err != nil || !sameInode(a, f) {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(bufio.NewReader(f), maxJournal))
	if err != nil {
		return fmt.Errorf("%w: reading %q: %v", ErrJournal, path, err)
	}
	recs, complete := parseJournal(b)
	if complete {
		var errs []error
		for _, r := range recs {
			if err := restore(r); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%w: %q: %v", ErrJournal, path, errors.Join(errs...))
		}
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("%w: removing %q: %v", ErrJournal, path, err)
	}
	return fsutil.SyncDir(filepath.Dir(path))
}

// restore puts one file into a whole state.
func restore(r journalRecord) error {
	f, err := os.OpenFile(r.Path, os.O_RDWR, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // removed since; nothing of ours to repair
		}
		return fmt.Errorf("restoring %q: %w", r.Path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("restoring %q: %w", r.Path, err)
	}
	if st.Size() != r.Size || r.Off < 0 || len(r.Orig) == 0 || sum256(r.Orig) != r.OrigSum {
		return nil // replaced by another file since (patches never change the size)
	}
	if r.MainLen <= 0 || int64(r.MainLen) > r.Size {
		return nil
	}
	main := make([]byte, r.MainLen)
	if _, err := f.ReadAt(main, r.Off+int64(len(r.Orig))); err != nil || sum256(main) != r.MainSum {
		return nil // a different package now
	}
	cur := make([]byte, len(r.Orig))
	if _, err := f.ReadAt(cur, r.Off); err != nil {
		return fmt.Errorf("restoring %q: %w", r.Path, err)
	}
	rolledBack := false
	switch sum256(cur) {
	case r.NewSum:
		// complete: keep (roll forward)
	case r.OrigSum:
		rolledBack = true
	default:
		if _, err := f.WriteAt(r.Orig, r.Off); err != nil {
			return fmt.Errorf("restoring %q: %w", r.Path, err)
		}
		rolledBack = true
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("restoring %q: %w", r.Path, err)
	}
	if rolledBack && r.MTime != 0 {
		// Original bytes, original mtime: as if never touched.
		t := time.Unix(0, r.MTime)
		os.Chtimes(r.Path, t, t)
	}
	return nil
}
