package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/rawjson"
	"github.com/geniehive/geniehive/policy"
)

// Upstream dialects ApplyPatch writes.
const (
	DialectOpenAI = "openai"
	DialectOllama = "ollama"
)

// ErrNotObject is returned by ApplyPatch for a body that is not a JSON object.
var ErrNotObject = errors.New("policies: request body is not a JSON object")

// ApplyPatch rewrites a JSON request body for one target:
//
//   - defaults are deep-merged under the request (the request wins), then
//     overrides over it (the policy wins); objects merge key by key, arrays
//     and scalars replace;
//   - the system prompt is applied to "messages": replace swaps the first
//     system message's content (or inserts a system message at the front),
//     prepend/append add the text to it separated by a blank line (or insert
//     one); content given as an array of parts gets a text part. An Ollama
//     /api/generate body (no messages, a "prompt") gets its "system" field
//     changed the same way. Bodies without messages are left alone;
//   - "model" is set to upstreamModel (when not empty);
//   - DisableThinking sets chat_template_kwargs.enable_thinking=false
//     (dialect "openai", the default) or think=false (dialect "ollama").
//
// When the patch is empty, only the model changes and the body is not
// decoded: its top-level "model" value is replaced in place (fast path).
// Patch.StripReasoning concerns the reply and is ignored here. body is
// never modified.
//
// # Errors
// ErrNotObject for a body that is not a valid JSON object; an unknown
// dialect.
func ApplyPatch(body []byte, p *policy.Patch, dialect string, upstreamModel string) ([]byte, error) {
	switch dialect {
	case "", DialectOpenAI, DialectOllama:
	default:
		return nil, fmt.Errorf("policies: unknown dialect %q", dialect)
	}
	if p.Empty() {
		if upstreamModel == "" {
			if firstByte(body) != '{' || !rawjson.Valid(body) {
				return nil, ErrNotObject
			}
			return body, nil
		}
		return SetModel(nil, body, upstreamModel)
	}
	return applySlow(body, p, dialect, upstreamModel)
}

func firstByte(b []byte) byte {
	if i := rawjson.SkipWS(b, 0); i < len(b) {
		return b[i]
	}
	return 0
}

// SetModel appends to dst the JSON object body with every top-level "model"
// member's value replaced by model (or a "model" member added first when it
// has none), without decoding the body (rawjson.SetModel, the one model
// setter, which the edge's span splice shares).
//
// # Errors
// ErrNotObject for a body that is not a valid JSON object.
func SetModel(dst, body []byte, model string) ([]byte, error) {
	if dst == nil {
		dst = make([]byte, 0, len(body)+len(model)+16)
	}
	out, err := rawjson.SetModel(dst, body, model)
	if err != nil {
		return nil, ErrNotObject
	}
	return out, nil
}

func applySlow(body []byte, p *policy.Patch, dialect, upstreamModel string) ([]byte, error) {
	if !json.Valid(body) || firstByte(body) != '{' {
		return nil, ErrNotObject
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var req map[string]any
	if err := dec.Decode(&req); err != nil {
		return nil, ErrNotObject
	}
	req = DeepMerge(p.Defaults, req)
	req = DeepMerge(req, p.Overrides)
	// DeepMerge may return one of its arguments: copy the top level so
	// that the assignments below never write into the shared patch.
	own := make(map[string]any, len(req)+3)
	for k, v := range req {
		own[k] = v
	}
	req = own
	if sp := p.SystemPrompt; sp != nil {
		if msgs, ok := req["messages"].([]any); ok {
			req["messages"] = applyPromptMessages(msgs, sp)
		} else if _, ok := req["prompt"]; ok && dialect == DialectOllama && req["messages"] == nil {
			cur, has := req["system"]
			req["system"] = applyPromptContent(cur, has, sp)
		}
	}
	if upstreamModel != "" {
		req["model"] = upstreamModel
	}
	if p.DisableThinking {
		if dialect == DialectOllama {
			req["think"] = false
		} else {
			kw, _ := req["chat_template_kwargs"].(map[string]any)
			req["chat_template_kwargs"] = DeepMerge(kw, map[string]any{"enable_thinking": false})
		}
	}
	var buf bytes.Buffer
	buf.Grow(len(body) + 256)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(req); err != nil {
		return nil, fmt.Errorf("policies: encode body: %w", err)
	}
	out := buf.Bytes()
	return out[:len(out)-1], nil // drop Encode's newline
}

// applyPromptMessages returns a new messages slice with the system prompt
// applied to the first system message (or a new one at the front).
func applyPromptMessages(msgs []any, sp *fleet.SystemPrompt) []any {
	for i, m := range msgs {
		mm, ok := m.(map[string]any)
		if !ok || mm["role"] != "system" {
			continue
		}
		out := make([]any, len(msgs))
		copy(out, msgs)
		nm := make(map[string]any, len(mm))
		for k, v := range mm {
			nm[k] = v
		}
		cur, has := mm["content"]
		nm["content"] = applyPromptContent(cur, has, sp)
		out[i] = nm
		return out
	}
	out := make([]any, 0, len(msgs)+1)
	out = append(out, map[string]any{"role": "system", "content": sp.Text})
	return append(out, msgs...)
}

// applyPromptContent applies the prompt to one system content value.
func applyPromptContent(cur any, has bool, sp *fleet.SystemPrompt) any {
	if !has || cur == nil || sp.Mode == fleet.PromptReplace {
		return sp.Text
	}
	switch c := cur.(type) {
	case string:
		if c == "" {
			return sp.Text
		}
		if sp.Mode == fleet.PromptAppend {
			return c + "\n\n" + sp.Text
		}
		return sp.Text + "\n\n" + c
	case []any:
		part := map[string]any{"type": "text", "text": sp.Text}
		out := make([]any, 0, len(c)+1)
		if sp.Mode == fleet.PromptAppend {
			out = append(append(out, c...), part)
		} else {
			out = append(append(out, part), c...)
		}
		return out
	default:
		return sp.Text
	}
}
