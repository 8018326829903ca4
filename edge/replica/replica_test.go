package replica_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/geniehive/geniehive/edge"
	"github.com/geniehive/geniehive/edge/replica"
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/loadtest/sim"
	"github.com/geniehive/geniehive/state"
)

// start registers one simulated upstream and starts a replica on it; it
// returns the base URL, the Run result channel and the cancel func.
func start(t *testing.T, mutate func(*replica.Config), beh sim.Behavior) (url string, st *state.Store, prefix string, up *sim.Server, done chan error, cancel context.CancelFunc) {
	t.Helper()
	c, prefix := testredis.New(t)
	st = state.New(c, prefix)
	up, err := sim.Start(sim.Config{Models: []sim.Model{{Name: "llama3.1:8b", Family: "llama", Loaded: true}}, Behavior: beh})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	ns := &fleet.NodeState{Host: fleet.Host{ID: "gpu1"}, Services: []fleet.Service{{
		ID: "gpu1/chat", HostID: "gpu1", Name: "chat", Kind: fleet.KindChat, Protocol: fleet.ProtocolOpenAI,
		Endpoint: up.URL(), Healthy: true, Assets: []fleet.Asset{{Name: "llama3.1:8b", Family: "llama", Loaded: true}},
	}}}
	if err := st.WriteHeartbeat(context.Background(), ns, time.Minute); err != nil {
		t.Fatal(err)
	}
	var cfg replica.Config
	cfg.Edge = edge.Config{Listen: "127.0.0.1:0", ID: "edge-t", Redis: edge.RedisConfig{Prefix: prefix}}
	cfg.Policy.Engine = replica.EngineGo
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Provision(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ready := make(chan string, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := replica.New(ctx, cfg, replica.Options{Logger: log, Store: st, Ready: func(a string) { ready <- a }})
	if err != nil {
		t.Fatal(err)
	}
	done = make(chan error, 1)
	go func() { err := r.Run(ctx); _ = r.Close(); done <- err }()
	select {
	case a := <-ready:
		url = "http://" + a
	case err := <-done:
		t.Fatalf("replica stopped: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("replica did not start")
	}
	return url, st, prefix, up, done, cancel
}

func chat(url string, stream bool) (int, string, error) {
	body := `{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}]` + map[bool]string{true: `,"stream":true}`, false: `}`}[stream]
	req, _ := http.NewRequest("POST", url+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Close = true // a new connection each time
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// awaitRun waits for Run's result: nil, within a generous deadline.
func awaitRun(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("Run did not return")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute) // generous: a loaded machine under -race
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGracefulStopLeavesNothingBehind: streams are open (their in-flight
// leases are in Redis) when the replica is told to stop. Run returns only
// after they finished, the last in-flight removals were written, the
// presence record was removed and every goroutine it started has
// returned: no in-flight member is left in Redis and no goroutine leaks.
// (Before, the in-flight flusher was cancelled without being awaited and
// the process exited: the final flush could be lost and every replica
// counted phantom requests for up to the lease.)
func TestGracefulStopLeavesNothingBehind(t *testing.T) {
	// Registered first, so it runs after every other cleanup (the
	// upstream's and the Redis client's).
	opts := []goleak.Option{goleak.IgnoreCurrent(),
		// The per-binary redis-server started by testredis.
		goleak.IgnoreAnyFunction("github.com/geniehive/geniehive/internal/testredis.(*Server).run.func1"),
		// fasthttp's process-wide Date updater, and its cleaners, which
		// sleep out their idle period and exit on their own after the
		// server stopped and the idle connections were closed.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	}
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
	url, st, _, up, done, cancel := start(t, nil, sim.Behavior{TTFT: 200 * time.Millisecond, ChunkInterval: 20 * time.Millisecond, Chunks: 20})
	const n = 4
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, err := chat(url, true)
			if err != nil || code != 200 || !strings.Contains(body, "[DONE]") {
				errs <- body
			}
		}()
	}
	key := st.InflightKey("gpu1/chat")
	counts := func() int64 {
		n, err := st.InflightCounts(context.Background(), []string{"gpu1/chat"})
		if err != nil {
			t.Fatal(err)
		}
		return n[0]
	}
	waitFor(t, "the streams' in-flight leases in Redis", func() bool { return counts() == n })
	if up.InFlight() == 0 {
		t.Fatal("no stream open at the upstream")
	}
	cancel()
	awaitRun(t, done)
	// At once, no waiting: Run returned, so the final flush is done.
	if c := counts(); c != 0 {
		t.Fatalf("%d in-flight members left in %s when Run returned", c, key)
	}
	wg.Wait()
	close(errs)
	for b := range errs {
		t.Errorf("a stream open at stop did not complete: %q", b)
	}
	if c := counts(); c != 0 {
		t.Fatalf("%d in-flight members left in %s after a graceful stop", c, key)
	}
	edges, err := st.ListEdges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(edges) != 0 {
		t.Fatalf("presence records left: %+v", edges)
	}
}

// TestShutdownDelay: on stop, /readyz answers 503 at once — on a new
// connection too — while the edge keeps serving requests; only after the
// delay does the listener close. (Before, the listener closed at once and
// /readyz turned 503 only on connections already open.)
func TestShutdownDelay(t *testing.T) {
	url, _, _, _, done, cancel := start(t, func(c *replica.Config) { c.Edge.Timeouts.ShutdownDelay = 10 * time.Second }, sim.Behavior{})
	ready := func() int {
		req, _ := http.NewRequest("GET", url+"/readyz", nil)
		req.Close = true
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return -1
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := ready(); c != 200 {
		t.Fatalf("/readyz before stop: %d", c)
	}
	cancel()
	waitFor(t, "/readyz to answer 503", func() bool { return ready() == 503 })
	code, body, err := chat(url, false)
	if err != nil || code != 200 {
		t.Fatalf("request during the shutdown delay: %d %s %v", code, body, err)
	}
	awaitRun(t, done)
	if c := ready(); c != -1 {
		t.Fatalf("/readyz after stop: %d, want the listener closed", c)
	}
}

// TestRedisAndPolicyMetrics: a replica that owns its Redis client counts
// round trips, commands and failed commands on /metrics (go-redis hook),
// and observes policy evaluation latency.
func TestRedisAndPolicyMetrics(t *testing.T) {
	c, prefix := testredis.New(t)
	st := state.New(c, prefix)
	_ = st
	var cfg replica.Config
	cfg.Edge = edge.Config{Listen: "127.0.0.1:0", ID: "edge-m", Redis: edge.RedisConfig{URL: testredis.URL(t), Prefix: prefix}}
	cfg.Policy.Engine = replica.EngineGo
	if err := cfg.Provision(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	r, err := replica.New(ctx, cfg, replica.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Ready: func(a string) { ready <- a }})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx); _ = r.Close() }()
	url := "http://" + <-ready
	defer func() { cancel(); <-done }()
	if code, _, _ := chat(url, false); code == 0 {
		t.Fatal("no answer")
	}
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := string(b)
	for _, want := range []string{"geniehive_redis_round_trips_total ", `geniehive_redis_commands_total{command="get"}`, `geniehive_policy_eval_seconds_count{engine="go"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
