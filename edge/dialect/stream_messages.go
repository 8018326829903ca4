package dialect

// Anthropic Messages events, as Anthropic's streaming reference and
// Ollama's StreamConverter (anthropic/anthropic.go) write them:
// message_start (usage with the estimated input tokens: the real count
// comes in the upstream's last chunk), ping, per content block
// content_block_start / content_block_delta / content_block_stop (indices
// from 0), message_delta with stop_reason and usage, message_stop. A
// mid-stream failure is an "error" event.

import "github.com/valyala/fastjson"

const fastjsonString = fastjson.TypeString

func (s *Stream) msEvent(dst []byte, typ string) []byte {
	dst = append(dst, "event: "...)
	dst = append(dst, typ...)
	dst = append(dst, "\ndata: {\"type\":\""...)
	dst = append(dst, typ...)
	return append(dst, '"')
}

func (s *Stream) msStart(dst []byte) []byte {
	dst = s.msEvent(dst, "message_start")
	dst = append(dst, `,"message":{"id":"`...)
	dst = s.appendID(dst, "msg_", -1)
	dst = append(dst, `","type":"message","role":"assistant","model":`...)
	dst = appendStr(dst, s.req.model)
	dst = append(dst, `,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":`...)
	dst = appendInt(dst, s.req.estIn)
	dst = append(dst, `,"output_tokens":0}}`+evEnd...)
	dst = s.msEvent(dst, "ping")
	return append(dst, evEnd...)
}

func (s *Stream) msIndex(dst []byte, typ string, index int) []byte {
	dst = s.msEvent(dst, typ)
	dst = append(dst, `,"index":`...)
	return appendInt(dst, index)
}

func (s *Stream) msOpenText(dst []byte, k kind) []byte {
	dst = s.msIndex(dst, "content_block_start", s.curOut)
	if k == kindReasoning {
		return append(dst, `,"content_block":{"type":"thinking","thinking":"","signature":""}`+evEnd...)
	}
	return append(dst, `,"content_block":{"type":"text","text":""}`+evEnd...)
}

func (s *Stream) msTextDelta(dst []byte, k kind, t []byte) []byte {
	dst = s.msIndex(dst, "content_block_delta", s.curOut)
	if k == kindReasoning {
		dst = append(dst, `,"delta":{"type":"thinking_delta","thinking":`...)
	} else {
		dst = append(dst, `,"delta":{"type":"text_delta","text":`...)
	}
	dst = appendStr(dst, t)
	return append(dst, "}"+evEnd...)
}

func (s *Stream) msCloseText(dst []byte, k kind) []byte {
	dst = s.msIndex(dst, "content_block_stop", s.curOut)
	dst = append(dst, evEnd...)
	n := len(s.scratch)
	if k == kindReasoning {
		s.scratch = append(s.scratch, `{"type":"thinking","thinking":`...)
		s.scratch = appendStr(s.scratch, s.acc)
		s.scratch = append(s.scratch, `,"signature":""}`...)
	} else {
		s.scratch = append(s.scratch, `{"type":"text","text":`...)
		s.scratch = appendStr(s.scratch, s.acc)
		s.scratch = append(s.scratch, '}')
	}
	s.addItem(s.scratch[n:])
	s.scratch = s.scratch[:n]
	return dst
}

func (s *Stream) msStartTool(dst []byte, t *toolState) []byte {
	dst = s.msIndex(dst, "content_block_start", t.out)
	dst = append(dst, `,"content_block":{"type":"tool_use","id":`...)
	dst = appendStr(dst, t.id)
	dst = append(dst, `,"name":`...)
	dst = appendStr(dst, t.name)
	return append(dst, `,"input":{}}`+evEnd...)
}

func (s *Stream) msToolArgs(dst []byte, t *toolState, args []byte) []byte {
	dst = s.msIndex(dst, "content_block_delta", t.out)
	dst = append(dst, `,"delta":{"type":"input_json_delta","partial_json":`...)
	dst = appendStr(dst, args)
	return append(dst, "}"+evEnd...)
}

