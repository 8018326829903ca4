package dialect

import (
	"github.com/valyala/fastjson"
)

// ThinkSwitch says how a Chat Completions body turns thinking off; servers
// differ (docs/UPSTREAMS.md "Thinking: which switch each server honours").
type ThinkSwitch uint8

// Thinking-off switches, combinable.
const (
	// EffortNone writes reasoning_effort "none": Ollama's OpenAI layer
	// (v0.12.4+) and llama.cpp.
	EffortNone ThinkSwitch = 1 << iota
	// TemplateKwargs writes chat_template_kwargs.enable_thinking false:
	// vLLM and llama.cpp (Qwen3-style templates).
	TemplateKwargs
)

// ChatOptions adapt the Chat Completions body to the upstream that will
// read it. The zero value suits a generic OpenAI-compatible server.
type ChatOptions struct {
	// Model replaces the client's model name ("" keeps it).
	Model string
	// ReasoningKey is the assistant-message member that carries earlier
	// reasoning back to the upstream: "reasoning_content" (llama.cpp,
	// vLLM; the default), "reasoning" (Ollama's OpenAI layer), or "-" to
	// drop it.
	ReasoningKey string
	// ThinkingOff is how thinking is turned off when the client or
	// DisableThinking asks; 0 means EffortNone|TemplateKwargs.
	ThinkingOff ThinkSwitch
	// DisableThinking turns thinking off whatever the client asked (a
	// policy decision).
	DisableThinking bool
	// ForwardEffort passes a Responses reasoning.effort other than "none"
	// as reasoning_effort (low, medium, high; minimal as low, xhigh as
	// high). Off by default: Ollama refuses effort levels for every model
	// but gpt-oss ("think value ... is not supported for this model").
	ForwardEffort bool
	// TopK passes Messages top_k (vLLM and llama.cpp read it; Ollama's
	// OpenAI layer ignores it; OpenAI refuses it).
	TopK bool
}

func (o *ChatOptions) reasoningKey() string {
	switch o.ReasoningKey {
	case "":
		return "reasoning_content"
	case "-":
		return ""
	}
	return o.ReasoningKey
}

func (o *ChatOptions) offSwitch() ThinkSwitch {
	if o.ThinkingOff == 0 {
		return EffortNone | TemplateKwargs
	}
	return o.ThinkingOff
}

// content collects one message's content: its text (joined) and, in case
// an image turns up, the same as an array of parts.
type content struct {
	text   []byte // unescaped text, parts joined with textSep
	parts  []byte // JSON parts, comma-separated
	imgs   []byte // the image parts alone, comma-separated
	nText  int
	images int
}

// textSep joins the text blocks of one message when it is sent as a string.
const textSep = "\n\n"

func (c *content) reset() {
	c.text, c.parts, c.imgs, c.nText, c.images = c.text[:0], c.parts[:0], c.imgs[:0], 0, 0
}

func (c *content) empty() bool { return c.nText == 0 && c.images == 0 }

func (c *content) addText(t []byte) {
	if c.nText > 0 {
		c.text = append(c.text, textSep...)
	}
	c.text = append(c.text, t...)
	if len(c.parts) > 0 {
		c.parts = append(c.parts, ',')
	}
	c.parts = append(c.parts, `{"type":"text","text":`...)
	c.parts = appendStr(c.parts, t)
	c.parts = append(c.parts, '}')
	c.nText++
}

// addImage adds an image_url part; url is a URL or a data: URL.
func (c *content) addImage(url, detail []byte) {
	if len(c.parts) > 0 {
		c.parts = append(c.parts, ',')
	}
	n := len(c.parts)
	c.parts = append(c.parts, `{"type":"image_url","image_url":{"url":`...)
	c.parts = appendStr(c.parts, url)
	if len(detail) > 0 {
		c.parts = append(c.parts, `,"detail":`...)
		c.parts = appendStr(c.parts, detail)
	}
	c.parts = append(c.parts, "}}"...)
	c.endImage(n)
}

// endImage records the image part at c.parts[n:].
func (c *content) endImage(n int) {
	if c.images > 0 {
		c.imgs = append(c.imgs, ',')
	}
	c.imgs = append(c.imgs, c.parts[n:]...)
	c.images++
}

