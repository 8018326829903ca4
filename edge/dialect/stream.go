package dialect

import (
	"math/rand/v2"
	"time"

	"github.com/valyala/fastjson"
)

// Stream turns an upstream's Chat Completions SSE stream into the client's
// dialect, event by event: Feed takes the data of one upstream event and
// appends the client events it makes (zero or more) to the caller's
// buffer; Finish appends the closing events after the upstream's [DONE]
// (or a clean end); Fail ends the stream with the dialect's error event.
//
// Blocks follow the upstream's order — reasoning, text, tool calls, and
// again if the model interleaves them — each opened when its first delta
// arrives and closed when another kind starts or the stream ends. Tool
// calls are assembled by their index across chunks; a call whose index
// repeats with a new id (Ollama numbers the calls of each chunk from 0) is
// a new call.
//
// A Stream belongs to its Request; it allocates nothing per event once
// its buffers have grown to the stream's size (they are kept for reuse).
type Stream struct {
	req     *Request
	api     API
	p       fastjson.Parser // chunks and whole answers
	p2      fastjson.Parser // tool arguments, while p's value is in use
	started bool
	done    bool
	seq     int    // Responses sequence_number
	out     int    // next output index (Responses) or content block index (Messages)
	cur     kind   // the open block
	curOut  int    // its output / block index
	curTool int    // the open tool (index into tools) when cur == kindTool
	acc     []byte // the open block's text so far
	items   []byte // finished output items / content blocks, comma-separated
	nItems  int
	tools   []toolState
	nTools  int
	finish  finish
	stopSeq []byte
	usage   usage
	base    [16]byte // random hex shared by this answer's ids
	created int64
	scratch []byte
	sink    []byte // AppendResponse: the events it does not keep
}

type kind uint8

const (
	kindNone kind = iota
	kindReasoning
	kindText
	kindTool
)

type finish uint8

const (
	finishNone finish = iota
	finishStop
	finishLength
	finishTools
	finishFilter
)

type toolState struct {
	index  int // the upstream's index
	id     []byte
	name   []byte
	args   []byte
	out    int // output / block index once opened
	opened bool
	closed bool
	custom bool // a Responses custom tool
}

type usage struct {
	has                                        bool
	prompt, completion, total, cached, reasons int
}

// Stream returns the request's stream translator, reset for a new answer.
func (r *Request) Stream() *Stream {
	s := &r.stream
	s.reset(r)
	return s
}

func (s *Stream) reset(r *Request) {
	*s = Stream{req: r, api: r.facts.API, p: s.p, p2: s.p2, acc: s.acc[:0], items: s.items[:0],
		tools: s.tools[:0], stopSeq: s.stopSeq[:0], scratch: s.scratch[:0], sink: s.sink[:0]}
	const hexd = "0123456789abcdef"
	x, y := rand.Uint64(), rand.Uint64()
	for i := 0; i < 16; i++ {
		s.base[i] = hexd[(x>>(4*i))&15]
		if i >= 12 {
			s.base[i] = hexd[(y>>(4*i))&15]
		}
	}
	s.created = time.Now().Unix()
}

// Done reports whether the stream has ended (Finish or Fail ran, or the
// upstream sent an error).
func (s *Stream) Done() bool { return s.done }

