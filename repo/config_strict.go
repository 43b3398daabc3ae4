package repo

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/repoctl/repoctl/upgrade"
)

// SystemConfigFile is the config file looked up last, after --config,
// REPOCTL_CONFIG (both resolved by the CLI) and ROOT/repoctl.toml.
const SystemConfigFile = "/etc/repoctl/repoctl.toml"

// systemConfigFile is SystemConfigFile; a variable so that a test can
// point it elsewhere without touching /etc on a shared machine.
var systemConfigFile = SystemConfigFile

// maxConfigSize caps what LoadConfig reads: a config file is a few KiB, and
// a runaway one (a log pointed at by mistake) must not be read whole.
const maxConfigSize = 4 << 20

// maxConfigProblems caps how many problems one ConfigError list reports.
const maxConfigProblems = 20

// ConfigError is one problem with a config file: an unknown key, a value
// of the wrong type, a bad duration or mode, a name that is not allowed. It
// matches ErrConfigFile and ErrBadConfig (errors.Is); the CLI exits 2 on it
// and the daemon refuses to start.
type ConfigError struct {
	File string // the file read; "" when none was (the defaults)
	Line int    // 1-based; 0 when the problem has no one line
	Key  string // dotted key (publish.compression), "" if not about one key
	Msg  string
	Err  error // underlying error, if any (a read error)
}

func (e *ConfigError) Error() string {
	loc := e.File
	if loc != "" && e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if loc == "" {
		return ErrBadConfig.Error() + ": " + e.Msg
	}
	return ErrBadConfig.Error() + ": " + loc + ": " + e.Msg
}

func (e *ConfigError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrConfigFile, ErrBadConfig, e.Err}
	}
	return []error{ErrConfigFile, ErrBadConfig}
}

// ConfigPath is the config file LoadConfig(root, file) reads: file when
// given (it must exist), else ROOT/repoctl.toml, else SystemConfigFile,
// whichever exists first; "" means none does and the embedded defaults
// apply. The CLI turns --config and REPOCTL_CONFIG into file.
func ConfigPath(root, file string) (string, error) {
	if file != "" {
		return file, nil
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("resolving root %q: %w", root, err)
	}
	for _, p := range []string{filepath.Join(abs, ConfigFileName), systemConfigFile} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			// Present but unreadable (a directory we cannot search):
			// reading it says why, rather than silently falling back.
			return p, nil
		}
	}
	return "", nil
}

// loadConfig is LoadConfig: lookup, strict decoding, defaults, and every
// problem reported with the file and line it is on.
func loadConfig(root, file string) (*Config, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("resolving root %q: %w", root, err)
	}
	c := &Config{Root: abs}
	path, err := ConfigPath(abs, file)
	if err != nil {
		return nil, err
	}
	var src string
	if path != "" {
		b, err := readConfigFile(path)
		if err != nil {
			return nil, &ConfigError{File: path, Msg: err.Error(), Err: err}
		}
		src = string(b)
		if err := c.decodeStrict(path, src); err != nil {
			return nil, err
		}
		c.File = path
	}
	if err := c.setDefaults(); err != nil {
		return nil, c.locate(src, err)
	}
	if err := c.setOpsDefaults(); err != nil {
		return nil, c.locate(src, err)
	}
	if _, err := checkDropIns(c); err != nil {
		return nil, c.locate(src, err)
	}
	return c, nil
}

func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading config %q: %w", path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("reading config %q: not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading config %q: %w", path, err)
	}
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("reading config %q: larger than %d bytes", path, maxConfigSize)
	}
	return b, nil
}

// upgradeDoc is the part of the file package upgrade reads (its [upgrade]
// section): decoding it here too makes its keys known, so that a typo in
// [upgrade] fails every command the same way a typo elsewhere does, not
// only the next rollout.
type upgradeDoc struct {
	Upgrade upgrade.Config `toml:"upgrade"`
}

