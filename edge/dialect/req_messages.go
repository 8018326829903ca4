package dialect

// Anthropic Messages requests → Chat Completions, as Ollama does it
// (anthropic/anthropic.go FromMessagesRequest) with what Claude Code
// sends: system (a string or text blocks) as the first system message;
// tool_result blocks as tool messages ahead of the rest of their user
// message; thinking blocks as the assistant message's reasoning;
// cache_control, signatures and redacted thinking dropped; server tools
// (web search, code execution, ...) refused.

import (
	"github.com/valyala/fastjson"
)

func (r *Request) parseMessages() error {
	t := &r.top
	if err := r.maxTokens(fMaxTokens); err != nil {
		return err
	}
	if r.facts.API == APIMessages && r.facts.MaxTokens <= 0 {
		return errMaxTokens
	}
	for _, i := range []int{fTemperature, fTopP, fTopK} {
		if err := r.checkNumber(i); err != nil {
			return err
		}
	}
	msgs := t[fMessages]
	if msgs == nil || msgs.Type() != fastjson.TypeArray {
		return invalid(CodeMissing, "messages", "messages: field required (an array)")
	}
	switch s := t[fSystem]; {
	case isNull(s):
	case s.Type() == fastjson.TypeString:
		r.facts.System = SystemString
	case s.Type() == fastjson.TypeArray:
		r.facts.System = SystemBlocks
	default:
		return invalid(CodeInvalidRequest, "system", "system must be a string or an array of text blocks")
	}
	if m := t[fMCPServers]; m != nil && len(m.GetArray()) > 0 {
		return invalid(CodeUnsupportedTool, "mcp_servers", "the MCP connector (mcp_servers) is not supported: run MCP servers in the client")
	}
	if err := r.thinking(); err != nil {
		return err
	}
	if err := r.messagesTools(); err != nil {
		return err
	}
	if err := r.stopSequences(); err != nil {
		return err
	}
	if tc := t[fToolChoice]; !isNull(tc) {
		switch b2s(str(tc, "type")) {
		case "auto", "any", "none":
		case "tool":
			if len(str(tc, "name")) == 0 {
				return invalid(CodeMissing, "tool_choice", "tool_choice of type tool needs a name")
			}
		default:
			return invalid(CodeInvalidRequest, "tool_choice", "tool_choice.type must be auto, any, tool or none")
		}
	}
	ms := msgs.GetArray()
	for i := len(ms) - 1; i >= 0; i-- {
		if isStr(ms[i].Get("role"), "user") {
			r.messagesUserText(ms[i])
			break
		}
	}
	r.estIn = r.estimateMessages()
	return nil
}

// messagesUserText keeps a user message's text blocks for Facts.Text.
func (r *Request) messagesUserText(m *fastjson.Value) {
	if !isStr(m.Get("role"), "user") {
		return
	}
	c := m.Get("content")
	if c != nil && c.Type() == fastjson.TypeString {
		r.setText(c.GetStringBytes())
		return
	}
	r.c.reset()
	for _, b := range c.GetArray() {
		if isStr(b.Get("type"), "text") {
			r.c.addText(str(b, "text"))
		}
	}
	if r.c.nText > 0 {
		r.setText(r.c.text)
	}
}

// thinking reads thinking.type and budget_tokens (folded, duplicates
// refused).
func (r *Request) thinking() error {
	th := r.top[fThinking]
	if isNull(th) {
		return nil
	}
	if th.Type() != fastjson.TypeObject {
		return invalid(CodeInvalidRequest, "thinking", "thinking must be an object")
	}
	typ, err := member(th, "type", "thinking.type")
	if err != nil {
		return err
	}
	switch b2s(strv(typ)) {
	case "enabled":
		r.facts.Thinking = 1
		bt, err := member(th, "budget_tokens", "thinking.budget_tokens")
		if err != nil {
			return err
		}
		n, ok := posInt(bt)
		if !ok {
			return invalid(CodeInvalidRequest, "thinking.budget_tokens", "thinking.budget_tokens must be an integer")
		}
		r.facts.ThinkingBudget = n
	case "adaptive":
		r.facts.Thinking = 1
	case "disabled":
		r.facts.Thinking = -1
	default:
		return invalid(CodeInvalidRequest, "thinking.type", `thinking.type must be "enabled", "disabled" or "adaptive"`)
	}
	return nil
}

