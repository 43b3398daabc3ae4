// Package safetext escapes text that came from outside (file names, RPM
// header strings, errors quoting them) before it is written where a
// person or a line-oriented parser reads it: .reason files, logs, CLI
// output. It is not a shell quoter (see upgrade.ShellQuote) and not an
// XML escaper (package metadata has its own, byte-compatible with
// createrepo_c).
package safetext

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Escape makes text from a file (a name, a header string, an error
// quoting either) safe to write as one line of a .reason file, a log or
// CLI output: control characters, invalid UTF-8 and line breaks become Go
// escapes, so a name cannot fake a line or move a terminal's cursor.
// Printable text, quotes included, is left as it is.
func Escape(s string) string {
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
