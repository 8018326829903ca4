package dialect

// Responses API requests → Chat Completions. What Ollama does
// (openai/responses.go FromResponsesRequest) with what Codex CLI sends:
// instructions as the first system message, input items merged into chat
// messages (reasoning, assistant text and function_call items into one
// assistant message), function tools flattened back under "function",
// custom tools (Codex's freeform apply_patch) as a function taking one
// string, built-in tools refused.

import (
	"github.com/valyala/fastjson"
)

// customParams is the parameter schema of a custom (freeform) tool served
// as a function.
const customParams = `{"type":"object","properties":{"input":{"type":"string","description":"The tool input, free text."}},"required":["input"]}`

func (r *Request) parseResponses() error {
	t := &r.top
	switch {
	case !isNull(t[fPrevID]) && !isStr(t[fPrevID], ""):
		return errStateful
	case !isNull(t[fConversation]):
		return errConversation
	case t[fBackground] != nil && t[fBackground].Type() == fastjson.TypeTrue:
		return errBackground
	case t[fStore] != nil && t[fStore].Type() == fastjson.TypeTrue:
		return errStore
	case !isNull(t[fPrompt]):
		return invalid(CodeStateful, "prompt", "stored prompt templates are not supported: send instructions and input")
	}
	if err := r.maxTokens(fMaxOutput); err != nil {
		return err
	}
	for _, i := range []int{fTemperature, fTopP} {
		if err := r.checkNumber(i); err != nil {
			return err
		}
	}
	switch in := t[fInput]; {
	case isNull(in):
		return invalid(CodeMissing, "input", "input: field required (a string or an array of items)")
	case in.Type() == fastjson.TypeString:
		r.setText(in.GetStringBytes())
	case in.Type() == fastjson.TypeArray:
		r.lastUserText(in)
	default:
		return invalid(CodeInvalidRequest, "input", "input must be a string or an array of items")
	}
	switch ins := t[fInstructions]; {
	case isNull(ins):
	case ins.Type() == fastjson.TypeString:
		r.facts.System = SystemString
	default:
		return invalid(CodeInvalidRequest, "instructions", "instructions must be a string")
	}
	if err := r.reasoning(); err != nil {
		return err
	}
	if err := r.responsesTools(); err != nil {
		return err
	}
	if err := r.checkToolChoice(); err != nil {
		return err
	}
	if f := t[fText].Get("format"); f != nil && f.Type() == fastjson.TypeObject {
		switch b2s(str(f, "type")) {
		case "text", "json_object", "json_schema":
		default:
			return invalid(CodeUnsupported, "text.format", "text.format.type must be text, json_object or json_schema")
		}
	}
	r.responsesEcho()
	return nil
}

// reasoning reads reasoning.effort (folded, duplicates refused, as the
// top level) into Facts.
func (r *Request) reasoning() error {
	rs := r.top[fReasoning]
	if isNull(rs) {
		return nil
	}
	if rs.Type() != fastjson.TypeObject {
		return invalid(CodeInvalidRequest, "reasoning", "reasoning must be an object")
	}
	e, err := member(rs, "effort", "reasoning.effort")
	if err != nil {
		return err
	}
	if isNull(e) {
		return nil
	}
	if e.Type() != fastjson.TypeString {
		return invalid(CodeInvalidRequest, "reasoning.effort", "reasoning.effort must be a string")
	}
	r.effort = append(r.effort[:0], e.GetStringBytes()...)
	r.facts.Effort = b2s(r.effort)
	switch r.facts.Effort {
	case "none":
		r.facts.Thinking = -1
	case "minimal", "low", "medium", "high", "xhigh":
		r.facts.Thinking = 1
	default:
		return invalid(CodeInvalidRequest, "reasoning.effort", `reasoning.effort must be one of "none", "minimal", "low", "medium", "high", "xhigh"`)
	}
	return nil
}

// member returns the member of object v whose folded name is name: the
// last, refusing two.
func member(v *fastjson.Value, name, param string) (*fastjson.Value, error) {
	o, err := v.Object()
	if err != nil {
		return nil, nil
	}
	var out *fastjson.Value
	n := 0
	o.Visit(func(k []byte, e *fastjson.Value) {
		var buf [32]byte
		if string(foldKey(k, &buf)) == name {
			out = e
			n++
		}
	})
	if n > 1 {
		return nil, invalid(CodeDuplicate, param, "request body has more than one "+param+" member (in any letter case)")
	}
	return out, nil
}

