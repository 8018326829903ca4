package edge

import (
	"errors"

	"github.com/geniehive/geniehive/internal/rawjson"
)

// Canonical request reading. The edge decides on a few top-level members
// (model, stream, the token limits, the thinking switches) and the
// upstream reads the same body again with its own parser: Go's
// encoding/json (Ollama) matches member names case-insensitively — with
// Unicode folding, so "ſtream" is "stream" and "thin\u212a" is "think" —
// and takes the last of duplicates; Python (vLLM, pydantic) and C++
// (llama.cpp) take numbers and booleans leniently ("1e5", "100000",
// 100.0 for an integer). To read every body exactly as any upstream will,
// the edge accepts only the form on which they all agree, and refuses the
// rest with 400:
//
//   - top-level member names are unique and in their folded form (no A-Z,
//     no U+212A KELVIN SIGN, no U+017F LONG S), so no two names fold alike;
//   - the token limits (max_tokens, max_completion_tokens,
//     max_output_tokens) are null or a plain positive integer literal of at
//     most 18 digits (no fraction, no exponent, no string, no sign); the
//     policy sees the largest of them;
//   - stream is a boolean or null; think a boolean, null or one of Ollama's
//     levels "high", "medium", "low"; reasoning_effort a string or null;
//     reasoning and chat_template_kwargs an object or null, and
//     chat_template_kwargs.enable_thinking a boolean or null.

// maxTopMembers bounds the top-level members of a request body (every
// OpenAI, Ollama or vLLM request field fits several times over).
const maxTopMembers = 128

// canonError is a refused non-canonical body: 400 invalid_request with the
// member as param.
type canonError struct {
	param, msg string
}

func (e *canonError) Error() string { return e.msg }

var errCanon = errors.New("request body is not in canonical form")

func (e *canonError) Is(target error) bool { return target == errCanon }

var (
	errKeySpelling = &canonError{"", "request body has a top-level member name with upper-case letters (or a letter that folds to ASCII); member names are lower-case"}
	errKeyLong     = &canonError{"", "request body has an escaped top-level member name longer than 24 bytes"}
	errKeyDup      = &canonError{"", "request body has a top-level member twice"}
	errTooMany     = &canonError{"", "request body has more than 128 top-level members"}
	errLimitType   = map[string]*canonError{
		"max_tokens":            {"max_tokens", "max_tokens must be null or a positive integer written as plain digits"},
		"max_completion_tokens": {"max_completion_tokens", "max_completion_tokens must be null or a positive integer written as plain digits"},
		"max_output_tokens":     {"max_output_tokens", "max_output_tokens must be null or a positive integer written as plain digits"},
	}
	errStreamType    = &canonError{"stream", "stream must be a boolean"}
	errThinkType     = &canonError{"think", `think must be a boolean or one of "high", "medium", "low"`}
	errEffortType    = &canonError{"reasoning_effort", "reasoning_effort must be a string"}
	errReasoningType = &canonError{"reasoning", "reasoning must be an object"}
	errKwargsType    = &canonError{"chat_template_kwargs", "chat_template_kwargs must be an object whose enable_thinking is a boolean"}
)

// keySet remembers the top-level member names seen, by FNV-1a hash (a
// collision can only refuse a body, never let two names through).
type keySet struct {
	h [maxTopMembers]uint64
	n int
}

// add checks one top-level member name (decoded; esc: it had escapes, so a
// name of 24 bytes or more was cut by rawjson.KeyName) and records it.
func (ks *keySet) add(key []byte, esc bool) error {
	if esc && len(key) >= 24 {
		return errKeyLong
	}
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'A' && c <= 'Z':
			return errKeySpelling
		case c == 0xE2 && i+2 < len(key) && key[i+1] == 0x84 && key[i+2] == 0xAA: // U+212A
			return errKeySpelling
		case c == 0xC5 && i+1 < len(key) && key[i+1] == 0xBF: // U+017F
			return errKeySpelling
		}
		h = (h ^ uint64(c)) * 1099511628211
	}
	for _, x := range ks.h[:ks.n] {
		if x == h {
			if string(key) == "model" {
				return errDupModel
			}
			return errKeyDup
		}
	}
	if ks.n == maxTopMembers {
		return errTooMany
	}
	ks.h[ks.n] = h
	ks.n++
	return nil
}

