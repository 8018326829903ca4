package edge

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/tracing"
	"github.com/geniehive/geniehive/loadtest/sim"
	"github.com/geniehive/geniehive/routing"
)

// memTracing is the provider an edge runs (tracing.New, the default
// sampler: parentbased_always_on) exporting to the SDK's in-memory
// exporter, which GetSpans flushes first: every span ended before the
// call is in what it returns.
func memTracing(t testing.TB) (*tracing.Provider, *memSpans) {
	exp := tracetest.NewInMemoryExporter()
	tp, err := tracing.New("geniehive-edge", exp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return tp, &memSpans{InMemoryExporter: exp, tp: tp}
}

type memSpans struct {
	*tracetest.InMemoryExporter
	tp *tracing.Provider
}

func (m *memSpans) GetSpans() tracetest.SpanStubs {
	if err := m.tp.ForceFlush(context.Background()); err != nil {
		panic(err)
	}
	return m.InMemoryExporter.GetSpans()
}

func (m *memSpans) Reset() {
	m.tp.ForceFlush(context.Background())
	m.InMemoryExporter.Reset()
}

// tracedStack is a stack whose edge traces into an in-memory exporter.
func tracedStack(t *testing.T) (*stack, *memSpans) {
	tp, exp := memTracing(t)
	s := newStack(t, func(_ *Config, d *Deps) { d.TracerProvider = tp })
	return s, exp
}

func spanAttr(sp tracetest.SpanStub, key string) (string, bool) {
	for _, a := range sp.Attributes {
		if string(a.Key) == key {
			return a.Value.Emit(), true
		}
	}
	return "", false
}

// The span tree of one request with a failover: the client's traceparent
// is the parent; the server span has policy.evaluate, routing.plan, two
// upstream.attempt spans (the dead candidate's with status Error) and, for
// a stream, stream.relay as children; GenAI attributes are set; the live
// upstream received the traceparent of its own attempt span.
func TestTracingSpanTree(t *testing.T) {
	s, exp := tracedStack(t)
	dead := startSim(t, sim.Config{Models: []sim.Model{{Name: "llama3.1:8b"}}, Behavior: sim.Behavior{FailBeforeFirstByte: true}})
	// gpu0 sorts before gpu1: the built-in router tries the dead one first.
	heartbeat(t, s.store, "gpu0", svc("gpu0", "chat", fleet.KindChat, dead.URL(), fleet.Asset{Name: "llama3.1:8b", Loaded: true}))
	s.waitFor(func(sn *fleet.Snapshot) bool { return sn.ByID["gpu0/chat"] != nil })

	const clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	const clientSpan = "00f067aa0ba902b7"
	for _, stream := range []bool{false, true} {
		exp.Reset()
		raw := `{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}],"stream":false}`
		if stream {
			raw = `{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`
		}
		r, b := do(t, "POST", s.url+"/v1/chat/completions", testKey, []byte(raw),
			map[string]string{"traceparent": "00-" + clientTrace + "-" + clientSpan + "-01"})
		if r.StatusCode != 200 || r.Header.Get("X-GenieHive-Service") != "gpu1/chat" {
			t.Fatalf("stream=%v: %d %s", stream, r.StatusCode, b)
		}
		// The server span ends when the request is accounted (after the
		// answer is written): wait for it.
		var spans tracetest.SpanStubs
		waitUntil(t, 5e9, "the server span", func() bool {
			spans = exp.GetSpans()
			for _, sp := range spans {
				if sp.SpanKind == trace.SpanKindServer {
					return true
				}
			}
			return false
		})
		byName := map[string][]tracetest.SpanStub{}
		var server tracetest.SpanStub
		for _, sp := range spans {
			byName[sp.Name] = append(byName[sp.Name], sp)
			if sp.SpanKind == trace.SpanKindServer {
				server = sp
			}
		}
		if server.Name != "POST /v1/chat/completions" || server.SpanContext.TraceID().String() != clientTrace ||
			server.Parent.SpanID().String() != clientSpan || !server.Parent.IsRemote() {
			t.Fatalf("server span %q trace %s parent %s: not the client's traceparent's child", server.Name,
				server.SpanContext.TraceID(), server.Parent.SpanID())
		}
		want := map[string]string{"gen_ai.operation.name": "chat", "gen_ai.request.model": "llama3.1:8b",
			"gen_ai.response.model": "llama3.1:8b", "http.response.status_code": "200",
			"http.request.method": "POST", "http.route": "/v1/chat/completions"}
		// The simulator's usage (loadtest/sim/chat.go writes prompt_tokens
		// and completion_tokens as OpenAI does: in the answer, or in a last
		// chunk when the stream asked for include_usage).
		want["gen_ai.usage.input_tokens"], want["gen_ai.usage.output_tokens"] = "", ""
		for k, v := range want {
			got, ok := spanAttr(server, k)
			if !ok || (v != "" && got != v) {
				t.Errorf("stream=%v: server span %s = %q (set %v), want %q", stream, k, got, ok, v)
			}
		}
		// At most 8 on a success: past 8 a span's attributes leave its
		// record's buffer for the heap (internal/tracing).
		if len(server.Attributes) > 8 {
			t.Errorf("stream=%v: server span has %d attributes, want at most 8: %v", stream, len(server.Attributes), server.Attributes)
		}
		wantKids := []string{"policy.evaluate", "routing.plan", "upstream.attempt", "upstream.attempt"}
		if stream {
			wantKids = append(wantKids, "stream.relay")
		}
		n := 0
		for _, sp := range spans {
			if sp.SpanKind == trace.SpanKindServer {
				continue
			}
			n++
			if sp.Parent.SpanID() != server.SpanContext.SpanID() || sp.SpanContext.TraceID() != server.SpanContext.TraceID() {
				t.Errorf("%s is not a child of the server span", sp.Name)
			}
		}
		if n != len(wantKids) || len(byName["upstream.attempt"]) != 2 || len(byName["policy.evaluate"]) != 1 || len(byName["routing.plan"]) != 1 ||
			(stream && len(byName["stream.relay"]) != 1) {
			t.Fatalf("stream=%v: children %v, want %v", stream, names(spans), wantKids)
		}
		// The times, from the request's one clock (tracing.Request): every
		// child within the server span, each step after the one before,
		// the relay ending with the server span.
		for _, sp := range spans {
			if sp.EndTime.Before(sp.StartTime) || sp.StartTime.Before(server.StartTime) || sp.EndTime.After(server.EndTime) {
				t.Errorf("stream=%v: %s [%v, %v] not within the server span [%v, %v]", stream, sp.Name,
					sp.StartTime, sp.EndTime, server.StartTime, server.EndTime)
			}
		}
		ev, pl := byName["policy.evaluate"][0], byName["routing.plan"][0]
		if pl.StartTime.Before(ev.EndTime) {
			t.Errorf("stream=%v: routing.plan starts %v before policy.evaluate ends %v", stream, pl.StartTime, ev.EndTime)
		}
		for _, a := range byName["upstream.attempt"] {
			if a.StartTime.Before(pl.EndTime) {
				t.Errorf("stream=%v: upstream.attempt starts %v before routing.plan ends %v", stream, a.StartTime, pl.EndTime)
			}
		}
		if stream && !byName["stream.relay"][0].EndTime.Equal(server.EndTime) {
			t.Errorf("stream.relay ends %v, the server span %v: want together", byName["stream.relay"][0].EndTime, server.EndTime)
		}
		// Failover: attempt 1 at the dead gpu0 failed, attempt 2 at gpu1 answered.
		var live tracetest.SpanStub
		for _, a := range byName["upstream.attempt"] {
			att, _ := spanAttr(a, "geniehive.attempt")
			svcID, _ := spanAttr(a, "geniehive.service")
			switch att {
			case "1":
				if svcID != "gpu0/chat" || a.Status.Code.String() != "Error" {
					t.Errorf("attempt 1: %s status %v, want gpu0/chat failed", svcID, a.Status)
				}
			case "2":
				live = a
				if st, _ := spanAttr(a, "http.response.status_code"); svcID != "gpu1/chat" || st != "200" {
					t.Errorf("attempt 2: %s status %s, want gpu1/chat 200", svcID, st)
				}
			}
		}
		plan := byName["routing.plan"][0]
		if n, _ := spanAttr(plan, "geniehive.candidates"); n != "2" {
			t.Errorf("routing.plan geniehive.candidates %q, want 2", n)
		}
		if st, _ := spanAttr(plan, "geniehive.strategy"); st == "" {
			t.Error("routing.plan without geniehive.strategy")
		}
		if st, _ := spanAttr(plan, "gen_ai.request.stream"); st != map[bool]string{false: "false", true: "true"}[stream] {
			t.Errorf("stream=%v: routing.plan gen_ai.request.stream %q", stream, st)
		}
		if e, _ := spanAttr(byName["policy.evaluate"][0], "geniehive.policy.engine"); e == "" {
			t.Error("policy.evaluate without geniehive.policy.engine")
		}
		// What the live upstream received: its attempt span's traceparent
		// (the client's trace, the attempt as parent), not the client's.
		got := s.chat.LastRequest().Header.Get("traceparent")
		wantTP := "00-" + clientTrace + "-" + live.SpanContext.SpanID().String() + "-01"
		if got != wantTP {
			t.Fatalf("stream=%v: upstream got traceparent %q, want %q", stream, got, wantTP)
		}
	}
}

func names(spans tracetest.SpanStubs) string {
	var out []string
	for _, sp := range spans {
		out = append(out, sp.Name)
	}
	return strings.Join(out, ", ")
}

// Without a traceparent from the client the server span starts a trace of
// its own (a root span), and a denied request still gets its span, status
// Error for a 5xx only.
func TestTracingRootSpanAndErrors(t *testing.T) {
	s, exp := tracedStack(t)
	r, _ := do(t, "POST", s.url+"/v1/chat/completions", testKey, []byte(`{"model":"no-such-model","messages":[]}`), nil)
	if r.StatusCode != 404 {
		t.Fatalf("unknown model: %d", r.StatusCode)
	}
	var server tracetest.SpanStub
	waitUntil(t, 5e9, "the server span", func() bool {
		for _, sp := range exp.GetSpans() {
			if sp.SpanKind == trace.SpanKindServer {
				server = sp
				return true
			}
		}
		return false
	})
	if server.Parent.IsValid() {
		t.Fatalf("a request without traceparent has parent %v", server.Parent)
	}
	if st, _ := spanAttr(server, "http.response.status_code"); st != "404" || server.Status.Code.String() == "Error" {
		t.Fatalf("404 span: status attr %q, span status %v", st, server.Status)
	}
}

// A request naming a role: policy.evaluate says which role it resolved
// through; the server span names the model as the client did and the
// asset that answered.
func TestTracingRoleAttribute(t *testing.T) {
	s, exp := tracedStack(t)
	r, b := do(t, "POST", s.url+"/v1/chat/completions", testKey, []byte(`{"model":"coder","messages":[{"role":"user","content":"hi"}]}`), nil)
	if r.StatusCode != 200 {
		t.Fatalf("coder: %d %s", r.StatusCode, b)
	}
	var server, eval tracetest.SpanStub
	waitUntil(t, 5e9, "the server span", func() bool {
		for _, sp := range exp.GetSpans() {
			switch {
			case sp.SpanKind == trace.SpanKindServer:
				server = sp
			case sp.Name == "policy.evaluate":
				eval = sp
			}
		}
		return server.Name != ""
	})
	if role, _ := spanAttr(eval, "geniehive.role"); role != "coder" {
		t.Errorf("policy.evaluate geniehive.role %q, want coder (%v)", role, eval.Attributes)
	}
	req, _ := spanAttr(server, "gen_ai.request.model")
	resp, _ := spanAttr(server, "gen_ai.response.model")
	if req != "coder" || resp != "llama3.1:8b" {
		t.Errorf("server span request model %q response model %q, want coder and llama3.1:8b", req, resp)
	}
}

// discardExporter drops spans (the benchmark's and allocation test's
// stand-in for a collector: export cost is the batch processor's, off the
// request path).
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// CopiesSpans: it keeps nothing of a span (tracing.SpanCopier), as the
// OTLP exporters do not, so the provider reuses span records as it does
// in production.
func (discardExporter) CopiesSpans() bool { return true }

// Every inference route has its span name; a path outside them (none
// reaches serveInference today) gets a plain "POST" and no route.
func TestTracingSpanNames(t *testing.T) {
	tp, exp := memTracing(t)
	var s Server
	s.tr.Store(newEdgeTracer(tp))
	for _, path := range []string{"/v1/chat/completions", "/v1/completions", "/v1/messages", "/elsewhere"} {
		exp.Reset()
		var rc fasthttp.RequestCtx
		rc.Request.SetRequestURI(path)
		x := exchange{s: &s, op: fleet.KindChat}
		x.traceStart(&rc)
		x.traceEnd(200, time.Time{})
		spans := exp.GetSpans()
		want := "POST " + path
		if path == "/elsewhere" {
			want = "POST"
		}
		if len(spans) != 1 || spans[0].Name != want {
			t.Errorf("%s: spans %v, want one named %q", path, names(spans), want)
		}
	}
}

// TestPlanCappedAtFailoverAttempts: the router plans no more candidates
// than failover.attempts (routing.plan's geniehive.candidates), while
// count_tokens, which looks through the whole plan for a native counter,
// still gets every candidate.
func TestPlanCappedAtFailoverAttempts(t *testing.T) {
	tp, exp := memTracing(t)
	s := newStack(t, func(c *Config, d *Deps) {
		r, err := routing.New(routing.Config{}, d.Store, nil) // the real router (the built-in one plans every service)
		if err != nil {
			t.Fatal(err)
		}
		d.TracerProvider, d.Router, c.Failover.Attempts = tp, r, 2
	})
	for _, h := range []string{"gpu2", "gpu3", "gpu4"} {
		heartbeat(t, s.store, h, svc(h, "chat", fleet.KindChat, s.chat.URL(), fleet.Asset{Name: "llama3.1:8b", Family: "llama", Loaded: true}))
	}
	s.waitFor(func(sn *fleet.Snapshot) bool { return len(sn.AssetServices["llama3.1:8b"]) == 4 })
	for _, c := range []struct{ path, want string }{
		{"/v1/chat/completions", "2"},
		{"/v1/messages/count_tokens", "4"},
	} {
		exp.Reset()
		body := `{"model":"llama3.1:8b","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`
		if r, b := do(t, "POST", s.url+c.path, testKey, []byte(body), nil); r.StatusCode != 200 {
			t.Fatalf("%s: %d %s", c.path, r.StatusCode, b)
		}
		var got string
		waitUntil(t, 5e9, "the server span", func() bool {
			// The server span ends last: once it is exported, so is the plan's.
			for _, sp := range exp.GetSpans() {
				if sp.SpanKind == trace.SpanKindServer {
					for _, p := range exp.GetSpans() {
						if p.Name == "routing.plan" {
							got, _ = spanAttr(p, "geniehive.candidates")
						}
					}
					return true
				}
			}
			return false
		})
		if got != c.want {
			t.Errorf("%s: geniehive.candidates %q, want %s", c.path, got, c.want)
		}
	}
}

// The traceparent (and tracestate) the edge writes on an upstream request
// is byte for byte what the SDK's propagation.TraceContext.Inject writes,
// for sampled, unsampled and random-flagged span contexts, with and
// without a tracestate; and what the edge reads back with
// TraceContext.Extract over its carrier is the span context it wrote.
func TestInjectTraceparentMatchesSDK(t *testing.T) {
	ts, err := trace.ParseTraceState("vendor=abc,other=x-1")
	if err != nil {
		t.Fatal(err)
	}
	var prop propagation.TraceContext
	for i, scc := range []trace.SpanContextConfig{
		{TraceID: trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
			SpanID: trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}, TraceFlags: trace.FlagsSampled},
		{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{0xff, 0xfe, 0, 0, 0, 0, 0, 1}},
		{TraceID: trace.TraceID{15: 0xab}, SpanID: trace.SpanID{7: 0xcd}, TraceFlags: trace.FlagsSampled | trace.FlagsRandom | 0x80},
		{TraceID: trace.TraceID{0xde, 0xad}, SpanID: trace.SpanID{0xbe, 0xef}, TraceFlags: trace.FlagsSampled, TraceState: ts},
		{}, // invalid: nothing written
	} {
		sc := trace.NewSpanContext(scc)
		want := map[string]string{}
		prop.Inject(trace.ContextWithSpanContext(context.Background(), sc), propagation.MapCarrier(want))
		var req fasthttp.Request
		injectTraceparent(sc, &req.Header)
		got := map[string]string{}
		for k, v := range req.Header.All() {
			got[strings.ToLower(string(k))] = string(v)
		}
		delete(got, "host")
		delete(got, "content-type")
		if len(got) != len(want) {
			t.Errorf("%d: wrote %v, the SDK writes %v", i, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%d: %s = %q, the SDK writes %q", i, k, got[k], v)
			}
		}
		if !sc.IsValid() {
			continue
		}
		back := trace.SpanContextFromContext(prop.Extract(context.Background(), headerCarrier{&req.Header}))
		wantBack := sc.WithTraceFlags(sc.TraceFlags() & (trace.FlagsSampled | trace.FlagsRandom)).WithRemote(true)
		if !back.Equal(wantBack) {
			t.Errorf("%d: read back %v, want %v", i, back, wantBack)
		}
	}
}

