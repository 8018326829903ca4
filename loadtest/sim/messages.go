package sim

// POST /v1/messages (Anthropic Messages API) in the shape Ollama gives it
// (anthropic/anthropic.go FromMessagesRequest, ToMessagesResponse,
// StreamConverter; middleware/anthropic.go AnthropicMessagesMiddleware),
// recorded in v1-messages.*.txt; vLLM (vllm/entrypoints/anthropic) and
// llama.cpp (PR #17570) serve the same API and are answered in the same
// shape. POST /v1/messages/count_tokens where the server has it.

import (
	"encoding/json"
	"fmt"
	"net/http"
)

func (s *Server) messages(w http.ResponseWriter, r *http.Request, b *Behavior) {
	p := parsers.Get()
	defer parsers.Put(p)
	g, v, ok := s.readGen(w, r, apiMessages, false, false, p)
	if !ok {
		return
	}
	mk := factoryFunc(func(p plan) writer { return s.newMessagesWriter(w, &g, p) })
	if s.cfg.Flavor == FlavorOllama {
		switch {
		case g.name == "":
			s.fail(w, apiMessages, apiErr{status: 400, msg: "model is required"})
		case g.maxTokens <= 0:
			s.fail(w, apiMessages, apiErr{status: 400, msg: "max_tokens is required and must be positive"})
		case len(v.GetArray("messages")) == 0:
			s.fail(w, apiMessages, apiErr{status: 400, msg: "messages is required"})
		default:
			// Only thinking.type "enabled" sets think; "disabled" is not
			// read, so a thinking model still thinks
			// (v1-messages.nonstream.thinking-disabled.txt); thinking asked
			// of a model without it is dropped ("relax_thinking").
			var tv thinkVal
			if string(v.GetStringBytes("thinking", "type")) == "enabled" {
				tv = thinkVal{set: true, b: true}
			}
			s.ollamaCore(w, r, b, &g, v, tv, false, true, mk)
		}
		return
	}
	if len(v.GetArray("messages")) == 0 {
		s.fail(w, apiMessages, apiErr{status: 400, msg: "messages: field required"})
		return
	}
	if s.cfg.Flavor == FlavorLlamaCPP && g.maxTokens <= 0 {
		g.maxTokens = 4096 // README: max_tokens default 4096
	}
	if !s.openAICheck(w, &g, v, KindChat) {
		return
	}
	// Not verified against vLLM's or llama.cpp's source: treated like
	// Ollama (thinking models think whatever "thinking" says).
	g.think = plainThinking(&g, v)
	s.runGen(w, r, b, &g, mk, nil)
}

// countTokens answers POST /v1/messages/count_tokens (llama.cpp, vLLM):
// {"input_tokens": n}.
func (s *Server) countTokens(w http.ResponseWriter, r *http.Request, _ *Behavior) {
	v, ok := s.bodyJSON(w, r, apiMessages)
	if !ok {
		return
	}
	if _, ok := s.openAIModel(w, apiMessages, string(v.GetStringBytes("model"))); !ok {
		return
	}
	writeJSON(w, http.StatusOK, ctJSON, map[string]int{"input_tokens": promptTokens(v, apiMessages, false)}, false)
}

func stopReason(finish string) string {
	switch finish {
	case "length":
		return "max_tokens"
	case "tool_calls":
		return "tool_use"
	}
	return "end_turn"
}

// messagesWriter writes one Messages answer.
type messagesWriter struct {
	s       *Server
	w       http.ResponseWriter
	g       *genReq
	p       plan
	id      string
	index   int
	thinkOn bool
	thinkOK bool // thinking block closed
	textOn  bool
}

func (s *Server) newMessagesWriter(w http.ResponseWriter, g *genReq, p plan) *messagesWriter {
	return &messagesWriter{s: s, w: w, g: g, p: p, id: randomHexID("msg")}
}

func (m *messagesWriter) event(typ string, data orderedItem) bool {
	d, _ := json.Marshal(append(orderedItem{{"type", typ}}, data...))
	_, err := fmt.Fprintf(m.w, "event: %s\ndata: %s\n\n", typ, d)
	return err == nil
}

