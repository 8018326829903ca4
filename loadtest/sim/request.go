package sim

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"
)

// thinkMode is what the server does with a thinking model's reasoning for
// one request.
type thinkMode uint8

const (
	thinkOff      thinkMode = iota // no reasoning (model cannot, or it was really turned off)
	thinkSeparate                  // reasoning returned in the server's reasoning field
	thinkInline                    // reasoning left in the content between <think> tags (not parsed)
	thinkHidden                    // reasoning generated (tokens and time spent) but dropped from the answer
)

// genReq is one generation request, read and checked.
type genReq struct {
	api          api
	native       bool // Ollama /api/chat or /api/generate
	generate     bool // prompt in, text out (/api/generate, /v1/completions)
	model        *modelEntry
	name         string // the model as the client named it (answers echo it)
	stream       bool
	includeUsage bool
	maxTokens    int
	think        thinkMode
	hasTools     bool
	toolName     string // the first function tool, when the model is to call it
	toolArgs     string
	toolResult   bool // the last message is a tool result: answer in text
	promptTokens int
	keepAlive    *time.Duration // Ollama: the request's keep_alive
	noPrompt     bool           // Ollama native: no messages / empty prompt (load or unload)
	echo         *respEcho      // /v1/responses: what the answer echoes
}

// respEcho is what a Responses answer repeats from its request.
type respEcho struct {
	instructions, effort, summary string
	maxOutput                     *int
	temperature, topP             *float64
	tools                         []byte
	textFormat                    []byte
}

// readBody reads a request body; on failure it has answered.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, a api) ([]byte, bool) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		s.fail(w, a, apiErr{status: 400, msg: "could not read the request body", bind: true})
		return nil, false
	}
	s.last.Store(&Request{Method: r.Method, Path: r.URL.Path, Header: r.Header, Body: body})
	return body, true
}

// badJSON answers a body that does not parse, with the message the real
// server's decoder gives (Go's encoding/json behind gin for Ollama).
func (s *Server) badJSON(w http.ResponseWriter, a api, body []byte) {
	msg, status := "We could not parse the JSON body of your request.", 400
	switch s.cfg.Flavor {
	case FlavorOllama:
		var v map[string]any
		if err := json.Unmarshal(body, &v); err != nil {
			msg = err.Error()
		}
		if len(body) == 0 {
			msg = "EOF" // gin's ShouldBindJSON on an empty body
		}
	case FlavorLlamaCPP:
		// json::parse throws a parse_error (a std::exception, not an
		// invalid_argument): server.cpp ex_wrapper answers 500 server_error.
		msg, status = "[json.exception.parse_error.101] parse error: syntax error while parsing value", 500
	case FlavorVLLM:
		msg = "JSON decode error" // RequestValidationError handler: 400 BadRequestError
	}
	s.fail(w, a, apiErr{status: status, msg: msg, bind: true, code: "invalid_json"})
}

// readGen reads and parses a generation request; on failure it has
// answered.
func (s *Server) readGen(w http.ResponseWriter, r *http.Request, a api, native, generate bool, p *fastjson.Parser) (genReq, *fastjson.Value, bool) {
	body, ok := s.readBody(w, r, a)
	if !ok {
		return genReq{}, nil, false
	}
	return s.parseGen(w, a, native, generate, body, p)
}

// runGen holds a checked request in flight, makes its model resident and
// answers it. loaded (may be nil) runs once the model is resident and may
// settle the request itself (returning false).
func (s *Server) runGen(w http.ResponseWriter, r *http.Request, b *Behavior, g *genReq, mk writerFactory, loaded func() bool) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	rel, load, ok := s.acquire(r, g)
	if !ok {
		return
	}
	defer rel()
	if loaded != nil && !loaded() {
		return
	}
	s.serveGen(w, r, b, g, load, mk)
}

