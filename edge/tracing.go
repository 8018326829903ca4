package edge

import (
	"bytes"
	"context"
	"encoding/hex"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
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
// The server span keeps to 8 attributes on a success: a span record
// (internal/tracing) holds 8 in place; past them they go to the heap.
// With the edge's provider (tracing.SpanStarter) a request's span handles
// and records come from a pooled tracing.Spans block, no span has a context
// (a child names its parent), and the client's traceparent is read into
// a span context (extractTraceparent): a traced request allocates nothing
// (TestTracingOffAllocs). Another provider gets the trace API's calls.
//
// Off, the cost is one nil check per hook: no allocation
// (TestTracingOffAllocs).

// tracerName is the instrumentation scope of the edge's spans.
const tracerName = "github.com/geniehive/geniehive/edge"

// edgeTracer holds the tracer; a Server without one traces nothing.
type edgeTracer struct {
	t    trace.Tracer
	leaf tracing.SpanStarter // t's, when it can open a span without a context; else nil
	prop propagation.TraceContext
}

func newEdgeTracer(tp trace.TracerProvider) *edgeTracer {
	if tp == nil {
		return nil
	}
	t := tp.Tracer(tracerName)
	leaf, _ := t.(tracing.SpanStarter)
	return &edgeTracer{t: t, leaf: leaf}
}

// startLeaf opens a span with no children of its own under x's server
// span: without the context it would come with when the tracer can
// (tracing.Provider's; the context is an allocation per span).
func (x *exchange) startLeaf(name string, at time.Time, opts []trace.SpanStartOption, c *trace.SpanConfig) trace.Span {
	if x.tr.leaf != nil {
		return x.tr.leaf.StartIn(x.spans, context.Background(), x.span, name, at, c)
	}
	_, sp := x.tr.t.Start(x.tctx, name, opts...)
	return sp
}

// reqHeaders is the propagation carrier Extract reads a client's
// traceparent from (the edge injects its own directly: injectTraceparent).
type reqHeaders struct{ h *fasthttp.RequestHeader }

// Get returns the header's value. traceparent is returned as a view of the
// header's bytes, not a copy: TraceContext.extract only decodes it into the
// span context's arrays during the call (propagation/trace_context.go,
// extractPart) and keeps nothing of it. Every other header (tracestate,
// whose parsed members keep substrings of the value) is copied.
func (c reqHeaders) Get(k string) string {
	v := c.h.Peek(k)
	if k == traceparentHeader && len(v) > 0 {
		return unsafe.String(&v[0], len(v))
	}
	return string(v)
}
func (c reqHeaders) Set(k, v string) { c.h.Set(k, v) }
func (c reqHeaders) Keys() []string {
	var ks []string
	for k := range c.h.All() {
		ks = append(ks, string(k))
	}
	return ks
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

// The span start options, built once (a variadic option built per call is
// an allocation per span).
var (
	startServer   = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	startInternal = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)}
	startClient   = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
	// The same, applied (tracing.SpanStarter's StartIn takes them so).
	cfgServer   = trace.NewSpanStartConfig(startServer...)
	cfgInternal = trace.NewSpanStartConfig(startInternal...)
	cfgClient   = trace.NewSpanStartConfig(startClient...)
)

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