func (m *messagesWriter) begin() bool {
	h := m.w.Header()
	h["Content-Type"] = sseCT
	h["Cache-Control"] = noCache
	h["Connection"] = keepAliveH
	m.w.WriteHeader(http.StatusOK)
	// The first chunk has no prompt count yet: Ollama puts its estimate
	// here (EstimateInputTokens) and the real count in message_delta.
	return m.event("message_start", orderedItem{{"message", orderedItem{{"id", m.id}, {"type", "message"}, {"role", "assistant"},
		{"model", m.g.name}, {"content", []any{}}, {"usage", orderedItem{{"input_tokens", m.g.promptTokens}, {"output_tokens", 0}}}}}})
}

func (m *messagesWriter) blockStart(block orderedItem) bool {
	return m.event("content_block_start", orderedItem{{"index", m.index}, {"content_block", block}})
}

func (m *messagesWriter) blockStop() bool {
	ok := m.event("content_block_stop", orderedItem{{"index", m.index}})
	m.index++
	return ok
}

func (m *messagesWriter) delta(d orderedItem) bool {
	return m.event("content_block_delta", orderedItem{{"index", m.index}, {"delta", d}})
}

func (m *messagesWriter) reasoning(i int) bool {
	if !m.thinkOn {
		m.thinkOn = true
		if !m.blockStart(orderedItem{{"type", "thinking"}, {"thinking", ""}}) {
			return false
		}
	}
	return m.delta(orderedItem{{"type", "thinking_delta"}, {"thinking", reasoningWords[i%len(reasoningWords)]}})
}

func (m *messagesWriter) closeThinking() bool {
	if m.thinkOn && !m.thinkOK {
		m.thinkOK = true
		return m.blockStop()
	}
	return true
}

func (m *messagesWriter) content(_ int, text []byte) bool {
	var t string
	_ = json.Unmarshal(text, &t)
	if !m.closeThinking() {
		return false
	}
	if !m.textOn {
		m.textOn = true
		if !m.blockStart(orderedItem{{"type", "text"}, {"text", ""}}) {
			return false
		}
	}
	return m.delta(orderedItem{{"type", "text_delta"}, {"text", t}})
}

func (m *messagesWriter) toolCall() bool {
	if !m.closeThinking() {
		return false
	}
	if m.textOn {
		m.textOn = false
		if !m.blockStop() {
			return false
		}
	}
	return m.blockStart(orderedItem{{"type", "tool_use"}, {"id", toolCallID(uint64(len(m.g.toolName)))}, {"name", m.g.toolName}, {"input", map[string]any{}}}) &&
		m.delta(orderedItem{{"type", "input_json_delta"}, {"partial_json", m.g.toolArgs}}) &&
		m.blockStop()
}

func (m *messagesWriter) end() bool {
	if m.textOn && !m.blockStop() {
		return false
	}
	if !m.closeThinking() {
		return false
	}
	return m.event("message_delta", orderedItem{{"delta", orderedItem{{"stop_reason", stopReason(m.p.finish)}}},
		{"usage", orderedItem{{"input_tokens", m.g.promptTokens}, {"output_tokens", m.p.tokens()}}}}) &&
		m.event("message_stop", nil)
}

// whole is ToMessagesResponse: a thinking block, a text block when there
// is text, tool_use blocks.
func (m *messagesWriter) whole() {
	var content []any
	if r := m.p.reasoningText(); r != "" {
		content = append(content, orderedItem{{"type", "thinking"}, {"thinking", r}})
	}
	if t := m.p.contentText(); t != "" {
		content = append(content, orderedItem{{"type", "text"}, {"text", t}})
	}
	if m.p.tool {
		var input any = map[string]any{}
		_ = json.Unmarshal([]byte(m.g.toolArgs), &input)
		content = append(content, orderedItem{{"type", "tool_use"}, {"id", toolCallID(uint64(len(m.g.toolName)))}, {"name", m.g.toolName}, {"input", input}})
	}
	writeJSON(m.w, http.StatusOK, ctJSON, orderedItem{{"id", m.id}, {"type", "message"}, {"role", "assistant"}, {"model", m.g.name},
		{"content", content}, {"stop_reason", stopReason(m.p.finish)},
		{"usage", orderedItem{{"input_tokens", m.g.promptTokens}, {"output_tokens", m.p.tokens()}}}}, true)
}
