//go:build !race

package replica_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/geniehive/geniehive/edge"
	"github.com/geniehive/geniehive/edge/replica"
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/state"
)

// handlerAllocCeiling is what one whole non-streaming chat request may
// allocate through the production composition (replica: wasm policy engine,
// scored routing, in-flight accounting, metrics, access log off at warn
// level) against a local upstream, counted process-wide (the upstream is a
// fasthttp server that allocates nothing per request). Measured 7-11 on
// the commit that added it (2-core machine, several runs); the ceiling
// leaves room for the background loops (watcher, presence, in-flight
// flusher) whose allocations land in the same process-wide count.
const handlerAllocCeiling = 16

// TestWholeHandlerAllocations guards the request path as a whole, beside
// the per-helper allocation tests in package edge.
func TestWholeHandlerAllocations(t *testing.T) {
	answer := []byte(`{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBody(answer)
	}}
	go func() { _ = up.Serve(ln) }()
	t.Cleanup(func() { _ = up.Shutdown() })

	c, prefix := testredis.New(t)
	st := state.New(c, prefix)
	ns := &fleet.NodeState{Host: fleet.Host{ID: "h"}, Services: []fleet.Service{{
		ID: "h/chat", HostID: "h", Name: "chat", Kind: fleet.KindChat, Protocol: fleet.ProtocolOpenAI,
		Endpoint: "http://" + ln.Addr().String(), Healthy: true, Assets: []fleet.Asset{{Name: "llama3.1:8b", Family: "llama", Loaded: true}},
	}}}
	if err := st.WriteHeartbeat(context.Background(), ns, time.Minute); err != nil {
		t.Fatal(err)
	}
	var cfg replica.Config
	cfg.Edge = edge.Config{Listen: "127.0.0.1:0", ID: "edge-alloc", Redis: edge.RedisConfig{Prefix: prefix}, LogLevel: "warn"}
	if err := cfg.Provision(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	r, err := replica.New(ctx, cfg, replica.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})), Store: st, Ready: func(a string) { ready <- a }})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx); _ = r.Close() }()
	<-ready
	defer func() { cancel(); <-done }()

	var req fasthttp.Request
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI("/v1/chat/completions")
	req.Header.SetContentType("application/json")
	req.SetBodyString(`{"model":"llama3.1:8b","messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"Write a haiku about bees."}],"max_tokens":64}`)
	var rc fasthttp.RequestCtx
	rc.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	h := r.Server().Handler
	serve := func() {
		rc.Response.Reset()
		h(&rc)
		if rc.Response.StatusCode() != 200 {
			t.Fatalf("status %d: %s", rc.Response.StatusCode(), rc.Response.Body())
		}
	}
	// Ready says the edge listens, not that its first snapshot (catalog and
	// node, read from Redis — slower on a Cluster) is in: wait for a 200.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		rc.Response.Reset()
		h(&rc)
		if rc.Response.StatusCode() == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 200 within a minute: %d %s", rc.Response.StatusCode(), rc.Response.Body())
		}
	}
	for i := 0; i < 50; i++ { // warm pools, metric handles, connections
		serve()
	}
	n := testing.AllocsPerRun(300, serve)
	t.Logf("%.1f allocations per request through the whole handler", n)
	if n > handlerAllocCeiling {
		t.Fatalf("%.1f allocations per request through the whole handler, ceiling %d", n, handlerAllocCeiling)
	}
}
