package edge

import (
	"bytes"
	"errors"
	"unicode/utf8"

	"github.com/geniehive/geniehive/internal/jsonw"
)

// The request-path JSON helpers below work on raw bytes without building a
// document: scanRequest validates a request body and finds the few fields
// the edge needs (model, stream, max_tokens, thinking switches, the last
// user message's text) in one pass; setModel splices a new model name in;
// stripKeys drops reasoning fields from replies. The skip* helpers assume
// input already validated; all must never panic on any input (fuzzed).

const maxJSONDepth = 256

var errJSON = errors.New("malformed JSON")

// bodyScan holds the fields extracted from a request body. Byte spans index
// the body they were scanned from.
type bodyScan struct {
	modelStart, modelEnd int // span of the model string's quoted value (incl. quotes); -1 when absent
	modelEscaped         bool
	modelOK              bool // model present and a string
	stream               bool
	maxTokens            int
	thinking             int8 // -1 off, 0 unset, 1 on
	// text spans (quoted JSON strings) of the last user message, in order;
	// prompt is a top-level "prompt" string (images, completions).
	text   [maxTextParts]span
	nText  int
	prompt span
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

// Errors of scanRequest besides errJSON.
var (
	errNotObject = errors.New("request body must be a JSON object")
	errTooDeep   = errors.New("request body nests too deeply")
	// errDupModel: parsers disagree on which of two members wins (Go and
	// Python take the last, fastjson and others the first), so a body with
	// two could name one model to the policy and another to the upstream.
	errDupModel = errors.New("request body has more than one model member")
)

// scanRequest validates b as JSON and extracts the request fields in the
// same single pass: it accepts exactly what json.Valid accepts (nesting at
// most maxJSONDepth levels), so the request path reads a body once. Later
// duplicate keys win, as with encoding/json, except "model" (errDupModel).
//
// # Errors
// errJSON when b is not valid JSON, errNotObject when it is valid but not an
// object, errTooDeep when it nests deeper than maxJSONDepth, errDupModel
// when the object has two "model" members (escaped spellings included).
func scanRequest(b []byte, f *bodyScan) error {
	*f = bodyScan{modelStart: -1, modelEnd: -1}
	i := skipWS(b, 0)
	if i >= len(b) {
		return errJSON
	}
	if b[i] != '{' {
		e, err := vValue(b, i, 0)
		if err != nil {
			return err
		}
		if skipWS(b, e) != len(b) {
			return errJSON
		}
		return errNotObject
	}
	nModel := 0
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			if i >= len(b) || b[i] != '"' {
				return errJSON
			}
			ks := i
			ke, kesc, err := vString(b, i)
			if err != nil {
				return err
			}
			i = skipWS(b, ke)
			if i >= len(b) || b[i] != ':' {
				return errJSON
			}
			vs := skipWS(b, i+1)
			if vs >= len(b) {
				return errJSON
			}
			var ve int
			var kbuf [32]byte
			key := keyName(b, ks, ke, kesc, &kbuf)
			switch {
			case string(key) == "model":
				nModel++
				if b[vs] == '"' {
					var esc bool
					if ve, esc, err = vString(b, vs); err != nil {
						return err
					}
					f.modelStart, f.modelEnd, f.modelOK, f.modelEscaped = vs, ve, true, esc
				} else {
					if ve, err = vValue(b, vs, 1); err != nil {
						return err
					}
					f.modelStart, f.modelEnd, f.modelOK, f.modelEscaped = -1, -1, false, false
				}
			case string(key) == "messages" && b[vs] == '[':
				if ve, err = scanMessages(b, vs, f); err != nil {
					return err
				}
			default:
				if ve, err = vValue(b, vs, 1); err != nil {
					return err
				}
				switch string(key) {
				case "messages":
					f.nText = 0 // not an array: no messages
				case "prompt":
					f.prompt = span{}
					if b[vs] == '"' {
						f.prompt = span{vs, ve}
					}
				case "stream":
					v, _ := boolLit(b, vs, ve)
					f.stream = v
				case "max_tokens", "max_completion_tokens":
					if n := intLit(b, vs, ve); n > 0 {
						f.maxTokens = n
					}
				case "think":
					if v, ok := boolLit(b, vs, ve); ok {
						f.thinking = boolTri(v)
					}
				case "chat_template_kwargs":
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
				i++
				break
			}
			if b[i] != ',' {
				return errJSON
			}
			i = skipWS(b, i+1)
		}
	}
	if skipWS(b, i) != len(b) {
		return errJSON
	}
	if nModel > 1 {
		return errDupModel
	}
	return nil
}

// span is a byte range [s, e) of a scanned body.
type span struct{ s, e int }

// maxTextParts bounds how many text parts of one message the scanner keeps.
const maxTextParts = 4

// msgText is what scanMessage keeps of one chat message.
type msgText struct {
	user  bool
	parts [maxTextParts]span // quoted JSON strings
	n     int
}

