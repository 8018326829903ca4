package dialect

import (
	"sync"

	"github.com/geniehive/geniehive/internal/jsonw"
	"github.com/valyala/fastjson"
)

// defaultOptions are used when AppendChat is given none (never written).
var defaultOptions ChatOptions

// Request is one client request being translated: see the package
// documentation for its life cycle. The zero value is ready for Parse.
type Request struct {
	facts Facts
	p     fastjson.Parser
	v     *fastjson.Value
	top   [nFields]*fastjson.Value

	model  []byte
	text   []byte
	effort []byte
	// tools is the Chat tools array's contents (tools converted at Parse,
	// so a built-in tool is refused before routing).
	tools []byte
	// custom holds the names of Responses custom tools, each ended by 0:
	// their calls go back as custom_tool_call items.
	custom []byte
	// stops holds Messages stop_sequences, each ended by 0.
	stops []byte
	// echo is what a Responses object repeats from the request, as JSON
	// members with a leading comma.
	echo []byte
	// estIn is the estimated input tokens (Messages, for message_start and
	// count_tokens).
	estIn int
	// includeUsage: a Completions client asked for the usage chunk.
	includeUsage bool

	b      chatBuilder
	c      content
	stream Stream
}

var reqPool = sync.Pool{New: func() any { return new(Request) }}

// AcquireRequest returns a Request from a pool.
func AcquireRequest() *Request { return reqPool.Get().(*Request) }

// ReleaseRequest returns r to the pool; neither r, its Stream, nor the
// strings of its Facts may be used afterwards.
func ReleaseRequest(r *Request) {
	r.v = nil
	r.top = [nFields]*fastjson.Value{}
	r.stream.req = nil
	reqPool.Put(r)
}

// Facts are the request's facts; valid until the Request is released or
// parses another body.
func (r *Request) Facts() *Facts { return &r.facts }

// Members the translators read (folded names). Any of them twice in one
// body is refused.
const (
	fModel = iota
	fStream
	fInput
	fInstructions
	fTools
	fToolChoice
	fParallel
	fMaxOutput
	fMaxTokens
	fTemperature
	fTopP
	fTopK
	fReasoning
	fText
	fStore
	fPrevID
	fConversation
	fBackground
	fPrompt
	fMessages
	fSystem
	fStopSequences
	fStop
	fThinking
	fN
	fEcho
	fSuffix
	fBestOf
	fPresence
	fFrequency
	fSeed
	fUser
	fStreamOptions
	fMetadata
	fMCPServers
	fMaxCompletion
	fLogitBias
	nFields
)

var fieldNames = [nFields]string{"model", "stream", "input", "instructions", "tools", "tool_choice",
	"parallel_tool_calls", "max_output_tokens", "max_tokens", "temperature", "top_p", "top_k",
	"reasoning", "text", "store", "previous_response_id", "conversation", "background", "prompt",
	"messages", "system", "stop_sequences", "stop", "thinking", "n", "echo", "suffix", "best_of",
	"presence_penalty", "frequency_penalty", "seed", "user", "stream_options", "metadata",
	"mcp_servers", "max_completion_tokens", "logit_bias"}

var fieldIndex = func() map[string]int {
	m := make(map[string]int, nFields)
	for i, n := range fieldNames {
		m[n] = i
	}
	return m
}()

// maxDepth is the deepest nesting Parse accepts (the edge's scanner's).
const maxDepth = 256

// tooDeep reports whether b nests arrays and objects deeper than maxDepth
// (checked before validating, which recurses).
func tooDeep(b []byte) bool {
	d := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			i = skipString(b, i) - 1
		case '{', '[':
			if d++; d > maxDepth {
				return true
			}
		case '}', ']':
			d--
		}
	}
	return false
}

// Parse reads a client body of api: it validates the JSON, reads the
// members every translation needs, refuses what cannot be served and
// fills Facts. It keeps no reference to body.
//
// # Errors
// An *Error (status 400): not JSON or not an object (CodeInvalidJSON), a
// member twice (CodeDuplicate), a missing or mistyped member
// (CodeMissing, CodeInvalidRequest), stateful Responses (CodeStateful), a
// built-in tool (CodeUnsupportedTool) or a parameter with no Chat
// Completions equivalent (CodeUnsupported).
func (r *Request) Parse(api API, body []byte) error {
	r.reset(api)
	if tooDeep(body) {
		return invalid(CodeInvalidJSON, "", "request body nests too deeply")
	}
	if fastjson.ValidateBytes(body) != nil {
		return errNotJSON
	}
	v, err := r.p.ParseBytes(body)
	if err != nil {
		return errNotJSON
	}
	if v.Type() != fastjson.TypeObject {
		return errNotObject
	}
	r.v = v
	if err := r.readTop(v); err != nil {
		return err
	}
	if err := r.common(); err != nil {
		return err
	}
	switch api {
	case APIResponses:
		return r.parseResponses()
	case APIMessages, APICountTokens:
		return r.parseMessages()
	case APICompletions:
		return r.parseCompletions()
	}
	return invalid(CodeInvalidRequest, "", "the chat API is not translated")
}

func (r *Request) reset(api API) {
	r.facts = Facts{API: api}
	r.v = nil
	r.top = [nFields]*fastjson.Value{}
	r.model, r.text, r.effort = r.model[:0], r.text[:0], r.effort[:0]
	r.tools, r.custom, r.stops, r.echo = r.tools[:0], r.custom[:0], r.stops[:0], r.echo[:0]
	r.estIn, r.includeUsage = 0, false
}

