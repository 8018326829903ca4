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

// Upstream dialects ApplyPatch writes; each has its own thinking switch
// (docs/UPSTREAMS.md, "Thinking: which switch each server honours").
const (
	// DialectOpenAI: OpenAI-compatible servers (llama.cpp, vLLM):
	// chat_template_kwargs.enable_thinking.
	DialectOpenAI = "openai"
	// DialectOllama: Ollama's native /api/chat and /api/generate: think.
	DialectOllama = "ollama"
	// DialectOllamaOpenAI: Ollama's OpenAI layer (/v1/*), which reads only
	// reasoning_effort and reasoning.effort ("none" is off; openai/openai.go
	// FromChatRequest) and ignores a top-level think.
	DialectOllamaOpenAI = "ollama-openai"
)

// Rewrite says how ApplyRewrite writes a body for one upstream.
type Rewrite struct {
	Dialect string // one of the Dialect constants ("" = DialectOpenAI)
	Model   string // the upstream model name ("" leaves it)
	// Thinking is written in the dialect's own switch: -1 off, 1 on, 0
	// leaves the body's switches as they are. ApplyPatch sets -1 when the
	// patch disables thinking.
	Thinking int8
	// EffortLevels: the upstream model takes effort levels ("low"…"high").
	// Ollama takes them only for gpt-oss and answers 400 for any other
	// model, so without it "on" drops a level and relies on Ollama's
	// default (thinking on for a thinking model, v0.12.4+).
	EffortLevels bool
}

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
	r := Rewrite{Dialect: dialect, Model: upstreamModel}
	if p != nil && p.DisableThinking {
		r.Thinking = -1
	}
	return ApplyRewrite(body, p, r)
}

// ApplyRewrite is ApplyPatch with the thinking switch given explicitly
// (r.Thinking, which replaces p.DisableThinking): a client's own thinking
// choice, sent in another server's switch, is written in the upstream's.
//
// # Errors
// As ApplyPatch.
func ApplyRewrite(body []byte, p *policy.Patch, r Rewrite) ([]byte, error) {
	dialect, upstreamModel := r.Dialect, r.Model
	switch dialect {
	case "", DialectOpenAI, DialectOllama, DialectOllamaOpenAI:
	default:
		return nil, fmt.Errorf("policies: unknown dialect %q", dialect)
	}
	if p.Empty() && r.Thinking == 0 {
		if upstreamModel == "" {
			if firstByte(body) != '{' || !rawjson.Valid(body) {
				return nil, ErrNotObject
			}
			return body, nil
		}
		return SetModel(nil, body, upstreamModel)
	}
	return applySlow(body, p, r)
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

func applySlow(body []byte, p *policy.Patch, r Rewrite) ([]byte, error) {
	dialect, upstreamModel := r.Dialect, r.Model
	if p == nil {
		p = &policy.Patch{}
	}
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
	if r.Thinking != 0 {
		setThinking(req, r.Thinking > 0, r)
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

// setThinking writes thinking on or off in r.Dialect's own switch and
// takes out the switches the upstream would read otherwise (or, for
// another server's, not at all). req is the caller's own top-level map;
// nested objects are copied before they change.
func setThinking(req map[string]any, on bool, r Rewrite) {
	switch r.Dialect {
	case DialectOllama:
		// server/routes.go ChatHandler: think is a bool, or a level for
		// gpt-oss (the harmony parser) only.
		if _, level := req["think"].(string); !(level && on && r.EffortLevels) {
			req["think"] = on
		}
	case DialectOllamaOpenAI:
		delete(req, "think") // not read by the OpenAI layer
		ro, _ := req["reasoning"].(map[string]any)
		if !on {
			req["reasoning_effort"] = "none"
			if ro != nil { // a reasoning object wins over reasoning_effort
				req["reasoning"] = DeepMerge(ro, map[string]any{"effort": "none"})
			}
			return
		}
		if e, ok := req["reasoning_effort"].(string); ok && (e == "none" || !r.EffortLevels) {
			delete(req, "reasoning_effort")
		}
		if e, ok := ro["effort"].(string); ok && (e == "none" || !r.EffortLevels) {
			nr := make(map[string]any, len(ro))
			for k, v := range ro {
				if k != "effort" {
					nr[k] = v
				}
			}
			if len(nr) == 0 {
				delete(req, "reasoning")
			} else {
				req["reasoning"] = nr
			}
		}
	default:
		// llama.cpp and vLLM read chat_template_kwargs.enable_thinking
		// (tools/server/README.md; vLLM protocol.py); vLLM passes
		// reasoning_effort to the template, where Qwen3 ignores it.
		delete(req, "think")
		// reasoning_effort "none" is not an effort vLLM accepts; the
		// template switch says it for both servers.
		if e, ok := req["reasoning_effort"].(string); ok && e == "none" {
			delete(req, "reasoning_effort")
		}
		kw, _ := req["chat_template_kwargs"].(map[string]any)
		req["chat_template_kwargs"] = DeepMerge(kw, map[string]any{"enable_thinking": on})
	}
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