// Feed appends the client events for one upstream event's data (the text
// after "data:", without the blank line). "[DONE]" and empty data append
// nothing: call Finish at the end of the upstream stream.
//
// # Errors
// An upstream error event ({"error": ...}) or a chunk that is not JSON
// ends the stream: Feed appends the dialect's error event and returns an
// *Error (status 502); the stream is Done.
func (s *Stream) Feed(dst, data []byte) ([]byte, error) {
	if s.done {
		return dst, nil
	}
	data = trimSpace(data)
	if len(data) == 0 || string(data) == "[DONE]" {
		return dst, nil
	}
	v, err := s.p.ParseBytes(data)
	if err != nil || v.Type() != fastjson.TypeObject {
		e := &Error{Status: 502, Type: "server_error", Code: "upstream_malformed", Message: "the upstream sent a stream chunk that is not a JSON object"}
		return s.Fail(dst, FromError(e)), e
	}
	if ev := v.Get("error"); ev != nil {
		e := upstreamError(ev)
		return s.Fail(dst, FromError(e)), e
	}
	dst = s.start(dst)
	if u := v.Get("usage"); u != nil && u.Type() == fastjson.TypeObject {
		s.usage.read(u)
	}
	chs := v.GetArray("choices")
	if len(chs) == 0 {
		return dst, nil
	}
	ch := chs[0]
	dst = s.delta(dst, ch.Get("delta"))
	s.readFinish(ch)
	return dst, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// upstreamError reads an upstream's error member (an object with a
// message, or a string) as a 502.
func upstreamError(ev *fastjson.Value) *Error {
	msg := str(ev, "message")
	if ev.Type() == fastjson.TypeString {
		msg = ev.GetStringBytes()
	}
	if len(msg) == 0 {
		msg = []byte("the upstream failed mid-stream")
	}
	return &Error{Status: 502, Type: "server_error", Code: "upstream_error", Message: "upstream error: " + string(msg)}
}

func (s *Stream) readFinish(ch *fastjson.Value) {
	fr := str(ch, "finish_reason")
	if len(fr) == 0 {
		return
	}
	switch b2s(fr) {
	case "length":
		s.finish = finishLength
	case "tool_calls", "function_call":
		s.finish = finishTools
	case "content_filter":
		s.finish = finishFilter
	default:
		s.finish = finishStop
	}
	// vLLM names the stop string that ended the answer (stop_reason).
	if sr := str(ch, "stop_reason"); len(sr) > 0 && s.req.isStop(sr) {
		s.stopSeq = append(s.stopSeq[:0], sr...)
	}
}

func (u *usage) read(v *fastjson.Value) {
	u.has = true
	u.prompt = v.GetInt("prompt_tokens")
	u.completion = v.GetInt("completion_tokens")
	u.total = v.GetInt("total_tokens")
	if u.total == 0 {
		u.total = u.prompt + u.completion
	}
	u.cached = v.GetInt("prompt_tokens_details", "cached_tokens")
	u.reasons = v.GetInt("completion_tokens_details", "reasoning_tokens")
}

// delta handles a chunk's delta, or a whole answer's message: reasoning
// (reasoning_content — llama.cpp, vLLM — or reasoning — Ollama, newer
// vLLM; when both come they carry the same text), content, tool calls.
func (s *Stream) delta(dst []byte, d *fastjson.Value) []byte {
	if d == nil || d.Type() != fastjson.TypeObject {
		return dst
	}
	rs := str(d, "reasoning_content")
	if len(rs) == 0 {
		rs = str(d, "reasoning")
	}
	if len(rs) > 0 && s.api != APICompletions {
		dst = s.text(dst, kindReasoning, rs)
	}
	if c := str(d, "content"); len(c) > 0 {
		dst = s.text(dst, kindText, c)
	} else if cv := d.Get("content"); cv != nil && cv.Type() == fastjson.TypeArray {
		for _, p := range cv.GetArray() { // content as parts (some servers)
			if t := str(p, "text"); len(t) > 0 {
				dst = s.text(dst, kindText, t)
			}
		}
	}
	for i, tc := range d.GetArray("tool_calls") {
		dst = s.toolDelta(dst, tc, i)
	}
	return dst
}

// text appends a reasoning or text delta, opening its block first.
func (s *Stream) text(dst []byte, k kind, t []byte) []byte {
	if s.cur != k {
		dst = s.closeCur(dst)
		s.cur, s.curOut = k, s.out
		s.out++
		s.acc = s.acc[:0]
		dst = s.openText(dst, k)
	}
	s.acc = append(s.acc, t...)
	return s.textDelta(dst, k, t)
}

// toolDelta assembles one tool call fragment.
func (s *Stream) toolDelta(dst []byte, tc *fastjson.Value, pos int) []byte {
	idx := pos
	if iv := tc.Get("index"); iv != nil && iv.Type() == fastjson.TypeNumber {
		idx = iv.GetInt()
	}
	id := str(tc, "id")
	fn := tc.Get("function")
	name := str(fn, "name")
	t := s.findTool(idx, id)
	if len(id) > 0 && len(t.id) == 0 {
		t.id = append(t.id, id...)
	}
	if len(name) > 0 && len(t.name) == 0 {
		t.name = append(t.name, name...)
		t.custom = s.api == APIResponses && s.req.isCustom(t.name)
	}
	args := str(fn, "arguments")
	if av := fn.Get("arguments"); av != nil && av.Type() == fastjson.TypeObject {
		s.scratch = appendJSON(s.scratch[:0], av, 0) // a server that sends the object itself
		args = s.scratch
	}
	if !t.opened {
		t.args = append(t.args, args...)
		if len(t.name) == 0 {
			return dst // opened once its name is known
		}
		return s.openTool(dst, t, t.args)
	}
	t.args = append(t.args, args...)
	if len(args) == 0 || t.custom {
		return dst
	}
	return s.toolArgs(dst, t, args)
}

// findTool returns the state of the call with upstream index idx, or a new
// one: a known index with a different id is a new call.
func (s *Stream) findTool(idx int, id []byte) *toolState {
	for i := s.nTools - 1; i >= 0; i-- {
		t := &s.tools[i]
		if t.index != idx {
			continue
		}
		if len(id) > 0 && len(t.id) > 0 && string(id) != string(t.id) {
			break
		}
		return t
	}
	if s.nTools < len(s.tools) {
		s.tools = s.tools[:s.nTools+1]
	} else if s.nTools < cap(s.tools) {
		s.tools = s.tools[:s.nTools+1]
	} else {
		s.tools = append(s.tools, toolState{})
	}
	t := &s.tools[s.nTools]
	*t = toolState{index: idx, id: t.id[:0], name: t.name[:0], args: t.args[:0]}
	s.nTools++
	return t
}

// openTool closes the open block and opens t's with the arguments so far.
func (s *Stream) openTool(dst []byte, t *toolState, args []byte) []byte {
	dst = s.closeCur(dst)
	t.opened, t.out = true, s.out
	s.out++
	s.cur, s.curOut, s.curTool = kindTool, t.out, s.toolIndex(t)
	if len(t.id) == 0 {
		t.id = s.appendID(t.id[:0], s.toolIDPrefix(), t.out)
	}
	dst = s.startTool(dst, t)
	if len(args) > 0 && !t.custom {
		dst = s.toolArgs(dst, t, args)
	}
	return dst
}

func (s *Stream) toolIndex(t *toolState) int {
	for i := range s.tools[:s.nTools] {
		if &s.tools[i] == t {
			return i
		}
	}
	return 0
}

func (s *Stream) toolIDPrefix() string {
	if s.api == APIResponses {
		return "call_"
	}
	return "toolu_"
}

// appendID appends prefix, the answer's random base and n.
func (s *Stream) appendID(dst []byte, prefix string, n int) []byte {
	dst = append(dst, prefix...)
	dst = append(dst, s.base[:]...)
	if n >= 0 {
		dst = append(dst, '_')
		dst = appendInt(dst, n)
	}
	return dst
}

// closeCur closes the open block.
func (s *Stream) closeCur(dst []byte) []byte {
	switch s.cur {
	case kindNone:
		return dst
	case kindTool:
		t := &s.tools[s.curTool]
		t.closed = true
		dst = s.closeTool(dst, t)
	default:
		dst = s.closeText(dst, s.cur)
	}
	s.cur = kindNone
	return dst
}

// addItem records a finished item / block (JSON) for the final object.
func (s *Stream) addItem(item []byte) {
	if s.nItems > 0 {
		s.items = append(s.items, ',')
	}
	s.items = append(s.items, item...)
	s.nItems++
}

// Finish appends the closing events: open blocks closed, calls whose name
// never came opened and closed, then the dialect's end (Responses
// response.completed or response.incomplete; Messages message_delta and
// message_stop; Completions the finish chunk and [DONE]).
func (s *Stream) Finish(dst []byte) []byte {
	if s.done {
		return dst
	}
	dst = s.start(dst)
	dst = s.closeAll(dst)
	s.done = true
	return s.end(dst)
}

func (s *Stream) closeAll(dst []byte) []byte {
	for i := 0; i < s.nTools; i++ {
		t := &s.tools[i]
		if !t.opened {
			dst = s.openTool(dst, t, t.args)
		}
	}
	return s.closeCur(dst)
}

// Fail ends the stream with the dialect's error event for e: Responses
// response.failed (status "failed", the error inside), Messages an
// "event: error" with Anthropic's error object (type from the status:
// overloaded_error for 503/529, timeout_error for 504, api_error
// otherwise), Completions a data chunk with an OpenAI error object.
func (s *Stream) Fail(dst []byte, e ErrorInfo) []byte {
	if s.done {
		return dst
	}
	s.done = true
	return s.fail(dst, e)
}

// stopReason is the Anthropic stop reason of the answer.
func (s *Stream) stopReason() string {
	switch {
	case s.finish == finishLength:
		return "max_tokens"
	case s.nTools > 0 || s.finish == finishTools:
		return "tool_use"
	case s.finish == finishFilter:
		return "refusal"
	case len(s.stopSeq) > 0:
		return "stop_sequence"
	}
	return "end_turn"
}

// Dialect dispatch.

func (s *Stream) start(dst []byte) []byte {
	if s.started {
		return dst
	}
	s.started = true
	switch s.api {
	case APIResponses:
		return s.rsStart(dst)
	case APIMessages:
		return s.msStart(dst)
	}
	return dst
}

func (s *Stream) openText(dst []byte, k kind) []byte {
	switch s.api {
	case APIResponses:
		return s.rsOpenText(dst, k)
	case APIMessages:
		return s.msOpenText(dst, k)
	}
	return dst
}

func (s *Stream) textDelta(dst []byte, k kind, t []byte) []byte {
	switch s.api {
	case APIResponses:
		return s.rsTextDelta(dst, k, t)
	case APIMessages:
		return s.msTextDelta(dst, k, t)
	case APICompletions:
		if k == kindText {
			return s.cpChunk(dst, t, "")
		}
	}
	return dst
}

func (s *Stream) closeText(dst []byte, k kind) []byte {
	switch s.api {
	case APIResponses:
		return s.rsCloseText(dst, k)
	case APIMessages:
		return s.msCloseText(dst, k)
	case APICompletions:
		s.items = append(s.items, s.acc...) // the whole text, for cpObject
	}
	return dst
}

func (s *Stream) startTool(dst []byte, t *toolState) []byte {
	switch s.api {
	case APIResponses:
		return s.rsStartTool(dst, t)
	case APIMessages:
		return s.msStartTool(dst, t)
	}
	return dst
}

func (s *Stream) toolArgs(dst []byte, t *toolState, args []byte) []byte {
	switch s.api {
	case APIResponses:
		return s.rsToolArgs(dst, t, args)
	case APIMessages:
		return s.msToolArgs(dst, t, args)
	}
	return dst
}

func (s *Stream) closeTool(dst []byte, t *toolState) []byte {
	switch s.api {
	case APIResponses:
		return s.rsCloseTool(dst, t)
	case APIMessages:
		return s.msCloseTool(dst, t)
	}
	return dst
}

func (s *Stream) end(dst []byte) []byte {
	switch s.api {
	case APIResponses:
		return s.rsEnd(dst)
	case APIMessages:
		return s.msEnd(dst)
	case APICompletions:
		return s.cpEnd(dst)
	}
	return dst
}

func (s *Stream) fail(dst []byte, e ErrorInfo) []byte {
	switch s.api {
	case APIResponses:
		return s.rsFail(dst, e)
	case APIMessages:
		return s.msFail(dst, e)
	}
	dst = append(dst, `data: {"error":`...)
	dst = appendOpenAIError(dst, e)
	return append(dst, "}\n\n"...)
}
