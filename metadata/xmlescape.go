package metadata

// Text conversion and escaping exactly as createrepo_c 0.17.3 gets it from
// its own helpers (xml_dump.c) and libxml2 2.9.14's serializer, which is
// what Debian 12 ships. Repodata consumers compare checksums of the XML,
// so the bytes matter, quirks included.

// checkUTF8 is libxml2's xmlCheckUTF8: a structural check only (overlong
// forms, surrogates and values above U+10FFFF pass).
func checkUTF8(s string) bool {
	at := func(i int) byte {
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c&0x80 == 0:
			i++
		case c&0xe0 == 0xc0:
			if at(i+1)&0xc0 != 0x80 {
				return false
			}
			i += 2
		case c&0xf0 == 0xe0:
			if at(i+1)&0xc0 != 0x80 || at(i+2)&0xc0 != 0x80 {
				return false
			}
			i += 3
		case c&0xf8 == 0xf0:
			if at(i+1)&0xc0 != 0x80 || at(i+2)&0xc0 != 0x80 || at(i+3)&0xc0 != 0x80 {
				return false
			}
			i += 4
		default:
			return false
		}
	}
	return true
}

// latin1ToUTF8 is createrepo_c's cr_latin1_to_utf8: C0 controls other
// than tab, newline and CR are dropped, bytes 0x80-0xBF are dropped (taken
// for misencoded cp1252), 0xC0-0xFF become their two-byte UTF-8 forms.
func latin1ToUTF8(s string) string {
	out := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 128:
			if c < 32 && c != 9 && c != 10 && c != 13 {
				continue
			}
			out = append(out, c)
		case c < 192:
			continue
		default:
			out = append(out, 0xc3, c&0x3f+0x80)
		}
	}
	return string(out)
}

func needsConversion(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return !checkUTF8(s)
		}
	}
	return false
}

// appendText writes s as element content: createrepo_c's Latin-1 fallback,
// then libxml2's xmlEscapeContent (only <, >, & and CR are escaped).
func appendText(b []byte, s string) []byte {
	if needsConversion(s) {
		s = latin1ToUTF8(s)
	}
	last := 0
	for i := 0; i < len(s); i++ {
		var rep string
		switch s[i] {
		case '<':
			rep = "&lt;"
		case '>':
			rep = "&gt;"
		case '&':
			rep = "&amp;"
		case '\r':
			rep = "&#13;"
		default:
			continue
		}
		b = append(b, s[last:i]...)
		b = append(b, rep...)
		last = i + 1
	}
	return append(b, s[last:]...)
}

// isXMLChar is libxml2's IS_CHAR.
func isXMLChar(c int) bool {
	switch {
	case c < 0x100:
		return c == 0x9 || c == 0xa || c == 0xd || c >= 0x20
	case c <= 0xd7ff:
		return true
	case c >= 0xe000 && c <= 0xfffd:
		return true
	default:
		return c >= 0x10000 && c <= 0x10ffff
	}
}

const upperHex = "0123456789ABCDEF"

// appendCharRef is libxml2's xmlSerializeHexCharRef: &#x, upper-case hex
// without leading zeros, ;.
func appendCharRef(b []byte, v int) []byte {
	b = append(b, "&#x"...)
	var tmp [8]byte
	i := len(tmp)
	for v > 0 {
		i--
		tmp[i] = upperHex[v&0xf]
		v >>= 4
	}
	b = append(b, tmp[i:]...)
	return append(b, ';')
}

// appendAttr writes s as an attribute value the way libxml2 2.9.14's
// xmlBufAttrSerializeTxtContent does for a node without a document:
// besides the usual entities, every non-ASCII character becomes a
// numeric character reference, invalid bytes become references to the
// byte, and a non-ASCII byte in last position is copied as is. convert
// applies createrepo_c's Latin-1 fallback first (cr_xmlNewProp); plain
// xmlNewProp values are passed through unconverted.
func appendAttr(b []byte, s string, convert bool) []byte {
	if convert && needsConversion(s) {
		s = latin1ToUTF8(s)
	}
	at := func(i int) int {
		if i < len(s) {
			return int(s[i])
		}
		return 0
	}
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		var rep string
		switch c {
		case '\n':
			rep = "&#10;"
		case '\r':
			rep = "&#13;"
		case '\t':
			rep = "&#9;"
		case '"':
			rep = "&quot;"
		case '<':
			rep = "&lt;"
		case '>':
			rep = "&gt;"
		case '&':
			rep = "&amp;"
		default:
			if c < 0x80 || i+1 >= len(s) {
				i++
				continue
			}
			b = append(b, s[last:i]...)
			val, l := 0, 1
			switch {
			case c < 0xc0:
			case c < 0xe0:
				val = (int(c)&0x1f)<<6 | at(i+1)&0x3f
				l = 2
			case c < 0xf0 && at(i+2) != 0:
				val = (int(c)&0x0f)<<12 | (at(i+1)&0x3f)<<6 | at(i+2)&0x3f
				l = 3
			case c < 0xf8 && at(i+2) != 0 && at(i+3) != 0:
				val = (int(c)&0x07)<<18 | (at(i+1)&0x3f)<<12 | (at(i+2)&0x3f)<<6 | at(i+3)&0x3f
				l = 4
			}
			if l == 1 || !isXMLChar(val) {
				b = appendCharRef(b, int(c))
				i++
			} else {
				b = appendCharRef(b, val)
				i += l
			}
			last = i
			continue
		}
		b = append(b, s[last:i]...)
		b = append(b, rep...)
		i++
		last = i
	}
	return append(b, s[last:]...)
}
