package edge

import (
	"errors"
	"unicode/utf8"
)

// The request-path JSON helpers below work on raw bytes without building a
// document: they find the few top-level fields the edge needs (model,
// stream, max_tokens, thinking switches), splice a new model name in, and
// drop reasoning fields from replies. Callers run json.Valid first; these
// functions must still never panic on any input (fuzzed).

const maxJSONDepth = 256

var errJSON = errors.New("malformed JSON")

// reqFacts are the fields extracted from a request body. Byte spans index
// the body they were scanned from.
type reqFacts struct {
	modelStart, modelEnd int // span of the model string's quoted value (incl. quotes); -1 when absent
	modelEscaped         bool
	modelOK              bool // model present and a string
	stream               bool
	maxTokens            int
	thinking             int8 // -1 off, 0 unset, 1 on
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

// skipString returns the index after the closing quote of the string that
// starts at b[i] == '"', and whether it contains escapes.
func skipString(b []byte, i int) (int, bool, error) {
	if i >= len(b) || b[i] != '"' {
		return i, false, errJSON
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
	return i, esc, errJSON
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i, depth int) (int, error) {
	if depth > maxJSONDepth {
		return i, errJSON
	}
	i = skipWS(b, i)
	if i >= len(b) {
		return i, errJSON
	}
	switch b[i] {
	case '"':
		j, _, err := skipString(b, i)
		return j, err
	case '{':
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1, nil
		}
		for {
			i = skipWS(b, i)
			j, _, err := skipString(b, i)
			if err != nil {
				return j, err
			}
			i = skipWS(b, j)
			if i >= len(b) || b[i] != ':' {
				return i, errJSON
			}
			if i, err = skipValue(b, i+1, depth+1); err != nil {
				return i, err
			}
			i = skipWS(b, i)
			if i >= len(b) {
				return i, errJSON
			}
			if b[i] == '}' {
				return i + 1, nil
			}
			if b[i] != ',' {
				return i, errJSON
			}
			i++
		}
	case '[':
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, nil
		}
		for {
			var err error
			if i, err = skipValue(b, i, depth+1); err != nil {
				return i, err
			}
			i = skipWS(b, i)
			if i >= len(b) {
				return i, errJSON
			}
			if b[i] == ']' {
				return i + 1, nil
			}
			if b[i] != ',' {
				return i, errJSON
			}
			i++
		}
	default:
		j := i
		for j < len(b) {
			c := b[j]
			if c == ',' || c == '}' || c == ']' || isWS(c) {
				break
			}
			j++
		}
		if j == i {
			return i, errJSON
		}
		return j, nil
	}
}

// keyIs reports whether the raw quoted key b[s:e] (with quotes, no escapes) equals k.
func keyIs(b []byte, s, e int, k string) bool {
	if e-s != len(k)+2 {
		return false
	}
	return string(b[s+1:e-1]) == k // no allocation: compiler optimises the comparison
}

