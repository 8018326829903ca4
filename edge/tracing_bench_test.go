package edge

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/tracing"
	"github.com/geniehive/geniehive/loadtest/sim"
	"github.com/geniehive/geniehive/routing"
)

// BenchmarkTracingOverhead measures the edge's throughput at 32 concurrent
// clients with tracing off and with tracing on at 100% sampling (the
// provider an edge builds, tracing.New, with OTEL_TRACES_SAMPLER=always_on
// and its exporter swapped for one that drops the spans, so what is
// measured is the edge's side of tracing, not a collector), in the same
// run on the same edge and upstream: the two modes alternate in rounds,
// in ABBA order (off, on, on, off, ...) so that neither mode always runs
// first (after the other's garbage, or in a load trend of a shared
// machine), both modes are warmed before timing, and each round's requests
// are timed. It reports both rates and on/off (1.00 = no cost), and the
// process's CPU time per request in each mode (client, edge and upstream
// together, from getrusage) with cpu-off/on: on a machine other work
// shares, wall-clock rates move with that work, CPU per request much less.
//
//	go test ./edge -run XXX -bench TracingOverhead -benchtime 20000x
func BenchmarkTracingOverhead(b *testing.B) {
	s := newStack(b, func(c *Config, _ *Deps) { f := false; c.AccessLog = &f })
	s.chat.Update(func(bh *sim.Behavior) { bh.Latency, bh.TTFT, bh.ChunkInterval, bh.Chunks = 0, 0, 0, 8 })
	b.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	tp, err := tracing.New("geniehive-edge", discardExporter{})
	if err != nil {
		b.Fatal(err)
	}
	defer tp.Shutdown(context.Background())
	on := newEdgeTracer(tp)
	// The stack's heartbeat lives 30 s; a long run outlives it.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Second):
				ns := &fleet.NodeState{Host: fleet.Host{ID: "gpu1", StartedAt: time.Now(), UpdatedAt: time.Now()},
					Services: []fleet.Service{svc("gpu1", "chat", fleet.KindChat, s.chat.URL(),
						fleet.Asset{Name: "llama3.1:8b", Family: "llama", Loaded: true, ContextLength: 32768})}}
				_ = s.store.WriteHeartbeat(context.Background(), ns, 30*time.Second)
			}
		}
	}()
	const clients, rounds = 32, 20
	for _, stream := range []bool{false, true} {
		name := "nonstream"
		body := []byte(`{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}]}`)
		if stream {
			name = "stream"
			body = []byte(`{"model":"llama3.1:8b","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
		}
		b.Run(name, func(b *testing.B) {
			hc := &fasthttp.Client{MaxConnsPerHost: 2 * clients}
			url := s.url + "/v1/chat/completions"
			// round sends n requests from 32 clients and returns how long
			// they took.
			round := func(n int) time.Duration {
				var wg sync.WaitGroup
				per := (n + clients - 1) / clients
				start := time.Now()
				for c := 0; c < clients; c++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
						defer fasthttp.ReleaseRequest(req)
						defer fasthttp.ReleaseResponse(resp)
						req.SetRequestURI(url)
						req.Header.SetMethod("POST")
						req.Header.Set("Authorization", "Bearer "+testKey)
						req.Header.SetContentType("application/json")
						req.SetBody(body)
						for i := 0; i < per; i++ {
							if err := hc.Do(req, resp); err != nil || resp.StatusCode() != 200 {
								b.Errorf("%v %d %s", err, resp.StatusCode(), resp.Body())
								return
							}
						}
					}()
				}
				wg.Wait()
				return time.Since(start)
			}
			// Warm connections, pools and the span processor.
			s.srv.tr.Store(on)
			round(clients * 20)
			s.srv.tr.Store(nil)
			round(clients * 20)
			per := max(b.N/(2*rounds), clients)
			var offT, onT, offCPU, onCPU time.Duration
			timed := func(tr *edgeTracer, wall, cpu *time.Duration) {
				s.srv.tr.Store(tr)
				c0 := processCPU()
				*wall += round(per)
				*cpu += processCPU() - c0
			}
			b.ResetTimer()
			for r := 0; r < rounds; r++ {
				if r%2 == 0 {
					timed(nil, &offT, &offCPU)
					timed(on, &onT, &onCPU)
				} else {
					timed(on, &onT, &onCPU)
					timed(nil, &offT, &offCPU)
				}
			}
			b.StopTimer()
			s.srv.tr.Store(nil)
			n := float64(rounds * ((per + clients - 1) / clients) * clients)
			offRate, onRate := n/offT.Seconds(), n/onT.Seconds()
			b.ReportMetric(offRate, "off-req/s")
			b.ReportMetric(onRate, "on-req/s")
			b.ReportMetric(onRate/offRate, "on/off")
			if offCPU > 0 && onCPU > 0 {
				b.ReportMetric(float64(offCPU.Microseconds())/n, "off-cpu-µs/req")
				b.ReportMetric(float64(onCPU.Microseconds())/n, "on-cpu-µs/req")
				b.ReportMetric(float64(offCPU)/float64(onCPU), "cpu-off/on")
			}
		})
	}
}

// BenchmarkTracingHooks measures the request path's tracing hooks alone
// (the sequence TestTracingOffAllocs runs: server span with an incoming
// traceparent, policy.evaluate, routing.plan, one upstream.attempt with
// its traceparent injected, stream.relay, usage, the end), always sampled
// by the edge's provider (tracing.New) into an exporter that drops the
// spans: the per-request allocations and time that tracing adds to a
// traced request.
//
//	go test ./edge -run XXX -bench TracingHooks -benchmem
func BenchmarkTracingHooks(b *testing.B) {
	var rc fasthttp.RequestCtx
	rc.Request.Header.SetMethod("POST")
	rc.Request.SetRequestURI("/v1/chat/completions")
	rc.Request.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	c := &routing.Candidate{Service: &fleet.ServiceEntry{Service: fleet.Service{ID: "gpu1/chat", HostID: "gpu1"}}, Asset: "qwen3:8b"}
	answer := []byte(`{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34}}`)
	b.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	tp, err := tracing.New("geniehive-edge", discardExporter{})
	if err != nil {
		b.Fatal(err)
	}
	defer tp.Shutdown(context.Background())
	var s Server
	s.tr.Store(newEdgeTracer(tp))
	x := new(exchange) // reused, as the Server's pool does (acquireExchange)
	b.ReportAllocs()
	for b.Loop() {
		*x = exchange{s: &s, endpoint: endpointChat, op: fleet.KindChat, model: "qwen3:8b", asset: "qwen3:8b", attempts: 1,
			service: "gpu1/chat", stream: true, spans: x.spans}
		x.plan.Strategy = "balanced"
		x.traceStart(&rc)
		x.traceEval(x.child("policy.evaluate"), "go", nil, time.Time{})
		x.tracePlan(x.child("routing.plan"), &x.plan, nil)
		x.traceAttempt(x.attemptSpan(c, 1, req, time.Time{}), 200, nil)
		x.relay = x.child("stream.relay")
		x.traceUsage(answer)
		x.traceEnd(200, time.Time{})
	}
}
