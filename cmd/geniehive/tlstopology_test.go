package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/loadtest/sim"
	"github.com/geniehive/geniehive/nodeagent"
	"github.com/geniehive/geniehive/state"
)

// An edge and a node agent, each with its own client built from the TLS
// URL as `geniehive edge` and `geniehive node` build theirs (the client
// certificate in tls_cert/tls_key, the CA in tls_ca), on the topology
// GENIEHIVE_TEST_REDIS names: scripts/test.sh's TLS pass runs it on one
// server, a Cluster and a Sentinel group with --tls-auth-clients yes. The
// agent discovers a simulated Ollama and heartbeats it; the edge's watcher
// sees it (pub/sub over TLS) and a chat request goes through.
func TestRedisTLSTopologyEdgeAndNode(t *testing.T) {
	u := os.Getenv("GENIEHIVE_TEST_REDIS")
	if !strings.HasPrefix(u, "rediss") || !strings.Contains(u, "tls_cert=") {
		t.Skip("not a TLS topology (scripts/test.sh runs this with GENIEHIVE_TEST_REDIS=rediss...?tls_cert=...)")
	}
	_, prefix := testredis.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The upstream: an Ollama simulator (loadtest/sim).
	up, err := sim.Start(sim.Config{Flavor: sim.FlavorOllama, Models: []sim.Model{{Name: "llama3.1:8b", Family: "llama", Loaded: true}}})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()

	// The node agent, as runNode builds it.
	nc, err := state.NewClient(state.Options{URL: u, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	agent, err := nodeagent.New(nodeagent.Config{HostID: "tlsgpu", RedisURL: u, Prefix: prefix, NvidiaSMI: "off",
		Interval: time.Second, TTL: 5 * time.Second,
		Services: []nodeagent.ServiceConfig{{Name: "ollama", Kind: fleet.KindChat, Endpoint: up.URL(), Protocol: "ollama"}}},
		state.New(nc, prefix), nodeagent.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	// The edge, with its own client from the same URL.
	ec, err := state.NewClient(state.Options{URL: u, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }() // before the clients close
	wg.Add(1)
	go func() { defer wg.Done(); agent.Run(ctx) }()
	addr := startTestEdge(t, ctx, &wg, ec, prefix, "edge-tls", "")

	var code int
	var body string
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Post("http://"+addr+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code, body = resp.StatusCode, string(b)
		if code == 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code != 200 || !strings.Contains(body, `"choices"`) {
		t.Fatalf("chat through the edge over TLS Redis: %d %s", code, body)
	}
	// The edge's view came from Redis over TLS: /v1/models lists the
	// agent's service.
	resp, err := http.Get("http://" + addr + "/v1/models/llama3.1:8b")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"tlsgpu/ollama"`) {
		t.Fatalf("/v1/models over TLS Redis: %d %s", resp.StatusCode, b)
	}
}