// addDataImage adds a base64 image as a data: URL.
func (c *content) addDataImage(mediaType, data []byte) {
	if len(c.parts) > 0 {
		c.parts = append(c.parts, ',')
	}
	n := len(c.parts)
	c.parts = append(c.parts, `{"type":"image_url","image_url":{"url":"data:`...)
	c.parts = appendStrBody(c.parts, mediaType)
	c.parts = append(c.parts, ";base64,"...)
	c.parts = appendStrBody(c.parts, data)
	c.parts = append(c.parts, `"}}`...)
	c.endImage(n)
}

// appendValue appends the content as a JSON string, or an array of parts
// when it has images.
func (c *content) appendValue(dst []byte) []byte {
	if c.images > 0 {
		dst = append(dst, '[')
		dst = append(dst, c.parts...)
		return append(dst, ']')
	}
	return appendStr(dst, c.text)
}

// chatBuilder writes a Chat Completions messages array, merging what the
// dialects spread over several items (assistant text, reasoning and tool
// calls) into one assistant message, and moving images out of tool results
// into a user message after them (Chat tool messages carry text only).
type chatBuilder struct {
	dst []byte
	o   *ChatOptions
	n   int // messages written
	cur content
	as  struct {
		open      bool
		text      content
		reasoning []byte
		calls     []byte // tool call objects, comma-separated
		nCalls    int
	}
	toolImages content // images from tool results, for a user message after them
}

func (b *chatBuilder) reset(dst []byte, o *ChatOptions) {
	b.dst, b.o, b.n = dst, o, 0
	b.cur.reset()
	b.as.open, b.as.reasoning, b.as.calls, b.as.nCalls = false, b.as.reasoning[:0], b.as.calls[:0], 0
	b.as.text.reset()
	b.toolImages.reset()
}

func (b *chatBuilder) begin() {
	if b.n > 0 {
		b.dst = append(b.dst, ',')
	}
	b.n++
}

// message writes {"role":role,"content":c}.
func (b *chatBuilder) message(role string, c *content) {
	b.flushAssistant()
	b.flushToolImages()
	b.begin()
	b.dst = append(b.dst, `{"role":"`...)
	b.dst = append(b.dst, role...)
	b.dst = append(b.dst, `","content":`...)
	b.dst = c.appendValue(b.dst)
	b.dst = append(b.dst, '}')
}

// textMessage writes a message whose content is one text.
func (b *chatBuilder) textMessage(role string, text []byte) {
	b.cur.reset()
	b.cur.addText(text)
	b.message(role, &b.cur)
}

// assistantText adds text to the pending assistant message; text after
// tool calls starts a new assistant message.
func (b *chatBuilder) assistantText(t []byte) {
	if b.as.nCalls > 0 {
		b.flushAssistant()
	}
	b.flushToolImages()
	b.as.open = true
	b.as.text.addText(t)
}

// assistantReasoning sets the reasoning of the next assistant message.
func (b *chatBuilder) assistantReasoning(t []byte) {
	if b.as.nCalls > 0 || !b.as.text.empty() {
		b.flushAssistant()
	}
	b.flushToolImages()
	b.as.open = true
	if len(b.as.reasoning) > 0 && len(t) > 0 {
		b.as.reasoning = append(b.as.reasoning, textSep...)
	}
	b.as.reasoning = append(b.as.reasoning, t...)
}

// toolCall adds a call to the pending assistant message; args is the JSON
// arguments string's text.
func (b *chatBuilder) toolCall(id, name, args []byte) {
	b.flushToolImages()
	b.as.open = true
	if b.as.nCalls > 0 {
		b.as.calls = append(b.as.calls, ',')
	}
	b.as.nCalls++
	b.as.calls = append(b.as.calls, `{"id":`...)
	b.as.calls = appendStr(b.as.calls, id)
	b.as.calls = append(b.as.calls, `,"type":"function","function":{"name":`...)
	b.as.calls = appendStr(b.as.calls, name)
	b.as.calls = append(b.as.calls, `,"arguments":`...)
	if len(args) == 0 {
		args = emptyArgs
	}
	b.as.calls = appendStr(b.as.calls, args)
	b.as.calls = append(b.as.calls, "}}"...)
}

var emptyArgs = []byte("{}")

