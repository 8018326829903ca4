package edge

import (
	"bytes"
	"encoding/hex"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/geniehive/geniehive/edge/dialect"
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/tracing"
	"github.com/geniehive/geniehive/routing"
)

// OpenTelemetry traces of proxied requests (Deps.TracerProvider; off when
// nil). Each request gets a server span, the child of the client's W3C
// traceparent when it sent one, named "POST /v1/chat/completions" (the
// route) with children:
//
//	policy.evaluate   the policy engine's decision
//	routing.plan      the router's plan (strategy, candidates)
//	upstream.attempt  one per candidate tried (kind client; failover shows
//	                  as several, the failed ones with status Error); the
//	                  upstream receives this span's traceparent
//	stream.relay      relaying an SSE answer, to its last event
//
// Attributes follow OpenTelemetry's GenAI semantic conventions plus
// GenieHive's own, each on the span it describes:
//
//	server            http.request.method, http.route,
//	                  http.response.status_code, gen_ai.operation.name,
//	                  gen_ai.request.model (as the client named it),
//	                  gen_ai.response.model (the asset that answered),
//	                  gen_ai.usage.input_tokens and output_tokens (when the
//	                  answer or stream reports usage), error.type (failed)
//	policy.evaluate   geniehive.policy.engine, geniehive.role (the model
//	                  named a role), geniehive.denied (refused)
//	routing.plan      geniehive.strategy, geniehive.candidates,
//	                  gen_ai.request.stream
//	upstream.attempt  geniehive.attempt (1, 2, ...), geniehive.service,
//	                  gen_ai.request.model (the candidate's asset),
//	                  http.response.status_code, error.type (failed)
//
// A request's spans are one tracing.Request (reqTrace, from a pool): the
// request path writes each span's name, ID, times and a few values into
// it, and the provider's export goroutine builds the attributes from them
// (reqTrace.AppendAttributes) when it exports the spans; the client's
// traceparent is read into a span context (extractTraceparent). A traced
// request allocates nothing, and off each hook is one nil check
// (TestTracingOffAllocs).

// tracerName is the instrumentation scope of the edge's spans.
const tracerName = "github.com/geniehive/geniehive/edge"

// edgeTracer is a Server's tracing: nil when it traces nothing.
type edgeTracer struct{ q tracing.Requests }

func newEdgeTracer(tp *tracing.Provider) *edgeTracer {
	if tp == nil {
		return nil
	}
	return &edgeTracer{q: tp.Requests(tracerName)}
}

// The edge's spans, as reqTrace's spans are tagged (tracing.RequestSpan's
// Tag), and what their S1, S2, I1 and I2 hold.
const (
	spanServer  uint8 = iota // the values are reqTrace's own fields
	spanEval                 // S1 engine, S2 role, I1 denied (1)
	spanPlan                 // S1 strategy, I1 candidates, I2 stream (1)
	spanAttempt              // S1 service, S2 asset, I1 attempt, I2 HTTP status; error.type: the status' description
	spanRelay                // none
)

// reqTrace is a request's spans (tracing.Request) and the server span's
// values, from reqTraces; the export goroutine gives it back (Release)
// once its spans are exported.
type reqTrace struct {
	tracing.Request
	route, op, model, asset, errCode string
	status, in, out                  int
}

var reqTraces = sync.Pool{New: func() any { return new(reqTrace) }}

// Release puts t back in the pool (tracing.RequestOwner).
func (t *reqTrace) Release() { reqTraces.Put(t) }

// AppendAttributes appends span i's attributes to a (tracing.RequestOwner;
// on the export goroutine).
func (t *reqTrace) AppendAttributes(r *tracing.Request, i int, a []attribute.KeyValue) []attribute.KeyValue {
	s := r.Span(i)
	switch s.Tag {
	case spanServer:
		a = append(a, attrMethod.String("POST"), attrRoute.String(t.route),
			attrOperation.String(t.op), attrHTTPStatus.Int(t.status))
		if t.model != "" {
			a = append(a, attrReqModel.String(clipName(t.model)))
		}
		if t.asset != "" {
			a = append(a, attrRespModel.String(t.asset))
		}
		if t.errCode != "" {
			a = append(a, attrErrorType.String(t.errCode))
		}
		if t.in > 0 {
			a = append(a, attrInputTokens.Int(t.in))
		}
		if t.out > 0 {
			a = append(a, attrOutputTokens.Int(t.out))
		}
	case spanEval:
		a = append(a, attrEngine.String(s.S1))
		if s.I1 == 1 {
			a = append(a, attrDenied.Bool(true))
		} else if s.S2 != "" {
			a = append(a, attrRole.String(s.S2))
		}
	case spanPlan:
		a = append(a, attrStream.Bool(s.I2 == 1))
		if s.S1 != "" {
			a = append(a, attrStrategy.String(s.S1), attrCandidates.Int(int(s.I1)))
		}
	case spanAttempt:
		a = append(a, attrAttempt.Int(int(s.I1)), attrService.String(s.S1),
			attrReqModel.String(s.S2), attrHTTPStatus.Int(int(s.I2)))
		if d := s.Description(); d != "" {
			a = append(a, attrErrorType.String(d))
		}
	}
	return a
}

