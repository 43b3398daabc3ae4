package repo

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"
)

// escapeText makes text from a file (a name, a header string, an error
// quoting either) safe to write as one line of a .reason file, a log or
// CLI output: control characters, invalid UTF-8 and line breaks become Go
// escapes, so a name cannot fake a line or move a terminal's cursor.
// Printable text, quotes included, is left as it is.
func escapeText(s string) string {
	clean := true
	for _, c := range s {
		if c == utf8.RuneError || !unicode.IsPrint(c) && c != ' ' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case unicode.IsPrint(c) || c == ' ':
			b.WriteString(s[i : i+n])
		default:
			q := strconv.QuoteRune(c)
			b.WriteString(q[1 : len(q)-1])
		}
		i += n
	}
	return b.String()
}

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
