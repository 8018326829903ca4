package edge

import (
	"errors"
	"unicode/utf8"

	"github.com/geniehive/geniehive/internal/rawjson"
)

// The request-path JSON helpers below work on raw bytes without building a
// document: scanRequest validates a request body and finds the few fields
// the edge needs (model, stream, max_tokens, thinking switches, the last
// user message's text) in one pass; setModel splices a new model name in;
// stripKeys drops reasoning fields from replies. The skip* helpers assume
// input already validated; all must never panic on any input (fuzzed).

// bodyScan holds the fields extracted from a request body. Byte spans index
// the body they were scanned from.
type bodyScan struct {
	modelStart, modelEnd int // span of the model string's quoted value (incl. quotes); -1 when absent
	modelEscaped         bool
	modelOK              bool // model present and a string
	stream               bool
	maxTokens            int
	thinking             int8 // -1 off, 0 unset, 1 on: the client's explicit choice (see thinkingChoice)
	// think* are the client's thinking switches, each -1 off, 0 absent, 1
	// on (thinkEffort: "none" is off, any other effort on).
	thinkNative, thinkKwargs, thinkEffort, thinkReasoning int8
	effortLevel                                           bool // reasoning_effort or reasoning.effort names a level (not "none")
	// text spans (quoted JSON strings) of the last user message, in order;
	// prompt is a top-level "prompt" string (images, completions).
	text   [maxTextParts]span
	nText  int
	prompt span
}

// Errors of scanRequest besides rawjson.ErrSyntax.
var (
	errNotObject = errors.New("request body must be a JSON object")
	// errDupModel: parsers disagree on which of two members wins (Go and
	// Python take the last, fastjson and others the first), so a body with
	// two could name one model to the policy and another to the upstream.
	errDupModel = errors.New("request body has more than one model member")
)

// scanRequest validates b as JSON and extracts the request fields in the
// same single pass: it accepts exactly what json.Valid accepts (nesting at
// most rawjson.MaxDepth levels), so the request path reads a body once. It
// accepts only bodies every upstream reads alike (canon.go): unique,
// lower-case top-level names, plain integer token limits, typed switches.
//
// # Errors
// rawjson.ErrSyntax when b is not valid JSON, errNotObject when it is valid but not an
// object, rawjson.ErrTooDeep when it nests deeper than rawjson.MaxDepth, errDupModel
// when the object has two "model" members (escaped spellings included), a
// *canonError (errors.Is errCanon) for a body not in canonical form.
func scanRequest(b []byte, f *bodyScan) error {
	*f = bodyScan{modelStart: -1, modelEnd: -1}
	i := rawjson.SkipWS(b, 0)
	if i >= len(b) {
		return rawjson.ErrSyntax
	}
	if b[i] != '{' {
		e, err := rawjson.ValidValue(b, i, 0)
		if err != nil {
			return err
		}
		if rawjson.SkipWS(b, e) != len(b) {
			return rawjson.ErrSyntax
		}
		return errNotObject
	}
	nModel := 0
	var seen keySet
	var canonErr error // the first non-canonical member, reported once the whole body is valid
	i = rawjson.SkipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			if i >= len(b) || b[i] != '"' {
				return rawjson.ErrSyntax
			}
			ks := i
			ke, kesc, err := rawjson.ValidString(b, i)
			if err != nil {
				return err
			}
			i = rawjson.SkipWS(b, ke)
			if i >= len(b) || b[i] != ':' {
				return rawjson.ErrSyntax
			}
			vs := rawjson.SkipWS(b, i+1)
			if vs >= len(b) {
				return rawjson.ErrSyntax
			}
			var ve int
			var kbuf [32]byte
			key := rawjson.KeyName(b, ks, ke, kesc, &kbuf)
			if err := seen.add(key, kesc); err != nil && canonErr == nil {
				canonErr = err
			}
			switch {
			case string(key) == "model":
				nModel++
				if b[vs] == '"' {
					var esc bool
					if ve, esc, err = rawjson.ValidString(b, vs); err != nil {
						return err
					}
					f.modelStart, f.modelEnd, f.modelOK, f.modelEscaped = vs, ve, true, esc
				} else {
					if ve, err = rawjson.ValidValue(b, vs, 1); err != nil {
						return err
					}
					f.modelStart, f.modelEnd, f.modelOK, f.modelEscaped = -1, -1, false, false
				}
			case string(key) == "messages" && b[vs] == '[':
				if ve, err = scanMessages(b, vs, f); err != nil {
					return err
				}
			default:
				if ve, err = rawjson.ValidValue(b, vs, 1); err != nil {
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
				default:
					if err := topValue(key, b, vs, ve, f); err != nil && canonErr == nil {
						canonErr = err
					}
				}
			}
			i = rawjson.SkipWS(b, ve)
			if i >= len(b) {
				return rawjson.ErrSyntax
			}
			if b[i] == '}' {
				i++
				break
			}
			if b[i] != ',' {
				return rawjson.ErrSyntax
			}
			i = rawjson.SkipWS(b, i+1)
		}
	}
	if rawjson.SkipWS(b, i) != len(b) {
		return rawjson.ErrSyntax
	}
	f.thinking = f.thinkingChoice()
	if nModel > 1 {
		return errDupModel
	}
	return canonErr
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
	sq := rawjson.Open(b, i)
	for {
		more, err := sq.Next()
		if !more || err != nil {
			return sq.I, err
		}
		var e int
		if b[sq.I] == '{' {
			var m msgText
			if e, err = scanMessage(b, sq.I, &m); err != nil {
				return e, err
			}
			if m.user {
				f.text, f.nText = m.parts, m.n
			}
		} else if e, err = rawjson.ValidValue(b, sq.I, 2); err != nil {
			return e, err
		}
		sq.I = e
	}
}

