package sim

// The Ollama simulator. Every behaviour follows Ollama's own source at the
// configured version (github.com/ollama/ollama, tag v0.17.4 unless noted:
// server/routes.go ChatHandler, GenerateHandler, EmbedHandler,
// EmbeddingsHandler, ShowHandler, ListHandler, PsHandler; server/images.go
// Capabilities/CheckCapabilities; middleware/openai.go, openai/openai.go;
// server/sched.go for loading) and is checked against the real 0.17.4
// recordings in fixture_test.go.

import (
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/geniehive/geniehive/internal/jsonw"
	"github.com/valyala/fastjson"
)

// ollamaDisplay is the name Ollama shows: a missing tag is "latest"
// (types/model/name.go DisplayShortest).
func ollamaDisplay(name string) string {
	base := name[strings.LastIndexByte(name, '/')+1:]
	if !strings.Contains(base, ":") {
		return name + ":latest"
	}
	return name
}

// ollamaFullName is model.ParseName(name).String(): host/namespace/model:tag
// with registry.ollama.ai and library filled in.
func ollamaFullName(name string) string {
	d := ollamaDisplay(name)
	switch strings.Count(d, "/") {
	case 0:
		return "registry.ollama.ai/library/" + d
	case 1:
		return "registry.ollama.ai/" + d
	}
	return d
}

// thinkVal is api.ThinkValue: unset, a bool, or a level.
type thinkVal struct {
	set   bool
	b     bool
	level string // "high", "medium", "low"
}

// on is ThinkValue.Bool: true, or any level.
func (t thinkVal) on() bool { return t.set && (t.b || t.level != "") }

// ollamaThinkNative reads "think" as api.ChatRequest / GenerateRequest
// unmarshal it; msg is the binding error.
func (s *Server) ollamaThinkNative(v *fastjson.Value, generate bool) (tv thinkVal, msg string) {
	t := v.Get("think")
	if !s.feat.thinkField || t == nil || t.Type() == fastjson.TypeNull {
		return tv, "" // before 0.9.0 the field did not exist
	}
	switch t.Type() {
	case fastjson.TypeTrue, fastjson.TypeFalse:
		return thinkVal{set: true, b: t.Type() == fastjson.TypeTrue}, ""
	case fastjson.TypeString:
		l := string(t.GetStringBytes())
		if !s.feat.thinkLevels { // Think was *bool until fa7776fd2 (v0.11.1)
			return tv, "json: cannot unmarshal string into Go struct field " + reqType(generate) + ".think of type bool"
		}
		if l != "high" && l != "medium" && l != "low" {
			return tv, `invalid think value: "` + l + `" (must be "high", "medium", "low", true, or false)`
		}
		return thinkVal{set: true, level: l}, ""
	}
	return tv, "invalid think value"
}

func reqType(generate bool) string {
	if generate {
		return "GenerateRequest"
	}
	return "ChatRequest"
}

// ollamaThinkOpenAI is openai.FromChatRequest's reading of
// reasoning.effort (a "reasoning" object wins, even without an effort) and
// reasoning_effort. A top-level "think" is not a field of the request: it
// is ignored (recordings *.think-false.txt).
func (s *Server) ollamaThinkOpenAI(v *fastjson.Value) (tv thinkVal, msg string) {
	effort := ""
	if ro := v.Get("reasoning"); ro != nil && ro.Type() == fastjson.TypeObject && s.feat.oaiReasoning {
		effort = string(ro.GetStringBytes("effort"))
	} else if s.feat.oaiEffort {
		effort = string(v.GetStringBytes("reasoning_effort"))
	}
	if effort == "" {
		return tv, ""
	}
	if !s.feat.thinkDefaultOn {
		// Before 90d429f5a (v0.12.4) any effort was passed on as a think
		// level and refused for models without harmony, "none" included.
		return thinkVal{set: true, level: effort}, ""
	}
	switch effort {
	case "none":
		return thinkVal{set: true}, ""
	case "high", "medium", "low":
		return thinkVal{set: true, level: effort}, ""
	}
	return tv, "invalid reasoning value: '" + effort + `' (must be "high", "medium", "low", or "none")`
}