// headerCarrier is a propagation carrier over a fasthttp request's
// headers, for the SDK's propagator to read what the edge wrote.
type headerCarrier struct{ h *fasthttp.RequestHeader }

func (c headerCarrier) Get(k string) string { return string(c.h.Peek(k)) }
func (c headerCarrier) Set(k, v string)     { c.h.Set(k, v) }
func (c headerCarrier) Keys() []string {
	var ks []string
	for k := range c.h.All() {
		ks = append(ks, string(k))
	}
	return ks
}

// extractTraceparent reads what propagation.TraceContext's Extract reads,
// valid or not, and keeps nothing of the header's bytes.
func TestExtractMatchesSDK(t *testing.T) {
	const tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	cases := []struct{ tp, ts string }{
		{"", ""},
		{"00-" + tid + "-" + sid + "-01", ""},
		{"00-" + tid + "-" + sid + "-00", ""},
		{"00-" + tid + "-" + sid + "-03", "vendor=abc,other=x"},
		{"00-" + tid + "-" + sid + "-01", "not a tracestate"},
		{"00-" + tid + "-" + sid + "-04", ""},                  // reserved flag bit in version 00
		{"00-" + tid + "-" + sid + "-01-extra", ""},            // extra field in version 00
		{"01-" + tid + "-" + sid + "-05-extra", ""},            // a later version may add fields
		{"01-" + tid + "-" + sid + "-09", ""},                  // and flags
		{"fe-" + tid + "-" + sid + "-01", ""},                  // the highest version
		{"ff-" + tid + "-" + sid + "-01", ""},                  // an invalid version
		{"00-" + strings.ToUpper(tid) + "-" + sid + "-01", ""}, // upper-case hex
		{"00-00000000000000000000000000000000-" + sid + "-01", ""},
		{"00-" + tid + "-0000000000000000-01", ""},
		{"00-" + tid[:31] + "-" + sid + "-01", ""},
		{"00-" + tid + "-" + sid + "-1", ""},
		{"00-" + tid + "-" + sid, ""},
		{"0-" + tid + "-" + sid + "-01", ""},
		{"00_" + tid + "-" + sid + "-01", ""},
		{"00-" + tid + "-" + sid + "-0g", ""},
		{"00-" + tid + "x" + sid + "-01", ""},
		{"-", ""},
	}
	var prop propagation.TraceContext
	for _, c := range cases {
		var h fasthttp.RequestHeader
		if c.tp != "" {
			h.Set("traceparent", c.tp)
		}
		if c.ts != "" {
			h.Set("tracestate", c.ts)
		}
		want := trace.SpanContextFromContext(prop.Extract(context.Background(), headerCarrier{&h}))
		got := extractTraceparent(&h)
		if !got.Equal(want) || got.IsRemote() != want.IsRemote() {
			t.Errorf("traceparent %q tracestate %q: got %v, the SDK reads %v", c.tp, c.ts, got, want)
		}
		if !got.IsValid() {
			continue
		}
		wantTS := got.TraceState().String()
		h.Set("traceparent", strings.Repeat("f", len(c.tp)))
		h.Set("tracestate", strings.Repeat("z", len(c.ts)))
		if got.TraceState().String() != wantTS || !got.Equal(want) {
			t.Errorf("traceparent %q: the span context changed with the header's bytes", c.tp)
		}
	}
}

