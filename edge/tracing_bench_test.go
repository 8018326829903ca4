package edge

import (
	"bytes"
	"context"
	"os"
	"sync"
	"sync/atomic"
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
// are timed. The upstream answers at once (no latency, 8 chunks), so the
// edge's own CPU is what limits.
//
// The upstream runs in a child process (this test binary re-executed,
// simChildEnv), as it runs on another host in production: the work it
// does for a traced request (parsing the traceparent the edge sends it)
// is its host's, not the edge's. Sub-benchmarks upstream=process/nonstream
// and /stream report both rates and on/off (1.00 = no cost); this
// process's CPU time per request in each mode (edge and clients, from
// getrusage RUSAGE_SELF, which excludes the child) with cpu-off/on; the
// upstream child's CPU per request in each mode (its own getrusage, read
// before and after each round) with upstream-cpu-off/on; and both
// processes' sum with total-cpu-off/on. On a machine other work shares,
// wall-clock rates move with that work, CPU per request much less.
// upstream=inprocess/... runs the same rounds against an upstream in this
// process (the benchmark's earlier form): its CPU is client, edge and
// upstream together.
//
//	go test ./edge -run XXX -bench TracingOverhead -benchtime 60000x
//	go test ./edge -run XXX -bench TracingOverhead/upstream=process -benchtime 60000x
func BenchmarkTracingOverhead(b *testing.B) {
	s := newStack(b, func(c *Config, _ *Deps) { f := false; c.AccessLog = &f })
	s.chat.Update(func(bh *sim.Behavior) { bh.Latency, bh.TTFT, bh.ChunkInterval, bh.Chunks = 0, 0, 0, 8 })
	child := startSimChild(b)
	b.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	tp, err := tracing.New("geniehive-edge", discardExporter{})
	if err != nil {
		b.Fatal(err)
	}
	defer tp.Shutdown(context.Background())
	on := newEdgeTracer(tp)
	// gpu1's chat service points at endpoint. The stack's heartbeat lives
	// 30 s; a long run outlives it, so it is written again every 5 s.
	var endpoint atomic.Pointer[string]
	beat := func() error {
		ns := &fleet.NodeState{Host: fleet.Host{ID: "gpu1", StartedAt: time.Now(), UpdatedAt: time.Now()},
			Services: []fleet.Service{svc("gpu1", "chat", fleet.KindChat, *endpoint.Load(),
				fleet.Asset{Name: "llama3.1:8b", Family: "llama", Loaded: true, ContextLength: 32768})}}
		return s.store.WriteHeartbeat(context.Background(), ns, 30*time.Second)
	}
	point := func(tb testing.TB, url string) {
		endpoint.Store(&url)
		if err := beat(); err != nil {
			tb.Fatal(err)
		}
		waitUntil(tb, 5*time.Second, "gpu1/chat at "+url, func() bool {
			_ = s.srv.Watcher().Refresh(context.Background())
			e := s.srv.Watcher().Current().ByID["gpu1/chat"]
			return e != nil && e.Endpoint == url
		})
	}
	point(b, child.url)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Second):
				_ = beat()
			}
		}
	}()
	const clients, rounds = 32, 20
	for _, up := range []struct {
		name, url string
		child     *simChild // nil: the upstream is in this process
	}{{"upstream=process", child.url, child}, {"upstream=inprocess", s.chat.URL(), nil}} {
		b.Run(up.name, func(b *testing.B) {
			point(b, up.url)
			for _, stream := range []bool{false, true} {
				name, body := benchChat(stream)
				b.Run(name, func(b *testing.B) {
					overheadRounds(b, s, on, up.child, body, clients, rounds)
				})
			}
		})
	}
}