const (
	traceparentHeader = "traceparent"
	hexDigits         = "0123456789abcdef"
)

// injectTraceparent puts sc's W3C traceparent (and its tracestate, when it
// has one) on an upstream request: what propagation.TraceContext.Inject
// writes ("00-" trace id "-" span id "-" flags, in lower-case hex, only
// the sampled and random flags kept), without its context lookup and
// string builder.
func injectTraceparent(sc trace.SpanContext, h *fasthttp.RequestHeader) {
	if !sc.IsValid() {
		return
	}
	if ts := sc.TraceState(); ts.Len() > 0 {
		h.Set("tracestate", ts.String())
	}
	var b [2 + 1 + 32 + 1 + 16 + 1 + 2]byte
	b[0], b[1], b[2] = '0', '0', '-'
	tid, sid := sc.TraceID(), sc.SpanID()
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	f := sc.TraceFlags() & (trace.FlagsSampled | trace.FlagsRandom)
	b[53], b[54] = hexDigits[f>>4], hexDigits[f&0xf]
	h.SetBytesV(traceparentHeader, b[:])
}

// GenAI semantic-convention attribute keys
// (https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/) and
// GenieHive's own.
const (
	attrOperation    = attribute.Key("gen_ai.operation.name")
	attrReqModel     = attribute.Key("gen_ai.request.model")
	attrRespModel    = attribute.Key("gen_ai.response.model")
	attrInputTokens  = attribute.Key("gen_ai.usage.input_tokens")
	attrOutputTokens = attribute.Key("gen_ai.usage.output_tokens")
	attrRole         = attribute.Key("geniehive.role")
	attrService      = attribute.Key("geniehive.service")
	attrStrategy     = attribute.Key("geniehive.strategy")
	attrAttempt      = attribute.Key("geniehive.attempt")
	attrEngine       = attribute.Key("geniehive.policy.engine")
	attrCandidates   = attribute.Key("geniehive.candidates")
	attrHTTPStatus   = attribute.Key("http.response.status_code")
	attrMethod       = attribute.Key("http.request.method")
	attrRoute        = attribute.Key("http.route")
	attrErrorType    = attribute.Key("error.type")
	attrDenied       = attribute.Key("geniehive.denied")
	attrStream       = attribute.Key("gen_ai.request.stream")
)

// genAIOperation is gen_ai.operation.name for an operation and client API:
// the convention's chat, text_completion and embeddings; GenieHive's kind
// for the others (transcription, speech, images).
func genAIOperation(op fleet.Kind, api dialect.API) string {
	switch {
	case op == fleet.KindChat && api == dialect.APICompletions:
		return "text_completion"
	case op == fleet.KindChat:
		return "chat"
	case op == fleet.KindEmbeddings:
		return "embeddings"
	}
	return string(op)
}

// spanNames maps each inference route to its server span's name, built
// once ("POST /v1/chat/completions").
var spanNames = func() map[string]string {
	m := make(map[string]string, len(inferenceRoutes))
	for _, r := range inferenceRoutes {
		m[r.full] = "POST " + r.full
	}
	return m
}()

// traceStart opens x's server span (no-op when tracing is off), started
// when the exchange began (a clock read already taken).
func (x *exchange) traceStart(ctx *fasthttp.RequestCtx) {
	tr := x.s.tr.Load()
	if tr == nil {
		return
	}
	name, ok := spanNames[string(ctx.Path())]
	route := ""
	if ok {
		route = name[len("POST "):]
	} else {
		name = "POST" // not an inference route (serveInference serves none other)
	}
	t := reqTraces.Get().(*reqTrace)
	tr.q.Begin(&t.Request, t, extractTraceparent(&ctx.Request.Header), name, trace.SpanKindServer, x.start)
	t.route = route
	x.rt = t
}

