package repo

import (
	"errors"
	"github.com/repoctl/repoctl/internal/safetext"
	"strings"
	"syscall"
)

// isTransient reports whether err is a fault of the machine rather than
// of the input: the input must then stay where it is and be retried, never
// rejected.
func isTransient(err error) bool {
	for _, e := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EIO, syscall.EMFILE,
		syscall.ENFILE, syscall.ENOMEM, syscall.ENOBUFS, syscall.EAGAIN, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return errors.Is(err, ErrTransient)
}

// safeFileName keeps letters, digits and "._+-~^@=," of name and replaces
// every other byte with "_"; a hidden or empty name gets a "package"
// prefix, so that it shows in a listing.
func safeFileName(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._+-~^@=,", c) >= 0) {
			b[i] = '_'
		}
	}
	s := string(b)
	if len(s) > 200 {
		s = s[:200]
	}
	if s == "" || s[0] == '.' || s == "_" {
		s = "package" + s
	}
	return s
}

// escapeText makes text from a file (a name, a header string, an error
// quoting either) safe to write as one line; see safetext.Escape.
func escapeText(s string) string { return safetext.Escape(s) }