// readTop records the top-level members (names folded as Go folds them)
// and refuses duplicates.
func (r *Request) readTop(v *fastjson.Value) error {
	o, _ := v.Object()
	var seen [1]seenSet // nFields <= 64
	var dup *Error
	o.Visit(func(k []byte, e *fastjson.Value) {
		if dup != nil {
			return
		}
		var buf [32]byte
		i, ok := fieldIndex[string(foldKey(k, &buf))]
		if !ok {
			return
		}
		if err := seen[0].add(i, fieldNames[i]); err != nil {
			dup = err
			return
		}
		r.top[i] = e
	})
	if dup != nil {
		return dup
	}
	return nil
}

// common reads model and stream.
func (r *Request) common() error {
	m := r.top[fModel]
	switch {
	case isNull(m):
		return errNoModel
	case m.Type() != fastjson.TypeString:
		return invalid(CodeInvalidRequest, "model", "model must be a string")
	}
	r.model = append(r.model, m.GetStringBytes()...)
	if len(r.model) == 0 {
		return errNoModel
	}
	r.facts.Model = b2s(r.model)
	switch s := r.top[fStream]; {
	case isNull(s):
	case s.Type() == fastjson.TypeTrue:
		r.facts.Stream = true
	case s.Type() != fastjson.TypeFalse:
		return invalid(CodeInvalidRequest, "stream", "stream must be a boolean")
	}
	return nil
}

// maxTokens reads a token limit member into Facts.MaxTokens.
func (r *Request) maxTokens(i int) error {
	n, ok := posInt(r.top[i])
	if !ok {
		return invalid(CodeInvalidRequest, fieldNames[i], fieldNames[i]+" must be an integer")
	}
	r.facts.MaxTokens = n
	return nil
}

// setText keeps (a bounded copy of) the last user text for Facts.Text.
func (r *Request) setText(t []byte) {
	if len(t) > TextBytes {
		t = t[:TextBytes]
		for len(t) > 0 && t[len(t)-1]&0xc0 == 0x80 {
			t = t[:len(t)-1] // do not end inside a UTF-8 sequence
		}
		if len(t) > 0 && t[len(t)-1] >= 0xc0 {
			t = t[:len(t)-1]
		}
	}
	r.text = append(r.text[:0], t...)
	r.facts.Text = b2s(r.text)
}

// AppendChat appends the Chat Completions body for the parsed request.
//
// # Errors
// An *Error (400) for content Parse did not look into: an unsupported
// content part or input item deep in the conversation.
func (r *Request) AppendChat(dst []byte, o *ChatOptions) ([]byte, error) {
	if r.v == nil {
		return dst, invalid(CodeInvalidRequest, "", "no parsed request")
	}
	if o == nil {
		o = &defaultOptions
	}
	start := len(dst)
	dst = append(dst, `{"model":`...)
	if o.Model != "" {
		dst = jsonw.AppendString(dst, o.Model)
	} else {
		dst = appendStr(dst, r.model)
	}
	dst = append(dst, `,"messages":[`...)
	r.b.reset(dst, o)
	var err error
	switch r.facts.API {
	case APIResponses:
		err = r.responsesMessages(&r.b)
	case APIMessages, APICountTokens:
		err = r.messagesMessages(&r.b)
	case APICompletions:
		err = r.completionsMessages(&r.b)
	}
	r.b.finish()
	dst = r.b.dst
	r.b.dst = nil
	if err != nil {
		return dst[:start], err
	}
	dst = append(dst, ']')
	if len(r.tools) > 0 {
		dst = append(dst, `,"tools":[`...)
		dst = append(dst, r.tools...)
		dst = append(dst, ']')
	}
	switch r.facts.API {
	case APIResponses:
		dst = r.responsesParams(dst, o)
	case APIMessages, APICountTokens:
		dst = r.messagesParams(dst, o)
	case APICompletions:
		dst = r.completionsParams(dst)
	}
	dst = appendThinking(dst, &r.facts, o)
	if r.facts.Stream {
		dst = append(dst, `,"stream":true,"stream_options":{"include_usage":true}`...)
	}
	return append(dst, '}'), nil
}

// appendNumber appends ,"key":v when v is a JSON number.
func appendNumber(dst []byte, key string, v *fastjson.Value) []byte {
	if v == nil || v.Type() != fastjson.TypeNumber {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	dst = append(dst, '"', ':')
	return v.MarshalTo(dst)
}

// checkNumber refuses a member that is present, not null and not a number.
func (r *Request) checkNumber(i int) error {
	v := r.top[i]
	if isNull(v) || v.Type() == fastjson.TypeNumber {
		return nil
	}
	return invalid(CodeInvalidRequest, fieldNames[i], fieldNames[i]+" must be a number")
}

// PromptMode is how a policy's system prompt combines with the client's.
type PromptMode uint8

// Prompt modes (the request policy's prepend, append, replace).
const (
	PromptPrepend PromptMode = iota
	PromptAppend
	PromptReplace
)

// Patch is what AppendPatched rewrites in a body passed through natively.
type Patch struct {
	// Model replaces the model ("" keeps it).
	Model string
	// Prompt, when set, is combined with the system prompt (Responses
	// instructions, Messages system) in Mode, joined by a blank line.
	Prompt *string
	Mode   PromptMode
}