func (s *Stream) msCloseTool(dst []byte, t *toolState) []byte {
	dst = s.msIndex(dst, "content_block_stop", t.out)
	dst = append(dst, evEnd...)
	n := len(s.scratch)
	s.scratch = append(s.scratch, `{"type":"tool_use","id":`...)
	s.scratch = appendStr(s.scratch, t.id)
	s.scratch = append(s.scratch, `,"name":`...)
	s.scratch = appendStr(s.scratch, t.name)
	s.scratch = append(s.scratch, `,"input":`...)
	s.scratch = s.appendInput(s.scratch, t.args)
	s.scratch = append(s.scratch, '}')
	s.addItem(s.scratch[n:])
	s.scratch = s.scratch[:n]
	return dst
}

// appendInput appends tool arguments as the JSON object tool_use.input
// needs: {} when they are empty, not JSON or not an object (a model that
// wrote broken arguments; the client then sees the tool fail on them).
func (s *Stream) appendInput(dst, args []byte) []byte {
	if fastjson.ValidateBytes(args) != nil {
		return append(dst, "{}"...)
	}
	v, err := s.p2.ParseBytes(args)
	if err != nil || v.Type() != fastjson.TypeObject {
		return append(dst, "{}"...)
	}
	return appendJSON(dst, v, 0)
}

// msUsage appends Anthropic usage: input tokens without the cached ones,
// which go in cache_read_input_tokens.
func (s *Stream) msUsage(dst []byte, withInput bool) []byte {
	u := &s.usage
	dst = append(dst, `{`...)
	if withInput {
		in := s.req.estIn
		if u.has {
			in = u.prompt - u.cached
		}
		dst = append(dst, `"input_tokens":`...)
		dst = appendInt(dst, in)
		if u.cached > 0 {
			dst = append(dst, `,"cache_read_input_tokens":`...)
			dst = appendInt(dst, u.cached)
		}
		dst = append(dst, ',')
	}
	dst = append(dst, `"output_tokens":`...)
	dst = appendInt(dst, u.completion)
	return append(dst, '}')
}

func (s *Stream) msStop(dst []byte) []byte {
	dst = append(dst, `"stop_reason":"`...)
	dst = append(dst, s.stopReason()...)
	dst = append(dst, `","stop_sequence":`...)
	if len(s.stopSeq) > 0 && s.stopReason() == "stop_sequence" {
		return appendStr(dst, s.stopSeq)
	}
	return append(dst, "null"...)
}

func (s *Stream) msEnd(dst []byte) []byte {
	dst = s.msEvent(dst, "message_delta")
	dst = append(dst, `,"delta":{`...)
	dst = s.msStop(dst)
	dst = append(dst, `},"usage":`...)
	dst = s.msUsage(dst, s.usage.has)
	dst = append(dst, evEnd...)
	dst = s.msEvent(dst, "message_stop")
	return append(dst, evEnd...)
}

func (s *Stream) msFail(dst []byte, e ErrorInfo) []byte {
	_, typ := AnthropicType(e.Status)
	dst = s.msEvent(dst, "error")
	dst = append(dst, `,"error":`...)
	dst = appendAnthropicError(dst, typ, e.Message)
	return append(dst, evEnd...)
}

// msMessage appends the whole message object (non-streamed answers).
func (s *Stream) msMessage(dst []byte) []byte {
	dst = append(dst, `{"id":"`...)
	dst = s.appendID(dst, "msg_", -1)
	dst = append(dst, `","type":"message","role":"assistant","model":`...)
	dst = appendStr(dst, s.req.model)
	dst = append(dst, `,"content":[`...)
	dst = append(dst, s.items...)
	dst = append(dst, `],`...)
	dst = s.msStop(dst)
	dst = append(dst, `,"usage":`...)
	dst = s.msUsage(dst, true)
	return append(dst, '}')
}