// literal returns the bare token b[s:e] as true/false/other.
func boolLit(b []byte, s, e int) (v, ok bool) {
	switch string(b[s:e]) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

func intLit(b []byte, s, e int) int {
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

// scanRequest extracts the request facts from a top-level JSON object.
// Later duplicates win, as with encoding/json.
func scanRequest(b []byte, f *reqFacts) error {
	*f = reqFacts{modelStart: -1, modelEnd: -1}
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errJSON
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil
	}
	for {
		i = skipWS(b, i)
		ks := i
		ke, kesc, err := skipString(b, i)
		if err != nil {
			return err
		}
		i = skipWS(b, ke)
		if i >= len(b) || b[i] != ':' {
			return errJSON
		}
		vs := skipWS(b, i+1)
		ve, err := skipValue(b, vs, 1)
		if err != nil {
			return err
		}
		if !kesc && vs < len(b) {
			switch {
			case keyIs(b, ks, ke, "model"):
				if b[vs] == '"' {
					f.modelStart, f.modelEnd, f.modelOK = vs, ve, true
					_, f.modelEscaped, _ = skipString(b, vs)
				} else {
					f.modelStart, f.modelEnd, f.modelOK, f.modelEscaped = -1, -1, false, false
				}
			case keyIs(b, ks, ke, "stream"):
				v, _ := boolLit(b, vs, ve)
				f.stream = v
			case keyIs(b, ks, ke, "max_tokens"), keyIs(b, ks, ke, "max_completion_tokens"):
				if n := intLit(b, vs, ve); n > 0 {
					f.maxTokens = n
				}
			case keyIs(b, ks, ke, "think"):
				if v, ok := boolLit(b, vs, ve); ok {
					f.thinking = boolTri(v)
				}
			case keyIs(b, ks, ke, "chat_template_kwargs"):
				if b[vs] == '{' {
					if t := findBoolMember(b, vs, "enable_thinking"); t != 0 {
						f.thinking = t
					}
				}
			}
		}
		i = skipWS(b, ve)
		if i >= len(b) {
			return errJSON
		}
		if b[i] == '}' {
			return nil
		}
		if b[i] != ',' {
			return errJSON
		}
		i++
	}
}

func boolTri(v bool) int8 {
	if v {
		return 1
	}
	return -1
}

// findBoolMember looks for a boolean member k in the object at b[i] == '{'.
func findBoolMember(b []byte, i int, k string) int8 {
	var out int8
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return 0
	}
	for {
		i = skipWS(b, i)
		ks := i
		ke, _, err := skipString(b, i)
		if err != nil {
			return out
		}
		i = skipWS(b, ke)
		if i >= len(b) || b[i] != ':' {
			return out
		}
		vs := skipWS(b, i+1)
		ve, err := skipValue(b, vs, 2)
		if err != nil {
			return out
		}
		if keyIs(b, ks, ke, k) {
			if v, ok := boolLit(b, vs, ve); ok {
				out = boolTri(v)
			}
		}
		i = skipWS(b, ve)
		if i >= len(b) || b[i] != ',' {
			return out
		}
		i++
	}
}

// unquote decodes a JSON string literal (with quotes). It handles the
// escapes JSON allows; invalid escapes are kept verbatim.
func unquote(s []byte) string {
	if len(s) < 2 {
		return ""
	}
	s = s[1 : len(s)-1]
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			out = append(out, c)
			continue
		}
		i++
		switch s[i] {
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case 'r':
			out = append(out, '\r')
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'u':
			if i+4 < len(s) {
				r := rune(0)
				ok := true
				for _, h := range s[i+1 : i+5] {
					r <<= 4
					switch {
					case h >= '0' && h <= '9':
						r |= rune(h - '0')
					case h >= 'a' && h <= 'f':
						r |= rune(h - 'a' + 10)
					case h >= 'A' && h <= 'F':
						r |= rune(h - 'A' + 10)
					default:
						ok = false
					}
				}
				if ok {
					i += 4
					// surrogate pair
					if r >= 0xD800 && r < 0xDC00 && i+6 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
						r2 := rune(0)
						ok2 := true
						for _, h := range s[i+3 : i+7] {
							r2 <<= 4
							switch {
							case h >= '0' && h <= '9':
								r2 |= rune(h - '0')
							case h >= 'a' && h <= 'f':
								r2 |= rune(h - 'a' + 10)
							case h >= 'A' && h <= 'F':
								r2 |= rune(h - 'A' + 10)
							default:
								ok2 = false
							}
						}
						if ok2 && r2 >= 0xDC00 && r2 < 0xE000 {
							r = (r-0xD800)<<10 | (r2 - 0xDC00) + 0x10000
							i += 6
						}
					}
					if r >= 0xD800 && r < 0xE000 {
						r = utf8.RuneError
					}
					out = utf8.AppendRune(out, r)
					continue
				}
			}
			out = append(out, '\\', 'u')
		default:
			out = append(out, s[i])
		}
	}
	return string(out)
}

