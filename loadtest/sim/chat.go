package sim

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/geniehive/geniehive/internal/jsonw"
	"github.com/valyala/fastjson"
)

// chatJob is one chat request and its writer, in one allocation.
type chatJob struct {
	g  genReq
	cw chatWriter
	s  *Server
	w  http.ResponseWriter
}

func (j *chatJob) newWriter(p plan) writer {
	j.s.initChatWriter(&j.cw, j.w, &j.g, p)
	return &j.cw
}

// chat answers POST /v1/chat/completions.
func (s *Server) chat(w http.ResponseWriter, r *http.Request, b *Behavior) {
	p := parsers.Get()
	defer parsers.Put(p)
	j := &chatJob{s: s, w: w}
	g := &j.g
	var v *fastjson.Value
	var ok bool
	if *g, v, ok = s.readGen(w, r, apiChat, false, false, p); !ok {
		return
	}
	if s.cfg.Flavor == FlavorOllama {
		s.ollamaOpenAI(w, r, b, g, v, j)
		return
	}
	if !s.openAICheck(w, g, v, KindChat) {
		return
	}
	if len(v.GetArray("messages")) == 0 {
		s.fail(w, apiChat, apiErr{status: 400, code: "missing_required_parameter", param: "messages", msg: "messages must be a non-empty array"})
		return
	}
	if g.hasTools && !g.model.Has(CapTools) && s.cfg.Flavor == FlavorVLLM {
		// vLLM serving_chat.py: tool_choice "auto" (the default with tools)
		// needs the server started with a tool parser.
		s.fail(w, apiChat, apiErr{status: 400, msg: `"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set`})
		return
	}
	g.think = s.openAIThinking(v, g.model)
	if g.think != thinkOff && lastUserSaysNoThink(v, apiChat) {
		g.think = thinkOff
	}
	s.runGen(w, r, b, g, j, nil)
}

// completions answers POST /v1/completions (prompt in, text out).
func (s *Server) completions(w http.ResponseWriter, r *http.Request, b *Behavior) {
	p := parsers.Get()
	defer parsers.Put(p)
	g, v, ok := s.readGen(w, r, apiCompletions, false, true, p)
	if !ok {
		return
	}
	mk := factoryFunc(func(p plan) writer { return s.newCompletionWriter(w, &g, p) })
	if s.cfg.Flavor == FlavorOllama {
		s.ollamaOpenAI(w, r, b, &g, v, mk)
		return
	}
	if !s.openAICheck(w, &g, v, KindChat) {
		return
	}
	if v.Get("prompt") == nil {
		s.fail(w, apiCompletions, apiErr{status: 400, code: "missing_required_parameter", param: "prompt", msg: "you must provide a prompt parameter"})
		return
	}
	g.think = thinkOff // no chat template, so no reasoning parser: raw text
	s.runGen(w, r, b, &g, mk, nil)
}

// openAICheck finds the request's model for vLLM, llama.cpp and generic
// servers and checks it can serve kind; on failure it has answered.
func (s *Server) openAICheck(w http.ResponseWriter, g *genReq, v *fastjson.Value, kind string) bool {
	e, ok := s.openAIModel(w, g.api, g.name)
	if !ok {
		return false
	}
	g.model = e
	return s.kindCheck(w, g.api, e, kind)
}

// openAIModel looks the model up as the server does; on failure it has
// answered.
func (s *Server) openAIModel(w http.ResponseWriter, a api, name string) (*modelEntry, bool) {
	if s.cfg.Flavor == FlavorLlamaCPP && !s.router {
		// A single-model llama-server answers with its model whatever the
		// request names (the "model" field is only echoed).
		return s.models.Load().list[0], true
	}
	if name == "" {
		msg := "you must provide a model parameter"
		if s.cfg.Flavor == FlavorLlamaCPP {
			msg = "model name is missing from the request" // router_validate_model
		}
		s.fail(w, a, apiErr{status: 400, code: "missing_required_parameter", param: "model", msg: msg})
		return nil, false
	}
	e, ok := s.lookup(name)
	if ok {
		return e, true
	}
	switch s.cfg.Flavor {
	case FlavorLlamaCPP: // router_validate_model: 400, "model not found"
		s.fail(w, a, apiErr{status: 400, msg: "model not found"})
	case FlavorVLLM: // serving_engine.py _check_model
		s.fail(w, a, apiErr{status: 404, msg: "The model `" + name + "` does not exist."})
	default:
		s.fail(w, a, apiErr{status: 404, code: "model_not_found", param: "model", msg: "The model `" + name + "` does not exist or you do not have access to it."})
	}
	return nil, false
}