// decodeStrict decodes src into c and refuses keys that neither c nor the
// [upgrade] section knows, and durations that do not parse.
func (c *Config) decodeStrict(file, src string) error {
	md, err := toml.Decode(src, c)
	if err != nil {
		return tomlError(file, err)
	}
	var up upgradeDoc
	umd, err := toml.Decode(src, &up)
	if err != nil {
		return tomlError(file, err)
	}
	upUnknown := map[string]bool{}
	for _, k := range umd.Undecoded() {
		upUnknown[k.String()] = true
	}
	unknown := map[string]bool{}
	for _, k := range md.Undecoded() {
		if s := k.String(); upUnknown[s] {
			unknown[s] = true
		}
	}
	var problems []error
	if len(unknown) > 0 {
		lines := scanKeyLines(src)
		seen := map[string]int{}
		for _, k := range md.Keys() {
			s := k.String()
			n := seen[s]
			seen[s]++
			if !unknown[s] || hasUnknownParent(k, unknown) {
				continue
			}
			msg := fmt.Sprintf("unknown key %q", s)
			if hint := suggestKey(k); hint != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", hint)
			}
			problems = append(problems, &ConfigError{File: file, Line: nthLine(lines[s], n), Key: s, Msg: msg})
		}
	}
	var lines map[string][]int
	for _, d := range []struct{ key, v string }{
		{"http.idle_timeout", c.HTTP.IdleTimeout},
		{"daemon.settle", c.Daemon.Settle},
	} {
		if d.v == "" {
			continue
		}
		if v, err := time.ParseDuration(d.v); err != nil || v <= 0 {
			if lines == nil {
				lines = scanKeyLines(src)
			}
			problems = append(problems, &ConfigError{File: file, Line: nthLine(lines[d.key], 0), Key: d.key,
				Msg: fmt.Sprintf("%s %q is not a positive duration such as \"2s\" or \"500ms\"", d.key, d.v)})
		}
	}
	return joinProblems(problems)
}

func joinProblems(problems []error) error {
	switch len(problems) {
	case 0:
		return nil
	case 1:
		return problems[0]
	}
	if len(problems) > maxConfigProblems {
		more := len(problems) - maxConfigProblems
		problems = append(problems[:maxConfigProblems:maxConfigProblems],
			&ConfigError{Msg: fmt.Sprintf("… and %d more problems", more)})
	}
	return errors.Join(problems...)
}

func nthLine(lines []int, n int) int {
	switch {
	case n < len(lines):
		return lines[n]
	case len(lines) > 0:
		return lines[len(lines)-1]
	}
	return 0
}

// hasUnknownParent reports whether a table above k is unknown itself: then
// only that table is reported, not every key in it.
func hasUnknownParent(k toml.Key, unknown map[string]bool) bool {
	for i := 1; i < len(k); i++ {
		if unknown[k[:i].String()] {
			return true
		}
	}
	return false
}

// suggestKey returns the known key closest to an unknown one in the same
// table (compresion → compression), or "".
func suggestKey(k toml.Key) string {
	t := reflect.TypeOf(Config{})
	if k[0] == "upgrade" {
		t = reflect.TypeOf(upgradeDoc{})
	}
	for _, seg := range k[:len(k)-1] {
		if t = fieldType(t, seg); t == nil {
			return ""
		}
	}
	for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return ""
	}
	last, best, bestD := k[len(k)-1], "", 3
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		if d := editDistance(last, name); d < bestD {
			best, bestD = name, d
		}
	}
	if best == "" {
		return ""
	}
	return append(slices.Clone(k[:len(k)-1]), best).String()
}

// fieldType is the type a TOML key segment leads to below t: a struct
// field by its toml tag, a map's value for any key, a slice's element.
func fieldType(t reflect.Type, seg string) reflect.Type {
	for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Map:
		return t.Elem()
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ","); name == seg {
				return t.Field(i).Type
			}
		}
	}
	return nil
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// tomlLastKeyRE parses the decoder's type errors, which carry the line and
// key only in their text: `toml: line 3 (last key "repos"): incompatible
// types: …`.
var tomlLastKeyRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key ("(?:[^"\\]|\\.)*")\): (.*)$`)
})

// tomlError turns a decode error into a ConfigError with the line.
func tomlError(file string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.LastKey != "" {
			msg = pe.LastKey + ": " + msg
		}
		return &ConfigError{File: file, Line: pe.Position.Line, Key: pe.LastKey, Msg: msg}
	}
	if m := tomlLastKeyRE().FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		key, uerr := strconv.Unquote(m[2])
		if uerr != nil {
			key = m[2]
		}
		return &ConfigError{File: file, Line: line, Key: key, Msg: key + ": " + m[3]}
	}
	return &ConfigError{File: file, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
}