// keepAlive reads api.Duration: seconds as a number or a Go duration
// string; negative means forever (math.MaxInt64).
func keepAlive(v *fastjson.Value) (*time.Duration, string) {
	k := v.Get("keep_alive")
	if k == nil || k.Type() == fastjson.TypeNull {
		return nil, ""
	}
	var d time.Duration
	switch k.Type() {
	case fastjson.TypeNumber:
		f := k.GetFloat64()
		d = time.Duration(f * float64(time.Second))
		if f < 0 {
			d = math.MaxInt64
		}
	case fastjson.TypeString:
		var err error
		d, err = time.ParseDuration(string(k.GetStringBytes()))
		if err != nil {
			return nil, err.Error()
		}
		if d < 0 {
			d = math.MaxInt64
		}
	default:
		return nil, "Unsupported type: '" + k.Type().String() + "'"
	}
	return &d, ""
}

// ollamaChat answers POST /api/chat.
func (s *Server) ollamaChat(w http.ResponseWriter, r *http.Request, b *Behavior) {
	s.ollamaNative(w, r, b, false)
}

// ollamaGenerate answers POST /api/generate.
func (s *Server) ollamaGenerate(w http.ResponseWriter, r *http.Request, b *Behavior) {
	s.ollamaNative(w, r, b, true)
}

func (s *Server) ollamaNative(w http.ResponseWriter, r *http.Request, b *Behavior, generate bool) {
	p := parsers.Get()
	defer parsers.Put(p)
	g, v, ok := s.readGen(w, r, apiOllamaNative, true, generate, p)
	if !ok {
		return
	}
	tv, msg := s.ollamaThinkNative(v, generate)
	if msg == "" {
		g.keepAlive, msg = keepAlive(v)
	}
	if msg != "" {
		s.fail(w, apiOllamaNative, apiErr{status: 400, msg: msg})
		return
	}
	if generate {
		g.noPrompt = len(v.GetStringBytes("prompt")) == 0
		g.hasTools = false
	} else {
		g.noPrompt = len(v.GetArray("messages")) == 0
	}
	suffix := generate && len(v.GetStringBytes("suffix")) > 0
	s.ollamaCore(w, r, b, &g, v, tv, suffix, false, factoryFunc(func(p plan) writer { return s.newNativeWriter(w, &g, p, generate) }))
}

// ollamaOpenAI runs the OpenAI compatibility layer's middleware checks for
// /v1/chat/completions and /v1/completions, then the handler.
func (s *Server) ollamaOpenAI(w http.ResponseWriter, r *http.Request, b *Behavior, g *genReq, v *fastjson.Value, mk writerFactory) {
	var tv thinkVal
	if g.api == apiChat {
		if len(v.GetArray("messages")) == 0 {
			s.fail(w, g.api, apiErr{status: 400, msg: "[] is too short - 'messages'", bind: true})
			return
		}
		var msg string
		if tv, msg = s.ollamaThinkOpenAI(v); msg != "" {
			s.fail(w, g.api, apiErr{status: 400, msg: msg, bind: true})
			return
		}
	} else {
		g.hasTools = false // CompletionRequest has no tools
	}
	suffix := g.api == apiCompletions && len(v.GetStringBytes("suffix")) > 0
	s.ollamaCore(w, r, b, g, v, tv, suffix, false, mk)
}