// kindCheck refuses a model that cannot do what the endpoint does, as the
// server does; on failure it has answered.
func (s *Server) kindCheck(w http.ResponseWriter, a api, e *modelEntry, kind string) bool {
	if e.Kind == kind {
		return true
	}
	switch s.cfg.Flavor {
	case FlavorLlamaCPP:
		// server-context: an --embeddings server refuses completions and
		// a completion server refuses embeddings, 501 not_supported_error.
		msg := "This server does not support completions. Start it without `--embeddings`"
		if kind == KindEmbeddings {
			msg = "This server does not support embeddings. Start it with `--embeddings`"
		}
		s.fail(w, a, apiErr{status: 501, msg: msg})
	case FlavorVLLM:
		// api_server.py registers each API only for the tasks the served
		// model supports: the route is missing.
		writeJSON(w, http.StatusNotFound, ctJSON, map[string]string{"detail": "Not Found"}, false)
	default:
		what := map[string]string{KindChat: "chat completions", KindEmbeddings: "embeddings",
			KindTranscription: "transcription", KindSpeech: "speech", KindImages: "image generation"}[kind]
		s.fail(w, a, apiErr{status: 400, code: "model_not_supported", param: "model", msg: "model " + e.Name + " does not support " + what})
	}
	return false
}

// reasoningKeys is the reasoning field of the flavor's chat answers, as a
// JSON key with its colon: Ollama "reasoning" (openai/openai.go Message),
// llama.cpp and generic servers "reasoning_content", vLLM by version.
func (s *Server) reasoningKeys() []string {
	switch s.cfg.Flavor {
	case FlavorOllama:
		return []string{`"reasoning":`}
	case FlavorVLLM:
		var k []string
		if s.feat.reasoningNew {
			k = append(k, `"reasoning":`)
		}
		if s.feat.reasoningOld {
			k = append(k, `"reasoning_content":`)
		}
		return k
	}
	return []string{`"reasoning_content":`}
}

var (
	sseCT      = []string{"text/event-stream"}
	noCache    = []string{"no-cache"}
	keepAliveH = []string{"keep-alive"}
	jsonCT     = []string{ctJSON}
	doneEvent  = []byte("data: [DONE]\n\n")
)

func appendID(b []byte, id uint64) []byte {
	return strconv.AppendUint(b, id+0x5137_0000, 16)
}