// scanMessages validates the messages array at b[i] == '[' (a top-level
// member) and keeps the text spans of the last user message in f.
func scanMessages(b []byte, i int, f *bodyScan) (int, error) {
	f.nText = 0
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		if i >= len(b) {
			return i, errJSON
		}
		var e int
		var err error
		if b[i] == '{' {
			var m msgText
			if e, err = scanMessage(b, i, &m); err != nil {
				return e, err
			}
			if m.user {
				f.text, f.nText = m.parts, m.n
			}
		} else if e, err = vValue(b, i, 2); err != nil {
			return e, err
		}
		i = skipWS(b, e)
		if i >= len(b) {
			return i, errJSON
		}
		if b[i] == ']' {
			return i + 1, nil
		}
		if b[i] != ',' {
			return i, errJSON
		}
		i = skipWS(b, i+1)
	}
}

// scanMessage validates one message object (depth 2) and records its role
// and the spans of its text: a string content, or the "text" members of
// content parts.
func scanMessage(b []byte, i int, m *msgText) (int, error) {
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return i, errJSON
		}
		ks := i
		ke, kesc, err := vString(b, i)
		if err != nil {
			return ke, err
		}
		i = skipWS(b, ke)
		if i >= len(b) || b[i] != ':' {
			return i, errJSON
		}
		vs := skipWS(b, i+1)
		if vs >= len(b) {
			return vs, errJSON
		}
		var ve int
		var kbuf [32]byte
		key := keyName(b, ks, ke, kesc, &kbuf)
		switch {
		case string(key) == "content" && b[vs] == '"':
			if ve, _, err = vString(b, vs); err != nil {
				return ve, err
			}
			m.parts[0], m.n = span{vs, ve}, 1
		case string(key) == "content" && b[vs] == '[':
			m.n = 0
			if ve, err = scanParts(b, vs, m); err != nil {
				return ve, err
			}
		default:
			if ve, err = vValue(b, vs, 3); err != nil {
				return ve, err
			}
			switch string(key) {
			case "role":
				m.user = b[vs] == '"' && stringIs(b[vs:ve], "user")
			case "content":
				m.n = 0 // null or another shape: no text
			}
		}
		i = skipWS(b, ve)
		if i >= len(b) {
			return i, errJSON
		}
		if b[i] == '}' {
			return i + 1, nil
		}
		if b[i] != ',' {
			return i, errJSON
		}
		i = skipWS(b, i+1)
	}
}

// scanParts validates a content-parts array (depth 3) and appends to m the
// span of every part's "text" string, up to maxTextParts.
func scanParts(b []byte, i int, m *msgText) (int, error) {
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		if i >= len(b) {
			return i, errJSON
		}
		var e int
		var err error
		if b[i] == '{' {
			txt := span{-1, -1}
			if e, err = scanPart(b, i, &txt); err != nil {
				return e, err
			}
			if txt.s >= 0 && m.n < maxTextParts {
				m.parts[m.n] = txt
				m.n++
			}
		} else if e, err = vValue(b, i, 4); err != nil {
			return e, err
		}
		i = skipWS(b, e)
		if i >= len(b) {
			return i, errJSON
		}
		if b[i] == ']' {
			return i + 1, nil
		}
		if b[i] != ',' {
			return i, errJSON
		}
		i = skipWS(b, i+1)
	}
}

// scanPart validates one content part (depth 4) and sets txt to the span of
// its "text" member when that is a string.
func scanPart(b []byte, i int, txt *span) (int, error) {
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return i, errJSON
		}
		ks := i
		ke, kesc, err := vString(b, i)
		if err != nil {
			return ke, err
		}
		i = skipWS(b, ke)
		if i >= len(b) || b[i] != ':' {
			return i, errJSON
		}
		vs := skipWS(b, i+1)
		ve, err := vValue(b, vs, 5)
		if err != nil {
			return ve, err
		}
		var kbuf [32]byte
		if key := keyName(b, ks, ke, kesc, &kbuf); string(key) == "text" {
			if b[vs] == '"' {
				*txt = span{vs, ve}
			} else {
				*txt = span{-1, -1}
			}
		}
		i = skipWS(b, ve)
		if i >= len(b) {
			return i, errJSON
		}
		if b[i] == '}' {
			return i + 1, nil
		}
		if b[i] != ',' {
			return i, errJSON
		}
		i = skipWS(b, i+1)
	}
}

// keyName returns the name of the object key b[ks:ke] (quoted): a view of b
// when it has no escapes, else decoded into buf. A decoded name longer than
// any the scanner looks for is cut short (it then matches none of them).
// Decoding matters: {"model":"a","mod\u0065l":"b"} names the model "b" for
// every JSON parser upstream, so it must for the edge too.
func keyName(b []byte, ks, ke int, esc bool, buf *[32]byte) []byte {
	if !esc {
		return b[ks+1 : ke-1]
	}
	return appendUnquote(buf[:0], b[ks:ke], 24)
}