// appendJSONString appends s as a JSON string literal.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			switch c {
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
		case c == '<' || c == '>' || c == '&':
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// setModel appends to dst the body with the model value (span from f)
// replaced by model. When the body has no model field, one is added.
func setModel(dst, body []byte, f *reqFacts, model string) []byte {
	if f.modelStart >= 0 && f.modelEnd <= len(body) && f.modelStart < f.modelEnd {
		dst = append(dst, body[:f.modelStart]...)
		dst = appendJSONString(dst, model)
		return append(dst, body[f.modelEnd:]...)
	}
	i := skipWS(body, 0)
	if i >= len(body) || body[i] != '{' {
		return append(dst, body...)
	}
	dst = append(dst, body[:i+1]...)
	dst = append(dst, `"model":`...)
	dst = appendJSONString(dst, model)
	j := skipWS(body, i+1)
	if j < len(body) && body[j] != '}' {
		dst = append(dst, ',')
	}
	return append(dst, body[i+1:]...)
}

// stripKeys appends to dst the JSON value b with every object member named
// by one of keys removed, at any depth. Whitespace outside strings is
// dropped. It reports whether anything was removed; on malformed input it
// returns dst with b appended unchanged.
func stripKeys(dst, b []byte, keys []string) ([]byte, bool) {
	start := len(dst)
	out, removed, _, err := stripValue(dst, b, skipWS(b, 0), keys, 0)
	if err != nil {
		return append(dst[:start], b...), false
	}
	return out, removed
}

func stripValue(dst, b []byte, i int, keys []string, depth int) ([]byte, bool, int, error) {
	if depth > maxJSONDepth {
		return dst, false, i, errJSON
	}
	i = skipWS(b, i)
	if i >= len(b) {
		return dst, false, i, errJSON
	}
	removed := false
	switch b[i] {
	case '{':
		dst = append(dst, '{')
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == '}' {
			return append(dst, '}'), false, i + 1, nil
		}
		first := true
		for {
			i = skipWS(b, i)
			ks := i
			ke, esc, err := skipString(b, i)
			if err != nil {
				return dst, removed, ke, err
			}
			i = skipWS(b, ke)
			if i >= len(b) || b[i] != ':' {
				return dst, removed, i, errJSON
			}
			drop := false
			if !esc {
				for _, k := range keys {
					if keyIs(b, ks, ke, k) {
						drop = true
						break
					}
				}
			}
			if drop {
				ve, err := skipValue(b, i+1, depth+1)
				if err != nil {
					return dst, removed, ve, err
				}
				i = ve
				removed = true
			} else {
				if !first {
					dst = append(dst, ',')
				}
				first = false
				dst = append(dst, b[ks:ke]...)
				dst = append(dst, ':')
				var r bool
				dst, r, i, err = stripValue(dst, b, i+1, keys, depth+1)
				if err != nil {
					return dst, removed, i, err
				}
				removed = removed || r
			}
			i = skipWS(b, i)
			if i >= len(b) {
				return dst, removed, i, errJSON
			}
			if b[i] == '}' {
				return append(dst, '}'), removed, i + 1, nil
			}
			if b[i] != ',' {
				return dst, removed, i, errJSON
			}
			i++
		}
	case '[':
		dst = append(dst, '[')
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return append(dst, ']'), false, i + 1, nil
		}
		for n := 0; ; n++ {
			if n > 0 {
				dst = append(dst, ',')
			}
			var r bool
			var err error
			dst, r, i, err = stripValue(dst, b, i, keys, depth+1)
			if err != nil {
				return dst, removed, i, err
			}
			removed = removed || r
			i = skipWS(b, i)
			if i >= len(b) {
				return dst, removed, i, errJSON
			}
			if b[i] == ']' {
				return append(dst, ']'), removed, i + 1, nil
			}
			if b[i] != ',' {
				return dst, removed, i, errJSON
			}
			i++
		}
	default:
		e, err := skipValue(b, i, depth)
		if err != nil {
			return dst, false, e, err
		}
		return append(dst, b[i:e]...), false, e, nil
	}
}