// messagesTools converts the tools at Parse, refusing server tools.
func (r *Request) messagesTools() error {
	tv := r.top[fTools]
	if isNull(tv) {
		return nil
	}
	if tv.Type() != fastjson.TypeArray {
		return invalid(CodeInvalidRequest, "tools", "tools must be an array")
	}
	for _, t := range tv.GetArray() {
		switch typ := b2s(str(t, "type")); typ {
		case "", "custom":
		default:
			return unsupportedTool(typ)
		}
		name := str(t, "name")
		if len(name) == 0 {
			return invalid(CodeMissing, "tools", "a tool needs a name")
		}
		r.tools = appendFunctionTool(r.toolSep(), name, str(t, "description"), t.Get("input_schema"), t.Get("strict"))
		r.facts.Tools++
	}
	return nil
}

func (r *Request) stopSequences() error {
	sv := r.top[fStopSequences]
	if isNull(sv) {
		return nil
	}
	if sv.Type() != fastjson.TypeArray {
		return invalid(CodeInvalidRequest, "stop_sequences", "stop_sequences must be an array of strings")
	}
	for _, s := range sv.GetArray() {
		if s.Type() != fastjson.TypeString {
			return invalid(CodeInvalidRequest, "stop_sequences", "stop_sequences must be an array of strings")
		}
		b := s.GetStringBytes()
		if hasByte(b, 0) {
			continue // cannot be kept in the 0-separated list; cannot match text either
		}
		r.stops = append(append(r.stops, b...), 0)
	}
	return nil
}

// isStop reports whether s is one of the request's stop sequences.
func (r *Request) isStop(s []byte) bool {
	for rest := r.stops; len(rest) > 0; {
		i := 0
		for rest[i] != 0 {
			i++
		}
		if string(rest[:i]) == string(s) {
			return true
		}
		rest = rest[i+1:]
	}
	return false
}

func (r *Request) messagesParams(dst []byte, o *ChatOptions) []byte {
	t := &r.top
	if len(r.tools) > 0 {
		if tc := t[fToolChoice]; !isNull(tc) {
			switch b2s(str(tc, "type")) {
			case "auto":
				dst = append(dst, `,"tool_choice":"auto"`...)
			case "any":
				dst = append(dst, `,"tool_choice":"required"`...)
			case "none":
				dst = append(dst, `,"tool_choice":"none"`...)
			case "tool":
				dst = append(dst, `,"tool_choice":{"type":"function","function":{"name":`...)
				dst = appendStr(dst, str(tc, "name"))
				dst = append(dst, "}}"...)
			}
			if d := tc.Get("disable_parallel_tool_use"); d != nil && d.Type() == fastjson.TypeTrue {
				dst = append(dst, `,"parallel_tool_calls":false`...)
			}
		}
	}
	if r.facts.MaxTokens > 0 && r.facts.API == APIMessages {
		dst = append(dst, `,"max_tokens":`...)
		dst = appendInt(dst, r.facts.MaxTokens)
	}
	dst = appendNumber(dst, "temperature", t[fTemperature])
	dst = appendNumber(dst, "top_p", t[fTopP])
	if o.TopK {
		dst = appendNumber(dst, "top_k", t[fTopK])
	}
	if len(r.stops) > 0 {
		dst = append(dst, `,"stop":[`...)
		n := 0
		for rest := r.stops; len(rest) > 0; n++ {
			i := 0
			for rest[i] != 0 {
				i++
			}
			if n > 0 {
				dst = append(dst, ',')
			}
			dst = appendStr(dst, rest[:i])
			rest = rest[i+1:]
		}
		dst = append(dst, ']')
	}
	return dst
}