// plainThinking: servers whose switches for a dialect are not modelled
// (vLLM's and llama.cpp's /v1/responses and /v1/messages): a thinking model
// thinks unless the prompt says /no_think.
func plainThinking(g *genReq, v *fastjson.Value) thinkMode {
	if g.model.Thinking && !lastUserSaysNoThink(v, g.api) {
		return thinkSeparate
	}
	return thinkOff
}

// parseGen reads a generation request of dialect a; on failure it has
// answered. v is valid until p is reused.
func (s *Server) parseGen(w http.ResponseWriter, a api, native, generate bool, body []byte, p *fastjson.Parser) (g genReq, v *fastjson.Value, ok bool) {
	g.api, g.native, g.generate = a, native, generate
	v, err := p.ParseBytes(body)
	if err != nil || v.Type() != fastjson.TypeObject {
		s.badJSON(w, a, body)
		return g, nil, false
	}
	g.name = string(v.GetStringBytes("model"))
	g.stream = v.GetBool("stream")
	if native {
		// api/types.go: Stream *bool, nil = stream (the NDJSON default).
		if sv := v.Get("stream"); sv == nil || sv.Type() == fastjson.TypeNull {
			g.stream = true
		}
		g.maxTokens = v.GetInt("options", "num_predict")
	}
	g.includeUsage = v.GetBool("stream_options", "include_usage")
	switch a {
	case apiChat:
		g.maxTokens = v.GetInt("max_tokens")
		if s.cfg.Flavor != FlavorOllama { // Ollama reads max_tokens only (openai/openai.go)
			if mt := v.GetInt("max_completion_tokens"); mt > 0 {
				g.maxTokens = mt
			}
		}
	case apiCompletions:
		g.maxTokens = v.GetInt("max_tokens")
	case apiResponses:
		g.maxTokens = v.GetInt("max_output_tokens")
	case apiMessages:
		g.maxTokens = v.GetInt("max_tokens")
	}
	g.promptTokens = promptTokens(v, a, generate)
	readTools(&g, v, a)
	return g, v, true
}

// promptTokens estimates the prompt's tokens: a quarter of its characters.
func promptTokens(v *fastjson.Value, a api, generate bool) int {
	chars := 0
	text := func(c *fastjson.Value) {
		if c == nil {
			return
		}
		switch c.Type() {
		case fastjson.TypeString:
			chars += len(c.GetStringBytes())
		case fastjson.TypeArray:
			for _, part := range c.GetArray() {
				chars += len(part.GetStringBytes("text"))
			}
		}
	}
	switch {
	case generate:
		text(v.Get("prompt"))
		text(v.Get("system"))
	case a == apiResponses:
		text(v.Get("instructions"))
		in := v.Get("input")
		if in != nil && in.Type() == fastjson.TypeArray {
			for _, it := range in.GetArray() {
				text(it.Get("content"))
				text(it.Get("output"))
			}
		} else {
			text(in)
		}
	default:
		text(v.Get("system"))
		for _, m := range v.GetArray("messages") {
			text(m.Get("content"))
		}
	}
	return chars/4 + 1
}

// readTools notes the request's function tools and whether the
// conversation ends with a tool result.
func readTools(g *genReq, v *fastjson.Value, a api) {
	tools := v.GetArray("tools")
	g.hasTools = len(tools) > 0
	if g.hasTools {
		t := tools[0]
		params := t.Get("function", "parameters")
		name := t.GetStringBytes("function", "name")
		if name == nil { // Responses and Anthropic tools are flat
			name = t.GetStringBytes("name")
			params = t.Get("parameters")
			if params == nil {
				params = t.Get("input_schema")
			}
		}
		g.toolName = string(name)
		g.toolArgs = toolArguments(params)
	}
	switch a {
	case apiResponses:
		items := v.GetArray("input")
		if n := len(items); n > 0 {
			g.toolResult = string(items[n-1].GetStringBytes("type")) == "function_call_output"
		}
	default:
		msgs := v.GetArray("messages")
		if n := len(msgs); n > 0 {
			last := msgs[n-1]
			g.toolResult = string(last.GetStringBytes("role")) == "tool"
			for _, b := range last.GetArray("content") {
				if string(b.GetStringBytes("type")) == "tool_result" {
					g.toolResult = true
				}
			}
		}
	}
}

