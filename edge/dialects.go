package edge

// The agent-facing APIs — OpenAI Responses (Codex CLI), Anthropic Messages
// and count_tokens (Claude Code), legacy Completions — served through the
// one request pipeline of serveInference: the same authentication,
// resolution, policy, routing, failover, in-flight accounting, metrics and
// access log as Chat Completions. What differs is confined here and in
// three hooks of the pipeline:
//
//   - parse: edge/dialect reads the body (parseDialect) instead of the chat
//     scanner; its facts feed the policy input (api, model, stream, token
//     limit, explicit thinking choice) and the router (prompt text);
//   - forward: per candidate, rewriteDialect decides between native
//     pass-through (the service lists the API in fleet.Service.APIs and the
//     native path honours the request policy) and translation to Chat
//     Completions, and picks the upstream path;
//   - respond / the SSE relay: a translated answer is turned back into the
//     client's dialect (whole, or event by event with a flush per upstream
//     event); a native stream is relayed as is, and a cut one ends with the
//     dialect's own error event.
//
// Errors on the Anthropic routes are written in Anthropic's format by
// writeError (anthropicRoute), mapped by Classify like every other error.

import (
	"bytes"
	"errors"
	"strconv"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/geniehive/geniehive/edge/dialect"
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/jsonw"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/routing"
)

// Endpoint labels of the agent-facing APIs.
const (
	endpointResponses   = "responses"
	endpointMessages    = "messages"
	endpointCountTokens = "count_tokens"
	endpointCompletions = "completions"
)

// Upstream paths of each API when passed through natively.
var nativePaths = [...]string{
	dialect.APIChat:        "/v1/chat/completions",
	dialect.APIResponses:   "/v1/responses",
	dialect.APIMessages:    "/v1/messages",
	dialect.APICompletions: "/v1/completions",
	dialect.APICountTokens: "/v1/messages/count_tokens",
}

// errSkipCandidate: the candidate cannot serve this request at all (a
// count_tokens request to a service without the route); forward moves on.
var errSkipCandidate = errors.New("edge: candidate skipped")

// anthropicRoute reports whether errors on this request are written in
// Anthropic's format: the Messages routes, and GET /v1/models asked by an
// Anthropic client (anthropic-version header).
func anthropicRoute(ctx *fasthttp.RequestCtx) bool {
	p := ctx.Path()
	if bytes.HasPrefix(p, []byte("/v1/messages")) {
		return true
	}
	return bytes.HasPrefix(p, []byte("/v1/models")) && len(ctx.Request.Header.Peek("anthropic-version")) > 0
}

// parseDialect reads a Responses, Messages, count_tokens or Completions
// body with edge/dialect (one validating parse) and records what the
// policy and the router decide on. The Request lives until x finishes.
func (s *Server) parseDialect(x *exchange, body []byte) error {
	r := dialect.AcquireRequest()
	x.dreq = r
	if err := r.Parse(x.api, body); err != nil {
		var de *dialect.Error
		if errors.As(err, &de) {
			return &APIError{Status: de.Status, Type: de.Type, Code: de.Code, Param: de.Param, Message: de.Message}
		}
		return err
	}
	f := r.Facts()
	// Facts' strings view the Request's reused buffers: the model goes on
	// as an interned copy (it may outlive the request in caches and logs).
	x.model = s.names.intern(unsafe.Slice(unsafe.StringData(f.Model), len(f.Model)))
	x.stream = f.Stream && x.api != dialect.APICountTokens
	x.scan.maxTokens = f.MaxTokens
	x.scan.thinking = f.Thinking
	if x.model == "" {
		return errNoModel
	}
	return nil
}

// nativeHonours reports whether passing x through natively keeps the
// request policy and the client's own thinking choice. AppendPatched
// rewrites the model and the system prompt only, so defaults, overrides
// and a thinking switch need the Chat Completions path; and the native
// Ollama routes ignore thinking off (0.17.4 recordings: /v1/responses
// ignores reasoning.effort "none", /v1/messages thinking "disabled"; not
// verified elsewhere), so a client turning thinking off is translated too.
// Completions have no system prompt member.
func nativeHonours(x *exchange, p *policy.Patch) bool {
	if p != nil && (len(p.Defaults) > 0 || len(p.Overrides) > 0 || p.DisableThinking) {
		return false
	}
	if x.api == dialect.APICompletions {
		return p == nil || p.SystemPrompt == nil
	}
	return x.dreq.Facts().Thinking >= 0
}