// lastUserText keeps the text of the last user message item.
func (r *Request) lastUserText(in *fastjson.Value) {
	items := in.GetArray()
	for i := len(items) - 1; i >= 0; i-- {
		it := items[i]
		if !isStr(it.Get("role"), "user") {
			continue
		}
		c := it.Get("content")
		if c != nil && c.Type() == fastjson.TypeString {
			r.setText(c.GetStringBytes())
			return
		}
		for _, p := range c.GetArray() {
			if t := str(p, "text"); t != nil {
				r.setText(t)
			}
		}
		return
	}
}

// responsesTools converts the tools at Parse, refusing built-in ones.
func (r *Request) responsesTools() error {
	tv := r.top[fTools]
	if isNull(tv) {
		return nil
	}
	if tv.Type() != fastjson.TypeArray {
		return invalid(CodeInvalidRequest, "tools", "tools must be an array")
	}
	for _, t := range tv.GetArray() {
		typ := b2s(str(t, "type"))
		name := str(t, "name")
		switch typ {
		case "function":
			if len(name) == 0 {
				return invalid(CodeMissing, "tools", "a function tool needs a name")
			}
			r.tools = appendFunctionTool(r.toolSep(), name, str(t, "description"), t.Get("parameters"), t.Get("strict"))
		case "custom":
			if len(name) == 0 {
				return invalid(CodeMissing, "tools", "a custom tool needs a name")
			}
			r.custom = append(append(r.custom, name...), 0)
			r.addCustomTool(name, str(t, "description"))
		default:
			return unsupportedTool(typ)
		}
		r.facts.Tools++
	}
	return nil
}

func unsupportedTool(typ string) *Error {
	if typ == "" {
		typ = "(none)"
	}
	return invalid(CodeUnsupportedTool, "tools", `tool type "`+typ+`" is not supported: GenieHive runs self-hosted models through Chat Completions, which call only function tools the client executes; remove built-in (server-side) tools such as web search`)
}

// toolSep returns r.tools ready for one more tool.
func (r *Request) toolSep() []byte {
	if len(r.tools) > 0 {
		return append(r.tools, ',')
	}
	return r.tools
}

func (r *Request) addCustomTool(name, desc []byte) {
	r.tools = append(r.toolSep(), `{"type":"function","function":{"name":`...)
	r.tools = appendStr(r.tools, name)
	if len(desc) > 0 {
		r.tools = append(r.tools, `,"description":`...)
		r.tools = appendStr(r.tools, desc)
	}
	r.tools = append(r.tools, `,"parameters":`...)
	r.tools = append(r.tools, customParams...)
	r.tools = append(r.tools, "}}"...)
}

// isCustom reports whether name is a custom tool of the request.
func (r *Request) isCustom(name []byte) bool {
	for rest := r.custom; len(rest) > 0; {
		i := 0
		for rest[i] != 0 {
			i++
		}
		if string(rest[:i]) == string(name) {
			return true
		}
		rest = rest[i+1:]
	}
	return false
}

func (r *Request) checkToolChoice() error {
	tc := r.top[fToolChoice]
	if isNull(tc) {
		return nil
	}
	if tc.Type() == fastjson.TypeString {
		switch b2s(tc.GetStringBytes()) {
		case "auto", "none", "required":
			return nil
		}
		return invalid(CodeInvalidRequest, "tool_choice", `tool_choice must be "auto", "none", "required" or an object`)
	}
	switch b2s(str(tc, "type")) {
	case "function", "custom", "allowed_tools":
		return nil
	}
	return invalid(CodeUnsupportedTool, "tool_choice", "tool_choice may name only a function or custom tool")
}

// appendToolChoice writes the Chat tool_choice.
func (r *Request) appendToolChoice(dst []byte) []byte {
	tc := r.top[fToolChoice]
	if isNull(tc) || len(r.tools) == 0 {
		return dst
	}
	if tc.Type() == fastjson.TypeString {
		dst = append(dst, `,"tool_choice":`...)
		return appendStr(dst, tc.GetStringBytes())
	}
	switch b2s(str(tc, "type")) {
	case "allowed_tools":
		if isStr(tc.Get("mode"), "required") {
			return append(dst, `,"tool_choice":"required"`...)
		}
		return append(dst, `,"tool_choice":"auto"`...)
	default: // function, custom
		dst = append(dst, `,"tool_choice":{"type":"function","function":{"name":`...)
		dst = appendStr(dst, str(tc, "name"))
		return append(dst, "}}"...)
	}
}

