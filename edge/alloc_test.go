//go:build !race

package edge

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/tracing"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/routing"
	"github.com/geniehive/geniehive/swap"
)

func TestHotPathAllocations(t *testing.T) {
	var f bodyScan
	for _, body := range [][]byte{benchBody, benchBodyParts} {
		if n := testing.AllocsPerRun(200, func() {
			if err := scanRequest(body, &f); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Fatalf("validate+scan allocates %v per request", n)
		}
		text := make([]byte, 0, routing.TextBytes+8)
		if n := testing.AllocsPerRun(200, func() { text = appendText(text[:0], body, &f, routing.TextBytes) }); n != 0 {
			t.Fatalf("appendText allocates %v", n)
		}
		if len(text) == 0 {
			t.Fatalf("no text from %s", body)
		}
	}
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(200, func() { buf = setModel(buf[:0], benchBody, &f, "qwen3:8b-q4") }); n != 0 {
		t.Fatalf("setModel allocates %v", n)
	}
	chunk := []byte(`{"choices":[{"delta":{"reasoning_content":"hmm","content":"x"}}]}`)
	if n := testing.AllocsPerRun(200, func() { buf, _ = stripKeys(buf[:0], chunk, reasoningKeys) }); n != 0 {
		t.Fatalf("stripKeys allocates %v", n)
	}
}

// TestMetricHandleAllocations: once a series was used, the request path
// reaches its handle without allocating (no WithLabelValues per request).
func TestMetricHandleAllocations(t *testing.T) {
	m := newMetrics()
	k := reqLabels{endpoint: endpointChat, model: "qwen3:8b", role: "coder", service: "gpu1/chat", status: 200}
	m.request(k).Inc()
	m.upLatency("gpu1/chat").Observe(0.01)
	m.upTTFT("gpu1/chat").Observe(0.01)
	if n := testing.AllocsPerRun(500, func() {
		m.request(k).Inc()
		m.upLatency("gpu1/chat").Observe(0.01)
		m.upTTFT("gpu1/chat").Observe(0.01)
		m.inflightOf(endpointChat).Inc()
		m.inflightOf(endpointChat).Dec()
	}); n != 0 {
		t.Fatalf("metric handles allocate %v per request", n)
	}
}

func BenchmarkScanRequest(b *testing.B) {
	b.ReportAllocs()
	var f bodyScan
	b.SetBytes(int64(len(benchBody)))
	for b.Loop() {
		_ = scanRequest(benchBody, &f)
	}
}

// BenchmarkMetricsPerRequest is what finish and acquireExchange pay for
// metrics on a request to a series already seen.
func BenchmarkMetricsPerRequest(b *testing.B) {
	b.ReportAllocs()
	m := newMetrics()
	k := reqLabels{endpoint: endpointChat, model: "qwen3:8b", role: "coder", service: "gpu1/chat", status: 200}
	for b.Loop() {
		m.inflightOf(endpointChat).Inc()
		m.request(k).Inc()
		m.upLatency(k.service).Observe(0.01)
		m.inflightOf(endpointChat).Dec()
	}
}

// TestRequestHelpersAllocations: a model name seen before and the client's
// IPv4 address for X-Forwarded-For cost no allocation.
func TestRequestHelpersAllocations(t *testing.T) {
	var tab internTable
	name := []byte("qwen3:8b")
	if s := tab.intern(name); s != "qwen3:8b" {
		t.Fatal(s)
	}
	if n := testing.AllocsPerRun(200, func() { _ = tab.intern(name) }); n != 0 {
		t.Fatalf("intern allocates %v for a known name", n)
	}
	ip := net.ParseIP("10.1.2.3")
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(200, func() { buf = appendIP(buf[:0], ip) }); n != 0 {
		t.Fatalf("appendIP allocates %v", n)
	}
	if string(buf) != "10.1.2.3" || string(appendIP(nil, net.ParseIP("::1"))) != "::1" {
		t.Fatalf("appendIP: %q", buf)
	}
}

// TestSwapHotPathAllocations: with model swapping on, what every request
// adds — the usage count per (service, model), the check whether it must
// wait for a load, the loaded-first order of its candidates — allocates
// nothing once a pair was seen.
func TestSwapHotPathAllocations(t *testing.T) {
	u := swap.NewUsage()
	u.Begin("n1/o", "m1")
	u.End("n1/o", "m1")
	svcs := []*fleet.ServiceEntry{
		{Service: &fleet.Service{ID: "n1/o", Kind: fleet.KindChat, Healthy: true, Swap: fleet.SwapOllama, Assets: []fleet.Asset{{Name: "m1"}}}, Deadline: time.Now().Add(time.Hour)},
		{Service: &fleet.Service{ID: "n2/o", Kind: fleet.KindChat, Healthy: true, Swap: fleet.SwapOllama, Assets: []fleet.Asset{{Name: "m1", Loaded: true}}}, Deadline: time.Now().Add(time.Hour)},
	}
	snap := &fleet.Snapshot{Services: svcs, AssetServices: map[string][]*fleet.ServiceEntry{"m1": svcs}}
	dec := &policy.Decision{Targets: []policy.Target{{Kind: policy.TargetAsset, Name: "m1", Operation: fleet.KindChat}}}
	cands := []routing.Candidate{{Service: svcs[0], Asset: "m1", Target: &dec.Targets[0]}, {Service: svcs[1], Asset: "m1", Target: &dec.Targets[0]}}
	now := time.Now()
	if n := testing.AllocsPerRun(500, func() {
		u.Begin("n1/o", "m1")
		u.End("n1/o", "m1")
		if _, wait := swap.Need(snap, dec, now); wait {
			t.Fatal("a loaded replica exists: no wait")
		}
		preferLoaded(cands)
	}); n != 0 {
		t.Fatalf("the swap hot path allocates %v per request", n)
	}
	if cands[0].Service != svcs[1] {
		t.Fatal("the loaded candidate is not first")
	}
}

// TestTracingOffAllocs: with no TracerProvider every tracing hook of the
// request path (tracing.go) is a nil check: nothing is allocated. With
// tracing on (the edge's provider, tracing.New, records reused as with
// an OTLP exporter) the same hooks allocate nothing either: a request's
// spans are one pooled tracing.Request (reqTrace, back in its pool once
// exported), and the client's traceparent is read into a span context,
// not a context (extractTraceparent).
func TestTracingOffAllocs(t *testing.T) {
	var rc fasthttp.RequestCtx
	rc.Request.Header.SetMethod("POST")
	rc.Request.SetRequestURI("/v1/chat/completions")
	rc.Request.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	c := &routing.Candidate{Service: &fleet.ServiceEntry{Service: &fleet.Service{ID: "gpu1/chat", HostID: "gpu1"}}, Asset: "qwen3:8b"}
	answer := []byte(`{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34}}`)
	hooks := func(s *Server) func() {
		x := new(exchange) // reused, as the Server's pool does (acquireExchange)
		return func() {
			*x = exchange{s: s, endpoint: endpointChat, op: fleet.KindChat, model: "qwen3:8b", asset: "qwen3:8b", attempts: 1}
			x.traceStart(&rc)
			x.traceEval(x.child("policy.evaluate", spanEval), "go", nil, time.Time{})
			x.tracePlan(x.child("routing.plan", spanPlan), &x.plan, nil)
			x.traceAttempt(x.attemptSpan(c, 1, req, time.Time{}), 200, nil)
			x.relay = x.child("stream.relay", spanRelay)
			x.traceUsage(answer, bytes.Index(answer, completionTokensKey))
			x.traceEnd(200, time.Time{})
		}
	}
	if n := testing.AllocsPerRun(500, hooks(&Server{})); n != 0 {
		t.Fatalf("tracing off: the hooks allocate %v per request", n)
	}
	tp, err := tracing.New("geniehive-edge", discardExporter{})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Shutdown(context.Background())
	var on Server
	on.tr.Store(newEdgeTracer(tp))
	// Warm the provider's pool of records (an exported span's record is
	// reused), as a running edge's is, and measure fewer requests than the
	// flush returned to it: a record the export goroutine has not yet
	// returned (it runs when it can) is the exporter's timing, not the
	// hooks' allocation.
	warm := hooks(&on)
	for range 2000 {
		warm()
	}
	tp.ForceFlush(context.Background())
	if n := testing.AllocsPerRun(100, hooks(&on)); n > 0 {
		t.Fatalf("tracing on: the hooks allocate %v per request, want none (the request's tracing.Request is pooled)", n)
	} else {
		t.Logf("tracing on (always sampled, batch export): %v allocations per request", n)
	}
}

// TestDuplicateKeyHeaderAllocations: the duplicate-key-header check every
// authorized request makes allocates nothing once the header was used.
func TestDuplicateKeyHeaderAllocations(t *testing.T) {
	var h fasthttp.RequestHeader
	if err := h.Read(bufio.NewReader(strings.NewReader("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nX-Api-Key: k\r\n\r\n"))); err != nil {
		t.Fatal(err)
	}
	if duplicateKeyHeader(&h) {
		t.Fatal("one header of each kind taken for a duplicate")
	}
	if n := testing.AllocsPerRun(200, func() { _ = duplicateKeyHeader(&h) }); n != 0 {
		t.Fatalf("duplicateKeyHeader allocates %v", n)
	}
}