// rewriteDialect builds the upstream body and path for candidate c: the
// client's body patched (model, system prompt) when the service speaks the
// API natively and that path honours the policy, else the Chat Completions
// translation with the request policy applied to it.
func (s *Server) rewriteDialect(bb *bbuf, body []byte, x *exchange, c *routing.Candidate) ([]byte, string, error) {
	var patch *policy.Patch
	if c.Target != nil {
		patch = c.Target.Patch
	}
	r := x.dreq
	x.native = c.Service.Speaks(x.api.String()) && nativeHonours(x, patch)
	if x.api == dialect.APICountTokens && !x.native {
		return nil, "", errSkipCandidate
	}
	if x.native {
		dp := dialect.Patch{Model: c.Asset}
		if patch != nil && patch.SystemPrompt != nil {
			dp.Prompt = &patch.SystemPrompt.Text
			switch patch.SystemPrompt.Mode {
			case fleet.PromptAppend:
				dp.Mode = dialect.PromptAppend
			case fleet.PromptReplace:
				dp.Mode = dialect.PromptReplace
			}
		}
		bb.B = r.AppendPatched(bb.B[:0], body, dp)
		return bb.B, nativePaths[x.api], nil
	}
	o := chatOptions(c.Service.Protocol, patch)
	o.Model = c.Asset
	var err error
	if bb.B, err = r.AppendChat(bb.B[:0], &o); err != nil {
		return nil, "", s.parseDialectErr(err)
	}
	if patch != nil && (len(patch.Defaults) > 0 || len(patch.Overrides) > 0 || patch.SystemPrompt != nil) {
		// The thinking switch is already in the body (ChatOptions, in the
		// form this upstream honours); the rest of the policy applies to
		// the Chat Completions body like any chat request's.
		p := *patch
		p.DisableThinking = false
		out, err := policies.ApplyPatch(bb.B, &p, policies.DialectOpenAI, "")
		if err != nil {
			return nil, "", badRequest("invalid_request", "", "request body could not be rewritten: "+err.Error())
		}
		bb.B = append(bb.B[:0], out...)
	}
	return bb.B, nativePaths[dialect.APIChat], nil
}

func (s *Server) parseDialectErr(err error) error {
	var de *dialect.Error
	if errors.As(err, &de) {
		return &APIError{Status: de.Status, Type: de.Type, Code: de.Code, Param: de.Param, Message: de.Message}
	}
	return err
}

// chatOptions adapt the translated body to the service's server
// (docs/UPSTREAMS.md "Thinking: which switch each server honours" and
// "Where the reasoning text comes back").
func chatOptions(protocol string, p *policy.Patch) dialect.ChatOptions {
	o := dialect.ChatOptions{DisableThinking: p != nil && p.DisableThinking}
	switch protocol {
	case fleet.ProtocolOllama:
		o.ReasoningKey, o.ThinkingOff = "reasoning", dialect.EffortNone
	case fleet.ProtocolVLLM:
		o.ThinkingOff, o.TopK = dialect.TemplateKwargs, true
	case fleet.ProtocolLlamaCPP:
		o.TopK = true
	}
	return o
}