// responsesParams writes the sampling and format members.
func (r *Request) responsesParams(dst []byte, _ *ChatOptions) []byte {
	t := &r.top
	dst = r.appendToolChoice(dst)
	if p := t[fParallel]; p != nil && p.Type() == fastjson.TypeFalse && len(r.tools) > 0 {
		dst = append(dst, `,"parallel_tool_calls":false`...)
	}
	if r.facts.MaxTokens > 0 {
		dst = append(dst, `,"max_tokens":`...)
		dst = appendInt(dst, r.facts.MaxTokens)
	}
	dst = appendNumber(dst, "temperature", t[fTemperature])
	dst = appendNumber(dst, "top_p", t[fTopP])
	if f := t[fText].Get("format"); f != nil {
		switch b2s(str(f, "type")) {
		case "json_object":
			dst = append(dst, `,"response_format":{"type":"json_object"}`...)
		case "json_schema":
			dst = append(dst, `,"response_format":{"type":"json_schema","json_schema":{"name":`...)
			name := str(f, "name")
			if len(name) == 0 {
				name = []byte("response")
			}
			dst = appendStr(dst, name)
			if d := str(f, "description"); d != nil {
				dst = append(dst, `,"description":`...)
				dst = appendStr(dst, d)
			}
			if s := f.Get("schema"); s != nil {
				dst = append(dst, `,"schema":`...)
				dst = appendJSON(dst, s, 0)
			}
			if s := f.Get("strict"); s != nil && (s.Type() == fastjson.TypeTrue || s.Type() == fastjson.TypeFalse) {
				dst = append(dst, `,"strict":`...)
				dst = s.MarshalTo(dst)
			}
			dst = append(dst, "}}"...)
		}
	}
	return dst
}

// responsesMessages writes instructions and input as chat messages.
func (r *Request) responsesMessages(b *chatBuilder) error {
	if ins := strv(r.top[fInstructions]); len(ins) > 0 {
		b.textMessage("system", ins)
	}
	in := r.top[fInput]
	if in.Type() == fastjson.TypeString {
		b.textMessage("user", in.GetStringBytes())
		return nil
	}
	for _, it := range in.GetArray() {
		if err := r.responsesItem(b, it); err != nil {
			return err
		}
	}
	return nil
}

func (r *Request) responsesItem(b *chatBuilder, it *fastjson.Value) error {
	typ := b2s(str(it, "type"))
	if typ == "" && it.Get("role") != nil {
		typ = "message"
	}
	switch typ {
	case "message":
		return r.responsesMessage(b, it)
	case "function_call":
		b.toolCall(str(it, "call_id"), str(it, "name"), str(it, "arguments"))
	case "custom_tool_call":
		r.c.reset()
		r.c.text = append(r.c.text[:0], `{"input":`...)
		r.c.text = appendStr(r.c.text, str(it, "input"))
		r.c.text = append(r.c.text, '}')
		b.toolCall(str(it, "call_id"), str(it, "name"), r.c.text)
	case "function_call_output", "custom_tool_call_output":
		r.c.reset()
		out := it.Get("output")
		switch {
		case out != nil && out.Type() == fastjson.TypeString:
			r.c.addText(out.GetStringBytes())
		case out != nil && out.Type() == fastjson.TypeArray:
			if err := responsesParts(&r.c, out); err != nil {
				return err
			}
		}
		b.toolResult(str(it, "call_id"), &r.c)
	case "reasoning":
		b.assistantReasoning(reasoningText(&r.c, it))
	case "item_reference":
		return invalid(CodeStateful, "input", "item_reference needs stored items: stateful Responses are not supported; send the items themselves")
	default:
		if typ == "" {
			return invalid(CodeMissing, "input", "an input item needs a type")
		}
		return invalid(CodeUnsupported, "input", `input item type "`+typ+`" is not supported (only message, function_call, function_call_output, custom_tool_call, custom_tool_call_output and reasoning items)`)
	}
	return nil
}

// reasoningText joins a reasoning item's text: its reasoning_text content
// (raw reasoning, as vLLM and Ollama's newer releases write it), else its
// summary texts.
func reasoningText(c *content, it *fastjson.Value) []byte {
	c.reset()
	for _, p := range it.GetArray("content") {
		if t := str(p, "text"); len(t) > 0 {
			c.addText(t)
		}
	}
	if c.nText == 0 {
		for _, p := range it.GetArray("summary") {
			if t := str(p, "text"); len(t) > 0 {
				c.addText(t)
			}
		}
	}
	return c.text
}