// ollamaCore is ChatHandler / GenerateHandler after binding, for every
// dialect that reaches them; relax is the Anthropic middleware's
// "relax_thinking" (v0.14.0): thinking asked of a model without it is
// dropped instead of refused.
func (s *Server) ollamaCore(w http.ResponseWriter, r *http.Request, b *Behavior, g *genReq, v *fastjson.Value, tv thinkVal, suffix, relax bool, mk writerFactory) {
	a := g.api
	if g.name == "" {
		if g.generate {
			s.fail(w, a, apiErr{status: 404, msg: "model '' not found"})
		} else {
			s.fail(w, a, apiErr{status: 400, msg: "model is required"})
		}
		return
	}
	e, ok := s.lookup(g.name)
	if !ok {
		s.fail(w, a, apiErr{status: 404, msg: "model '" + g.name + "' not found"})
		return
	}
	g.model = e
	if g.native && g.noPrompt && g.keepAlive != nil && *g.keepAlive == 0 {
		// "expire the runner": keep_alive 0 and nothing to generate.
		s.res.expire(e)
		s.ollamaDone(w, g, "unload")
		return
	}
	// Thinking, as each release decides it (see features).
	var caps []string
	switch {
	case e.Has(CapThinking) && s.feat.thinkDefaultOn:
		caps = append(caps, CapThinking)
		if !tv.set {
			tv = thinkVal{set: true, b: true}
		}
	case tv.on() && relax:
		tv = thinkVal{}
	case tv.on() && s.feat.thinkFalseOK:
		s.fail(w, a, apiErr{status: 400, msg: strconv.Quote(g.name) + " does not support thinking"})
		return
	case !s.feat.thinkFalseOK && tv.set && (s.feat.thinkDefaultOn || tv.on()):
		// Before d681cd7c2 (v0.12.5) a set think (v0.12.4: any value)
		// required the capability.
		caps = append(caps, CapThinking)
	}
	if msg := s.ollamaCapabilities(g, suffix, caps); msg != "" {
		s.fail(w, a, apiErr{status: 400, msg: msg})
		return
	}
	s.runGen(w, r, b, g, mk, func() bool {
		if g.native && g.noPrompt {
			s.ollamaDone(w, g, "load")
			return false
		}
		if tv.level != "" && !harmony(e) {
			s.fail(w, a, apiErr{status: 400, msg: `think value "` + tv.level + `" is not supported for this model`})
			return false
		}
		g.think = s.ollamaThinkMode(g, v, tv)
		return true
	})
}

// harmony: gpt-oss models, whose parser accepts think levels.
func harmony(e *modelEntry) bool { return e.Family == "gptoss" || e.Family == "gpt-oss" }