// limitLit reads a token limit b[s:e]: (0, true) for null, (n, true) for a
// plain positive integer literal of at most 18 digits, (0, false) else.
func limitLit(b []byte, s, e int) (int, bool) {
	if e-s == 4 && string(b[s:e]) == "null" {
		return 0, true
	}
	if e <= s || e-s > 18 || b[s] < '1' || b[s] > '9' {
		return 0, false
	}
	n := 0
	for i := s; i < e; i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// isNull reports whether b[s:e] is the literal null.
func isNull(b []byte, s, e int) bool { return e-s == 4 && string(b[s:e]) == "null" }

// thinkLevel reports whether the string b[s:e] (quoted, unescaped) is one
// of Ollama's think levels (api.ThinkValue in ollama/ollama api/types.go).
func thinkLevel(b []byte, s, e int) bool {
	switch string(b[s:e]) {
	case `"high"`, `"medium"`, `"low"`:
		return true
	}
	return false
}

// kwargsThinking reads enable_thinking from the chat_template_kwargs
// object at b[i] == '{' (already validated): its value as -1/0/1, and
// false when it is there but neither a boolean nor null. Names are
// compared decoded ("enable\u005fthinking" is enable_thinking to Python).
func kwargsThinking(b []byte, i int) (int8, bool) {
	var out int8
	sq := rawjson.Open(b, i)
	for {
		more, err := sq.Next()
		if !more || err != nil {
			return out, err == nil
		}
		ks, ke, kesc, vs, err := sq.Key()
		if err != nil {
			return out, false
		}
		ve, err := rawjson.ValidValue(b, vs, 2)
		if err != nil {
			return out, false
		}
		var kbuf [32]byte
		if string(rawjson.KeyName(b, ks, ke, kesc, &kbuf)) == "enable_thinking" {
			if v, ok := rawjson.BoolLit(b, vs, ve); ok {
				out = boolTri(v)
			} else if !isNull(b, vs, ve) {
				return 0, false
			} else {
				out = 0
			}
		}
		sq.I = ve
	}
}

// topValue checks and reads the value b[vs:ve] of the top-level member
// key (one the policy reads; others are left alone) into f. It returns
// the canonical-form error, nil when the value is fine.
func topValue(key []byte, b []byte, vs, ve int, f *bodyScan) error {
	switch string(key) {
	case "stream":
		if v, ok := rawjson.BoolLit(b, vs, ve); ok {
			f.stream = v
		} else if !isNull(b, vs, ve) {
			return errStreamType
		} else {
			f.stream = false
		}
	case "max_tokens", "max_completion_tokens", "max_output_tokens":
		n, ok := limitLit(b, vs, ve)
		if !ok {
			return errLimitType[string(key)]
		}
		f.maxTokens = max(f.maxTokens, n)
	case "think":
		// Ollama's native API: a bool, or a level ("low"…) for gpt-oss.
		f.thinkNative = 0
		switch v, ok := rawjson.BoolLit(b, vs, ve); {
		case ok:
			f.thinkNative = boolTri(v)
		case b[vs] == '"' && thinkLevel(b, vs, ve):
			f.thinkNative = 1
		case !isNull(b, vs, ve):
			return errThinkType
		}
	case "reasoning_effort":
		if b[vs] != '"' && !isNull(b, vs, ve) {
			return errEffortType
		}
		f.thinkEffort = effortTri(b, vs, ve, &f.effortLevel)
	case "reasoning":
		if b[vs] != '{' && !isNull(b, vs, ve) {
			return errReasoningType
		}
		f.thinkReasoning = 0
		if b[vs] == '{' {
			if ms, me := findMember(b, vs, "effort"); ms >= 0 {
				f.thinkReasoning = effortTri(b, ms, me, &f.effortLevel)
			}
		}
	case "chat_template_kwargs":
		switch {
		case b[vs] == '{':
			t, ok := kwargsThinking(b, vs)
			if !ok {
				return errKwargsType
			}
			f.thinkKwargs = t
		case !isNull(b, vs, ve):
			return errKwargsType
		}
	}
	return nil
}