// scanMessage validates one message object (depth 2) and records its role
// and the spans of its text: a string content, or the "text" members of
// content parts.
func scanMessage(b []byte, i int, m *msgText) (int, error) {
	sq := rawjson.Open(b, i)
	for {
		more, err := sq.Next()
		if !more || err != nil {
			return sq.I, err
		}
		ks, ke, kesc, vs, err := sq.Key()
		if err != nil {
			return vs, err
		}
		var ve int
		var kbuf [32]byte
		key := rawjson.KeyName(b, ks, ke, kesc, &kbuf)
		switch {
		case string(key) == "content" && b[vs] == '"':
			if ve, _, err = rawjson.ValidString(b, vs); err != nil {
				return ve, err
			}
			m.parts[0], m.n = span{vs, ve}, 1
		case string(key) == "content" && b[vs] == '[':
			m.n = 0
			if ve, err = scanParts(b, vs, m); err != nil {
				return ve, err
			}
		default:
			if ve, err = rawjson.ValidValue(b, vs, 3); err != nil {
				return ve, err
			}
			switch string(key) {
			case "role":
				m.user = b[vs] == '"' && rawjson.StringIs(b[vs:ve], "user")
			case "content":
				m.n = 0 // null or another shape: no text
			}
		}
		sq.I = ve
	}
}

// scanParts validates a content-parts array (depth 3) and appends to m the
// span of every part's "text" string, up to maxTextParts.
func scanParts(b []byte, i int, m *msgText) (int, error) {
	sq := rawjson.Open(b, i)
	for {
		more, err := sq.Next()
		if !more || err != nil {
			return sq.I, err
		}
		var e int
		if b[sq.I] == '{' {
			txt := span{-1, -1}
			if e, err = scanPart(b, sq.I, &txt); err != nil {
				return e, err
			}
			if txt.s >= 0 && m.n < maxTextParts {
				m.parts[m.n] = txt
				m.n++
			}
		} else if e, err = rawjson.ValidValue(b, sq.I, 4); err != nil {
			return e, err
		}
		sq.I = e
	}
}

// scanPart validates one content part (depth 4) and sets txt to the span of
// its "text" member when that is a string.
func scanPart(b []byte, i int, txt *span) (int, error) {
	sq := rawjson.Open(b, i)
	for {
		more, err := sq.Next()
		if !more || err != nil {
			return sq.I, err
		}
		ks, ke, kesc, vs, err := sq.Key()
		if err != nil {
			return vs, err
		}
		ve, err := rawjson.ValidValue(b, vs, 5)
		if err != nil {
			return ve, err
		}
		var kbuf [32]byte
		if key := rawjson.KeyName(b, ks, ke, kesc, &kbuf); string(key) == "text" {
			if b[vs] == '"' {
				*txt = span{vs, ve}
			} else {
				*txt = span{-1, -1}
			}
		}
		sq.I = ve
	}
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
		dst = rawjson.AppendUnquoted(dst, body[p.s:p.e], max-(len(dst)-start))
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

// boolTri maps a JSON bool to a thinking state: -1 off, 1 on.
func boolTri(v bool) int8 {
	if v {
		return 1
	}
	return -1
}

// findMember returns the span of member k's value in the object at b[i]
// (the last one, as encoding/json reads duplicates), or -1, -1.
func findMember(b []byte, i int, k string) (int, int) {
	s, e := -1, -1
	i = rawjson.SkipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return s, e
	}
	for {
		i = rawjson.SkipWS(b, i)
		ks := i
		ke, _, err := rawjson.SkipString(b, i)
		if err != nil {
			return s, e
		}
		i = rawjson.SkipWS(b, ke)
		if i >= len(b) || b[i] != ':' {
			return s, e
		}
		vs := rawjson.SkipWS(b, i+1)
		ve, err := rawjson.ValidValue(b, vs, 2)
		if err != nil {
			return s, e
		}
		if rawjson.KeyIs(b, ks, ke, k) {
			s, e = vs, ve
		}
		i = rawjson.SkipWS(b, ve)
		if i >= len(b) || b[i] != ',' {
			return s, e
		}
		i++
	}
}