// traceStart opens x's server span (no-op when tracing is off). Its
// attributes, those known now included, are set at its end in one call
// (traceEnd): the SDK's built-in samplers, the only ones OTEL_TRACES_SAMPLER
// can name, do not read start attributes.
func (x *exchange) traceStart(ctx *fasthttp.RequestCtx) {
	tr := x.s.tr.Load()
	if tr == nil {
		return
	}
	x.tr = tr
	name, ok := spanNames[string(ctx.Path())]
	if ok {
		x.troute = name[len("POST "):]
	} else {
		name = "POST" // not an inference route (serveInference serves none other)
	}
	if tr.leaf != nil {
		// The handles, and the spans' records, come from a block of the
		// provider's pool, released at traceEnd and reused once its spans
		// are exported; the server span starts when the exchange began (a
		// clock read already taken) and needs no context: its children name
		// it as their parent. A handle kept past its request by mistake (a
		// goroutine outliving the exchange) does nothing once its slot of
		// the block serves another request (tracing.Spans' generations).
		x.spans = tr.leaf.NewSpans()
		var parent trace.Span
		if sc := extractTraceparent(&ctx.Request.Header); sc.IsValid() {
			parent = x.spans.Remote(sc)
		}
		x.span = tr.leaf.StartIn(x.spans, context.Background(), parent, name, x.start, &cfgServer)
		return
	}
	parent := tr.prop.Extract(context.Background(), reqHeaders{&ctx.Request.Header})
	x.tctx, x.span = tr.t.Start(parent, name, startServer...)
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

// child opens an internal child span of x's server span; nil when tracing
// is off.
func (x *exchange) child(name string) trace.Span { return x.childAt(name, time.Time{}) }

// childAt is child starting at at (zero: now), a time the caller already
// read (one clock read fewer).
func (x *exchange) childAt(name string, at time.Time) trace.Span {
	if x.span == nil {
		return nil
	}
	return x.startLeaf(name, at, startInternal, &cfgInternal)
}

// traceEval ends a policy.evaluate span at end (zero: now) with the engine
// that decided and what it decided (a role the model resolved through, a
// denial).
func (x *exchange) traceEval(sp trace.Span, engine string, err error, end time.Time) {
	if sp == nil {
		return
	}
	var buf [spanAttrs]attribute.KeyValue
	a := append(buf[:0], attrEngine.String(engine))
	if x.dec.Deny != nil {
		a = append(a, attrDenied.Bool(true))
	} else if len(x.dec.Targets) > 0 && x.dec.Targets[0].Role != "" {
		a = append(a, attrRole.String(x.dec.Targets[0].Role))
	}
	x.endSpan(sp, a, err, end)
}

// tracePlan ends a routing.plan span with the router's strategy and
// candidate count (p: nil when planning failed).
func (x *exchange) tracePlan(sp trace.Span, p *routing.Plan, err error) {
	if sp == nil {
		return
	}
	var buf [spanAttrs]attribute.KeyValue
	a := append(buf[:0], attrStream.Bool(x.stream))
	if p != nil && p.Strategy != "" {
		a = append(a, attrStrategy.String(p.Strategy), attrCandidates.Int(len(p.Candidates)))
	}
	x.endSpan(sp, a, err, time.Time{})
}

// attemptSpan opens an upstream.attempt span for candidate c, number n,
// starting at at (zero: now), and puts its traceparent on the upstream
// request.
func (x *exchange) attemptSpan(c *routing.Candidate, n int, req *fasthttp.Request, at time.Time) trace.Span {
	if x.span == nil {
		return nil
	}
	sp := x.startLeaf("upstream.attempt", at, startClient, &cfgClient)
	injectTraceparent(sp.SpanContext(), &req.Header)
	x.attemptSvc, x.attemptAsset, x.attemptN = c.Service.ID, c.Asset, n
	return sp
}

// traceAttempt ends the upstream.attempt span of the candidate
// attemptSpan was given: status is the upstream's HTTP status (0: none),
// err the attempt's failure.
func (x *exchange) traceAttempt(sp trace.Span, status int, err error) {
	if sp == nil {
		return
	}
	var buf [spanAttrs]attribute.KeyValue
	a := append(buf[:0], attrAttempt.Int(x.attemptN), attrService.String(x.attemptSvc),
		attrReqModel.String(x.attemptAsset), attrHTTPStatus.Int(status))
	if err != nil {
		a = append(a, attrErrorType.String(Classify(err).Code))
	}
	x.endSpan(sp, a, err, time.Time{})
}

// spanAttrs is the most attributes a span of the edge's has (the server
// span's on a failure with usage); they are built on the stack (no write
// barriers, nothing to clear: the record copies them) and set in one call.
const spanAttrs = 9

// endSpan ends sp at end (zero: now) with the attributes a, and status
// Error when err is not nil, in one call (tracing.Finish: one lock).
func (x *exchange) endSpan(sp trace.Span, a []attribute.KeyValue, err error, end time.Time) {
	code, desc := codes.Unset, ""
	if err != nil {
		code, desc = codes.Error, Classify(err).Code
	}
	tracing.Finish(sp, a, code, desc, end)
}

// traceUsage keeps the usage a whole answer reports, for the server span.
// ct is where answerTiming found the first completion_tokens key (-1:
// it did not look, or found none): then the count is read there, and
// prompt_tokens is looked for from the "usage" key before it (a scan back
// over the usage object's few bytes) instead of from the answer's start
// (a scan of all the content before it: the usage comes last).
func (x *exchange) traceUsage(rb []byte, ct int) {
	if x.span == nil {
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
	if !bytes.Contains(ev, usageKey) {
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

var (
	usageKey        = []byte(`"usage"`)
	promptTokensKey = []byte(`"prompt_tokens":`)
	inputTokensKey  = []byte(`"input_tokens":`)
	outputTokensKey = []byte(`"output_tokens":`)
)

// traceEnd ends x's spans (the relay's, then the server span) at end
// (zero: now) with what the request came to; st is the status the client
// got. The attributes go in one call (the SDK copies them).
func (x *exchange) traceEnd(st int, end time.Time) {
	if x.span == nil {
		return
	}
	// The relay's span and the server span end at the same time: one
	// clock read (by the block's clock) for both, none when the caller
	// read the clock already.
	var now time.Time
	if x.spans != nil && x.tr.leaf != nil {
		if now = end; now.IsZero() {
			now = x.spans.Now()
		}
	}
	if x.relay != nil {
		endAt(x.relay, now)
		x.relay = nil
	}
	sp := x.span
	var buf [spanAttrs]attribute.KeyValue
	a := append(buf[:0], attrMethod.String("POST"), attrRoute.String(x.troute),
		attrOperation.String(genAIOperation(x.op, x.api)), attrHTTPStatus.Int(st))
	if x.model != "" {
		a = append(a, attrReqModel.String(clipName(x.model)))
	}
	if x.asset != "" {
		a = append(a, attrRespModel.String(x.asset))
	}
	if x.errCode != "" {
		a = append(a, attrErrorType.String(x.errCode))
	}
	if x.inTokens > 0 {
		a = append(a, attrInputTokens.Int(x.inTokens))
	}
	if x.outTokens > 0 {
		a = append(a, attrOutputTokens.Int(x.outTokens))
	}
	code := codes.Unset
	if st >= 500 {
		code = codes.Error
	}
	tracing.Finish(sp, a, code, x.errCode, now)
	if x.spans != nil {
		x.spans.Release()
	}
	x.span, x.tctx, x.tr, x.troute, x.spans = nil, nil, nil, "", nil
}

// endAt ends sp at t (zero: now).
func endAt(sp trace.Span, t time.Time) {
	if t.IsZero() {
		sp.End()
		return
	}
	tracing.EndAt(sp, t)
}
