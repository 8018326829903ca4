package dialect

// Responses events, in the order OpenAI's streaming reference gives them
// and Ollama's ResponsesStreamConverter (openai/responses.go) writes them:
// response.created and response.in_progress; per output item
// output_item.added, its content events, output_item.done; last
// response.completed (or response.incomplete, response.failed) with the
// whole response. Every payload carries type and sequence_number (from 0).
// Reasoning is written as a reasoning item's summary text (what Codex CLI
// shows by default; Ollama does the same).

func (s *Stream) rsEvent(dst []byte, typ string) []byte {
	dst = append(dst, "event: "...)
	dst = append(dst, typ...)
	dst = append(dst, "\ndata: {\"type\":\""...)
	dst = append(dst, typ...)
	dst = append(dst, `","sequence_number":`...)
	dst = appendInt(dst, s.seq)
	s.seq++
	return dst
}

const evEnd = "}\n\n"

// rsItemRef appends ,"item_id":..,"output_index":n for the open block.
func (s *Stream) rsItemRef(dst []byte, prefix string, out int) []byte {
	dst = append(dst, `,"item_id":"`...)
	dst = s.appendID(dst, prefix, out)
	dst = append(dst, `","output_index":`...)
	return appendInt(dst, out)
}

func itemPrefix(k kind) string {
	if k == kindReasoning {
		return "rs_"
	}
	return "msg_"
}

func (s *Stream) rsStart(dst []byte) []byte {
	dst = s.rsEvent(dst, "response.created")
	dst = append(dst, `,"response":`...)
	dst = s.rsObject(dst, "in_progress", nil)
	dst = append(dst, evEnd...)
	dst = s.rsEvent(dst, "response.in_progress")
	dst = append(dst, `,"response":`...)
	dst = s.rsObject(dst, "in_progress", nil)
	return append(dst, evEnd...)
}

