package wasm

import (
	"strconv"
	"unicode/utf8"

	"github.com/geniehive/geniehive/policies"
)

// appendInput appends in as JSON, matching encoding/json's output for
// policies.Input (field names, omitempty) without reflection or allocation.
func appendInput(b []byte, in *policies.Input) []byte {
	b = append(b, `{"schema_version":`...)
	b = strconv.AppendInt(b, int64(in.SchemaVersion), 10)
	b = append(b, `,"operation":`...)
	b = appendString(b, string(in.Operation))
	b = append(b, `,"model":`...)
	b = appendString(b, in.Model)
	b = append(b, `,"model_key":`...)
	b = appendString(b, in.ModelKey)
	b = append(b, `,"stream":`...)
	b = strconv.AppendBool(b, in.Stream)
	b = append(b, `,"max_tokens":`...)
	b = strconv.AppendInt(b, int64(in.MaxTokens), 10)
	if in.Thinking != nil {
		b = append(b, `,"thinking":`...)
		b = strconv.AppendBool(b, *in.Thinking)
	}
	b = append(b, `,"body_bytes":`...)
	b = strconv.AppendInt(b, int64(in.BodyBytes), 10)
	b = append(b, `,"key":{"id":`...)
	b = appendString(b, in.Key.ID)
	b = append(b, `,"scope":`...)
	b = appendString(b, string(in.Key.Scope))
	if len(in.Key.Roles) > 0 {
		b = append(b, `,"roles":[`...)
		for i, r := range in.Key.Roles {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, r)
		}
		b = append(b, ']')
	}
	b = append(b, '}')
	if len(in.Headers) > 0 {
		b = append(b, `,"headers":{`...)
		first := true
		for k, v := range in.Headers {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, v)
		}
		b = append(b, '}')
	}
	if len(in.Body) > 0 {
		b = append(b, `,"body":`...)
		b = append(b, in.Body...)
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// as with encoding/json.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