// extractTraceparent reads a client's W3C traceparent (and tracestate) as
// propagation.TraceContext's Extract does (propagation/trace_context.go,
// extract: version 00 exactly four fields and no reserved flag bit, a
// higher version (not ff) more fields allowed, lower-case hex, only the
// sampled and random flags kept, a tracestate that does not parse
// ignored) but returns the span context itself, not a context carrying it
// (two allocations). Invalid: none, or malformed. It keeps nothing of the
// header's bytes (TestExtractMatchesSDK).
func extractTraceparent(h *fasthttp.RequestHeader) trace.SpanContext {
	v := h.Peek(traceparentHeader)
	if len(v) == 0 {
		return trace.SpanContext{}
	}
	var ver, flags [1]byte
	var scc trace.SpanContextConfig
	if !hexPart(ver[:], &v, 2) || ver[0] == 0xff {
		return trace.SpanContext{}
	}
	if !hexPart(scc.TraceID[:], &v, 32) || !hexPart(scc.SpanID[:], &v, 16) || !hexPart(flags[:], &v, 2) {
		return trace.SpanContext{}
	}
	if ver[0] == 0 && (len(v) != 0 || flags[0] > 3) {
		return trace.SpanContext{}
	}
	scc.TraceFlags = trace.TraceFlags(flags[0]) & (trace.FlagsSampled | trace.FlagsRandom)
	if ts := h.Peek("tracestate"); len(ts) > 0 {
		scc.TraceState, _ = trace.ParseTraceState(string(ts))
	}
	scc.Remote = true
	sc := trace.NewSpanContext(scc)
	if !sc.IsValid() {
		return trace.SpanContext{}
	}
	return sc
}

// hexPart decodes the next "-"-separated field of *v, which must be n
// lower-case hex digits, into dst, and moves *v past it (extractPart's
// rule: a field that is missing or of another length, or a character
// that is not lower-case hex, fails).
func hexPart(dst []byte, v *[]byte, n int) bool {
	part, rest, _ := bytes.Cut(*v, dash)
	*v = rest
	if len(part) != n {
		return false
	}
	bad := byte(0)
	for i := 0; i < n; i += 2 {
		hi, lo := hexRev[part[i]], hexRev[part[i+1]]
		dst[i/2] = hi<<4 | lo
		bad |= hi | lo
	}
	return bad&0xf0 == 0
}

var dash = []byte("-")

// hexRev maps a lower-case hex digit to its value, anything else to 0xff.
var hexRev = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range hexDigits {
		t[c] = byte(i)
	}
	return t
}()

// child opens an internal child span of x's server span, of the kind
// tag says (spanEval, ...), and returns its index; -1 when tracing is off.
func (x *exchange) child(name string, tag uint8) int { return x.childAt(name, tag, time.Time{}) }

// childAt is child starting at at (zero: now), a time the caller already
// read (one clock read fewer).
func (x *exchange) childAt(name string, tag uint8, at time.Time) int {
	if x.rt == nil {
		return -1
	}
	return x.rt.Open(name, trace.SpanKindInternal, tag, at)
}

// traceEval ends the policy.evaluate span i at end (zero: now) with the
// engine that decided and what it decided (a role the model resolved
// through, a denial).
func (x *exchange) traceEval(i int, engine string, err error, end time.Time) {
	if i < 0 {
		return
	}
	s := x.rt.Span(i)
	s.S1, s.S2, s.I1 = engine, "", 0
	if x.dec.Deny != nil {
		s.I1 = 1
	} else if len(x.dec.Targets) > 0 {
		s.S2 = x.dec.Targets[0].Role
	}
	x.closeSpan(i, err, end)
}

// tracePlan ends the routing.plan span i with the router's strategy and
// candidate count (p: nil when planning failed).
func (x *exchange) tracePlan(i int, p *routing.Plan, err error) {
	if i < 0 {
		return
	}
	s := x.rt.Span(i)
	s.S1, s.I1, s.I2 = "", 0, 0
	if x.stream {
		s.I2 = 1
	}
	if p != nil && p.Strategy != "" {
		s.S1, s.I1 = p.Strategy, int32(len(p.Candidates))
	}
	x.closeSpan(i, err, time.Time{})
}