// stringIs reports whether the quoted JSON string q decodes to s (q has no
// escapes in the common case; escaped forms are decoded).
func stringIs(q []byte, s string) bool {
	if len(q) == len(s)+2 && string(q[1:len(q)-1]) == s {
		return true
	}
	if bytes.IndexByte(q, '\\') < 0 {
		return false
	}
	var buf [32]byte
	return string(appendUnquote(buf[:0], q, 32)) == s
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

// vString validates the string at b[i] == '"' and returns the index after
// its closing quote and whether it has escapes.
func vString(b []byte, i int) (int, bool, error) {
	esc := false
	i++
	for {
		for i < len(b) && strPlain[b[i]] {
			i++
		}
		if i >= len(b) {
			return i, esc, errJSON
		}
		switch b[i] {
		case '"':
			return i + 1, esc, nil
		case '\\':
			esc = true
			if i+1 >= len(b) {
				return i, esc, errJSON
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return i, esc, errJSON
				}
				i += 6
			default:
				return i, esc, errJSON
			}
		default: // a control character
			return i, esc, errJSON
		}
	}
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// vNumber validates the number at b[i] (JSON grammar: no leading zeros,
// digits after '.' and after the exponent mark).
func vNumber(b []byte, i int) (int, error) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return i, errJSON
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	default:
		return i, errJSON
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return i, errJSON
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
			return i, errJSON
		}
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	}
	return i, nil
}

// vLit validates the literal lit at b[i].
func vLit(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, errJSON
	}
	return i + len(lit), nil
}

// vValue validates the value at b[i] (leading whitespace allowed) nested
// depth levels deep and returns the index after it. It checks exactly the
// grammar json.Valid checks.
func vValue(b []byte, i, depth int) (int, error) {
	i = skipWS(b, i)
	if i >= len(b) {
		return i, errJSON
	}
	switch c := b[i]; {
	case c == '"':
		e, _, err := vString(b, i)
		return e, err
	case c == '{':
		if depth >= maxJSONDepth {
			return i, errTooDeep
		}
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1, nil
		}
		for {
			if i >= len(b) || b[i] != '"' {
				return i, errJSON
			}
			e, _, err := vString(b, i)
			if err != nil {
				return e, err
			}
			i = skipWS(b, e)
			if i >= len(b) || b[i] != ':' {
				return i, errJSON
			}
			if i, err = vValue(b, i+1, depth+1); err != nil {
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
			i = skipWS(b, i+1)
		}
	case c == '[':
		if depth >= maxJSONDepth {
			return i, errTooDeep
		}
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, nil
		}
		for {
			var err error
			if i, err = vValue(b, i, depth+1); err != nil {
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
	case c == 't':
		return vLit(b, i, "true")
	case c == 'f':
		return vLit(b, i, "false")
	case c == 'n':
		return vLit(b, i, "null")
	case c == '-' || isDigit(c):
		return vNumber(b, i)
	}
	return i, errJSON
}

// appendText appends to dst the text of the request (the last user
// message's text parts, space-separated, else the top-level "prompt"),
// decoded, at most max bytes, cut at a UTF-8 boundary.
func appendText(dst, body []byte, f *bodyScan, max int) []byte {
	start := len(dst)
	parts := f.text[:f.nText]
	if f.nText == 0 && f.prompt.e > f.prompt.s {
		parts = []span{f.prompt}
	}
	for k, p := range parts {
		if len(dst)-start >= max {
			break
		}
		if k > 0 {
			dst = append(dst, ' ')
		}
		dst = appendUnquote(dst, body[p.s:p.e], max-(len(dst)-start))
	}
	if len(dst)-start > max {
		dst = dst[:start+max]
	}
	// Do not end inside a UTF-8 sequence.
	for len(dst) > start {
		if r, size := utf8.DecodeLastRune(dst[start:]); r != utf8.RuneError || size > 1 {
			break
		}
		dst = dst[:len(dst)-1]
	}
	return dst
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
	return string(appendUnquote(make([]byte, 0, len(s)-2), s, len(s)))
}

func hex4(h []byte) (rune, bool) {
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

// appendUnquote appends the decoded JSON string literal s (with quotes) to
// dst, stopping once at least max bytes were appended (it may append a few
// more: the caller trims). Escapes as in unquote.
func appendUnquote(dst, s []byte, max int) []byte {
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
				if r, ok := hex4(s[i+1 : i+5]); ok {
					i += 4
					// surrogate pair
					if r >= 0xD800 && r < 0xDC00 && i+6 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
						if r2, ok2 := hex4(s[i+3 : i+7]); ok2 && r2 >= 0xDC00 && r2 < 0xE000 {
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

// setModel appends to dst the body with the model value (span from f)
// replaced by model. When the body has no model field, one is added.
func setModel(dst, body []byte, f *bodyScan, model string) []byte {
	if f.modelStart >= 0 && f.modelEnd <= len(body) && f.modelStart < f.modelEnd {
		dst = append(dst, body[:f.modelStart]...)
		dst = jsonw.AppendString(dst, model)
		return append(dst, body[f.modelEnd:]...)
	}
	i := skipWS(body, 0)
	if i >= len(body) || body[i] != '{' {
		return append(dst, body...)
	}
	dst = append(dst, body[:i+1]...)
	dst = append(dst, `"model":`...)
	dst = jsonw.AppendString(dst, model)
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
