package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geniehive/geniehive/edge"
	"github.com/geniehive/geniehive/edge/replica"
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/loadtest/sim"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/state"
	"github.com/redis/go-redis/v9"
)

// buildExampleModule builds wasm/examples/simple (a Go wasip1 module) into
// dir/module.wasm.
func buildExampleModule(t *testing.T, dir string) []byte {
	t.Helper()
	out := filepath.Join(dir, "module.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "../../wasm/examples/simple")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// simChatNode starts a simulated upstream serving llama3.1:8b and registers
// it as node gpu1's service gpu1/chat; the caller closes the upstream.
func simChatNode(t *testing.T, ctx context.Context, st *state.Store) *sim.Server {
	t.Helper()
	up, err := sim.Start(sim.Config{Models: []sim.Model{{Name: "llama3.1:8b", Family: "llama", Loaded: true}}})
	if err != nil {
		t.Fatal(err)
	}
	ns := &fleet.NodeState{Host: fleet.Host{ID: "gpu1"}, Services: []fleet.Service{{
		ID: "gpu1/chat", HostID: "gpu1", Name: "chat", Kind: fleet.KindChat, Protocol: fleet.ProtocolOpenAI,
		Endpoint: up.URL(), Healthy: true, Assets: []fleet.Asset{{Name: "llama3.1:8b", Family: "llama", Loaded: true}},
	}}}
	// One heartbeat for the whole test: its TTL outlasts any test run
	// (tests under -race on a loaded machine take minutes).
	if err := st.WriteHeartbeat(ctx, ns, time.Hour); err != nil {
		up.Close()
		t.Fatal(err)
	}
	return up
}

// startTestEdge runs an edge replica (edge/replica, as `geniehive edge`
// does) with policy engine engine ("" = the default) on a loopback port
// until ctx is done and returns its address; wg tracks it.
func startTestEdge(t *testing.T, ctx context.Context, wg *sync.WaitGroup, c redis.UniversalClient, prefix, id, engine string) string {
	t.Helper()
	var cfg replica.Config
	cfg.Edge = edge.Config{Listen: "127.0.0.1:0", ID: id, Redis: edge.RedisConfig{Prefix: prefix}}
	cfg.Edge.PresenceInterval = 200 * time.Millisecond
	cfg.Policy.Engine = engine
	// These tests are about bundles and reloads, not evaluation deadlines:
	// under -race beside other packages' compiles one evaluation can run
	// past the default deadline (an eval_timeout 503, TestPushedBundleReaches-
	// EveryReplica in CI). The deadline itself is tested in wasm/ and
	// policies/opa.
	cfg.Policy.EvalTimeout = 10 * time.Second
	if err := cfg.Provision(); err != nil {
		t.Fatal(err)
	}
	// Warnings too: a transient reload failure (retried) is logged as one.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ready := make(chan string, 1)
	r, err := replica.New(ctx, cfg, replica.Options{Logger: log, Store: state.New(c, prefix), Ready: func(a string) { ready <- a }})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer r.Close()
		if err := r.Run(ctx); err != nil {
			t.Errorf("edge: %v", err)
		}
	}()
	select {
	case a := <-ready:
		return a
	case <-time.After(time.Minute):
		t.Fatal("edge did not start")
	}
	return ""
}

// A module bundle pushed with `geniehive policy push` is the one an edge
// runs (issue 16, item 5: module.wasm was stored as a JSON string, every
// byte >= 0x80 became U+FFFD, the push said "pushed" and every edge
// refused the module).
func TestPushedModuleBundleLoads(t *testing.T) {
	c, prefix := testredis.New(t)
	url := testredis.URL(t)
	st := state.New(c, prefix)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	dir := t.TempDir()
	wasmBin := buildExampleModule(t, dir)
	high := 0
	for _, c := range wasmBin {
		if c >= 0x80 {
			high++
		}
	}
	if high == 0 {
		t.Fatal("the module has no byte >= 0x80: it tests nothing")
	}
	var out bytes.Buffer
	if err := policyPush(ctx, &out, dir, &policyFlags{redis: redisFlags{URL: url, Prefix: prefix}}); err != nil {
		t.Fatalf("push: %v\n%s", err, out.String())
	}
	local, err := policies.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := st.GetPolicyBundle(ctx)
	if err != nil || pb == nil {
		t.Fatalf("stored bundle: %v", err)
	}
	if pb.Files["module.wasm"] != string(wasmBin) {
		t.Fatalf("stored module.wasm differs from the pushed one (%d bytes stored, %d pushed)", len(pb.Files["module.wasm"]), len(wasmBin))
	}

	up := simChatNode(t, ctx, st)
	defer up.Close()
	var wg sync.WaitGroup
	addr := startTestEdge(t, ctx, &wg, c, prefix, "edge-module", "module")
	defer func() { cancel(); wg.Wait() }()
	// On a loaded machine the first attempt at start can fail transiently
	// (the smoke evaluation waits out its budget): the edge then serves
	// 503 and retries; wait for the retry rather than read the first state.
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		eng, v, perr := policyOf(t, addr)
		if eng == "module" && v == local.Version && perr == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge runs %s %s (error %q), want module %s", eng, v, perr, local.Version)
		}
	}
	chat := func(model string) (int, string) {
		resp, err := http.Post("http://"+addr+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// The module's decisions: the model as asked, and its one denial (the
	// shipped policy would answer 404 for an unknown model).
	if code, body := chat("llama3.1:8b"); code != 200 {
		t.Fatalf("chat through the module: %d %s", code, body)
	}
	if code, body := chat("forbidden-model"); code != 403 || !strings.Contains(body, "policy_denied") {
		t.Fatalf("the module's denial: %d %s", code, body)
	}
}
