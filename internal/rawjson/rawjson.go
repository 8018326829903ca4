// Package rawjson is the raw-JSON toolkit of the request path: validating,
// skipping and decoding JSON in place, without building values, shared by
// the edge's request scanner and reply rewriting, the policy body patcher
// and the Wasm decision reader. Everything here allocates nothing (Unquote
// excepted: it returns a string) and never panics on any input; Valid*
// accept exactly what encoding/json accepts (fuzzed against it), SkipWS and
// SkipString assume input already validated and only stay in bounds.
package rawjson

import (
	"bytes"
	"errors"
	"unicode/utf8"

	"github.com/geniehive/geniehive/internal/jsonw"
)

// MaxDepth bounds nesting (encoding/json allows 10000; no request needs
// more than a handful).
const MaxDepth = 256

// Errors of the validators.
var (
	ErrSyntax  = errors.New("malformed JSON")
	ErrTooDeep = errors.New("request body nests too deeply")
)

func IsWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func SkipWS(b []byte, i int) int {
	for i < len(b) && IsWS(b[i]) {
		i++
	}
	return i
}

// SkipString returns the index after the closing quote of the string that
// starts at b[i] == '"', and whether it contains escapes.
func SkipString(b []byte, i int) (int, bool, error) {
	if i >= len(b) || b[i] != '"' {
		return i, false, ErrSyntax
	}
	esc := false
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			esc = true
			i++
		case '"':
			return i + 1, esc, nil
		}
	}
	return i, esc, ErrSyntax
}

// KeyIs reports whether the raw quoted key b[s:e] (with quotes, no escapes) equals k.
func KeyIs(b []byte, s, e int, k string) bool {
	if e-s != len(k)+2 {
		return false
	}
	return string(b[s+1:e-1]) == k // no allocation: compiler optimises the comparison
}

// literal returns the bare token b[s:e] as true/false/other.
func BoolLit(b []byte, s, e int) (v, ok bool) {
	switch string(b[s:e]) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

func IntLit(b []byte, s, e int) int {
	n := 0
	if s >= e {
		return 0
	}
	for i := s; i < e; i++ {
		c := b[i]
		if c == '.' || c == 'e' || c == 'E' {
			break
		}
		if c < '0' || c > '9' {
			return 0
		}
		if n > 1<<40 {
			return n
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// StringIs reports whether the quoted JSON string q decodes to s (q has no
// escapes in the common case; escaped forms are decoded).
func StringIs(q []byte, s string) bool {
	if len(q) == len(s)+2 && string(q[1:len(q)-1]) == s {
		return true
	}
	if bytes.IndexByte(q, '\\') < 0 {
		return false
	}
	var buf [32]byte
	return string(AppendUnquoted(buf[:0], q, 32)) == s
}

// strPlain[c] is true for the bytes a JSON string may hold without escape
// or end: everything from 0x20 up but '"' and '\\' (encoding/json does not
// check UTF-8 either).
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = false, false
	return
}()

// ValidString validates the string at b[i] == '"' and returns the index after
// its closing quote and whether it has escapes.
func ValidString(b []byte, i int) (int, bool, error) {
	esc := false
	i++
	for {
		for i < len(b) && strPlain[b[i]] {
			i++
		}
		if i >= len(b) {
			return i, esc, ErrSyntax
		}
		switch b[i] {
		case '"':
			return i + 1, esc, nil
		case '\\':
			esc = true
			if i+1 >= len(b) {
				return i, esc, ErrSyntax
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return i, esc, ErrSyntax
				}
				i += 6
			default:
				return i, esc, ErrSyntax
			}
		default: // a control character
			return i, esc, ErrSyntax
		}
	}
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// ValidNumber validates the number at b[i] (JSON grammar: no leading zeros,
// digits after '.' and after the exponent mark).
func ValidNumber(b []byte, i int) (int, error) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return i, ErrSyntax
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	default:
		return i, ErrSyntax
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return i, ErrSyntax
		}
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return i, ErrSyntax
		}
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	}
	return i, nil
}

// validLit validates the literal lit at b[i].
func validLit(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, ErrSyntax
	}
	return i + len(lit), nil
}

