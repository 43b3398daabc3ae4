package upgrade

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Host patterns as ansible-core reads them (parse_address and
// expand_hostname_range): an optional :port (or [address]:port), then
// ranges [beg:end] or [beg:end:step], numeric (zero-padded when beg is) or
// one letter to one letter.

const maxRangeHosts = 10000

const (
	numRange   = `\[(?:[0-9]+:[0-9]+)(?::[0-9]+)?\]`
	hexRange   = `\[(?:[0-9a-f]+:[0-9a-f]+)(?::[0-9]+)?\]`
	alnumRange = `\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]`
	ip4Part    = `(?:[01]?[0-9]{1,2}|2[0-4][0-9]|25[0-5]|` + numRange + `)`
	ip6Part    = `(?:[0-9a-f]{1,4}|` + hexRange + `)`
)

// The host patterns are compiled on first use: every repoctl command
// starts with package upgrade's init, and only inventory reading needs them.
var (
	bracketedHostPortRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\[(.+)\]:([0-9]+)$`) })
	hostPortRE          = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$`) })
	ipv4RE              = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)^(?:` + ip4Part + `\.){3}` + ip4Part + `$`) })
	// Ansible's pattern anchors only its first alternative at the end (and
	// its last); the others need only match a prefix. Kept so, since it
	// decides whether a trailing :NN is a port.
	ipv6RE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`(?i)^(?:` + strings.ReplaceAll(strings.Join([]string{
			`(?:C:){7}C$`,
			`(?:C:){1,6}:`,
			`(?:C:)(?::C){1,6}`,
			`(?:C:){2}(?::C){1,5}`,
			`(?:C:){3}(?::C){1,4}`,
			`(?:C:){4}(?::C){1,3}`,
			`(?:C:){5}(?::C){1,2}`,
			`(?:C:){6}(?::C)`,
			`:(?::C){1,6}`,
			`C?::`,
			`(?:0:){6}(?:C\.){3}C`,
			`::(?:ffff:)?(?:C\.){3}C`,
			`(?:0:){5}ffff:(?:C\.){3}C$`,
		}, "|"), "C", ip6Part) + `)`)
	})
	labelRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`(?i)^(?:[\p{L}\p{N}_]|` + alnumRange + `)(?:[\p{L}\p{N}_-]|` + alnumRange + `)*$`)
	})
)

// validHostname is Ansible's hostname pattern: dot-separated labels of
// word characters, '-' and ranges, none ending in '-' or '_'.
func validHostname(s string) bool {
	for _, l := range strings.Split(s, ".") {
		if !labelRE().MatchString(l) || strings.HasSuffix(l, "-") || strings.HasSuffix(l, "_") {
			return false
		}
	}
	return true
}

// parseAddress splits an optional port off a host pattern. ok is false
// when what is left is not an address or host name; Ansible then takes
// the whole pattern as the name, with no port.
func parseAddress(s string) (host, port string, ok bool) {
	host = s
	if m := bracketedHostPortRE().FindStringSubmatch(host); m != nil {
		host, port = m[1], m[2]
	}
	if m := hostPortRE().FindStringSubmatch(host); m != nil {
		host, port = m[1], m[2]
	}
	if !ipv4RE().MatchString(host) && !ipv6RE().MatchString(host) && !validHostname(host) {
		return s, "", false
	}
	if n, err := strconv.ParseUint(port, 10, 31); err == nil {
		port = strconv.FormatUint(n, 10) // int(port): no leading zeros
	}
	return host, port, true
}

// expandHostPattern returns the host names of a pattern and its port ("" if
// none).
func expandHostPattern(pattern string) ([]string, string, error) {
	host, port, ok := parseAddress(pattern)
	if !ok {
		host, port = pattern, ""
	}
	if !strings.Contains(host, "[") {
		return []string{host}, port, nil
	}
	var out []string
	if err := expandRange(host, &out); err != nil {
		return nil, "", err
	}
	return out, port, nil
}

const asciiLetters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

// expandRange expands the first [..] of line and recurses for the rest,
// appending to out.
func expandRange(line string, out *[]string) error {
	bad := func(why string) error { return fmt.Errorf("%w: host range %q: %s", ErrInventory, line, why) }
	// Ansible replaces the first '[' and the first ']' and wants exactly
	// three parts.
	s := strings.Replace(strings.Replace(line, "[", "|", 1), "]", "|", 1)
	parts := strings.Split(s, "|")
	if len(parts) != 3 {
		return bad("want head[begin:end]tail")
	}
	head, nrange, tail := parts[0], parts[1], parts[2]
	bounds := strings.Split(nrange, ":")
	if len(bounds) != 2 && len(bounds) != 3 {
		return bad("must be begin:end or begin:end:step")
	}
	beg, end, step := bounds[0], bounds[1], 1
	if len(bounds) == 3 {
		n, err := strconv.Atoi(bounds[2])
		if err != nil || n <= 0 {
			return bad("step must be a positive number")
		}
		step = n
	}
	if beg == "" {
		beg = "0"
	}
	if end == "" {
		return bad("must specify an end value")
	}
	width := 0
	if beg[0] == '0' && len(beg) > 1 {
		width = len(beg)
		if len(end) != width {
			return bad("begin and end must have the same length when zero-padded")
		}
	}
	var seq []string
	ib, ie := strings.Index(asciiLetters, beg), strings.Index(asciiLetters, end)
	if ib >= 0 && ie >= 0 && len(beg) == 1 && len(end) == 1 {
		if ib > ie {
			return bad("begin must not be after end")
		}
		for i := ib; i <= ie; i += step {
			seq = append(seq, asciiLetters[i:i+1])
		}
	} else {
		b, err1 := strconv.Atoi(beg)
		e, err2 := strconv.Atoi(end)
		if err1 != nil || err2 != nil {
			return bad("not a numeric or a one-letter range")
		}
		// Ansible yields no host at all for e < b; a rollout must not
		// silently lose a group, so that is an error here.
		if e < b {
			return bad("ends before it begins")
		}
		if (e-b)/step >= maxRangeHosts {
			return bad(fmt.Sprintf("more than %d hosts", maxRangeHosts))
		}
		for i := b; i <= e; i += step {
			seq = append(seq, fmt.Sprintf("%0*d", width, i))
		}
	}
	for _, x := range seq {
		name := head + x + tail
		if strings.Contains(name, "[") {
			if err := expandRange(name, out); err != nil {
				return err
			}
		} else {
			*out = append(*out, name)
		}
		if len(*out) > maxRangeHosts {
			return bad(fmt.Sprintf("more than %d hosts", maxRangeHosts))
		}
	}
	return nil
}