// traceUsage, given where answerTiming found completion_tokens, reads the
// usage a whole answer reports as scanning the whole answer for each key
// does (the server span's gen_ai.usage.* attributes), for the dialects'
// answers: OpenAI's (usage last, either key first), Anthropic's and the
// Responses API's (input/output_tokens), Ollama's native (no usage), and
// an answer whose content mentions the keys (escaped: no match).
func TestTraceUsageFromTiming(t *testing.T) {
	bodies := []string{
		`{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46}}`,
		`{"choices":[],"usage":{"completion_tokens":7,"prompt_tokens":5}}`,
		`{"choices":[],"usage":{"completion_tokens": 7}}`,
		`{"content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":3,"output_tokens":9}}`,
		`{"output":[],"usage":{"input_tokens":4,"input_tokens_details":{},"output_tokens":8}}`,
		`{"message":{"content":"hi"},"eval_count":21,"eval_duration":1000,"prompt_eval_count":4}`,
		`{"choices":[{"message":{"content":"say \"prompt_tokens\": 99 and \"usage\""}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}`,
		`{"timings":{"predicted_n":5,"predicted_ms":10},"usage":{"prompt_tokens":6,"completion_tokens":5}}`,
		`{}`,
	}
	for _, b := range bodies {
		rb := []byte(b)
		_, _, ct := answerTiming(rb, time.Second)
		x := &exchange{rt: new(reqTrace)} // traced: traceUsage reads
		x.traceUsage(rb, ct)
		in := intAfter(rb, promptTokensKey)
		if in == 0 {
			in = intAfter(rb, inputTokensKey)
		}
		out := completionTokens(rb)
		if out == 0 {
			out = intAfter(rb, outputTokensKey)
		}
		if x.inTokens != in || x.outTokens != out {
			t.Errorf("%s: usage %d in, %d out; want %d, %d", b, x.inTokens, x.outTokens, in, out)
		}
	}
}

// hasUsageKey finds `"usage"` where bytes.Contains does, in stream events
// of each dialect and in text that has "usage" without the key's quote.
func TestHasUsageKey(t *testing.T) {
	for _, ev := range []string{
		`{"id":"c","object":"chat.completion.chunk","choices":[{"delta":{"content":"use usage"}}]}`,
		`{"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}`,
		`{"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}`,
		`{"type":"response.completed","response":{"usage":{"input_tokens":4,"output_tokens":8}}}`,
		`usage":{}`,
		`"usage"`,
		`x"usag`,
		`{"content":"usage\" here"}`,
		``,
		`u`,
	} {
		if got, want := hasUsageKey([]byte(ev)), bytes.Contains([]byte(ev), usageKey); got != want {
			t.Errorf("%s: hasUsageKey %v, bytes.Contains %v", ev, got, want)
		}
	}
}
