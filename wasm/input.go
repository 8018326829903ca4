package wasm

import (
	"strconv"

	"github.com/geniehive/geniehive/internal/jsonw"
	"github.com/geniehive/geniehive/policy"
)

// appendInput appends in as JSON, matching encoding/json's output for
// policy.Input (field names, omitempty) without reflection or allocation.
func appendInput(b []byte, in *policy.Input) []byte {
	b = append(b, `{"schema_version":`...)
	b = strconv.AppendInt(b, int64(in.SchemaVersion), 10)
	b = append(b, `,"operation":`...)
	b = jsonw.AppendString(b, string(in.Operation))
	if in.API != "" {
		b = append(b, `,"api":`...)
		b = jsonw.AppendString(b, in.API)
	}
	b = append(b, `,"model":`...)
	b = jsonw.AppendString(b, in.Model)
	b = append(b, `,"model_key":`...)
	b = jsonw.AppendString(b, in.ModelKey)
	if in.Service != nil {
		b = append(b, `,"service":{"id":`...)
		b = jsonw.AppendString(b, in.Service.ID)
		b = append(b, `,"kind":`...)
		b = jsonw.AppendString(b, string(in.Service.Kind))
		b = append(b, '}')
	}
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
	b = jsonw.AppendString(b, in.Key.ID)
	b = append(b, `,"scope":`...)
	b = jsonw.AppendString(b, string(in.Key.Scope))
	if len(in.Key.Roles) > 0 {
		b = append(b, `,"roles":[`...)
		for i, r := range in.Key.Roles {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonw.AppendString(b, r)
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
			b = jsonw.AppendString(b, k)
			b = append(b, ':')
			b = jsonw.AppendString(b, v)
		}
		b = append(b, '}')
	}
	if len(in.Body) > 0 {
		b = append(b, `,"body":`...)
		b = append(b, in.Body...)
	}
	return append(b, '}')
}