// rsObject appends the response object.
func (s *Stream) rsObject(dst []byte, status string, e *ErrorInfo) []byte {
	r := s.req
	dst = append(dst, `{"id":"`...)
	dst = s.appendID(dst, "resp_", -1)
	dst = append(dst, `","object":"response","created_at":`...)
	dst = appendInt(dst, int(s.created))
	dst = append(dst, `,"status":"`...)
	dst = append(dst, status...)
	dst = append(dst, `","background":false,"completed_at":`...)
	if status == "completed" {
		dst = appendInt(dst, int(s.created))
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"error":`...)
	if e != nil {
		code := "server_error"
		if e.Status == 429 {
			code = "rate_limit_exceeded"
		}
		dst = append(dst, `{"code":"`...)
		dst = append(dst, code...)
		dst = append(dst, `","message":`...)
		dst = appendStr(dst, []byte(e.Message))
		dst = append(dst, '}')
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"incomplete_details":`...)
	switch {
	case status != "incomplete":
		dst = append(dst, "null"...)
	case s.finish == finishFilter:
		dst = append(dst, `{"reason":"content_filter"}`...)
	default:
		dst = append(dst, `{"reason":"max_output_tokens"}`...)
	}
	dst = append(dst, `,"model":`...)
	dst = appendStr(dst, r.model)
	dst = append(dst, `,"output":[`...)
	dst = append(dst, s.items...)
	dst = append(dst, `],"usage":`...)
	dst = s.rsUsage(dst)
	dst = append(dst, r.echo...)
	return append(dst, `,"service_tier":"default"}`...)
}

func (s *Stream) rsUsage(dst []byte) []byte {
	u := &s.usage
	if !u.has {
		return append(dst, "null"...)
	}
	dst = append(dst, `{"input_tokens":`...)
	dst = appendInt(dst, u.prompt)
	dst = append(dst, `,"input_tokens_details":{"cached_tokens":`...)
	dst = appendInt(dst, u.cached)
	dst = append(dst, `},"output_tokens":`...)
	dst = appendInt(dst, u.completion)
	dst = append(dst, `,"output_tokens_details":{"reasoning_tokens":`...)
	dst = appendInt(dst, u.reasons)
	dst = append(dst, `},"total_tokens":`...)
	dst = appendInt(dst, u.total)
	return append(dst, '}')
}

func (s *Stream) rsOpenText(dst []byte, k kind) []byte {
	out := s.curOut
	dst = s.rsEvent(dst, "response.output_item.added")
	dst = append(dst, `,"output_index":`...)
	dst = appendInt(dst, out)
	dst = append(dst, `,"item":{"id":"`...)
	dst = s.appendID(dst, itemPrefix(k), out)
	if k == kindReasoning {
		dst = append(dst, `","type":"reasoning","summary":[]}`...)
		dst = append(dst, evEnd...)
		dst = s.rsEvent(dst, "response.reasoning_summary_part.added")
		dst = s.rsItemRef(dst, "rs_", out)
		return append(dst, `,"summary_index":0,"part":{"type":"summary_text","text":""}`+evEnd...)
	}
	dst = append(dst, `","type":"message","status":"in_progress","role":"assistant","content":[]}`...)
	dst = append(dst, evEnd...)
	dst = s.rsEvent(dst, "response.content_part.added")
	dst = s.rsItemRef(dst, "msg_", out)
	return append(dst, `,"content_index":0,"part":{"type":"output_text","text":"","annotations":[],"logprobs":[]}`+evEnd...)
}

func (s *Stream) rsTextDelta(dst []byte, k kind, t []byte) []byte {
	if k == kindReasoning {
		dst = s.rsEvent(dst, "response.reasoning_summary_text.delta")
		dst = s.rsItemRef(dst, "rs_", s.curOut)
		dst = append(dst, `,"summary_index":0,"delta":`...)
		dst = appendStr(dst, t)
		return append(dst, evEnd...)
	}
	dst = s.rsEvent(dst, "response.output_text.delta")
	dst = s.rsItemRef(dst, "msg_", s.curOut)
	dst = append(dst, `,"content_index":0,"delta":`...)
	dst = appendStr(dst, t)
	return append(dst, `,"logprobs":[]`+evEnd...)
}

func (s *Stream) rsCloseText(dst []byte, k kind) []byte {
	out := s.curOut
	n := len(s.scratch)
	if k == kindReasoning {
		dst = s.rsEvent(dst, "response.reasoning_summary_text.done")
		dst = s.rsItemRef(dst, "rs_", out)
		dst = append(dst, `,"summary_index":0,"text":`...)
		dst = appendStr(dst, s.acc)
		dst = append(dst, evEnd...)
		dst = s.rsEvent(dst, "response.reasoning_summary_part.done")
		dst = s.rsItemRef(dst, "rs_", out)
		dst = append(dst, `,"summary_index":0,"part":{"type":"summary_text","text":`...)
		dst = appendStr(dst, s.acc)
		dst = append(dst, "}"+evEnd...)
		s.scratch = append(s.scratch, `{"id":"`...)
		s.scratch = s.appendID(s.scratch, "rs_", out)
		s.scratch = append(s.scratch, `","type":"reasoning","summary":[{"type":"summary_text","text":`...)
		s.scratch = appendStr(s.scratch, s.acc)
		s.scratch = append(s.scratch, `}]}`...)
	} else {
		dst = s.rsEvent(dst, "response.output_text.done")
		dst = s.rsItemRef(dst, "msg_", out)
		dst = append(dst, `,"content_index":0,"text":`...)
		dst = appendStr(dst, s.acc)
		dst = append(dst, `,"logprobs":[]`+evEnd...)
		dst = s.rsEvent(dst, "response.content_part.done")
		dst = s.rsItemRef(dst, "msg_", out)
		dst = append(dst, `,"content_index":0,"part":`...)
		dst = appendOutputText(dst, s.acc)
		dst = append(dst, evEnd...)
		s.scratch = append(s.scratch, `{"id":"`...)
		s.scratch = s.appendID(s.scratch, "msg_", out)
		s.scratch = append(s.scratch, `","type":"message","status":"completed","role":"assistant","content":[`...)
		s.scratch = appendOutputText(s.scratch, s.acc)
		s.scratch = append(s.scratch, "]}"...)
	}
	return s.rsItemDone(dst, out, n)
}

// rsItemDone writes output_item.done for the item JSON at s.scratch[n:]
// and records it.
func (s *Stream) rsItemDone(dst []byte, out, n int) []byte {
	item := s.scratch[n:]
	dst = s.rsEvent(dst, "response.output_item.done")
	dst = append(dst, `,"output_index":`...)
	dst = appendInt(dst, out)
	dst = append(dst, `,"item":`...)
	dst = append(dst, item...)
	dst = append(dst, evEnd...)
	s.addItem(item)
	s.scratch = s.scratch[:n]
	return dst
}

func appendOutputText(dst, t []byte) []byte {
	dst = append(dst, `{"type":"output_text","text":`...)
	dst = appendStr(dst, t)
	return append(dst, `,"annotations":[],"logprobs":[]}`...)
}

// rsToolItem appends a function_call (or custom_tool_call) item.
func (s *Stream) rsToolItem(dst []byte, t *toolState, status string, args []byte) []byte {
	dst = append(dst, `{"id":"`...)
	if t.custom {
		dst = s.appendID(dst, "ctc_", t.out)
		dst = append(dst, `","type":"custom_tool_call","status":"`...)
	} else {
		dst = s.appendID(dst, "fc_", t.out)
		dst = append(dst, `","type":"function_call","status":"`...)
	}
	dst = append(dst, status...)
	dst = append(dst, `","call_id":`...)
	dst = appendStr(dst, t.id)
	dst = append(dst, `,"name":`...)
	dst = appendStr(dst, t.name)
	if t.custom {
		dst = append(dst, `,"input":`...)
	} else {
		dst = append(dst, `,"arguments":`...)
	}
	dst = appendStr(dst, args)
	return append(dst, '}')
}

func (s *Stream) rsStartTool(dst []byte, t *toolState) []byte {
	dst = s.rsEvent(dst, "response.output_item.added")
	dst = append(dst, `,"output_index":`...)
	dst = appendInt(dst, t.out)
	dst = append(dst, `,"item":`...)
	dst = s.rsToolItem(dst, t, "in_progress", nil)
	return append(dst, evEnd...)
}

func (s *Stream) rsToolArgs(dst []byte, t *toolState, args []byte) []byte {
	dst = s.rsEvent(dst, "response.function_call_arguments.delta")
	dst = s.rsItemRef(dst, "fc_", t.out)
	dst = append(dst, `,"delta":`...)
	dst = appendStr(dst, args)
	return append(dst, evEnd...)
}

func (s *Stream) rsCloseTool(dst []byte, t *toolState) []byte {
	n := len(s.scratch)
	if t.custom {
		// The model called a function taking {"input": "..."}: hand the
		// input back as the custom tool's free text.
		in := s.customInput(t.args)
		dst = s.rsEvent(dst, "response.custom_tool_call_input.delta")
		dst = s.rsItemRef(dst, "ctc_", t.out)
		dst = append(dst, `,"delta":`...)
		dst = appendStr(dst, in)
		dst = append(dst, evEnd...)
		dst = s.rsEvent(dst, "response.custom_tool_call_input.done")
		dst = s.rsItemRef(dst, "ctc_", t.out)
		dst = append(dst, `,"input":`...)
		dst = appendStr(dst, in)
		dst = append(dst, evEnd...)
		s.scratch = s.rsToolItem(s.scratch, t, "completed", in)
		return s.rsItemDone(dst, t.out, n)
	}
	args := t.args
	if len(args) == 0 {
		args = emptyArgs
	}
	dst = s.rsEvent(dst, "response.function_call_arguments.done")
	dst = s.rsItemRef(dst, "fc_", t.out)
	dst = append(dst, `,"name":`...)
	dst = appendStr(dst, t.name)
	dst = append(dst, `,"arguments":`...)
	dst = appendStr(dst, args)
	dst = append(dst, evEnd...)
	s.scratch = s.rsToolItem(s.scratch, t, "completed", args)
	return s.rsItemDone(dst, t.out, n)
}

// customInput reads "input" from a custom tool call's JSON arguments (the
// arguments themselves when they are not such an object).
func (s *Stream) customInput(args []byte) []byte {
	v, err := s.p2.ParseBytes(args)
	if err != nil {
		return args
	}
	if in := v.Get("input"); in != nil && in.Type() == fastjsonString {
		return in.GetStringBytes()
	}
	return args
}

func (s *Stream) rsEnd(dst []byte) []byte {
	status, typ := "completed", "response.completed"
	if s.finish == finishLength || s.finish == finishFilter {
		status, typ = "incomplete", "response.incomplete"
	}
	dst = s.rsEvent(dst, typ)
	dst = append(dst, `,"response":`...)
	dst = s.rsObject(dst, status, nil)
	return append(dst, evEnd...)
}

func (s *Stream) rsFail(dst []byte, e ErrorInfo) []byte {
	dst = s.rsEvent(dst, "response.failed")
	dst = append(dst, `,"response":`...)
	dst = s.rsObject(dst, "failed", &e)
	return append(dst, evEnd...)
}