// attemptSpan opens an upstream.attempt span for candidate c, number n,
// starting at at (zero: now), puts its traceparent on the upstream
// request and returns its index (-1 when tracing is off).
func (x *exchange) attemptSpan(c *routing.Candidate, n int, req *fasthttp.Request, at time.Time) int {
	if x.rt == nil {
		return -1
	}
	i := x.rt.Open("upstream.attempt", trace.SpanKindClient, spanAttempt, at)
	s := x.rt.Span(i)
	s.S1, s.S2, s.I1, s.I2 = c.Service.ID, c.Asset, int32(n), 0
	injectTraceparent(x.rt.SpanContext(i), &req.Header)
	return i
}

// traceAttempt ends the upstream.attempt span i: status is the
// upstream's HTTP status (0: none), err the attempt's failure (its class
// is the span's error.type and status description).
func (x *exchange) traceAttempt(i int, status int, err error) {
	if i < 0 {
		return
	}
	x.rt.Span(i).I2 = int32(status)
	x.closeSpan(i, err, time.Time{})
}

// closeSpan ends span i at end (zero: now), with status Error and the
// error's class when err is not nil.
func (x *exchange) closeSpan(i int, err error, end time.Time) {
	if err != nil {
		x.rt.Close(i, codes.Error, Classify(err).Code, end)
		return
	}
	x.rt.Close(i, codes.Unset, "", end)
}

// traceUsage keeps the usage a whole answer reports, for the server span.
// ct is where answerTiming found the first completion_tokens key (-1:
// it did not look, or found none): then the count is read there, and
// prompt_tokens is looked for from the "usage" key before it (a scan back
// over the usage object's few bytes) instead of from the answer's start
// (a scan of all the content before it: the usage comes last).
func (x *exchange) traceUsage(rb []byte, ct int) {
	if x.rt == nil {
		return
	}
	pt := rb
	if ct >= 0 {
		x.outTokens = intAt(rb, ct+len(completionTokensKey))
		if u := bytes.LastIndex(rb[:ct], usageKey); u >= 0 {
			pt = rb[u:]
		}
	} else {
		x.outTokens = completionTokens(rb)
	}
	if x.inTokens = intAfter(pt, promptTokensKey); x.inTokens == 0 {
		x.inTokens = intAfter(rb, inputTokensKey)
	}
	if x.outTokens == 0 {
		x.outTokens = intAfter(rb, outputTokensKey)
	}
}

// traceStreamUsage keeps the usage a stream event reports: OpenAI's last
// chunk with stream_options.include_usage, Ollama's and llama.cpp's
// usage on their last chunk, Anthropic's message_start (input) and
// message_delta (output), the Responses API's response.completed.
func (x *exchange) traceStreamUsage(ev []byte) {
	if !hasUsageKey(ev) {
		return
	}
	if n := intAfter(ev, promptTokensKey); n > 0 {
		x.inTokens = n
	} else if n := intAfter(ev, inputTokensKey); n > 0 {
		x.inTokens = n
	}
	if n := completionTokens(ev); n > 0 {
		x.outTokens = n
	} else if n := intAfter(ev, outputTokensKey); n > 0 {
		x.outTokens = n
	}
}

// hasUsageKey reports whether ev holds `"usage"`, found from its 'u':
// bytes.Index stops at each byte equal to the needle's first, and in an
// event of JSON every key and string starts with '"', far more often than
// a 'u' comes (every stream event is scanned so when tracing is on).
func hasUsageKey(ev []byte) bool {
	for i := 1; i < len(ev); i++ {
		j := bytes.Index(ev[i:], usageTail)
		if j < 0 {
			return false
		}
		if i += j; ev[i-1] == '"' {
			return true
		}
	}
	return false
}

var (
	usageTail       = usageKey[1:]
	usageKey        = []byte(`"usage"`)
	promptTokensKey = []byte(`"prompt_tokens":`)
	inputTokensKey  = []byte(`"input_tokens":`)
	outputTokensKey = []byte(`"output_tokens":`)
)

// traceEnd ends x's spans (the relay's, then the server span) at end
// (zero: now) with what the request came to; st is the status the client
// got. The request's spans then belong to the export queue.
func (x *exchange) traceEnd(st int, end time.Time) {
	t := x.rt
	if t == nil {
		return
	}
	x.rt = nil
	if end.IsZero() {
		end = t.Now() // one clock read for both spans
	}
	if x.relay > 0 {
		t.Close(x.relay, codes.Unset, "", end)
		x.relay = 0
	}
	t.op, t.status, t.model, t.asset, t.errCode = genAIOperation(x.op, x.api), st, x.model, x.asset, x.errCode
	t.in, t.out = x.inTokens, x.outTokens
	code := codes.Unset
	if st >= 500 {
		code = codes.Error
	}
	t.End(code, x.errCode, end)
}