func (r *Request) responsesMessage(b *chatBuilder, it *fastjson.Value) error {
	role := b2s(str(it, "role"))
	switch role {
	case "user", "assistant", "system":
	case "developer":
		role = "system" // chat templates know system, not developer
	default:
		return invalid(CodeInvalidRequest, "input", `message role must be user, assistant, system or developer`)
	}
	r.c.reset()
	c := it.Get("content")
	switch {
	case c != nil && c.Type() == fastjson.TypeString:
		r.c.addText(c.GetStringBytes())
	case c != nil && c.Type() == fastjson.TypeArray:
		if err := responsesParts(&r.c, c); err != nil {
			return err
		}
	}
	if role == "assistant" {
		if r.c.images > 0 {
			return invalid(CodeUnsupported, "input", "images in assistant messages are not supported")
		}
		if r.c.nText > 0 {
			b.assistantText(r.c.text)
		}
		return nil
	}
	b.message(role, &r.c)
	return nil
}

// responsesParts reads content parts (input_text, output_text, refusal,
// input_image) into c.
func responsesParts(c *content, parts *fastjson.Value) error {
	for _, p := range parts.GetArray() {
		switch typ := b2s(str(p, "type")); typ {
		case "input_text", "output_text", "text", "summary_text", "reasoning_text":
			c.addText(str(p, "text"))
		case "refusal":
			c.addText(str(p, "refusal"))
		case "input_image":
			url := str(p, "image_url")
			if len(url) == 0 {
				return invalid(CodeUnsupported, "input", "input_image needs image_url (a URL or a data: URL); file_id needs stored files, which GenieHive does not keep")
			}
			c.addImage(url, str(p, "detail"))
		default:
			return invalid(CodeUnsupported, "input", `content part type "`+typ+`" is not supported (only input_text, output_text, refusal and input_image)`)
		}
	}
	return nil
}

// responsesEcho renders what every Responses object repeats from the
// request (the members ToResponse echoes in Ollama's openai/responses.go).
func (r *Request) responsesEcho() {
	t := &r.top
	e := append(r.echo[:0], `,"instructions":`...)
	if ins := t[fInstructions]; ins != nil && ins.Type() == fastjson.TypeString {
		e = appendStr(e, ins.GetStringBytes())
	} else {
		e = append(e, "null"...)
	}
	e = append(e, `,"max_output_tokens":`...)
	if r.facts.MaxTokens > 0 {
		e = appendInt(e, r.facts.MaxTokens)
	} else {
		e = append(e, "null"...)
	}
	e = append(e, `,"parallel_tool_calls":`...)
	if p := t[fParallel]; p != nil && p.Type() == fastjson.TypeFalse {
		e = append(e, "false"...)
	} else {
		e = append(e, "true"...)
	}
	e = append(e, `,"previous_response_id":null,"reasoning":`...)
	if rs := t[fReasoning]; rs != nil && rs.Type() == fastjson.TypeObject {
		e = append(e, `{"effort":`...)
		e = appendStringOrNull(e, r.facts.Effort)
		e = append(e, `,"summary":`...)
		e = appendStringOrNull(e, b2s(str(rs, "summary")))
		e = append(e, '}')
	} else {
		e = append(e, "null"...)
	}
	e = append(e, `,"store":false,"temperature":`...)
	e = numberOr(e, t[fTemperature], "1")
	e = append(e, `,"text":{"format":`...)
	if f := t[fText].Get("format"); f != nil && f.Type() == fastjson.TypeObject {
		e = appendJSON(e, f, 0)
	} else {
		e = append(e, `{"type":"text"}`...)
	}
	e = append(e, `},"tool_choice":`...)
	if tc := t[fToolChoice]; !isNull(tc) {
		e = appendJSON(e, tc, 0)
	} else {
		e = append(e, `"auto"`...)
	}
	e = append(e, `,"tools":`...)
	if tv := t[fTools]; tv != nil && tv.Type() == fastjson.TypeArray {
		e = appendJSON(e, tv, 0)
	} else {
		e = append(e, "[]"...)
	}
	e = append(e, `,"top_p":`...)
	e = numberOr(e, t[fTopP], "1")
	e = append(e, `,"truncation":"disabled","metadata":`...)
	if m := t[fMetadata]; m != nil && m.Type() == fastjson.TypeObject {
		e = appendJSON(e, m, 0)
	} else {
		e = append(e, "{}"...)
	}
	r.echo = e
}

func numberOr(dst []byte, v *fastjson.Value, def string) []byte {
	if v != nil && v.Type() == fastjson.TypeNumber {
		return v.MarshalTo(dst)
	}
	return append(dst, def...)
}
