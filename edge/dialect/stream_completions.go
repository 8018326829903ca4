package dialect

// Legacy Completions chunks (text_completion objects, as OpenAI's and
// vLLM's /v1/completions stream them): one per text delta, then one with
// the finish reason, the usage chunk when the client asked for it, [DONE].
// Reasoning and tool calls have no place in this API and are dropped.

func (s *Stream) cpHead(dst []byte) []byte {
	dst = append(dst, `{"id":"`...)
	dst = s.appendID(dst, "cmpl-", -1)
	dst = append(dst, `","object":"text_completion","created":`...)
	dst = appendInt(dst, int(s.created))
	dst = append(dst, `,"model":`...)
	return appendStr(dst, s.req.model)
}

func (s *Stream) cpChunk(dst, text []byte, finish string) []byte {
	dst = append(dst, "data: "...)
	dst = s.cpHead(dst)
	dst = append(dst, `,"choices":[{"text":`...)
	dst = appendStr(dst, text)
	dst = append(dst, `,"index":0,"logprobs":null,"finish_reason":`...)
	if finish == "" {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '"')
		dst = append(dst, finish...)
		dst = append(dst, '"')
	}
	return append(dst, "}]}\n\n"...)
}

func (s *Stream) cpFinish() string {
	switch s.finish {
	case finishLength:
		return "length"
	case finishFilter:
		return "content_filter"
	}
	return "stop"
}

func (s *Stream) cpUsage(dst []byte) []byte {
	dst = append(dst, `"usage":{"prompt_tokens":`...)
	dst = appendInt(dst, s.usage.prompt)
	dst = append(dst, `,"completion_tokens":`...)
	dst = appendInt(dst, s.usage.completion)
	dst = append(dst, `,"total_tokens":`...)
	dst = appendInt(dst, s.usage.total)
	return append(dst, '}')
}

func (s *Stream) cpEnd(dst []byte) []byte {
	dst = s.cpChunk(dst, nil, s.cpFinish())
	if s.req.includeUsage && s.usage.has {
		dst = append(dst, "data: "...)
		dst = s.cpHead(dst)
		dst = append(dst, `,"choices":[],`...)
		dst = s.cpUsage(dst)
		dst = append(dst, "}\n\n"...)
	}
	return append(dst, "data: [DONE]\n\n"...)
}

// cpObject appends the whole text_completion (non-streamed answers).
func (s *Stream) cpObject(dst []byte) []byte {
	dst = s.cpHead(dst)
	dst = append(dst, `,"choices":[{"text":`...)
	dst = appendStr(dst, s.items)
	dst = append(dst, `,"index":0,"logprobs":null,"finish_reason":"`...)
	dst = append(dst, s.cpFinish()...)
	dst = append(dst, `"}],`...)
	dst = s.cpUsage(dst)
	return append(dst, '}')
}