// ValidValue validates the value at b[i] (leading whitespace allowed) nested
// depth levels deep and returns the index after it. It checks exactly the
// grammar json.Valid checks.
func ValidValue(b []byte, i, depth int) (int, error) {
	i = SkipWS(b, i)
	if i >= len(b) {
		return i, ErrSyntax
	}
	switch c := b[i]; {
	case c == '"':
		e, _, err := ValidString(b, i)
		return e, err
	case c == '{':
		if depth >= MaxDepth {
			return i, ErrTooDeep
		}
		i = SkipWS(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1, nil
		}
		for {
			if i >= len(b) || b[i] != '"' {
				return i, ErrSyntax
			}
			e, _, err := ValidString(b, i)
			if err != nil {
				return e, err
			}
			i = SkipWS(b, e)
			if i >= len(b) || b[i] != ':' {
				return i, ErrSyntax
			}
			if i, err = ValidValue(b, i+1, depth+1); err != nil {
				return i, err
			}
			i = SkipWS(b, i)
			if i >= len(b) {
				return i, ErrSyntax
			}
			if b[i] == '}' {
				return i + 1, nil
			}
			if b[i] != ',' {
				return i, ErrSyntax
			}
			i = SkipWS(b, i+1)
		}
	case c == '[':
		if depth >= MaxDepth {
			return i, ErrTooDeep
		}
		i = SkipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, nil
		}
		for {
			var err error
			if i, err = ValidValue(b, i, depth+1); err != nil {
				return i, err
			}
			i = SkipWS(b, i)
			if i >= len(b) {
				return i, ErrSyntax
			}
			if b[i] == ']' {
				return i + 1, nil
			}
			if b[i] != ',' {
				return i, ErrSyntax
			}
			i++
		}
	case c == 't':
		return validLit(b, i, "true")
	case c == 'f':
		return validLit(b, i, "false")
	case c == 'n':
		return validLit(b, i, "null")
	case c == '-' || isDigit(c):
		return ValidNumber(b, i)
	}
	return i, ErrSyntax
}

// Unquote decodes a JSON string literal (with quotes). It handles the
// escapes JSON allows; invalid escapes are kept verbatim.
func Unquote(s []byte) string {
	if len(s) < 2 {
		return ""
	}
	return string(AppendUnquoted(make([]byte, 0, len(s)-2), s, len(s)))
}

func Hex4(h []byte) (rune, bool) {
	r := rune(0)
	for _, c := range h {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

// AppendUnquoted appends the decoded JSON string literal s (with quotes) to
// dst, stopping once at least max bytes were appended (it may append a few
// more: the caller trims). Escapes as in Unquote.
func AppendUnquoted(dst, s []byte, max int) []byte {
	if len(s) < 2 {
		return dst
	}
	start := len(dst)
	s = s[1 : len(s)-1]
	for i := 0; i < len(s) && len(dst)-start < max; i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			dst = append(dst, c)
			continue
		}
		i++
		switch s[i] {
		case 'n':
			dst = append(dst, '\n')
		case 't':
			dst = append(dst, '\t')
		case 'r':
			dst = append(dst, '\r')
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'u':
			if i+4 < len(s) {
				if r, ok := Hex4(s[i+1 : i+5]); ok {
					i += 4
					// surrogate pair
					if r >= 0xD800 && r < 0xDC00 && i+6 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
						if r2, ok2 := Hex4(s[i+3 : i+7]); ok2 && r2 >= 0xDC00 && r2 < 0xE000 {
							r = (r-0xD800)<<10 | (r2 - 0xDC00) + 0x10000
							i += 6
						}
					}
					if r >= 0xD800 && r < 0xE000 {
						r = utf8.RuneError
					}
					dst = utf8.AppendRune(dst, r)
					continue
				}
			}
			dst = append(dst, '\\', 'u')
		default:
			dst = append(dst, s[i])
		}
	}
	return dst
}

// Valid reports whether b is one JSON value (surrounding whitespace
// allowed) nesting at most MaxDepth levels: json.Valid's grammar.
func Valid(b []byte) bool {
	e, err := ValidValue(b, 0, 0)
	return err == nil && SkipWS(b, e) == len(b)
}

// DecodeString appends the decoded content of the JSON string starting at
// b[i] == '"' to dst, strictly (encoding/json's rules: escapes must be
// valid, control characters are refused; a lone or mismatched surrogate
// becomes U+FFFD; but bytes that are not UTF-8 pass through unchanged
// rather than becoming U+FFFD), and returns the index after its closing
// quote.
//
// # Errors
// ErrSyntax for a malformed or unterminated string.
func DecodeString(dst, b []byte, i int) ([]byte, int, error) {
	e, _, err := ValidString(b, i)
	if err != nil {
		return dst, e, err
	}
	return AppendUnquoted(dst, b[i:e], len(b)), e, nil
}

// Seq walks the elements of a JSON array or the members of an object, in
// place, checking the separators. Open it on the opening bracket; call
// Next before each element (for objects, then Key); set I to the index
// after the element's value before the next call.
//
//	s := rawjson.Open(b, i) // b[i] == '{'
//	for {
//		more, err := s.Next()
//		if err != nil || !more { return s.I, err }
//		ks, ke, esc, vs, err := s.Key()
//		...
//		s.I = ve
//	}
type Seq struct {
	B       []byte
	I       int // the current position
	end     byte
	started bool
}

