package edge

import (
	"bytes"
	"context"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/geniehive/geniehive/edge/dialect"
	"github.com/geniehive/geniehive/fleet"
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
// Attributes follow OpenTelemetry's GenAI semantic conventions
// (gen_ai.operation.name, gen_ai.request.model, gen_ai.response.model,
// gen_ai.usage.input_tokens and gen_ai.usage.output_tokens when the
// upstream's answer or stream reports usage) plus geniehive.role, geniehive.service,
// geniehive.strategy, geniehive.candidates, geniehive.policy.engine and
// geniehive.attempts on the server span, geniehive.attempt,
// geniehive.service and gen_ai.request.model on each attempt. The
// policy.evaluate and routing.plan spans carry none (their figures are on
// the server span): each span with attributes costs the SDK a map.
//
// Off, the cost is one nil check per hook: no allocation
// (TestTracingOffAllocs).

// tracerName is the instrumentation scope of the edge's spans.
const tracerName = "github.com/geniehive/geniehive/edge"

// edgeTracer holds the tracer; a Server without one traces nothing.
type edgeTracer struct {
	t    trace.Tracer
	prop propagation.TraceContext
}

func newEdgeTracer(tp trace.TracerProvider) *edgeTracer {
	if tp == nil {
		return nil
	}
	return &edgeTracer{t: tp.Tracer(tracerName)}
}

// reqHeaders is a propagation carrier over a fasthttp request's headers.
type reqHeaders struct{ h *fasthttp.RequestHeader }

func (c reqHeaders) Get(k string) string { return string(c.h.Peek(k)) }
func (c reqHeaders) Set(k, v string)     { c.h.Set(k, v) }
func (c reqHeaders) Keys() []string {
	var ks []string
	for k := range c.h.All() {
		ks = append(ks, string(k))
	}
	return ks
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
	attrAttempts     = attribute.Key("geniehive.attempts")
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

// traceStart opens x's server span (no-op when tracing is off).
func (x *exchange) traceStart(ctx *fasthttp.RequestCtx) {
	tr := x.s.tr.Load()
	if tr == nil {
		return
	}
	x.tr = tr
	parent := tr.prop.Extract(context.Background(), reqHeaders{&ctx.Request.Header})
	name, ok := spanNames[string(ctx.Path())]
	route := ""
	if ok {
		route = name[len("POST "):]
	} else {
		name = "POST" // not an inference route (serveInference serves none other)
	}
	x.tctx, x.span = tr.t.Start(parent, name, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attrMethod.String("POST"), attrRoute.String(route),
			attrOperation.String(genAIOperation(x.op, x.api))))
}

// child opens a child span of x's server span; nil when tracing is off.
func (x *exchange) child(name string, kind trace.SpanKind) trace.Span {
	if x.span == nil {
		return nil
	}
	_, sp := x.tr.t.Start(x.tctx, name, trace.WithSpanKind(kind))
	return sp
}

// traceEval ends a policy.evaluate span. Its attributes (the engine, a
// denial) go on the server span: a span with attributes costs the SDK a
// map per span at its end.
func (x *exchange) traceEval(sp trace.Span, engine string, err error) {
	if sp == nil {
		return
	}
	x.engine = engine
	endSpan(sp, err)
}

// tracePlan ends a routing.plan span (strategy and candidate count go on
// the server span, as the engine does).
func tracePlan(sp trace.Span, err error) {
	if sp == nil {
		return
	}
	endSpan(sp, err)
}

// attemptSpan opens an upstream.attempt span for candidate c, number n,
// and puts its traceparent on the upstream request.
func (x *exchange) attemptSpan(c *routing.Candidate, n int, req *fasthttp.Request) trace.Span {
	if x.span == nil {
		return nil
	}
	ctx, sp := x.tr.t.Start(x.tctx, "upstream.attempt", trace.WithSpanKind(trace.SpanKindClient))
	x.tr.prop.Inject(ctx, reqHeaders{&req.Header})
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
	attrs := [...]attribute.KeyValue{attrAttempt.Int(x.attemptN), attrService.String(x.attemptSvc),
		attrReqModel.String(x.attemptAsset), attrHTTPStatus.Int(status), {}}
	n := 4
	if err != nil {
		attrs[n] = attrErrorType.String(Classify(err).Code)
		n++
	}
	sp.SetAttributes(attrs[:n]...)
	endSpan(sp, err)
}

// traceUsage keeps the usage a whole answer reports, for the server span.
func (x *exchange) traceUsage(rb []byte) {
	if x.span == nil {
		return
	}
	if x.inTokens = intAfter(rb, promptTokensKey); x.inTokens == 0 {
		x.inTokens = intAfter(rb, inputTokensKey)
	}
	if x.outTokens = completionTokens(rb); x.outTokens == 0 {
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

// traceEnd ends x's spans (the relay's, then the server span) with what
// the request came to; st is the status the client got. The attributes go
// in one call (the SDK copies them).
func (x *exchange) traceEnd(st int) {
	if x.span == nil {
		return
	}
	if x.relay != nil {
		x.relay.End()
		x.relay = nil
	}
	sp := x.span
	// Sized exactly: the slice escapes (the span is an interface) and the
	// SDK copies it.
	n := 3
	for _, set := range [...]bool{x.plan.Strategy != "", x.plan.Strategy != "", x.engine != "", x.dec.Deny != nil,
		x.model != "", x.asset != "", x.rLabel != "", x.service != "", x.errCode != "", x.inTokens > 0, x.outTokens > 0} {
		if set {
			n++
		}
	}
	a := make([]attribute.KeyValue, 0, n)
	a = append(a, attrHTTPStatus.Int(st), attrAttempts.Int(x.attempts), attrStream.Bool(x.stream))
	if x.plan.Strategy != "" {
		a = append(a, attrStrategy.String(x.plan.Strategy), attrCandidates.Int(len(x.plan.Candidates)))
	}
	if x.engine != "" {
		a = append(a, attrEngine.String(x.engine))
	}
	if x.dec.Deny != nil {
		a = append(a, attrDenied.Bool(true))
	}
	if x.model != "" {
		a = append(a, attrReqModel.String(clipName(x.model)))
	}
	if x.asset != "" {
		a = append(a, attrRespModel.String(x.asset))
	}
	if x.rLabel != "" {
		a = append(a, attrRole.String(x.rLabel))
	}
	if x.service != "" {
		a = append(a, attrService.String(x.service))
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
	sp.SetAttributes(a...)
	if st >= 500 {
		sp.SetStatus(codes.Error, x.errCode)
	}
	sp.End()
	x.span, x.tctx, x.tr, x.engine = nil, nil, nil, ""
}

func endSpan(sp trace.Span, err error) {
	if err != nil {
		sp.SetStatus(codes.Error, Classify(err).Code)
	}
	sp.End()
}