// toolResult writes a tool message; images in the result go to a user
// message written after the run of tool messages.
func (b *chatBuilder) toolResult(id []byte, c *content) {
	b.flushAssistant()
	b.begin()
	b.dst = append(b.dst, `{"role":"tool","tool_call_id":`...)
	b.dst = appendStr(b.dst, id)
	b.dst = append(b.dst, `,"content":`...)
	b.dst = appendStr(b.dst, c.text)
	b.dst = append(b.dst, '}')
	if c.images > 0 {
		if len(b.toolImages.parts) > 0 {
			b.toolImages.parts = append(b.toolImages.parts, ',')
		}
		b.toolImages.parts = append(b.toolImages.parts, c.imgs...)
		b.toolImages.images += c.images
	}
}

func (b *chatBuilder) flushToolImages() {
	if b.toolImages.images == 0 {
		return
	}
	b.begin()
	b.dst = append(b.dst, `{"role":"user","content":`...)
	b.dst = b.toolImages.appendValue(b.dst)
	b.dst = append(b.dst, '}')
	b.toolImages.reset()
}

// flushAssistant writes the pending assistant message. One with nothing
// but reasoning is dropped: chat templates render earlier turns' reasoning
// only beside an answer or a call.
func (b *chatBuilder) flushAssistant() {
	a := &b.as
	if !a.open {
		return
	}
	a.open = false
	if a.text.empty() && a.nCalls == 0 {
		a.reasoning = a.reasoning[:0]
		return
	}
	b.begin()
	b.dst = append(b.dst, `{"role":"assistant","content":`...)
	b.dst = a.text.appendValue(b.dst)
	if k := b.o.reasoningKey(); k != "" && len(a.reasoning) > 0 {
		b.dst = append(b.dst, ',', '"')
		b.dst = append(b.dst, k...)
		b.dst = append(b.dst, '"', ':')
		b.dst = appendStr(b.dst, a.reasoning)
	}
	if a.nCalls > 0 {
		b.dst = append(b.dst, `,"tool_calls":[`...)
		b.dst = append(b.dst, a.calls...)
		b.dst = append(b.dst, ']')
	}
	b.dst = append(b.dst, '}')
	a.text.reset()
	a.reasoning, a.calls, a.nCalls = a.reasoning[:0], a.calls[:0], 0
}

// finish flushes what is pending.
func (b *chatBuilder) finish() {
	b.flushAssistant()
	b.flushToolImages()
}

// functionTool appends a Chat function tool.
func appendFunctionTool(dst, name, desc []byte, params *fastjson.Value, strict *fastjson.Value) []byte {
	dst = append(dst, `{"type":"function","function":{"name":`...)
	dst = appendStr(dst, name)
	if len(desc) > 0 {
		dst = append(dst, `,"description":`...)
		dst = appendStr(dst, desc)
	}
	dst = append(dst, `,"parameters":`...)
	if params == nil || params.Type() != fastjson.TypeObject {
		dst = append(dst, `{"type":"object","properties":{}}`...)
	} else {
		dst = appendJSON(dst, params, 0)
	}
	if strict != nil && (strict.Type() == fastjson.TypeTrue || strict.Type() == fastjson.TypeFalse) {
		dst = append(dst, `,"strict":`...)
		dst = strict.MarshalTo(dst)
	}
	return append(dst, "}}"...)
}

// appendThinking appends the thinking switches of a chat body (a leading
// comma included) for the facts and options.
func appendThinking(dst []byte, f *Facts, o *ChatOptions) []byte {
	if f.Thinking < 0 || o.DisableThinking {
		sw := o.offSwitch()
		if sw&EffortNone != 0 {
			dst = append(dst, `,"reasoning_effort":"none"`...)
		}
		if sw&TemplateKwargs != 0 {
			dst = append(dst, `,"chat_template_kwargs":{"enable_thinking":false}`...)
		}
		return dst
	}
	if o.ForwardEffort && f.API == APIResponses && f.Effort != "" {
		e := f.Effort
		switch e {
		case "minimal":
			e = "low"
		case "xhigh":
			e = "high"
		}
		if e == "low" || e == "medium" || e == "high" {
			dst = append(dst, `,"reasoning_effort":"`...)
			dst = append(dst, e...)
			dst = append(dst, '"')
		}
	}
	return dst
}