// effortTri reads a reasoning effort value: "none" is off, any other
// string on (and *level set), anything else (null) unset.
func effortTri(b []byte, s, e int, level *bool) int8 {
	if b[s] != '"' {
		return 0
	}
	if rawjson.StringIs(b[s:e], "none") {
		return -1
	}
	*level = true
	return 1
}

// thinkingChoice is the client's explicit thinking choice from every
// switch it sent (0: it said nothing). When switches disagree, the one the
// OpenAI-style clients use wins: reasoning.effort (Ollama: "a reasoning
// object wins over reasoning_effort"), reasoning_effort,
// chat_template_kwargs.enable_thinking, then Ollama's think.
func (f *bodyScan) thinkingChoice() int8 {
	for _, t := range [...]int8{f.thinkReasoning, f.thinkEffort, f.thinkKwargs, f.thinkNative} {
		if t != 0 {
			return t
		}
	}
	return 0
}

// setModel appends to dst the body with the model value (span from f)
// replaced by model; when the body has no model field, one is added.
func setModel(dst, body []byte, f *bodyScan, model string) []byte {
	return rawjson.SetString(dst, body, f.modelStart, f.modelEnd, "model", model)
}

// stripKeys appends to dst the JSON value b with every object member named
// by one of keys removed, at any depth. Whitespace outside strings is
// dropped. It reports whether anything was removed; on malformed input it
// returns dst with b appended unchanged.
func stripKeys(dst, b []byte, keys []string) ([]byte, bool) {
	start := len(dst)
	out, removed, _, err := stripValue(dst, b, rawjson.SkipWS(b, 0), keys, 0)
	if err != nil {
		return append(dst[:start], b...), false
	}
	return out, removed
}

func stripValue(dst, b []byte, i int, keys []string, depth int) ([]byte, bool, int, error) {
	if depth > rawjson.MaxDepth {
		return dst, false, i, rawjson.ErrSyntax
	}
	i = rawjson.SkipWS(b, i)
	if i >= len(b) {
		return dst, false, i, rawjson.ErrSyntax
	}
	removed := false
	switch b[i] {
	case '{':
		dst = append(dst, '{')
		i = rawjson.SkipWS(b, i+1)
		if i < len(b) && b[i] == '}' {
			return append(dst, '}'), false, i + 1, nil
		}
		first := true
		for {
			i = rawjson.SkipWS(b, i)
			ks := i
			ke, esc, err := rawjson.SkipString(b, i)
			if err != nil {
				return dst, removed, ke, err
			}
			i = rawjson.SkipWS(b, ke)
			if i >= len(b) || b[i] != ':' {
				return dst, removed, i, rawjson.ErrSyntax
			}
			drop := false
			if !esc {
				for _, k := range keys {
					if rawjson.KeyIs(b, ks, ke, k) {
						drop = true
						break
					}
				}
			}
			if drop {
				ve, err := rawjson.ValidValue(b, i+1, depth+1)
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
			i = rawjson.SkipWS(b, i)
			if i >= len(b) {
				return dst, removed, i, rawjson.ErrSyntax
			}
			if b[i] == '}' {
				return append(dst, '}'), removed, i + 1, nil
			}
			if b[i] != ',' {
				return dst, removed, i, rawjson.ErrSyntax
			}
			i++
		}
	case '[':
		dst = append(dst, '[')
		i = rawjson.SkipWS(b, i+1)
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
			i = rawjson.SkipWS(b, i)
			if i >= len(b) {
				return dst, removed, i, rawjson.ErrSyntax
			}
			if b[i] == ']' {
				return append(dst, ']'), removed, i + 1, nil
			}
			if b[i] != ',' {
				return dst, removed, i, rawjson.ErrSyntax
			}
			i++
		}
	default:
		e, err := rawjson.ValidValue(b, i, depth)
		if err != nil {
			return dst, false, e, err
		}
		return append(dst, b[i:e]...), false, e, nil
	}
}