// Open starts a Seq on the '[' or '{' at b[i].
func Open(b []byte, i int) Seq {
	end := byte(']')
	if i < len(b) && b[i] == '{' {
		end = '}'
	}
	return Seq{B: b, I: i + 1, end: end}
}

// Next moves past the separator to the next element (I then is its first
// byte); it reports false after the closing bracket (I then is past it).
//
// # Errors
// ErrSyntax for a missing separator or an unterminated sequence.
func (s *Seq) Next() (bool, error) {
	b := s.B
	i := SkipWS(b, s.I)
	if i >= len(b) {
		s.I = i
		return false, ErrSyntax
	}
	if b[i] == s.end {
		s.I = i + 1
		return false, nil
	}
	if s.started {
		if b[i] != ',' {
			s.I = i
			return false, ErrSyntax
		}
		i = SkipWS(b, i+1)
		if i >= len(b) {
			s.I = i
			return false, ErrSyntax
		}
	}
	s.started = true
	s.I = i
	return true, nil
}

// Key reads an object member's key and colon at I: the key's quoted span
// b[ks:ke], whether it has escapes, and where its value starts (vs < len(b)).
//
// # Errors
// ErrSyntax for a malformed key or a missing colon or value.
func (s *Seq) Key() (ks, ke int, esc bool, vs int, err error) {
	b := s.B
	ks = s.I
	if ks >= len(b) || b[ks] != '"' {
		return ks, ks, false, ks, ErrSyntax
	}
	if ke, esc, err = ValidString(b, ks); err != nil {
		return ks, ke, esc, ke, err
	}
	i := SkipWS(b, ke)
	if i >= len(b) || b[i] != ':' {
		return ks, ke, esc, i, ErrSyntax
	}
	vs = SkipWS(b, i+1)
	if vs >= len(b) {
		return ks, ke, esc, vs, ErrSyntax
	}
	return ks, ke, esc, vs, nil
}

// KeyName returns the name of the quoted key b[ks:ke]: a view of b when it
// has no escapes (esc false), else decoded into buf, cut short at 24 bytes
// (longer names then match none of the short names callers look for).
// Decoding matters: {"model":"a","mod\u0065l":"b"} names the model "b" for
// every JSON parser upstream.
func KeyName(b []byte, ks, ke int, esc bool, buf *[32]byte) []byte {
	if !esc {
		return b[ks+1 : ke-1]
	}
	return AppendUnquoted(buf[:0], b[ks:ke], 24)
}

// SetString appends to dst the JSON document body with the value at
// body[s:e] replaced by the JSON string v; when the span is empty or
// outside body, a member key:v is inserted first into the object body
// opens with (a body that is not an object is appended unchanged).
func SetString(dst, body []byte, s, e int, key, v string) []byte {
	if s >= 0 && e <= len(body) && s < e {
		dst = append(dst, body[:s]...)
		dst = appendString(dst, v)
		return append(dst, body[e:]...)
	}
	i := SkipWS(body, 0)
	if i >= len(body) || body[i] != '{' {
		return append(dst, body...)
	}
	dst = append(dst, body[:i+1]...)
	dst = appendString(dst, key)
	dst = append(dst, ':')
	dst = appendString(dst, v)
	if j := SkipWS(body, i+1); j < len(body) && body[j] != '}' {
		dst = append(dst, ',')
	}
	return append(dst, body[i+1:]...)
}

// SetModel appends to dst the JSON object body with every top-level
// "model" member (escaped spellings included) set to the string model, or
// a "model" member added first when there is none. The one model setter:
// the edge calls SetString with the span its scanner found; the policy
// patcher calls this.
//
// # Errors
// ErrSyntax when body is not a valid JSON object.
func SetModel(dst, body []byte, model string) ([]byte, error) {
	i := SkipWS(body, 0)
	if !Valid(body) || i >= len(body) || body[i] != '{' {
		return dst, ErrSyntax
	}
	start, found := 0, false
	s := Open(body, i)
	for {
		more, err := s.Next()
		if err != nil {
			return dst, err
		}
		if !more {
			break
		}
		ks, ke, esc, vs, err := s.Key()
		if err != nil {
			return dst, err
		}
		ve, err := ValidValue(body, vs, 1)
		if err != nil {
			return dst, err
		}
		var kb [32]byte
		if string(KeyName(body, ks, ke, esc, &kb)) == "model" {
			dst = append(dst, body[start:vs]...)
			dst = appendString(dst, model)
			start, found = ve, true
		}
		s.I = ve
	}
	if !found {
		return SetString(dst, body, -1, -1, "model", model), nil
	}
	return append(dst, body[start:]...), nil
}

func appendString(dst []byte, s string) []byte { return jsonw.AppendString(dst, s) }