// messagesMessages writes system and messages as chat messages.
func (r *Request) messagesMessages(b *chatBuilder) error {
	switch s := r.top[fSystem]; {
	case s == nil:
	case s.Type() == fastjson.TypeString:
		if len(s.GetStringBytes()) > 0 {
			b.textMessage("system", s.GetStringBytes())
		}
	case s.Type() == fastjson.TypeArray:
		r.c.reset()
		for _, blk := range s.GetArray() {
			if t := str(blk, "text"); len(t) > 0 {
				r.c.addText(t)
			}
		}
		if r.c.nText > 0 {
			b.message("system", &r.c)
		}
	}
	for _, m := range r.top[fMessages].GetArray() {
		if err := r.messagesMessage(b, m); err != nil {
			return err
		}
	}
	return nil
}

func (r *Request) messagesMessage(b *chatBuilder, m *fastjson.Value) error {
	role := b2s(str(m, "role"))
	if role != "user" && role != "assistant" {
		return invalid(CodeInvalidRequest, "messages", "message role must be user or assistant")
	}
	c := m.Get("content")
	if c != nil && c.Type() == fastjson.TypeString {
		if role == "assistant" {
			b.assistantText(c.GetStringBytes())
		} else {
			b.textMessage("user", c.GetStringBytes())
		}
		return nil
	}
	if c == nil || c.Type() != fastjson.TypeArray {
		return invalid(CodeInvalidRequest, "messages", "message content must be a string or an array of content blocks")
	}
	if role == "assistant" {
		return r.assistantBlocks(b, c)
	}
	return r.userBlocks(b, c)
}

func (r *Request) assistantBlocks(b *chatBuilder, c *fastjson.Value) error {
	for _, blk := range c.GetArray() {
		switch typ := b2s(str(blk, "type")); typ {
		case "text":
			b.assistantText(str(blk, "text"))
		case "thinking":
			b.assistantReasoning(str(blk, "thinking"))
		case "redacted_thinking":
			// encrypted by Anthropic: nothing a self-hosted model can read
		case "tool_use":
			r.c.reset()
			if in := blk.Get("input"); in != nil {
				r.c.text = appendJSON(r.c.text[:0], in, 0)
			}
			b.toolCall(str(blk, "id"), str(blk, "name"), r.c.text)
		default:
			return unsupportedBlock(typ)
		}
	}
	return nil
}

func unsupportedBlock(typ string) *Error {
	return invalid(CodeUnsupported, "messages", `content block type "`+typ+`" is not supported (only text, image, tool_use, tool_result, thinking and redacted_thinking)`)
}

// userBlocks writes a user message's tool results first (tool messages must
// follow the assistant's calls), then the rest as one user message.
func (r *Request) userBlocks(b *chatBuilder, c *fastjson.Value) error {
	blocks := c.GetArray()
	for _, blk := range blocks {
		if !isStr(blk.Get("type"), "tool_result") {
			continue
		}
		r.c.reset()
		switch rc := blk.Get("content"); {
		case rc == nil:
		case rc.Type() == fastjson.TypeString:
			r.c.addText(rc.GetStringBytes())
		case rc.Type() == fastjson.TypeArray:
			for _, p := range rc.GetArray() {
				if err := anthropicPart(&r.c, p); err != nil {
					return err
				}
			}
		}
		b.toolResult(str(blk, "tool_use_id"), &r.c)
	}
	r.c.reset()
	for _, blk := range blocks {
		if isStr(blk.Get("type"), "tool_result") {
			continue
		}
		if err := anthropicPart(&r.c, blk); err != nil {
			return err
		}
	}
	if !r.c.empty() {
		b.message("user", &r.c)
	}
	return nil
}

// anthropicPart adds a text, image or text-document block to c.
func anthropicPart(c *content, blk *fastjson.Value) error {
	switch typ := b2s(str(blk, "type")); typ {
	case "text":
		c.addText(str(blk, "text"))
	case "image":
		src := blk.Get("source")
		switch b2s(str(src, "type")) {
		case "base64":
			c.addDataImage(str(src, "media_type"), str(src, "data"))
		case "url":
			c.addImage(str(src, "url"), nil)
		default:
			return invalid(CodeUnsupported, "messages", "image source type must be base64 or url")
		}
	case "document":
		src := blk.Get("source")
		if !isStr(src.Get("type"), "text") {
			return invalid(CodeUnsupported, "messages", "document blocks are supported only with a text source (PDFs need a model that reads them)")
		}
		c.addText(str(src, "data"))
	default:
		return unsupportedBlock(typ)
	}
	return nil
}
