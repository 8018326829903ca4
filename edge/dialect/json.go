package dialect

import (
	"unicode/utf8"
	"unsafe"

	"github.com/geniehive/geniehive/internal/jsonw"
	"github.com/valyala/fastjson"
)

// b2s views b as a string without copying; the string is valid while b is
// unchanged.
func b2s(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// s2b views s as bytes without copying; the bytes must not be written.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// appendStr appends b as a JSON string literal (jsonw escaping: valid JSON
// for any bytes, invalid UTF-8 as U+FFFD).
func appendStr(dst, b []byte) []byte { return jsonw.AppendString(dst, b2s(b)) }

// appendStrBody appends b escaped as inside a JSON string, without quotes.
func appendStrBody(dst, b []byte) []byte {
	n := len(dst)
	dst = appendStr(dst, b)
	copy(dst[n:], dst[n+1:len(dst)-1])
	return dst[:len(dst)-2]
}

// appendJSON appends v as JSON. It re-escapes every string with jsonw, so
// the output is valid JSON whatever fastjson accepted (fastjson's own
// MarshalTo can emit Go-style \x escapes for strings it has unescaped).
func appendJSON(dst []byte, v *fastjson.Value, depth int) []byte {
	if v == nil {
		return append(dst, "null"...)
	}
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		dst = append(dst, '{')
		n := 0
		o.Visit(func(k []byte, e *fastjson.Value) {
			if n > 0 {
				dst = append(dst, ',')
			}
			n++
			dst = appendStr(dst, k)
			dst = append(dst, ':')
			dst = appendJSON(dst, e, depth+1)
		})
		return append(dst, '}')
	case fastjson.TypeArray:
		dst = append(dst, '[')
		for i, e := range v.GetArray() {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSON(dst, e, depth+1)
		}
		return append(dst, ']')
	case fastjson.TypeString:
		return appendStr(dst, v.GetStringBytes())
	default: // numbers (validated before parsing), true, false, null
		return v.MarshalTo(dst)
	}
}

// str returns the string member k of v (nil when absent or not a string).
func str(v *fastjson.Value, k string) []byte {
	e := v.Get(k)
	if e == nil || e.Type() != fastjson.TypeString {
		return nil
	}
	return e.GetStringBytes()
}

// strv returns v's string (nil when v is absent or not a string).
func strv(v *fastjson.Value) []byte {
	if v == nil || v.Type() != fastjson.TypeString {
		return nil
	}
	return v.GetStringBytes()
}

// isStr reports whether v is a string equal to s.
func isStr(v *fastjson.Value, s string) bool {
	return v != nil && v.Type() == fastjson.TypeString && b2s(v.GetStringBytes()) == s
}

// isNull reports whether v is absent or JSON null.
func isNull(v *fastjson.Value) bool { return v == nil || v.Type() == fastjson.TypeNull }

// foldKey lower-cases an object key as Go's encoding/json matches member
// names (ASCII case, plus the Kelvin sign for k and the long s for s), so
// the edge reads "MAX_TOKENS" or "ſtream" as a Go upstream does. Keys longer
// than buf are cut (they then match nothing).
func foldKey(k []byte, buf *[32]byte) []byte {
	out := buf[:0]
	for i := 0; i < len(k) && len(out) < len(buf); {
		c := k[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(k[i:])
		switch r {
		case '\u212a':
			out = append(out, 'k')
		case '\u017f':
			out = append(out, 's')
		default:
			out = append(out, 0xff) // matches no member name
		}
		i += n
	}
	return out
}

// seenSet remembers which of up to 64 member names a visit met, to refuse
// duplicates: parsers disagree on which of two wins (Go takes the last in
// any letter case, fastjson the first, Python the last with exact case).
type seenSet uint64

func (s *seenSet) add(bit int, name string) *Error {
	if *s&(1<<bit) != 0 {
		return invalid(CodeDuplicate, name, "request body has more than one "+name+" member (in any letter case)")
	}
	*s |= 1 << bit
	return nil
}

// number returns v as a float when it is a JSON number.
func number(v *fastjson.Value) (float64, bool) {
	if v == nil || v.Type() != fastjson.TypeNumber {
		return 0, false
	}
	f, err := v.Float64()
	return f, err == nil
}

// posInt reads a positive integer member value; ok is false when v is
// present but not a number (a fractional number is truncated).
func posInt(v *fastjson.Value) (n int, ok bool) {
	if isNull(v) {
		return 0, true
	}
	f, isNum := number(v)
	if !isNum {
		return 0, false
	}
	if f < 0 {
		return 0, true
	}
	if f > 1<<40 {
		return 1 << 40, true
	}
	return int(f), true
}

// spanOfMember finds the value of the top-level member whose folded name is
// name in body (already validated JSON): the last one, as Go reads it.
// ok is false when there is none.
func spanOfMember(body []byte, name string) (s, e int, ok bool) {
	i := skipWS(body, 0)
	if i >= len(body) || body[i] != '{' {
		return 0, 0, false
	}
	i = skipWS(body, i+1)
	var buf [32]byte
	for i < len(body) && body[i] == '"' {
		ke := skipString(body, i)
		key := body[i+1 : ke-1]
		var unq [32]byte
		if hasByte(key, '\\') {
			key = unescapeShort(key, &unq)
		}
		i = skipWS(body, ke)
		if i >= len(body) || body[i] != ':' {
			return 0, 0, false
		}
		vs := skipWS(body, i+1)
		ve := skipValue(body, vs)
		if string(foldKey(key, &buf)) == name {
			s, e, ok = vs, ve, true
		}
		i = skipWS(body, ve)
		if i < len(body) && body[i] == ',' {
			i = skipWS(body, i+1)
		}
	}
	return s, e, ok
}

func hasByte(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}

// unescapeShort decodes a short escaped key (raw, without quotes) through
// fastjson; a key too long for buf decodes to nothing useful.
func unescapeShort(raw []byte, buf *[32]byte) []byte {
	if len(raw)+2 > 96 {
		return nil
	}
	var q [98]byte
	b := append(append(append(q[:0], '"'), raw...), '"')
	var p fastjson.Parser
	v, err := p.ParseBytes(b)
	if err != nil {
		return nil
	}
	return append(buf[:0], v.GetStringBytes()...)
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string at b[i] == '"'.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index after the (valid) value at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\n' && b[i] != '\t' && b[i] != '\r' {
		i++
	}
	return i
}