// ollamaCapabilities is scheduleRunner's CheckCapabilities and the
// handlers' mapping of its error.
func (s *Server) ollamaCapabilities(g *genReq, suffix bool, extra []string) string {
	want := []string{CapCompletion}
	if g.hasTools {
		want = append(want, CapTools)
	}
	if suffix {
		want = append(want, CapInsert)
	}
	want = append(want, extra...)
	var missing []string
	for _, c := range want {
		if !g.model.Has(c) {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return ""
	}
	if missing[0] == CapCompletion {
		what := "chat"
		if g.generate {
			what = "generate"
		}
		return strconv.Quote(g.name) + " does not support " + what
	}
	msg := ollamaFullName(g.model.Name) + " does not support " + strings.Join(missing, "\n")
	if slices.Contains(missing, CapThinking) && (g.model.Family == "qwen3" || strings.HasPrefix(g.model.Name, "deepseek-r1")) {
		msg += ". Pull the model again to get the latest version with full thinking support"
	}
	return msg
}

// ollamaThinkMode: where the reasoning of a thinking model goes.
func (s *Server) ollamaThinkMode(g *genReq, v *fastjson.Value, tv thinkVal) thinkMode {
	if !g.model.Thinking || lastUserSaysNoThink(v, g.api) {
		return thinkOff
	}
	switch {
	case !tv.set:
		// Thinking not asked for (releases before v0.12.4): the parser is
		// off and the model's <think> text stays in the content.
		return thinkInline
	case !tv.on():
		return thinkOff
	case g.api == apiCompletions:
		// openai.ToCompletion copies Response only: the thinking is dropped.
		return thinkHidden
	}
	return thinkSeparate
}

// ollamaDone answers the load or unload request (done_reason "load" /
// "unload"), in the shape of /api/generate or /api/chat.
func (s *Server) ollamaDone(w http.ResponseWriter, g *genReq, reason string) {
	b := jsonw.AppendString([]byte(`{"model":`), g.name)
	b = append(b, `,"created_at":"`...)
	b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
	if g.generate {
		b = append(b, `","response":"","done":true,"done_reason":"`...)
	} else {
		b = append(b, `","message":{"role":"assistant","content":""},"done":true,"done_reason":"`...)
	}
	b = append(b, reason...)
	b = append(b, `"}`...)
	writeRaw(w, http.StatusOK, ctJSONCharset, b)
}

// nativeWriter writes /api/chat and /api/generate answers: NDJSON lines
// (application/x-ndjson) or one JSON object, fields of api.ChatResponse /
// api.GenerateResponse with the Metrics of the final one.
type nativeWriter struct {
	s        *Server
	w        http.ResponseWriter
	g        *genReq
	p        plan
	generate bool
	start    time.Time
	first    time.Time
	buf      []byte
}

func (s *Server) newNativeWriter(w http.ResponseWriter, g *genReq, p plan, generate bool) *nativeWriter {
	return &nativeWriter{s: s, w: w, g: g, p: p, generate: generate, start: time.Now().Add(-p.loadTime)}
}

func (n *nativeWriter) head(b []byte) []byte {
	b = jsonw.AppendString(append(b, `{"model":`...), n.g.name)
	b = append(b, `,"created_at":"`...)
	b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// part appends the message (chat) or response fields.
func (n *nativeWriter) part(b []byte, content, thinking string, tool bool) []byte {
	if n.generate {
		b = jsonw.AppendString(append(b, `,"response":`...), content)
		if thinking != "" {
			b = jsonw.AppendString(append(b, `,"thinking":`...), thinking)
		}
		return b
	}
	b = jsonw.AppendString(append(b, `,"message":{"role":"assistant","content":`...), content)
	if thinking != "" {
		b = jsonw.AppendString(append(b, `,"thinking":`...), thinking)
	}
	if tool {
		b = append(b, `,"tool_calls":[{"id":`...)
		b = jsonw.AppendString(b, toolCallID(uint64(len(n.g.toolName))))
		b = append(b, `,"function":{"index":0,"name":`...)
		b = jsonw.AppendString(b, n.g.toolName)
		b = append(b, `,"arguments":`...)
		b = append(b, n.g.toolArgs...)
		b = append(b, "}}]"...)
	}
	return append(b, '}')
}

func (n *nativeWriter) line(content, thinking string, tool bool) bool {
	b := n.head(n.buf[:0])
	b = n.part(b, content, thinking, tool)
	b = append(b, `,"done":false}`+"\n"...)
	n.buf = b
	_, err := n.w.Write(b)
	return err == nil
}

func (n *nativeWriter) begin() bool {
	n.first = time.Now()
	n.w.Header()["Content-Type"] = []string{"application/x-ndjson"}
	n.w.WriteHeader(http.StatusOK)
	return true
}

func (n *nativeWriter) reasoning(i int) bool {
	return n.line("", reasoningWords[i%len(reasoningWords)], false)
}

func (n *nativeWriter) content(_ int, text []byte) bool {
	var s string
	_ = json.Unmarshal(text, &s)
	return n.line(s, "", false)
}

func (n *nativeWriter) toolCall() bool { return n.line("", "", true) }

// final appends done, done_reason, context (generate) and the metrics.
func (n *nativeWriter) final(b []byte) []byte {
	reason := n.p.finish
	if reason == "tool_calls" {
		reason = "stop"
	}
	b = append(b, `,"done":true,"done_reason":"`...)
	b = append(b, reason...)
	b = append(b, '"')
	if n.generate {
		b = append(b, `,"context":[`...)
		for i := 0; i < n.g.promptTokens+n.p.tokens(); i++ {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, int64(259+i*7%255), 10)
		}
		b = append(b, ']')
	}
	now := time.Now()
	if n.first.IsZero() {
		n.first = now
	}
	ns := func(d time.Duration) int64 { return max(int64(d), 1) } // omitempty fields: never 0
	b = append(b, `,"total_duration":`...)
	b = strconv.AppendInt(b, ns(now.Sub(n.start)), 10)
	b = append(b, `,"load_duration":`...)
	b = strconv.AppendInt(b, ns(n.p.loadTime), 10)
	b = append(b, `,"prompt_eval_count":`...)
	b = strconv.AppendInt(b, int64(n.g.promptTokens), 10)
	b = append(b, `,"prompt_eval_duration":`...)
	b = strconv.AppendInt(b, ns(n.s.beh.Load().TTFT), 10)
	b = append(b, `,"eval_count":`...)
	b = strconv.AppendInt(b, int64(n.p.tokens()), 10)
	b = append(b, `,"eval_duration":`...)
	b = strconv.AppendInt(b, ns(now.Sub(n.first)), 10)
	return append(b, '}')
}

func (n *nativeWriter) end() bool {
	b := n.head(n.buf[:0])
	b = n.part(b, "", "", false)
	b = append(n.final(b), '\n')
	n.buf = b
	_, err := n.w.Write(b)
	return err == nil
}

func (n *nativeWriter) whole() {
	b := n.head(nil)
	b = n.part(b, n.p.contentText(), n.p.reasoningText(), n.p.tool)
	b = n.final(b)
	writeRaw(n.w, http.StatusOK, ctJSONCharset, b)
}