// msgKeyRE finds the key a setDefaults or checkDropIns message is about;
// they all start with it: `http.listen "x": …`, `route[1].match …`,
// `releases."el/9": …`, `default_repo …`.
var msgKeyRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(?:(route)\[(\d+)\]\.([a-z_]+)|(releases\."(?:[^"\\]|\\.)*")|([a-z_]+(?:\.[a-z_0-9]+){0,2}))`)
})

// msgKeyAlias maps the words some messages start with onto their key.
var msgKeyAlias = map[string]string{"repository": "repos", "channel": "channels"}

// locate turns an ErrBadConfig from the checks after decoding into a
// ConfigError carrying the file and, when the message names a key the file
// sets, its line.
func (c *Config) locate(src string, err error) error {
	if !errors.Is(err, ErrBadConfig) {
		return err
	}
	var ce *ConfigError
	if errors.As(err, &ce) {
		return err
	}
	msg := strings.TrimPrefix(err.Error(), ErrBadConfig.Error()+": ")
	e := &ConfigError{File: c.File, Msg: msg}
	if c.File == "" {
		return e
	}
	lines := scanKeyLines(src)
	if m := msgKeyRE().FindStringSubmatch(msg); m != nil {
		switch {
		case m[1] != "":
			i, _ := strconv.Atoi(m[2])
			e.Key = "route." + m[3]
			if e.Line = nthLine(lines[e.Key], i); len(lines[e.Key]) <= i {
				e.Line = nthLine(lines["route"], i)
			}
		case m[4] != "":
			e.Key = m[4]
			e.Line = nthLine(lines[e.Key], 0)
		default:
			e.Key = m[5]
			if a, ok := msgKeyAlias[e.Key]; ok {
				e.Key = a
			}
			if e.Key == "dropin" || strings.HasPrefix(msg, "drop-in directory") {
				e.Key = "dropin"
				for i, d := range c.DropIns {
					if strings.Contains(msg, strconv.Quote(d.Dir)) {
						e.Line = nthLine(lines["dropin"], i)
						if ls := lines["dropin.dir"]; len(ls) > 0 {
							// The dir key of that [[dropin]], if it sets one.
							for _, l := range ls {
								if l >= e.Line && (i+1 >= len(lines["dropin"]) || l < lines["dropin"][i+1]) {
									e.Line = l
									break
								}
							}
						}
						break
					}
				}
			} else {
				e.Line = nthLine(lines[e.Key], 0)
			}
		}
	}
	return e
}

// scanKeyLines maps every key a TOML document sets (table headers, keys,
// keys of inline tables, as dotted strings in toml.Key's spelling) to the
// lines it is set on, in order. BurntSushi/toml does not export the
// positions of keys, and a key in an array of tables ([[route]]) is set on
// as many lines as there are tables. src has already parsed as TOML; on
// anything unexpected the scan stops and returns what it found.
func scanKeyLines(src string) (lines map[string][]int) {
	s := &keyScanner{s: src, line: 1, out: map[string][]int{}}
	defer func() {
		// The scan only adds line numbers to a message: a bug in it must
		// never turn a config error into a crash.
		if recover() != nil {
			lines = s.out
		}
	}()
	s.document()
	return s.out
}

type keyScanner struct {
	s    string
	i    int
	line int
	out  map[string][]int
}

func (s *keyScanner) peek(off int) byte {
	if s.i+off < len(s.s) {
		return s.s[s.i+off]
	}
	return 0
}

func (s *keyScanner) eof() bool { return s.i >= len(s.s) }

func (s *keyScanner) advance(n int) {
	for ; n > 0 && s.i < len(s.s); n-- {
		if s.s[s.i] == '\n' {
			s.line++
		}
		s.i++
	}
}

func (s *keyScanner) has(prefix string) bool { return strings.HasPrefix(s.s[s.i:], prefix) }

func (s *keyScanner) emit(key []string, line int) {
	k := toml.Key(key).String()
	s.out[k] = append(s.out[k], line)
}

// skipInline skips spaces and tabs.
func (s *keyScanner) skipInline() {
	for c := s.peek(0); c == ' ' || c == '\t'; c = s.peek(0) {
		s.advance(1)
	}
}

// skipAll skips whitespace, newlines and comments.
func (s *keyScanner) skipAll() {
	for !s.eof() {
		switch c := s.peek(0); c {
		case ' ', '\t', '\r', '\n':
			s.advance(1)
		case '#':
			for !s.eof() && s.peek(0) != '\n' {
				s.advance(1)
			}
		default:
			return
		}
	}
}

