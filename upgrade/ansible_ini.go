package upgrade

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// The INI inventory as ansible-core's ini plugin reads it: lines before
// any section are hosts of ungrouped; [g] holds hosts, [g:children] child
// group names, [g:vars] key=value lines. A host line is split like a POSIX
// shell line (quotes, backslashes, '#' comments); each value, host or
// group, is then read as a Python literal when it is one.

var (
	iniSectionRE   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$`) })
	iniGroupNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^([^:\]\s]+)\s*(?:#.*)?$`) })
)

type iniPending struct {
	line    int
	kind    string // "vars" or "children"
	parents []string
}

func parseAnsibleINI(b []byte) (*ansInventory, error) {
	inv := newAnsInventory()
	group, state := "ungrouped", "hosts"
	// Ansible lets [g:children] name a group declared further down, and
	// [g:vars] come before [g]; what is still undeclared at the end is an
	// error.
	pending := map[string]*iniPending{}
	var pendingOrder []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	ln := 0
	fail := func(format string, a ...any) error {
		return fmt.Errorf("%w: line %d: %s", ErrInventory, ln, fmt.Sprintf(format, a...))
	}
	var addPendingChildren func(child string) error
	addPendingChildren = func(child string) error {
		p := pending[child]
		delete(pending, child)
		for _, parent := range p.parents {
			if err := inv.addChild(parent, child); err != nil {
				return err
			}
			if pp := pending[parent]; pp != nil && pp.kind == "children" {
				if err := addPendingChildren(parent); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for sc.Scan() {
		ln++
		raw := sc.Bytes()
		if !utf8.Valid(raw) {
			if t := bytes.TrimSpace(raw); len(t) > 0 && (t[0] == '#' || t[0] == ';') {
				continue // Ansible lets comments be in another encoding
			}
			return nil, fail("not UTF-8")
		}
		line := strings.TrimSpace(string(raw))
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if m := iniSectionRE().FindStringSubmatch(line); m != nil {
			group, state = m[1], m[2]
			if state == "" {
				state = "hosts"
			}
			if state != "hosts" && state != "children" && state != "vars" {
				return nil, fail("section [%s:%s] has unknown type %q", group, state, state)
			}
			if inv.groups[group] == nil {
				if _, ok := pending[group]; state == "vars" && !ok {
					pending[group] = &iniPending{line: ln, kind: "vars"}
					pendingOrder = append(pendingOrder, group)
				}
				inv.group(group)
			}
			if p := pending[group]; p != nil && state != "vars" {
				if p.kind == "children" {
					if err := addPendingChildren(group); err != nil {
						return nil, fmt.Errorf("line %d: %w", ln, err)
					}
				} else {
					delete(pending, group)
				}
			}
			continue
		}
		if line[0] == '[' && line[len(line)-1] == ']' {
			return nil, fail("invalid section %q: no spaces or other characters are allowed in a section name", line)
		}
		switch state {
		case "hosts":
			tokens, err := shlexSplit(line)
			if err != nil {
				return nil, fail("host line %q: %v", line, err)
			}
			if len(tokens) == 0 {
				continue
			}
			vars := map[string]string{}
			for _, t := range tokens[1:] {
				k, v, ok := strings.Cut(t, "=")
				if !ok {
					return nil, fail("want key=value host variable, got %q", t)
				}
				vars[k] = iniValue(v)
			}
			if strings.HasSuffix(tokens[0], ":") {
				if _, port, _ := parseAddress(tokens[0]); port == "" {
					return nil, fail("host pattern %q ends in ':', which is reserved for a port", tokens[0])
				}
			}
			hosts, port, err := expandHostPattern(tokens[0])
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", ln, err)
			}
			n, _ := strconv.Atoi(port)
			for _, h := range hosts {
				if h == "---" {
					return nil, fail("host %q: this looks like a YAML file", h)
				}
				if err := inv.addHost(group, h, n, vars); err != nil {
					return nil, fmt.Errorf("line %d: %w", ln, err)
				}
			}
		case "vars":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return nil, fail("want key=value in [%s:vars], got %q", group, line)
			}
			if err := inv.setGroupVar(group, strings.TrimSpace(k), iniValue(strings.TrimSpace(v))); err != nil {
				return nil, fmt.Errorf("line %d: %w", ln, err)
			}
		case "children":
			m := iniGroupNameRE().FindStringSubmatch(line)
			if m == nil {
				return nil, fail("want a group name in [%s:children], got %q", group, line)
			}
			child := m[1]
			if inv.groups[child] != nil {
				if err := inv.addChild(group, child); err != nil {
					return nil, fmt.Errorf("line %d: %w", ln, err)
				}
				continue
			}
			if p := pending[child]; p != nil {
				p.parents = append(p.parents, group)
			} else {
				pending[child] = &iniPending{line: ln, kind: "children", parents: []string{group}}
				pendingOrder = append(pendingOrder, child)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInventory, err)
	}
	for _, g := range pendingOrder {
		p := pending[g]
		if p == nil {
			continue
		}
		if p.kind == "vars" {
			return nil, fmt.Errorf("%w: line %d: section [%s:vars] is for an undefined group", ErrInventory, p.line, g)
		}
		return nil, fmt.Errorf("%w: line %d: section [%s:children] names an undefined group %q", ErrInventory, p.line, p.parents[len(p.parents)-1], g)
	}
	return inv, nil
}

// shlexSplit splits a line as Python's shlex.split(line, comments=True)
// does: blanks separate words, '...' is literal, "..." honours \" and \\,
// a backslash outside quotes escapes the next character, and '#' outside
// quotes ends the line.
func shlexSplit(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	has := false
	flush := func() {
		if has {
			out = append(out, cur.String())
			cur.Reset()
			has = false
		}
	}
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == ' ' || r == '\t' || r == '\r' || r == '\n':
			flush()
		case r == '#':
			flush()
			return out, nil
		case r == '\\':
			if i+1 >= len(rs) {
				return nil, errors.New("no escaped character")
			}
			i++
			cur.WriteRune(rs[i])
			has = true
		case r == '\'':
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				j++
			}
			if j >= len(rs) {
				return nil, errors.New("no closing quotation")
			}
			cur.WriteString(string(rs[i+1 : j]))
			has, i = true, j
		case r == '"':
			j := i + 1
			for ; j < len(rs) && rs[j] != '"'; j++ {
				if rs[j] == '\\' && j+1 < len(rs) && (rs[j+1] == '"' || rs[j+1] == '\\') {
					j++
				}
				cur.WriteRune(rs[j])
			}
			if j >= len(rs) {
				return nil, errors.New("no closing quotation")
			}
			has, i = true, j
		default:
			cur.WriteRune(r)
			has = true
		}
	}
	flush()
	return out, nil
}

var pyIntRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[-+]?(?:0|[1-9](?:_?[0-9])*|0[xX](?:_?[0-9a-fA-F])+|0[oO](?:_?[0-7])+|0[bB](?:_?[01])+)$`)
})

// iniValue is what Ansible makes of an INI value: ast.literal_eval when
// the text is a Python literal, the text itself when it is not. Only the
// scalar literals matter to a rollout: strings (quoted, adjacent ones
// joined), integers (written in decimal), True/False (as true/false) and
// None (as empty: the variable is unset).
func iniValue(s string) string {
	t := strings.TrimSpace(s)
	switch t {
	case "True":
		return "true"
	case "False":
		return "false"
	case "None":
		return ""
	}
	if pyIntRE().MatchString(t) {
		if n, err := strconv.ParseInt(strings.ReplaceAll(t, "_", ""), 0, 64); err == nil {
			return strconv.FormatInt(n, 10)
		}
	}
	if v, ok := pyStrings(t); ok {
		return v
	}
	return s
}

// pyStrings decodes one or more adjacent Python string literals ('a' "b").
func pyStrings(s string) (string, bool) {
	var out strings.Builder
	rest := strings.TrimSpace(s)
	if rest == "" {
		return "", false
	}
	for rest != "" {
		q := rest[0]
		if q != '\'' && q != '"' {
			return "", false
		}
		i := 1
		for ; i < len(rest) && rest[i] != q; i++ {
			if rest[i] == '\\' {
				if i+1 >= len(rest) {
					return "", false
				}
				i++
				switch c := rest[i]; c {
				case 'n':
					out.WriteByte('\n')
				case 't':
					out.WriteByte('\t')
				case '\\', '\'', '"':
					out.WriteByte(c)
				default:
					out.WriteByte('\\')
					out.WriteByte(c)
				}
				continue
			}
			out.WriteByte(rest[i])
		}
		if i >= len(rest) {
			return "", false
		}
		rest = strings.TrimLeft(rest[i+1:], " \t")
	}
	return out.String(), true
}