// overheadRounds runs BenchmarkTracingOverhead's timed rounds against the
// upstream gpu1/chat points at (child's, when child is not nil) and reports
// their figures.
func overheadRounds(b *testing.B, s *stack, on *edgeTracer, child *simChild, body []byte, clients, rounds int) {
	hc := &fasthttp.Client{MaxConnsPerHost: 2 * clients}
	url := s.url + "/v1/chat/completions"
	// round sends n requests from clients clients and returns how long
	// they took.
	round := func(n int) time.Duration {
		return sendConcurrently(b, hc, clients, (n+clients-1)/clients, func(req *fasthttp.Request) {
			req.SetRequestURI(url)
			req.Header.Set("Authorization", "Bearer "+testKey)
			req.SetBody(body)
		})
	}
	upCPU := func() time.Duration {
		if child == nil {
			return 0
		}
		return child.cpu(b)
	}
	// Warm connections, pools and the span processor.
	s.srv.tr.Store(on)
	round(clients * 20)
	s.srv.tr.Store(nil)
	round(clients * 20)
	per := max(b.N/(2*rounds), clients)
	var offT, onT, offCPU, onCPU, offUp, onUp time.Duration
	timed := func(tr *edgeTracer, wall, cpu, up *time.Duration) {
		s.srv.tr.Store(tr)
		u0 := upCPU()
		c0 := processCPU()
		*wall += round(per)
		*cpu += processCPU() - c0
		*up += upCPU() - u0
	}
	// GENIEHIVE_TRACING_ONLY=off (or on) runs every round in that mode, for
	// a CPU profile of one mode (-cpuprofile; compare the two with
	// go tool pprof -diff_base): the other mode's figures are then the
	// same mode's.
	switch os.Getenv("GENIEHIVE_TRACING_ONLY") {
	case "off":
		on = nil
	case "on":
		both, timed0 := on, timed
		timed = func(_ *edgeTracer, wall, cpu, up *time.Duration) { timed0(both, wall, cpu, up) }
	}
	b.ResetTimer()
	for r := 0; r < rounds; r++ {
		if r%2 == 0 {
			timed(nil, &offT, &offCPU, &offUp)
			timed(on, &onT, &onCPU, &onUp)
		} else {
			timed(on, &onT, &onCPU, &onUp)
			timed(nil, &offT, &offCPU, &offUp)
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
	if offUp > 0 && onUp > 0 {
		b.ReportMetric(float64(offUp.Microseconds())/n, "upstream-off-cpu-µs/req")
		b.ReportMetric(float64(onUp.Microseconds())/n, "upstream-on-cpu-µs/req")
		b.ReportMetric(float64(offUp)/float64(onUp), "upstream-cpu-off/on")
		b.ReportMetric(float64(offCPU+offUp)/float64(onCPU+onUp), "total-cpu-off/on")
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
	c := &routing.Candidate{Service: &fleet.ServiceEntry{Service: &fleet.Service{ID: "gpu1/chat", HostID: "gpu1"}}, Asset: "qwen3:8b"}
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
			service: "gpu1/chat", stream: true}
		x.plan.Strategy = "balanced"
		x.traceStart(&rc)
		x.traceEval(x.child("policy.evaluate", spanEval), "go", nil, time.Time{})
		x.tracePlan(x.child("routing.plan", spanPlan), &x.plan, nil)
		x.traceAttempt(x.attemptSpan(c, 1, req, time.Time{}), 200, nil)
		x.relay = x.child("stream.relay", spanRelay)
		x.traceUsage(answer, bytes.Index(answer, completionTokensKey))
		x.traceEnd(200, time.Time{})
	}
}

// sendConcurrently sends per POST requests of JSON from each of clients
// goroutines, each goroutine's request prepared once by prep, and returns
// how long they took. A failed request or a status other than 200 fails b.
func sendConcurrently(b *testing.B, hc *fasthttp.Client, clients, per int, prep func(*fasthttp.Request)) time.Duration {
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.Header.SetMethod("POST")
			req.Header.SetContentType("application/json")
			prep(req)
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