func appendUsage(b []byte, prompt, completion int) []byte {
	b = append(b, `"usage":{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(prompt), 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(completion), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(prompt+completion), 10)
	return append(b, '}')
}

// chatWriter writes Chat Completions answers. Ollama's shape
// (middleware/openai.go ChatWriter, openai/openai.go ToChunk and
// ToChatCompletion, and the recordings): no role-only first chunk, every
// delta carries "role":"assistant" and "content", reasoning in
// "reasoning", "system_fingerprint":"fp_ollama", no "logprobs", ids
// "chatcmpl-<0..998>". Other flavors: OpenAI's shape (a role chunk with
// empty content first, "logprobs":null, a final empty delta with the
// finish reason), reasoning in the flavor's field.
type chatWriter struct {
	s       *Server
	w       http.ResponseWriter
	g       *genReq
	p       plan
	ollama  bool
	keys    []string
	bp      *[]byte
	buf     []byte
	envLen  int // `data: {` ... `"model":M[,"system_fingerprint":...]`
	preLen  int // envLen + `,"choices":[{"index":0,"delta":`
	id      uint64
	created int64
}

func (s *Server) initChatWriter(c *chatWriter, w http.ResponseWriter, g *genReq, p plan) {
	*c = chatWriter{s: s, w: w, g: g, p: p, ollama: s.cfg.Flavor == FlavorOllama, keys: s.rkeys,
		created: time.Now().Unix()}
	if c.ollama {
		c.id = uint64(rand.IntN(999))
	} else {
		c.id = s.seq.Add(1)
	}
}

func (c *chatWriter) appendEnvelope(b []byte, object string) []byte {
	if c.ollama {
		b = strconv.AppendUint(append(b, `{"id":"chatcmpl-`...), c.id, 10)
	} else {
		b = appendID(append(b, `{"id":"chatcmpl-`...), c.id)
	}
	b = append(b, `","object":"`...)
	b = append(b, object...)
	b = append(b, `","created":`...)
	b = strconv.AppendInt(b, c.created, 10)
	b = append(b, `,"model":`...)
	b = jsonw.AppendString(b, c.g.name)
	if c.ollama {
		b = append(b, `,"system_fingerprint":"fp_ollama"`...)
	}
	return b
}

func (c *chatWriter) begin() bool {
	c.bp = bufPool.Get().(*[]byte)
	c.buf = append((*c.bp)[:0], "data: "...)
	c.buf = c.appendEnvelope(c.buf, "chat.completion.chunk")
	c.envLen = len(c.buf)
	c.buf = append(c.buf, `,"choices":[{"index":0,"delta":`...)
	c.preLen = len(c.buf)
	h := c.w.Header()
	h["Content-Type"] = sseCT
	if !c.ollama {
		h["Cache-Control"] = noCache
	}
	c.w.WriteHeader(http.StatusOK)
	if c.ollama {
		return true
	}
	return c.send(append(c.buf[:c.preLen], `{"role":"assistant","content":""`...))
}

// send closes a delta and its choice (finish_reason null) and writes it.
func (c *chatWriter) send(b []byte) bool {
	if c.ollama {
		b = append(b, `},"finish_reason":null}]}`+"\n\n"...)
	} else {
		b = append(b, `},"logprobs":null,"finish_reason":null}]}`+"\n\n"...)
	}
	c.buf = b
	_, err := c.w.Write(b)
	return err == nil
}

func (c *chatWriter) delta() []byte {
	b := c.buf[:c.preLen]
	if c.ollama {
		b = append(b, `{"role":"assistant","content":`...)
	} else {
		b = append(b, '{')
	}
	return b
}

func (c *chatWriter) reasoning(i int) bool {
	b := c.delta()
	if c.ollama {
		b = append(b, `"",`...)
	}
	for j, k := range c.keys {
		if j > 0 {
			b = append(b, ',')
		}
		b = append(b, k...)
		b = append(b, reasoningJSON[i%len(reasoningJSON)]...)
	}
	return c.send(b)
}

func (c *chatWriter) content(_ int, text []byte) bool {
	b := c.delta()
	if !c.ollama {
		b = append(b, `"content":`...)
	}
	b = append(b, text...)
	return c.send(b)
}

func (c *chatWriter) appendToolCalls(b []byte, args bool) []byte {
	b = append(b, `"tool_calls":[{"id":`...)
	b = jsonw.AppendString(b, toolCallID(c.id))
	b = append(b, `,"index":0,"type":"function","function":{"name":`...)
	b = jsonw.AppendString(b, c.g.toolName)
	b = append(b, `,"arguments":`...)
	a := c.g.toolArgs
	if !args {
		a = ""
	}
	b = jsonw.AppendString(b, a)
	return append(b, "}}]"...)
}

func (c *chatWriter) toolCall() bool {
	b := c.delta()
	if c.ollama {
		b = append(b, `"",`...)
	}
	return c.send(c.appendToolCalls(b, true))
}

func (c *chatWriter) end() bool {
	defer func() { *c.bp = c.buf; bufPool.Put(c.bp) }()
	b := c.buf[:c.preLen]
	if c.ollama {
		b = append(b, `{"role":"assistant","content":""},"finish_reason":"`...)
	} else {
		b = append(b, `{},"logprobs":null,"finish_reason":"`...)
	}
	b = append(b, c.p.finish...)
	b = append(b, "\"}]}\n\n"...)
	if c.g.includeUsage {
		// A last chunk with "choices":[] and the usage (stream_options).
		b = append(b, c.buf[:c.envLen]...)
		b = append(b, `,"choices":[],`...)
		b = appendUsage(b, c.g.promptTokens, c.p.tokens())
		b = append(b, "}\n\n"...)
	}
	b = append(b, doneEvent...)
	c.buf = b
	_, err := c.w.Write(b)
	return err == nil
}

func (c *chatWriter) whole() {
	bp := bufPool.Get().(*[]byte)
	b := c.appendEnvelope((*bp)[:0], "chat.completion")
	b = append(b, `,"choices":[{"index":0,"message":{"role":"assistant","content":`...)
	switch {
	case c.p.tool && !c.ollama:
		b = append(b, "null"...)
	default:
		b = jsonw.AppendString(b, c.p.contentText())
	}
	if r := c.p.reasoningText(); r != "" {
		for _, k := range c.keys {
			b = append(b, ',')
			b = append(b, k...)
			b = jsonw.AppendString(b, r)
		}
	}
	if c.p.tool {
		b = c.appendToolCalls(append(b, ','), true)
	}
	if c.ollama {
		b = append(b, `},"finish_reason":"`...)
	} else {
		b = append(b, `},"logprobs":null,"finish_reason":"`...)
	}
	b = append(b, c.p.finish...)
	b = append(b, `"}],`...)
	b = appendUsage(b, c.g.promptTokens, c.p.tokens())
	b = append(b, '}')
	if c.ollama {
		b = append(b, '\n') // json.NewEncoder in ChatWriter
	}
	h := c.w.Header()
	h["Content-Type"] = jsonCT
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write(b)
	*bp = b
	bufPool.Put(bp)
}

// completionWriter writes /v1/completions answers: Ollama's
// CompletionChunk (choices before model; with include_usage every chunk
// carries zero usage, then a usage chunk), OpenAI's otherwise.
type completionWriter struct {
	s       *Server
	w       http.ResponseWriter
	g       *genReq
	p       plan
	ollama  bool
	buf     []byte
	id      string
	created int64
}

func (s *Server) newCompletionWriter(w http.ResponseWriter, g *genReq, p plan) *completionWriter {
	c := &completionWriter{s: s, w: w, g: g, p: p, ollama: s.cfg.Flavor == FlavorOllama, created: time.Now().Unix()}
	if c.ollama {
		c.id = "cmpl-" + strconv.Itoa(rand.IntN(999))
	} else {
		c.id = "cmpl-" + strconv.FormatUint(s.seq.Add(1)+0x5137_0000, 16)
	}
	return c
}

func (c *completionWriter) chunk(text []byte, finish string, usage bool) []byte {
	b := append(c.buf[:0], `data: {"id":"`...)
	b = append(b, c.id...)
	b = append(b, `","object":"text_completion","created":`...)
	b = strconv.AppendInt(b, c.created, 10)
	if !c.ollama {
		b = append(b, `,"model":`...)
		b = jsonw.AppendString(b, c.g.name)
	}
	if text == nil {
		b = append(b, `,"choices":[]`...)
	} else {
		b = append(b, `,"choices":[{"text":`...)
		b = append(b, text...)
		b = append(b, `,"index":0,`...)
		if !c.ollama {
			b = append(b, `"logprobs":null,`...)
		}
		b = append(b, `"finish_reason":`...)
		if finish == "" {
			b = append(b, "null"...)
		} else {
			b = jsonw.AppendString(b, finish)
		}
		b = append(b, "}]"...)
	}
	if c.ollama {
		b = append(b, `,"model":`...)
		b = jsonw.AppendString(b, c.g.name)
		b = append(b, `,"system_fingerprint":"fp_ollama"`...)
	}
	if usage || (c.ollama && c.g.includeUsage) {
		b = append(b, ',')
		if usage {
			b = appendUsage(b, c.g.promptTokens, c.p.tokens())
		} else {
			b = appendUsage(b, 0, 0)
		}
	}
	b = append(b, "}\n\n"...)
	c.buf = b
	return b
}

func (c *completionWriter) begin() bool {
	h := c.w.Header()
	h["Content-Type"] = sseCT
	c.w.WriteHeader(http.StatusOK)
	return true
}

func (c *completionWriter) reasoning(int) bool { return true } // not reached: completions have no reasoning field

func (c *completionWriter) content(_ int, text []byte) bool {
	_, err := c.w.Write(c.chunk(text, "", false))
	return err == nil
}

func (c *completionWriter) toolCall() bool { return true }

func (c *completionWriter) end() bool {
	b := append([]byte(nil), c.chunk([]byte(`""`), c.p.finish, false)...)
	if c.g.includeUsage {
		b = append(b, c.chunk(nil, "", true)...)
	}
	b = append(b, doneEvent...)
	_, err := c.w.Write(b)
	return err == nil
}

func (c *completionWriter) whole() {
	b := []byte(`{"id":"`)
	b = append(b, c.id...)
	b = append(b, `","object":"text_completion","created":`...)
	b = strconv.AppendInt(b, c.created, 10)
	b = append(b, `,"model":`...)
	b = jsonw.AppendString(b, c.g.name)
	if c.ollama {
		b = append(b, `,"system_fingerprint":"fp_ollama"`...)
	}
	b = append(b, `,"choices":[{"text":`...)
	b = jsonw.AppendString(b, c.p.contentText())
	b = append(b, `,"index":0,`...)
	if !c.ollama {
		b = append(b, `"logprobs":null,`...)
	}
	b = append(b, `"finish_reason":`...)
	b = jsonw.AppendString(b, c.p.finish)
	b = append(b, `}],`...)
	b = appendUsage(b, c.g.promptTokens, c.p.tokens())
	b = append(b, '}')
	if c.ollama {
		b = append(b, '\n')
	}
	h := c.w.Header()
	h["Content-Type"] = jsonCT
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write(b)
}