// respondTranslated answers a non-streamed translated request: the
// upstream's Chat Completions answer rb (reasoning already stripped when
// the policy says so) in the client's dialect.
func (s *Server) respondTranslated(ctx *fasthttp.RequestCtx, x *exchange, rb []byte) {
	sb := getBuf()
	defer putBuf(sb)
	out, err := x.dreq.AppendResponse(sb.B[:0], rb)
	sb.B = out
	ctx.Response.SwapBody(rb) // keep rb's capacity with the response
	if err != nil {
		x.fail(ctx, &APIError{Status: 502, Type: "server_error", Code: "upstream_malformed",
			Message: "upstream " + x.service + " answered with a body that is not a Chat Completions answer"})
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(out)
}

// countTokens answers POST /v1/messages/count_tokens once the request is
// decided: through a candidate that serves count_tokens natively (with
// failover), else — no such candidate, none answering, or no candidate at
// all — with edge/dialect's documented estimate, so that counting never
// stops an agent.
func (s *Server) countTokens(ctx *fasthttp.RequestCtx, x *exchange, body []byte, planErr error) {
	if planErr == nil {
		for i := range x.plan.Candidates {
			if x.plan.Candidates[i].Service.Speaks(fleet.APICountTokens) {
				s.forward(ctx, x, body, nil, nativePaths[dialect.APICountTokens])
				if x.status == 200 {
					return
				}
				break
			}
		}
	}
	ctx.Response.ResetBody()
	ctx.Response.Header.Del("Retry-After")
	x.status, x.errCode = 200, ""
	ctx.SetStatusCode(200)
	ctx.SetContentType("application/json")
	sb := getBuf()
	sb.B = dialect.AppendCountTokens(sb.B[:0], x.dreq.EstimateInputTokens())
	ctx.SetBody(sb.B)
	putBuf(sb)
}

// writeAnthropicError answers with e in Anthropic's error format and
// status mapping (dialect.AppendError). An upstream's own error body is
// relayed when it already is an Anthropic error; otherwise its message is
// kept in ours.
func writeAnthropicError(ctx *fasthttp.RequestCtx, e *APIError) {
	msg := e.Message
	if len(e.Body) > 0 {
		var p fastjson.Parser
		if v, err := p.ParseBytes(e.Body); err == nil {
			if string(v.GetStringBytes("type")) == "error" && v.Get("error", "message") != nil {
				st, _ := dialect.AnthropicType(e.Status)
				ctx.SetStatusCode(st)
				ctx.SetBody(e.Body)
				return
			}
			if m := v.GetStringBytes("error", "message"); len(m) > 0 {
				msg += ": " + string(m)
			} else if m := v.GetStringBytes("error"); len(m) > 0 {
				msg += ": " + string(m)
			}
		}
	}
	buf := getBuf()
	st, b := dialect.AppendError(buf.B[:0], dialect.APIMessages, dialect.ErrorInfo{Status: e.Status, Type: e.Type, Code: e.Code, Param: e.Param, Message: msg})
	buf.B = b
	ctx.SetStatusCode(st)
	ctx.SetBody(b)
	putBuf(buf)
}

// serveAnthropicModels answers GET /v1/models for an Anthropic client: the
// routable chat models and roles in Anthropic's list format.
func (s *Server) serveAnthropicModels(ctx *fasthttp.RequestCtx) {
	d := s.modelsDoc(ctx)
	if d == nil {
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(d.anthropic)
}

// anthropicModels is the Anthropic models list of entries: the routable
// chat models and roles (built with the other /v1/models documents).
func anthropicModels(entries []ModelEntry) []byte {
	ms := make([]dialect.Model, 0, len(entries))
	for i := range entries {
		e := &entries[i]
		m := &e.GenieHive
		chat := false
		for _, op := range m.Operations {
			chat = chat || op == fleet.KindChat
		}
		if !chat || !m.Routable {
			continue
		}
		ms = append(ms, dialect.Model{ID: e.ID, Created: time.Unix(e.Created, 0), MaxInputTokens: m.ContextLength})
	}
	return dialect.AppendAnthropicModels(nil, ms)
}

// nativeStreamEnd reports whether an event of a natively relayed
// Responses or Messages stream ends it (there is no [DONE] there):
// response.completed / .incomplete / .failed, message_stop, error.
func nativeStreamEnd(ev []byte) bool {
	i := bytes.Index(ev, []byte("event:"))
	if i < 0 {
		return false
	}
	name := ev[i+len("event:"):]
	if j := bytes.IndexByte(name, '\n'); j >= 0 {
		name = name[:j]
	}
	switch string(bytes.TrimSpace(name)) {
	case "response.completed", "response.incomplete", "response.failed", "message_stop", "error":
		return true
	}
	return false
}

// appendNativeStreamError appends the dialect's own error event for a
// natively relayed stream the upstream cut off: Anthropic's event: error,
// or the Responses error event (sequence_number continuing the
// upstream's count of events).
func appendNativeStreamError(out []byte, api dialect.API, e *APIError, seq int) []byte {
	if api.Anthropic() {
		out = append(out, "event: error\ndata: "...)
		_, out = dialect.AppendError(out, api, dialect.ErrorInfo{Status: 502, Type: e.Type, Code: e.Code, Message: e.Message})
		return append(out, "\n\n"...)
	}
	out = append(out, `event: error`+"\n"+`data: {"type":"error","code":`...)
	out = jsonw.AppendString(out, e.Code)
	out = append(out, `,"message":`...)
	out = jsonw.AppendString(out, e.Message)
	out = append(out, `,"param":null,"sequence_number":`...)
	out = strconv.AppendInt(out, int64(seq), 10)
	return append(out, "}\n\n"...)
}

// apiNames are the policy input's api values (fleet.API*), by route API.
var apiNames = [...]string{
	dialect.APIChat:        fleet.APIChat,
	dialect.APIResponses:   fleet.APIResponses,
	dialect.APIMessages:    fleet.APIMessages,
	dialect.APICountTokens: fleet.APICountTokens,
	dialect.APICompletions: fleet.APICompletions,
}
