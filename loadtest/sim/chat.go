package sim

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/geniehive/geniehive/internal/jsonw"
	"github.com/valyala/fastjson"
)

// The deterministic answer: token i of the content is contentWords[i%len].
var (
	contentWords   = []string{"Hello", " from", " the", " GenieHive", " simulator", ".", " This", " answer", " is", " deterministic", ",", " one", " token", " per", " chunk", "!"}
	reasoningWords = []string{"Let", " me", " think", " about", " this", " step", " by", " step", "."}
	contentJSON    = encodeWords(contentWords)
	reasoningJSON  = encodeWords(reasoningWords)
)

func encodeWords(ws []string) [][]byte {
	out := make([][]byte, len(ws))
	for i, w := range ws {
		out[i] = jsonw.AppendString(nil, w)
	}
	return out
}

// Text returns the content of an answer of n tokens (what a client sees).
func Text(n int) string { return words(contentWords, n) }

// Reasoning returns the reasoning of n tokens of a thinking model.
func Reasoning(n int) string { return words(reasoningWords, n) }

func words(ws []string, n int) string {
	var sb strings.Builder
	for i := 0; i < n; i++ {
		sb.WriteString(ws[i%len(ws)])
	}
	return sb.String()
}

var (
	parsers = fastjson.ParserPool{}
	bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}
)

type chatReq struct {
	model        *modelEntry
	stream       bool
	includeUsage bool
	maxTokens    int
	think        bool
	promptTokens int
}

// parseChat validates a chat body; on failure it has written the error.
func (s *Server) parseChat(w http.ResponseWriter, body []byte) (chatReq, bool) {
	var cr chatReq
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil || v.Type() != fastjson.TypeObject {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_json", "", "We could not parse the JSON body of your request.")
		return cr, false
	}
	name := v.GetStringBytes("model")
	if len(name) == 0 {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "missing_required_parameter", "model", "you must provide a model parameter")
		return cr, false
	}
	e, ok := s.models.Load().byName[string(name)]
	if !ok {
		modelNotFound(w, string(name))
		return cr, false
	}
	if e.Kind != KindChat {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "model_not_supported", "model", "model "+e.Name+" does not support chat completions")
		return cr, false
	}
	msgs := v.GetArray("messages")
	if len(msgs) == 0 {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "missing_required_parameter", "messages", "messages must be a non-empty array")
		return cr, false
	}
	cr.model = e
	cr.stream = v.GetBool("stream")
	cr.includeUsage = v.GetBool("stream_options", "include_usage")
	cr.maxTokens = v.GetInt("max_completion_tokens")
	if cr.maxTokens == 0 {
		cr.maxTokens = v.GetInt("max_tokens")
	}
	cr.think = e.Thinking
	if t := v.Get("think"); t != nil && t.Type() == fastjson.TypeFalse {
		cr.think = false
	}
	if t := v.Get("chat_template_kwargs", "enable_thinking"); t != nil && t.Type() == fastjson.TypeFalse {
		cr.think = false
	}
	chars := 0
	for _, m := range msgs {
		c := m.Get("content")
		if c == nil {
			continue
		}
		switch c.Type() {
		case fastjson.TypeString:
			sb := c.GetStringBytes()
			chars += len(sb)
			if cr.think && containsNoThink(sb) {
				cr.think = false
			}
		case fastjson.TypeArray:
			for _, part := range c.GetArray() {
				sb := part.GetStringBytes("text")
				chars += len(sb)
				if cr.think && containsNoThink(sb) {
					cr.think = false
				}
			}
		}
	}
	cr.promptTokens = chars/4 + 1
	return cr, true
}

func containsNoThink(b []byte) bool {
	return len(b) >= 9 && strings.Contains(string(b), "/no_think")
}

func modelNotFound(w http.ResponseWriter, name string) {
	writeError(w, http.StatusNotFound, "invalid_request_error", "model_not_found", "model", "The model `"+name+"` does not exist or you do not have access to it.")
}