// toolArguments fills the schema's required parameters with placeholder
// values of their types, as a JSON object.
func toolArguments(schema *fastjson.Value) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, req := range schema.GetArray("required") {
		name := string(req.GetStringBytes())
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(name))
		b.WriteByte(':')
		switch string(schema.GetStringBytes("properties", name, "type")) {
		case "integer", "number":
			b.WriteString("1")
		case "boolean":
			b.WriteString("true")
		case "array":
			b.WriteString("[]")
		case "object":
			b.WriteString("{}")
		default:
			b.WriteString(`"sim"`)
		}
	}
	b.WriteByte('}')
	return b.String()
}

// lastUserSaysNoThink reports Qwen3's "/no_think" soft switch in the last
// user message: the model then answers with an empty <think></think>, on
// every server (a model behaviour, not a server one).
func lastUserSaysNoThink(v *fastjson.Value, a api) bool {
	var c *fastjson.Value
	switch a {
	case apiResponses:
		in := v.Get("input")
		if in != nil && in.Type() == fastjson.TypeArray {
			items := in.GetArray()
			if len(items) > 0 {
				c = items[len(items)-1].Get("content")
			}
		} else {
			c = in
		}
	default:
		msgs := v.GetArray("messages")
		seenUser := false
		for i := len(msgs) - 1; i >= 0; i-- {
			switch string(msgs[i].GetStringBytes("role")) {
			case "user":
				if seenUser {
					continue
				}
				seenUser = true
			case "system":
			default:
				continue
			}
			if containsNoThink(msgs[i].Get("content")) {
				return true
			}
		}
		if len(msgs) == 0 {
			c = v.Get("prompt")
		}
	}
	return containsNoThink(c)
}

func containsNoThink(c *fastjson.Value) bool {
	if c == nil {
		return false
	}
	switch c.Type() {
	case fastjson.TypeString:
		return strings.Contains(string(c.GetStringBytes()), "/no_think")
	case fastjson.TypeArray:
		for _, part := range c.GetArray() {
			if strings.Contains(string(part.GetStringBytes("text")), "/no_think") {
				return true
			}
		}
	}
	return false
}

// openAIThinking decides thinking for vLLM, llama.cpp and generic
// OpenAI-compatible servers on /v1/chat/completions; none of them reads a
// top-level "think".
func (s *Server) openAIThinking(v *fastjson.Value, e *modelEntry) thinkMode {
	if !e.Thinking {
		return thinkOff
	}
	if e.IgnoresSwitch {
		return thinkSeparate
	}
	// chat_template_kwargs reach the model's Jinja template (Qwen3 reads
	// enable_thinking): vLLM protocol.py ChatCompletionRequest,
	// llama.cpp tools/server README "chat_template_kwargs".
	if t := v.Get("chat_template_kwargs", "enable_thinking"); t != nil && t.Type() == fastjson.TypeFalse {
		return thinkOff
	}
	switch s.cfg.Flavor {
	case FlavorLlamaCPP:
		// README: reasoning_effort "none" disables thinking;
		// reasoning_format "none" leaves thoughts unparsed in content.
		if string(v.GetStringBytes("reasoning_effort")) == "none" {
			return thinkOff
		}
		if string(v.GetStringBytes("reasoning_format")) == "none" {
			return thinkInline
		}
	case FlavorVLLM:
		// protocol.py: include_reasoning=False drops the reasoning from the
		// answer; the model still thinks.
		if t := v.Get("include_reasoning"); t != nil && t.Type() == fastjson.TypeFalse {
			return thinkHidden
		}
	case FlavorOpenAI:
		if string(v.GetStringBytes("reasoning_effort")) == "none" {
			return thinkOff
		}
	}
	return thinkSeparate
}
