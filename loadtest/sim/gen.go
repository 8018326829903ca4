package sim

import (
	"context"
	"net/http"
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

// InlineReasoning is how the reasoning of n tokens reads when the server
// leaves it in the content (thinking not parsed): between <think> tags.
func InlineReasoning(n int) string { return "<think>" + Reasoning(n) + "</think>\n\n" }

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

// plan is the answer to one generation request, decided before writing.
type plan struct {
	reasoning int       // reasoning tokens (generated first)
	content   int       // content tokens
	finish    string    // "stop", "length" or "tool_calls"
	think     thinkMode // where the reasoning goes
	tool      bool      // the answer is a call to the request's first tool
	loadTime  time.Duration
}

// tokens is every generated token (what usage counts).
func (p *plan) tokens() int { return p.reasoning + p.content }

// inline: the reasoning tokens are written as content.
func (p *plan) inline() bool { return p.think == thinkInline }

// visibleReasoning: reasoning written in its own field.
func (p *plan) visibleReasoning() bool { return p.think == thinkSeparate && p.reasoning > 0 }

// contentText is the whole content as a client sees it.
func (p *plan) contentText() string {
	t := Text(p.content)
	if p.inline() && p.reasoning > 0 {
		t = InlineReasoning(p.reasoning) + t
	}
	return t
}

// reasoningText is the whole reasoning field ("" when not visible).
func (p *plan) reasoningText() string {
	if !p.visibleReasoning() {
		return ""
	}
	return Reasoning(p.reasoning)
}

// planFor decides the answer: reasoning first, then content, and the
// request's token limit caps both together (as Ollama's num_predict and
// the OpenAI servers' max_tokens do), so a thinking model with a small
// budget can end with empty content and finish_reason "length".
func planFor(b *Behavior, g *genReq) plan {
	p := plan{finish: "stop", think: g.think, content: b.Chunks}
	if p.think != thinkOff {
		p.reasoning = b.ReasoningChunks
		if g.model.ThinksOnly {
			p.reasoning, p.content = b.Chunks, 0
		}
	}
	if b.ToolCalls && g.hasTools && !g.toolResult && g.toolName != "" && g.model.Has(CapTools) {
		p.tool, p.content, p.finish = true, 0, "tool_calls"
		if g.model.ThinksOnly {
			p.reasoning = b.ReasoningChunks
		}
	}
	if m := g.maxTokens; m > 0 && p.tokens() > m {
		p.reasoning = min(p.reasoning, m)
		p.content = m - p.reasoning
		p.tool = p.tool && p.content > 0
		p.finish = "length"
	}
	return p
}

// emitter writes one answer's events in a dialect. Methods return false
// when the client is gone.
type emitter interface {
	begin() bool                     // headers and opening events
	reasoning(i int) bool            // reasoning token i (visible reasoning only)
	content(i int, text []byte) bool // a content token, JSON-encoded
	toolCall() bool                  // the whole tool call
	end() bool                       // closing events, flushed
}

// stream runs the timing of a streamed answer: TTFT, then one token per
// ChunkInterval, with FailAfterChunks cuts and client aborts counted. It
// returns whether the stream completed.
func (s *Server) stream(ctx context.Context, w http.ResponseWriter, b *Behavior, t *time.Timer, p *plan, em emitter) bool {
	fl, _ := w.(http.Flusher)
	aborted := func() bool {
		s.streamsAborted.Add(1)
		s.clientAborts.Add(1)
		return false
	}
	if !pause(ctx, &t, b.TTFT) {
		return aborted()
	}
	if !em.begin() {
		return aborted()
	}
	total := p.tokens()
	var inl []byte
	for i := 0; i < total; i++ {
		if i > 0 && !pause(ctx, &t, b.ChunkInterval) {
			return aborted()
		}
		if b.FailAfterChunks > 0 && i-p.reasoning >= b.FailAfterChunks {
			s.streamsCut.Add(1)
			if fl != nil {
				fl.Flush()
			}
			panic(http.ErrAbortHandler)
		}
		ok := true
		switch {
		case i >= p.reasoning:
			ok = em.content(i-p.reasoning, contentJSON[(i-p.reasoning)%len(contentJSON)])
		case p.think == thinkSeparate:
			ok = em.reasoning(i)
		case p.think == thinkInline:
			w := reasoningWords[i%len(reasoningWords)]
			if i == 0 {
				w = "<think>" + w
			}
			if i == p.reasoning-1 {
				w += "</think>\n\n"
			}
			inl = jsonw.AppendString(inl[:0], w)
			ok = em.content(-1, inl)
		default: // hidden: time spent, nothing written
			continue
		}
		if !ok {
			return aborted()
		}
		if fl != nil {
			fl.Flush()
		}
	}
	if p.tool {
		if (total > 0 && !pause(ctx, &t, b.ChunkInterval)) || !em.toolCall() {
			return aborted()
		}
	}
	if !em.end() {
		return aborted()
	}
	if fl != nil {
		fl.Flush()
	}
	s.streamsDone.Add(1)
	return true
}

// holdAnswer waits what a non-streamed answer takes to generate; false when
// the client went away (counted).
func (s *Server) holdAnswer(ctx context.Context, b *Behavior, t *time.Timer, p *plan) bool {
	d := b.TTFT
	if n := p.tokens(); n > 1 {
		d += time.Duration(n-1) * b.ChunkInterval
	}
	if !pause(ctx, &t, d) {
		s.clientAborts.Add(1)
		return false
	}
	return true
}

// account adds one finished answer to the token counters.
func (s *Server) account(g *genReq, p *plan) {
	s.promptTokens.Add(int64(g.promptTokens))
	s.completionTokens.Add(int64(p.tokens()))
}

// toolCallID is a deterministic call id ("call_" and 8 characters, the
// shape Ollama's toolCallId gives).
func toolCallID(seq uint64) string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := []byte("call_00000000")
	for i := len(b) - 1; i >= 5; i-- {
		b[i] = letters[seq%uint64(len(letters))]
		seq /= uint64(len(letters))
	}
	return string(b)
}