func (s *Server) chat(w http.ResponseWriter, r *http.Request, b *Behavior) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_body", "", "could not read the request body")
		return
	}
	s.last.Store(&Request{Method: r.Method, Path: r.URL.Path, Header: r.Header, Body: body})
	cr, ok := s.parseChat(w, body)
	if !ok {
		return
	}
	ctx := r.Context()
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	release, ok := s.gate(ctx)
	if !ok {
		s.clientAborts.Add(1)
		return
	}
	defer release()
	var t *time.Timer
	if !pause(ctx, &t, b.Latency) {
		s.clientAborts.Add(1)
		return
	}
	if s.inject(w, b) {
		return
	}
	if s.cfg.Flavor == FlavorOllama {
		cr.model.loaded.Store(true) // Ollama loads on first use
	}
	n, finish := b.Chunks, "stop"
	if cr.maxTokens > 0 && cr.maxTokens < n {
		n, finish = cr.maxTokens, "length"
	}
	reasoning := 0
	if cr.think {
		reasoning = b.ReasoningChunks
	}
	id := s.seq.Add(1)
	created := time.Now().Unix()
	if cr.stream {
		s.streamChat(w, r, b, &cr, t, id, created, n, reasoning, finish)
		return
	}
	if !pause(ctx, &t, b.TTFT+time.Duration(n+reasoning-1)*b.ChunkInterval) {
		s.clientAborts.Add(1)
		return
	}
	bp := bufPool.Get().(*[]byte)
	buf := (*bp)[:0]
	buf = appendID(append(buf, `{"id":"chatcmpl-`...), id)
	buf = append(buf, `","object":"chat.completion","created":`...)
	buf = strconv.AppendInt(buf, created, 10)
	buf = append(buf, `,"model":`...)
	buf = append(buf, cr.model.nameJSON...)
	buf = append(buf, `,"choices":[{"index":0,"message":{"role":"assistant","content":`...)
	buf = jsonw.AppendString(buf, Text(n))
	if reasoning > 0 {
		buf = append(buf, `,"reasoning_content":`...)
		buf = jsonw.AppendString(buf, Reasoning(reasoning))
	}
	buf = append(buf, `},"logprobs":null,"finish_reason":"`...)
	buf = append(buf, finish...)
	buf = append(buf, `"}],`...)
	buf = appendUsage(buf, cr.promptTokens, n+reasoning)
	buf = append(buf, '}')
	h := w.Header()
	h["Content-Type"] = jsonCT
	h["Content-Length"] = []string{strconv.Itoa(len(buf))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf)
	*bp = buf
	bufPool.Put(bp)
	s.promptTokens.Add(int64(cr.promptTokens))
	s.completionTokens.Add(int64(n + reasoning))
}

var (
	jsonCT      = []string{"application/json"}
	sseCT       = []string{"text/event-stream"}
	noCache     = []string{"no-cache"}
	doneEvent   = []byte("data: [DONE]\n\n")
	chunkSuffix = []byte(`},"logprobs":null,"finish_reason":null}]}` + "\n\n")
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

func (s *Server) streamChat(w http.ResponseWriter, r *http.Request, b *Behavior, cr *chatReq, t *time.Timer, id uint64, created int64, n, reasoning int, finish string) {
	ctx := r.Context()
	fl, _ := w.(http.Flusher)
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	// prefix: `data: {"id":...,"choices":[{"index":0,"delta":` shared by all chunks.
	pre := (*bp)[:0]
	pre = appendID(append(pre, `data: {"id":"chatcmpl-`...), id)
	pre = append(pre, `","object":"chat.completion.chunk","created":`...)
	pre = strconv.AppendInt(pre, created, 10)
	pre = append(pre, `,"model":`...)
	pre = append(pre, cr.model.nameJSON...)
	preLen := len(pre)
	pre = append(pre, `,"choices":[{"index":0,"delta":`...)
	chunkPre := len(pre)
	buf := pre

	aborted := func() {
		s.streamsAborted.Add(1)
		s.clientAborts.Add(1)
	}
	if !pause(ctx, &t, b.TTFT) {
		aborted()
		return
	}
	h := w.Header()
	h["Content-Type"] = sseCT
	h["Cache-Control"] = noCache
	w.WriteHeader(http.StatusOK)

	// role chunk
	buf = append(buf[:chunkPre], `{"role":"assistant","content":""`...)
	buf = append(buf, chunkSuffix...)
	if _, err := w.Write(buf); err != nil {
		aborted()
		return
	}
	total := reasoning + n
	for i := 0; i < total; i++ {
		if i > 0 && !pause(ctx, &t, b.ChunkInterval) {
			aborted()
			return
		}
		if b.FailAfterChunks > 0 && i-reasoning >= b.FailAfterChunks {
			s.streamsCut.Add(1)
			if fl != nil {
				fl.Flush()
			}
			panic(http.ErrAbortHandler)
		}
		buf = buf[:chunkPre]
		if i < reasoning {
			buf = append(buf, `{"reasoning_content":`...)
			buf = append(buf, reasoningJSON[i%len(reasoningJSON)]...)
		} else {
			buf = append(buf, `{"content":`...)
			buf = append(buf, contentJSON[(i-reasoning)%len(contentJSON)]...)
		}
		buf = append(buf, chunkSuffix...)
		if _, err := w.Write(buf); err != nil {
			aborted()
			return
		}
		if fl != nil {
			fl.Flush()
		}
	}
	// final chunk with finish_reason
	buf = append(buf[:chunkPre], `{},"logprobs":null,"finish_reason":"`...)
	buf = append(buf, finish...)
	buf = append(buf, "\"}]}\n\n"...)
	if cr.includeUsage {
		buf = append(buf, pre[:preLen]...)
		buf = append(buf, `,"choices":[],`...)
		buf = appendUsage(buf, cr.promptTokens, total)
		buf = append(buf, "}\n\n"...)
	}
	buf = append(buf, doneEvent...)
	if _, err := w.Write(buf); err != nil {
		aborted()
		return
	}
	if fl != nil {
		fl.Flush()
	}
	*bp = buf
	s.streamsDone.Add(1)
	s.promptTokens.Add(int64(cr.promptTokens))
	s.completionTokens.Add(int64(total))
}
