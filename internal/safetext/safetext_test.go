package safetext

import "testing"

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"plain name-1.0.rpm":                          "plain name-1.0.rpm",
		"caf\u00e9 \"q\"":                             "caf\u00e9 \"q\"",
		"inj\nunroutable: fake reason\nfile: x":       `inj\nunroutable: fake reason\nfile: x`,
		"esc\x1b[2J bel\a nul\x00 del\x7f tab\t cr\r": `esc\x1b[2J bel\a nul\x00 del\x7f tab\t cr\r`,
		"bad utf8 \xff\xfe":                           `bad utf8 \xff\xfe`,
		"line\u2028sep":                               `line\u2028sep`,
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}
