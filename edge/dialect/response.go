package dialect

import "github.com/valyala/fastjson"

// AppendResponse appends the client's answer for an upstream's
// non-streamed Chat Completions answer: a Responses object (reasoning
// item, message with output_text, function_call items; status completed,
// or incomplete with incomplete_details.reason max_output_tokens), an
// Anthropic message (thinking, text and tool_use blocks with parsed input;
// stop_reason end_turn, max_tokens, tool_use or stop_sequence), or a
// text_completion. It uses the same state machine as Stream, so both
// agree item for item.
//
// # Errors
// An *Error (502) when the upstream's answer is not a JSON object or is an
// error object; nothing is appended then.
func (r *Request) AppendResponse(dst, chat []byte) ([]byte, error) {
	s := r.Stream()
	v, err := s.p.ParseBytes(chat)
	if err != nil || v.Type() != fastjson.TypeObject {
		return dst, &Error{Status: 502, Type: "server_error", Code: "upstream_malformed", Message: "the upstream's answer is not a JSON object"}
	}
	if ev := v.Get("error"); ev != nil {
		return dst, upstreamError(ev)
	}
	if u := v.Get("usage"); u != nil && u.Type() == fastjson.TypeObject {
		s.usage.read(u)
	}
	s.started = true // no opening events: only the final object is kept
	sink := s.sink[:0]
	if chs := v.GetArray("choices"); len(chs) > 0 {
		sink = s.delta(sink, chs[0].Get("message"))
		s.readFinish(chs[0])
	}
	sink = s.closeAll(sink)
	s.sink = sink[:0]
	s.done = true
	switch s.api {
	case APIResponses:
		status := "completed"
		if s.finish == finishLength || s.finish == finishFilter {
			status = "incomplete"
		}
		return s.rsObject(dst, status, nil), nil
	case APIMessages:
		return s.msMessage(dst), nil
	}
	return s.cpObject(dst), nil
}