func (s *keyScanner) document() {
	var table []string
	for {
		s.skipAll()
		if s.eof() {
			return
		}
		line := s.line
		if s.peek(0) == '[' {
			arr := s.peek(1) == '['
			s.advance(1)
			if arr {
				s.advance(1)
			}
			s.skipInline()
			path, ok := s.keyPath()
			if !ok {
				return
			}
			s.skipInline()
			if !s.has("]") || arr && !s.has("]]") {
				return
			}
			s.advance(1)
			if arr {
				s.advance(1)
			}
			table = path
			s.emit(table, line)
			continue
		}
		path, ok := s.keyPath()
		if !ok {
			return
		}
		s.skipInline()
		if s.peek(0) != '=' {
			return
		}
		s.advance(1)
		s.skipInline()
		full := append(slices.Clone(table), path...)
		s.emit(full, line)
		if !s.value(full) {
			return
		}
	}
}

func (s *keyScanner) keyPath() ([]string, bool) {
	var segs []string
	for {
		s.skipInline()
		switch c := s.peek(0); {
		case c == '"':
			start := s.i
			if !s.basicString() {
				return nil, false
			}
			v, err := strconv.Unquote(s.s[start:s.i])
			if err != nil {
				v = s.s[start+1 : s.i-1]
			}
			segs = append(segs, v)
		case c == '\'':
			start := s.i
			if !s.literalString() {
				return nil, false
			}
			segs = append(segs, s.s[start+1:s.i-1])
		default:
			start := s.i
			for c := s.peek(0); c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'; c = s.peek(0) {
				s.advance(1)
			}
			if s.i == start {
				return nil, false
			}
			segs = append(segs, s.s[start:s.i])
		}
		s.skipInline()
		if s.peek(0) != '.' {
			return segs, true
		}
		s.advance(1)
	}
}

func (s *keyScanner) basicString() bool {
	s.advance(1)
	for !s.eof() {
		switch s.peek(0) {
		case '\\':
			s.advance(2)
		case '"':
			s.advance(1)
			return true
		case '\n':
			return false
		default:
			s.advance(1)
		}
	}
	return false
}

func (s *keyScanner) literalString() bool {
	s.advance(1)
	for !s.eof() {
		switch s.peek(0) {
		case '\'':
			s.advance(1)
			return true
		case '\n':
			return false
		default:
			s.advance(1)
		}
	}
	return false
}

// multiline skips a multi-line string, basic or literal (q is its three
// quotes); up to two more quotes may end it.
func (s *keyScanner) multiline(q string, escapes bool) bool {
	s.advance(3)
	for !s.eof() {
		switch {
		case escapes && s.peek(0) == '\\':
			s.advance(2)
		case s.has(q):
			s.advance(3)
			for n := 0; n < 2 && s.peek(0) == q[0]; n++ {
				s.advance(1)
			}
			return true
		default:
			s.advance(1)
		}
	}
	return false
}

// value skips one value; keys of inline tables in it are emitted below
// prefix.
func (s *keyScanner) value(prefix []string) bool {
	switch {
	case s.has(`"""`):
		return s.multiline(`"""`, true)
	case s.has(`'''`):
		return s.multiline(`'''`, false)
	case s.peek(0) == '"':
		return s.basicString()
	case s.peek(0) == '\'':
		return s.literalString()
	case s.peek(0) == '[':
		s.advance(1)
		for {
			s.skipAll()
			if s.eof() {
				return false
			}
			if s.peek(0) == ']' {
				s.advance(1)
				return true
			}
			if !s.value(prefix) {
				return false
			}
			s.skipAll()
			if s.peek(0) == ',' {
				s.advance(1)
			}
		}
	case s.peek(0) == '{':
		s.advance(1)
		for {
			s.skipAll()
			if s.eof() {
				return false
			}
			if s.peek(0) == '}' {
				s.advance(1)
				return true
			}
			line := s.line
			path, ok := s.keyPath()
			if !ok || s.peek(0) != '=' {
				return false
			}
			s.advance(1)
			s.skipInline()
			full := append(slices.Clone(prefix), path...)
			s.emit(full, line)
			if !s.value(full) {
				return false
			}
			s.skipAll()
			if s.peek(0) == ',' {
				s.advance(1)
			}
		}
	}
	start := s.i
	for c := s.peek(0); !s.eof() && c != ',' && c != ']' && c != '}' && c != '#' && c != '\n' && c != '\r'; c = s.peek(0) {
		s.advance(1)
	}
	return s.i > start
}
