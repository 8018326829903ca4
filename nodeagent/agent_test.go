package nodeagent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/loadtest/sim"
	"github.com/geniehive/geniehive/state"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func startSim(t testing.TB, cfg sim.Config) *sim.Server {
	t.Helper()
	s, err := sim.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ollamaSim(t testing.TB) *sim.Server {
	return startSim(t, sim.Config{Flavor: sim.FlavorOllama, Models: []sim.Model{
		{Name: "qwen3:8b", Family: "qwen3", ParameterSize: "8.2B", Loaded: true, SizeVRAM: 6 << 30, ContextLength: 40960, Thinking: true},
		{Name: "llama3.2:3b", Family: "llama", ParameterSize: "3.2B"},
		{Name: "nomic-embed-text", Kind: sim.KindEmbeddings, Loaded: true, SizeVRAM: 1 << 28},
	}})
}

func newAgent(t testing.TB, cfg Config, store *state.Store) *Agent {
	t.Helper()
	a, err := New(cfg, store, Options{Logger: quiet, GPUs: func(context.Context) ([]fleet.GPU, error) {
		return []fleet.GPU{{Index: 0, Name: "Sim GPU", VRAMTotalBytes: 24 << 30, VRAMUsedBytes: 7 << 30}}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// runAgent runs a in the background; the returned stop cancels it and waits
// for Run to return (it is also called at cleanup).
func runAgent(t testing.TB, a *Agent) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitBeats waits (up to d) until each of hosts has been seen in Redis with
// n more heartbeats than when it was called: n further distinct
// Host.UpdatedAt values, each beat stamping its own. Polling can miss a
// beat, so it may wait a beat or two longer, never shorter.
func waitBeats(t testing.TB, store *state.Store, d time.Duration, n int, hosts ...string) {
	t.Helper()
	last := make(map[string]time.Time, len(hosts))
	seen := make(map[string]int, len(hosts))
	for _, h := range hosts {
		st, _ := readNode(t, store, h)
		last[h] = st.Host.UpdatedAt
	}
	waitFor(t, d, fmt.Sprintf("%d more beats of %v", n, hosts), func() bool {
		done := true
		for _, h := range hosts {
			if st, ok := readNode(t, store, h); ok && !st.Host.UpdatedAt.Equal(last[h]) {
				last[h] = st.Host.UpdatedAt
				seen[h]++
			}
			done = done && seen[h] >= n
		}
		return done
	})
}

func readNode(t testing.TB, store *state.Store, host string) (fleet.NodeState, bool) {
	t.Helper()
	recs, err := store.ReadNodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.State.Host.ID == host {
			return r.State, true
		}
	}
	return fleet.NodeState{}, false
}

func service(st fleet.NodeState, id string) *fleet.Service {
	for i := range st.Services {
		if st.Services[i].ID == id {
			return &st.Services[i]
		}
	}
	return nil
}

func asset(s *fleet.Service, name string) *fleet.Asset {
	for i := range s.Assets {
		if s.Assets[i].Name == name {
			return &s.Assets[i]
		}
	}
	return nil
}

// secondClient is a separate connection (another process's view).
func secondClient(t testing.TB) redis.UniversalClient {
	return testredis.Client(t)
}

func TestDiscoveryAndHeartbeat(t *testing.T) {
	c, prefix := testredis.New(t)
	store := state.New(c, prefix)
	ol := ollamaSim(t)
	vl := startSim(t, sim.Config{Flavor: sim.FlavorVLLM, Models: []sim.Model{{Name: "Qwen/Qwen3-8B", ContextLength: 32768}}, Behavior: sim.Behavior{ExtraQueued: 3}})
	lc := startSim(t, sim.Config{Flavor: sim.FlavorLlamaCPP, Models: []sim.Model{{Name: "gemma-3-1b-it", ContextLength: 131072}}, Behavior: sim.Behavior{ExtraQueued: 2}})
	wh := startSim(t, sim.Config{Flavor: sim.FlavorWhisper, Models: []sim.Model{{Name: "Systran/faster-whisper-small"}}})
	oa := startSim(t, sim.Config{Flavor: sim.FlavorOpenAI, Models: []sim.Model{{Name: "gpt-sim"}}})
	cfg := Config{HostID: "gpu-a", Labels: map[string]string{"zone": "lab"}, Services: []ServiceConfig{
		{Name: "ollama", Kind: fleet.KindChat, Endpoint: ol.URL(), Protocol: fleet.ProtocolOllama, MaxConcurrency: 4,
			Assets: []AssetConfig{{Name: "llama3.2:3b", Loaded: true, Tags: []string{"fast"}}}}, // stale loaded:true
		{Name: "ollama-embed", Kind: fleet.KindEmbeddings, Endpoint: ol.URL() + "/", Protocol: fleet.ProtocolOllama},
		{Name: "vllm", Endpoint: vl.URL(), Protocol: fleet.ProtocolVLLM},
		{Name: "llamacpp", Endpoint: lc.URL(), Protocol: fleet.ProtocolLlamaCPP},
		{Name: "whisper", Endpoint: wh.URL(), Protocol: fleet.ProtocolWhisper, ModelsManifest: []string{"Systran/faster-whisper-large-v3"}},
		{Name: "whisper-disc", Endpoint: wh.URL(), Protocol: fleet.ProtocolWhisper},
		{Name: "openai", Endpoint: oa.URL(), Protocol: fleet.ProtocolOpenAI},
		{Name: "static", Kind: fleet.KindSpeech, Endpoint: oa.URL(), Assets: []AssetConfig{{Name: "kokoro", Loaded: true}}},
	}}
	a := newAgent(t, cfg, store)
	if _, err := a.Beat(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, ok := readNode(t, store, "gpu-a")
	if !ok {
		t.Fatal("node not in Redis after one heartbeat")
	}
	if len(st.Services) != 8 || st.Host.Labels["zone"] != "lab" || len(st.Host.GPUs) != 1 || st.TTLSeconds != 15 {
		t.Fatalf("host %+v, %d services", st.Host, len(st.Services))
	}
	for _, s := range st.Services {
		if !s.Healthy || s.HostID != "gpu-a" || !strings.HasPrefix(s.ID, "gpu-a/") || s.Metrics.LatencyMS <= 0 {
			t.Errorf("service %s: healthy=%v err=%q latency=%v", s.ID, s.Healthy, s.HealthError, s.Metrics.LatencyMS)
		}
	}
	o := service(st, "gpu-a/ollama")
	// nomic-embed-text is an embedding model (/api/show): listed only by
	// the embeddings service on the same Ollama.
	if o.MaxConcurrency != 4 || o.Endpoint != ol.URL() || len(o.Assets) != 2 || asset(o, "nomic-embed-text:latest") != nil {
		t.Fatalf("ollama %+v", o)
	}
	q, l := asset(o, "qwen3:8b"), asset(o, "llama3.2:3b")
	if !q.Loaded || q.SizeVRAM != 6<<30 || q.Family != "qwen3" || q.ParameterSize != "8.2B" || q.ContextLength != 40960 || !q.Thinking {
		t.Fatalf("qwen3 %+v", q)
	}
	if l.Loaded || l.Tags[0] != "fast" || l.Thinking {
		t.Fatalf("stale loaded:true not corrected by /api/ps: %+v", l)
	}
	if o.Metrics.LoadedModelCount != 1 || o.Metrics.VRAMUsedBytes != 6<<30+1<<28 || o.Metrics.VRAMTotalBytes != 24<<30 {
		t.Fatalf("ollama metrics %+v", o.Metrics)
	}
	if e := service(st, "gpu-a/ollama-embed"); e.Kind != fleet.KindEmbeddings || e.Endpoint != ol.URL() || len(e.Assets) != 1 || asset(e, "nomic-embed-text:latest") == nil {
		t.Fatalf("embed %+v", e)
	}
	v := service(st, "gpu-a/vllm")
	if v.Metrics.QueueDepth != 3 || len(v.Assets) != 1 || v.Assets[0].ContextLength != 32768 || !v.Assets[0].Loaded || v.Assets[0].Family != "qwen3" {
		t.Fatalf("vllm %+v", v)
	}
	if lcs := service(st, "gpu-a/llamacpp"); lcs.Metrics.QueueDepth != 2 || lcs.Assets[0].ContextLength != 131072 {
		t.Fatalf("llamacpp %+v", lcs)
	}
	if w := service(st, "gpu-a/whisper"); w.Kind != fleet.KindTranscription || len(w.Assets) != 1 || w.Assets[0].Name != "Systran/faster-whisper-large-v3" {
		t.Fatalf("whisper manifest %+v", w)
	}
	if w := service(st, "gpu-a/whisper-disc"); len(w.Assets) != 1 || w.Assets[0].Name != "Systran/faster-whisper-small" {
		t.Fatalf("whisper discovered %+v", w)
	}
	if s := service(st, "gpu-a/static"); len(s.Assets) != 1 || !s.Assets[0].Loaded || s.Kind != fleet.KindSpeech {
		t.Fatalf("static %+v", s)
	}
	if ol.Requests("/api/ps") != 2 || vl.Requests("/metrics") != 1 || vl.Requests("/health") != 1 {
		t.Fatalf("unexpected upstream traffic: %+v %+v", ol.Stats().Requests, vl.Stats().Requests)
	}

	// Generate 100 tokens on vLLM between two beats: a non-zero rate.
	for i := 0; i < 5; i++ {
		resp, err := http.Post(vl.URL()+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"Qwen/Qwen3-8B","messages":[{"role":"user","content":"x"}],"max_tokens":20}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	st2 := a.Collect(context.Background())
	if r := service(st2, "gpu-a/vllm").Metrics.TokensPerSecond; r <= 0 {
		t.Fatalf("tokens/s %v after 100 generated tokens", r)
	}

	// Another process (separate client) sees it in a Watcher snapshot.
	w := state.NewWatcher(state.New(secondClient(t), prefix), state.WatcherOptions{Logger: quiet})
	if err := w.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	snap := w.Current()
	e, ok := snap.ByID["gpu-a/ollama"]
	if !ok || !e.Routable(time.Now()) || e.Expiry().Before(time.Now().Add(10*time.Second)) {
		t.Fatalf("snapshot entry %+v", e)
	}
	if len(snap.AssetServices["qwen3:8b"]) != 1 || len(snap.AssetServices["nomic-embed-text:latest"]) != 1 {
		t.Fatalf("asset index %v", snap.AssetServices["qwen3:8b"])
	}
}

// hungServer accepts connections and never answers.
func hungServer(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "http://" + ln.Addr().String()
}

func TestFailingServiceIsolated(t *testing.T) {
	c, prefix := testredis.New(t)
	store := state.New(c, prefix)
	alive := ollamaSim(t)
	dead := startSim(t, sim.Config{Flavor: sim.FlavorOpenAI, Models: []sim.Model{{Name: "m"}}})
	deadURL := dead.URL()
	dead.Close()
	cfg := Config{HostID: "h", Interval: 300 * time.Millisecond, TTL: 2 * time.Second, DiscoveryTimeout: 200 * time.Millisecond,
		Services: []ServiceConfig{
			{Name: "alive", Endpoint: alive.URL(), Protocol: fleet.ProtocolOllama},
			{Name: "dead", Endpoint: deadURL, Protocol: fleet.ProtocolOpenAI},
			{Name: "hung", Endpoint: hungServer(t), Protocol: fleet.ProtocolVLLM},
		}}
	runAgent(t, newAgent(t, cfg, store))
	var first time.Time
	var beats []time.Time
	waitFor(t, 5*time.Second, "5 heartbeats", func() bool {
		st, ok := readNode(t, store, "h")
		if ok && (len(beats) == 0 || !st.Host.UpdatedAt.Equal(beats[len(beats)-1])) {
			beats = append(beats, st.Host.UpdatedAt)
		}
		return len(beats) >= 5
	})
	first = beats[0]
	// A hung service costs at most DiscoveryTimeout per beat: beats stay on the interval.
	if gap := beats[4].Sub(first) / 4; gap > 450*time.Millisecond {
		t.Fatalf("beats every %v with a hung service; want ~300ms", gap)
	}
	st, _ := readNode(t, store, "h")
	if s := service(st, "h/alive"); !s.Healthy || len(s.Assets) != 2 || len(service(st, "h/alive-embeddings").Assets) != 1 {
		t.Fatalf("alive %+v", s)
	}
	if s := service(st, "h/dead"); s.Healthy || !strings.Contains(s.HealthError, "connection refused") {
		t.Fatalf("dead %+v", s)
	}
	if s := service(st, "h/hung"); s.Healthy || !strings.Contains(s.HealthError, "health check") {
		t.Fatalf("hung %+v", s)
	}

	// Kill the live one: it turns unhealthy but keeps its last known assets; heal it.
	alive.Update(func(b *sim.Behavior) { b.FailBeforeFirstByte = true })
	waitFor(t, 3*time.Second, "alive to turn unhealthy", func() bool {
		st, _ := readNode(t, store, "h")
		s := service(st, "h/alive")
		return s != nil && !s.Healthy && len(s.Assets) == 2 && s.HealthError != ""
	})
	alive.Update(func(b *sim.Behavior) { b.FailBeforeFirstByte = false })
	waitFor(t, 3*time.Second, "alive to heal", func() bool {
		st, _ := readNode(t, store, "h")
		s := service(st, "h/alive")
		return s != nil && s.Healthy && s.HealthError == ""
	})
}

func TestRecoversFromFlushAndRedisRestart(t *testing.T) {
	srv := testredis.Private(t)
	c := srv.Client(t)
	store := state.New(c, "")
	ol := ollamaSim(t)
	cfg := Config{HostID: "h", Interval: 200 * time.Millisecond, TTL: 2 * time.Second,
		Services: []ServiceConfig{{Name: "o", Endpoint: ol.URL(), Protocol: fleet.ProtocolOllama}}}
	failed := &countingHandler{msg: "heartbeat not written; retrying"}
	a, err := New(cfg, store, Options{Logger: slog.New(failed)})
	if err != nil {
		t.Fatal(err)
	}
	runAgent(t, a)
	exists := func() bool {
		n, err := c.Exists(context.Background(), store.NodeKey("h")).Result()
		return err == nil && n == 1
	}
	waitFor(t, 3*time.Second, "first heartbeat", exists)
	if err := c.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if exists() {
		t.Fatal("FLUSHALL did not flush")
	}
	t0 := time.Now()
	waitFor(t, 3*time.Second, "re-registration after FLUSHALL", exists)
	t.Logf("re-registered %v after FLUSHALL (interval 200ms)", time.Since(t0).Round(time.Millisecond))

	// Redis down for a while, then back empty on the same port.
	srv.Stop()
	before := failed.n.Load()
	waitFor(t, 10*time.Second, "several failed beats with backoff", func() bool { return failed.n.Load() >= before+3 })
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	waitFor(t, 3*time.Second, "re-registration after Redis restart", exists)
	t.Logf("re-registered %v after Redis came back", time.Since(t0).Round(time.Millisecond))
	st, _ := readNode(t, store, "h")
	if s := service(st, "h/o"); s == nil || !s.Healthy {
		t.Fatalf("after restart %+v", st)
	}
}

// countingHandler counts the log records whose message is msg.
type countingHandler struct {
	msg string
	n   atomic.Int64
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func TestAgentsIsolatedAndGracefulStop(t *testing.T) {
	c, prefix := testredis.New(t)
	store := state.New(c, prefix)
	ol := ollamaSim(t)
	mk := func(host string) *Agent {
		return newAgent(t, Config{HostID: host, Interval: 200 * time.Millisecond, Services: []ServiceConfig{
			{Name: "ollama", Endpoint: ol.URL(), Protocol: fleet.ProtocolOllama},
			{Name: host + "-only", Endpoint: ol.URL(), Protocol: fleet.ProtocolOllama},
		}}, store)
	}
	stopA := runAgent(t, mk("a"))
	runAgent(t, mk("b"))
	waitFor(t, 3*time.Second, "both nodes", func() bool {
		_, okA := readNode(t, store, "a")
		_, okB := readNode(t, store, "b")
		return okA && okB
	})
	waitBeats(t, store, 30*time.Second, 3, "a", "b") // several interleaved beats
	for _, h := range []string{"a", "b"} {
		st, _ := readNode(t, store, h)
		// The first service on the Ollama lists its embedding model under a sibling.
		if len(st.Services) != 3 || service(st, h+"/ollama") == nil || service(st, h+"/"+h+"-only") == nil || service(st, h+"/ollama-embeddings") == nil {
			t.Fatalf("%s overwritten: %+v", h, st.Services)
		}
	}
	keys := testredis.Keys(t, c, prefix+"*")
	if len(keys) != 2 || keys[0] != store.NodeKey("a") || keys[1] != store.NodeKey("b") {
		t.Fatalf("keys %v", keys)
	}
	// Graceful stop removes a's key at once (TTL is 15s) and leaves b.
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	if n := c.Exists(context.Background(), store.NodeKey("a")).Val(); n != 0 {
		t.Fatal("a's key survived a graceful stop")
	}
	if _, ok := readNode(t, store, "b"); !ok {
		t.Fatal("b vanished when a stopped")
	}
}

// The SIGKILL test runs the agent in a child process (this test binary
// re-executed) so nothing gets a chance to clean up.
func TestMain(m *testing.M) {
	if os.Getenv("GENIEHIVE_NODEAGENT_CHILD") == "1" {
		os.Exit(childAgent())
	}
	os.Exit(m.Run())
}

func childAgent() int {
	c, err := state.NewClient(state.Options{URL: os.Getenv("CHILD_REDIS")})
	if err != nil {
		return 3
	}
	a, err := New(Config{HostID: os.Getenv("CHILD_HOST"), Interval: 250 * time.Millisecond, TTL: childTTL, NvidiaSMI: "off",
		Services: []ServiceConfig{{Name: "o", Endpoint: os.Getenv("CHILD_UPSTREAM"), Protocol: fleet.ProtocolOllama}}},
		state.New(c, os.Getenv("CHILD_PREFIX")), Options{Logger: quiet})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	_ = a.Run(context.Background())
	return 0
}

// childTTL is the child agent's key TTL: twelve intervals, so a starved
// machine that does not schedule the child for a second does not expire
// its key before the test kills it.
const childTTL = 3 * time.Second

func TestKilledAgentExpires(t *testing.T) {
	c, prefix := testredis.New(t)
	store := state.New(c, prefix)
	ol := ollamaSim(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GENIEHIVE_NODEAGENT_CHILD=1", "CHILD_REDIS="+testredis.URL(t),
		"CHILD_PREFIX="+prefix, "CHILD_HOST=victim", "CHILD_UPSTREAM="+ol.URL())
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	key := store.NodeKey("victim")
	waitFor(t, 5*time.Second, "child's heartbeat", func() bool { return c.Exists(context.Background(), key).Val() == 1 })
	waitBeats(t, store, 30*time.Second, 2, "victim") // a few beats
	if err := cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed := time.Now()
	// Its key is still there (nothing cleaned up) and carries at most the
	// agent's TTL: checked in Redis, not on the wall clock, which a loaded
	// machine stretches at will.
	ttl := c.PTTL(context.Background(), key).Val()
	if c.Exists(context.Background(), key).Val() != 1 {
		t.Fatal("key gone right after SIGKILL: nothing should have removed it")
	}
	if ttl <= 0 || ttl > childTTL {
		t.Fatalf("the killed agent's key has TTL %v, want (0, %v] (the agent's TTL)", ttl, childTTL)
	}
	waitFor(t, time.Minute, "the killed agent's key to expire", func() bool { return c.Exists(context.Background(), key).Val() == 0 })
	t.Logf("SIGKILLed agent's key expired %v after the kill (TTL %v, interval 250ms)", time.Since(killed).Round(time.Millisecond), childTTL)
}

// TestHeartbeatToSnapshotDelay measures how long a heartbeat takes to reach
// another process's Watcher snapshot (pub/sub path, not the resync).
func TestHeartbeatToSnapshotDelay(t *testing.T) {
	c, prefix := testredis.New(t)
	store := state.New(c, prefix)
	ol := ollamaSim(t)
	a := newAgent(t, Config{HostID: "lat", Services: []ServiceConfig{{Name: "o", Endpoint: ol.URL(), Protocol: fleet.ProtocolOllama}}}, store)
	w := state.NewWatcher(state.New(secondClient(t), prefix), state.WatcherOptions{Resync: time.Hour, Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := w.Changes()
	go w.Run(ctx)
	seen := func(want time.Time, timeout time.Duration) (time.Duration, bool) {
		t0 := time.Now()
		deadline := time.After(timeout)
		for {
			if h, ok := w.Current().Hosts["lat"]; ok && h.UpdatedAt().Equal(want) {
				return time.Since(t0), true
			}
			select {
			case <-changes:
			case <-deadline:
				return 0, false
			}
		}
	}
	// Warm up: the watcher subscribes and the first beat arrives.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := a.Beat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := seen(st.Host.UpdatedAt, 100*time.Millisecond); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("watcher never saw the node")
		}
	}
	const n = 100
	delays := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		st := a.Collect(ctx)
		t0 := time.Now()
		if err := store.WriteHeartbeat(ctx, &st, a.cfg.TTL); err != nil {
			t.Fatal(err)
		}
		if _, ok := seen(st.Host.UpdatedAt, 2*time.Second); !ok {
			t.Fatalf("beat %d not in the other process's snapshot within 2s", i)
		}
		delays = append(delays, time.Since(t0))
	}
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	t.Logf("heartbeat -> other client's snapshot over %d beats: median %v, p90 %v, worst %v",
		n, delays[n/2].Round(time.Microsecond), delays[n*9/10].Round(time.Microsecond), delays[n-1].Round(time.Microsecond))
}

// countHook counts commands and round trips.
type countHook struct {
	cmds, trips atomic.Int64
	mu          sync.Mutex
	names       []string
}

func (h *countHook) note(cmds ...redis.Cmder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var n []string
	for _, c := range cmds {
		n = append(n, c.Name())
	}
	h.names = append(h.names, strings.Join(n, "+"))
}

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.cmds.Add(1)
		h.trips.Add(1)
		h.note(cmd)
		return next(ctx, cmd)
	}
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.cmds.Add(int64(len(cmds)))
		h.trips.Add(1)
		h.note(cmds...)
		return next(ctx, cmds)
	}
}

// TestHeartbeatCost counts what one heartbeat costs Redis, from the client
// (hook) and from the server (INFO commandstats on a private server).
func TestHeartbeatCost(t *testing.T) {
	srv := testredis.Private(t)
	c := srv.Client(t)
	ctx := context.Background()
	store := state.New(c, "")
	ol := ollamaSim(t)
	a := newAgent(t, Config{HostID: "cost", Services: []ServiceConfig{
		{Name: "o", Endpoint: ol.URL(), Protocol: fleet.ProtocolOllama},
		{Name: "e", Kind: fleet.KindEmbeddings, Endpoint: ol.URL(), Protocol: fleet.ProtocolOllama},
	}}, store)
	if _, err := a.Beat(ctx); err != nil { // warm the connection
		t.Fatal(err)
	}
	h := &countHook{}
	c.AddHook(h)
	admin := srv.Client(t)
	if err := admin.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	st, err := a.Beat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cmds, trips := h.cmds.Load(), h.trips.Load()
	h.mu.Lock()
	names := append([]string(nil), h.names...)
	h.mu.Unlock()
	info, err := admin.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	server := map[string]int{}
	total := 0
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		name = strings.TrimPrefix(name, "cmdstat_")
		if name == "info" || name == "config|resetstat" || name == "config" {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		n, _ := strconv.Atoi(calls)
		server[name] = n
		total += n
	}
	size := c.StrLen(ctx, store.NodeKey("cost")).Val()
	t.Logf("one heartbeat (%d services, %d assets): client sent %v = %d commands in %d round trip(s); server commandstats %v (total %d); value %d bytes",
		len(st.Services), len(st.Services[0].Assets)+len(st.Services[1].Assets), names, cmds, trips, server, total, size)
	if trips != 1 {
		t.Fatalf("a heartbeat took %d round trips, want 1", trips)
	}
	if server["set"] != 1 || server["publish"] != 1 || total > 6 {
		t.Fatalf("unexpected commands %v", server)
	}
}

// TestACLConfinesNode runs a heartbeat as a Redis ACL user limited to its own
// keys and channel (the ACL documented in package state), and checks it can
// neither write nor remove another node. WriteHeartbeat uses MULTI/EXEC,
// which are not in @write: the ACL needs +multi +exec +discard too.
func TestACLConfinesNode(t *testing.T) {
	srv := testredis.Private(t)
	admin := srv.Client(t)
	ctx := context.Background()
	// Exactly the rule `geniehive node acl node-a` prints and applies (the
	// README's, built in one place: state.NodeACL).
	rule, err := state.NodeACL(state.DefaultPrefix, "node-a", "secret")
	if err != nil {
		t.Fatal(err)
	}
	acl := make([]any, len(rule))
	for i, a := range rule {
		acl[i] = a
	}
	if err := admin.Do(ctx, acl...).Err(); err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "node-node-a", Password: "secret", ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	store := state.New(c, "")
	ol := ollamaSim(t)
	a := newAgent(t, Config{HostID: "node-a", Services: []ServiceConfig{{Name: "o", Endpoint: ol.URL(), Protocol: fleet.ProtocolOllama}}}, store)
	if _, err := a.Beat(ctx); err != nil {
		t.Fatalf("heartbeat under the node ACL: %v", err)
	}
	if admin.Exists(ctx, "gh:node:{node-a}:state").Val() != 1 {
		t.Fatal("no key written")
	}
	b := newAgent(t, Config{HostID: "node-b", Services: []ServiceConfig{{Name: "o", Endpoint: ol.URL(), Protocol: fleet.ProtocolOllama}}}, store)
	if _, err := b.Beat(ctx); err == nil || !(strings.Contains(err.Error(), "NOPERM") || strings.Contains(err.Error(), "EXECABORT")) {
		t.Fatalf("node-a's credentials wrote node-b: %v", err)
	}
	if err := store.RemoveNode(ctx, "node-b"); err == nil {
		t.Fatal("node-a's credentials removed node-b")
	}
	// Nor the operator's keys: catalog, API keys, policy bundle, node allowlist.
	cat := &fleet.Catalog{Roles: []fleet.Role{{Name: "evil", Candidates: []string{"x"}}}}
	if err := store.PutCatalog(ctx, cat); err == nil {
		t.Fatal("node-a's credentials replaced the role catalog")
	}
	if err := store.PutKey(ctx, fleet.APIKey{ID: "evil", Hash: fleet.HashKeyHex("x"), Scope: fleet.ScopeOperator}); err == nil {
		t.Fatal("node-a's credentials added an API key")
	}
	if err := store.PutPolicyBundle(ctx, &fleet.PolicyBundle{Version: "evil", Files: map[string]string{"a.rego": "package a"}}); err == nil {
		t.Fatal("node-a's credentials pushed a policy bundle")
	}
	if err := store.PutNodeAllow(ctx, "node-a", []string{"0.0.0.0/0"}); err == nil {
		t.Fatal("node-a's credentials widened its own endpoint allowlist")
	}
	if n := admin.Exists(ctx, "gh:catalog", "gh:keys", "gh:policy:bundle", "gh:nodes:allow").Val(); n != 0 {
		t.Fatalf("%d operator keys written by a node", n)
	}

	// The command channel (issue 14): an operator-side store sends one
	// command to each node; node-a reads and answers its own, and can
	// neither read, acknowledge nor answer node-b's, nor send any.
	ops := state.New(admin, "")
	dl := time.Now().Add(time.Minute)
	for _, h := range []string{"node-a", "node-b"} {
		if _, err := ops.SendSwap(ctx, &fleet.SwapCommand{ID: h + "-1", Op: fleet.SwapLoad, Service: h + "/o", Model: "m", Deadline: dl}); err != nil {
			t.Fatal(err)
		}
	}
	own, err := store.ReadSwaps(ctx, "node-a", "node-a", false, 8, 0)
	if err != nil || len(own) != 1 || own[0].Cmd.ID != "node-a-1" {
		t.Fatalf("node-a reading its own commands: %+v %v", own, err)
	}
	if ok, err := store.FinishSwap(ctx, "node-a", own[0].StreamID, &fleet.SwapResult{ID: "node-a-1", Status: fleet.SwapDone}); err != nil || !ok {
		t.Fatalf("node-a answering its own command: %v %v", ok, err)
	}
	if got, err := store.ReadSwaps(ctx, "node-b", "node-a", false, 8, 0); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("node-a read node-b's commands: %+v %v", got, err)
	}
	if _, err := store.FinishSwap(ctx, "node-b", "0-1", &fleet.SwapResult{ID: "node-b-1", Status: fleet.SwapFailed}); err == nil {
		t.Fatal("node-a answered node-b's command")
	}
	if err := c.XAck(ctx, ops.SwapStreamKey("node-b"), state.SwapGroup, "0-1").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("node-a acknowledged on node-b's stream: %v", err)
	}
	for _, h := range []string{"node-a", "node-b"} {
		if _, err := store.SendSwap(ctx, &fleet.SwapCommand{ID: "forged", Op: fleet.SwapUnload, Service: h + "/o", Model: "m", Deadline: dl}); err == nil {
			t.Fatalf("node-a sent a command to %s", h)
		}
	}
	if n := admin.XLen(ctx, ops.SwapStreamKey("node-b")).Val(); n != 1 {
		t.Fatalf("node-b's stream holds %d entries, want its 1", n)
	}
	if pend := admin.XPending(ctx, ops.SwapStreamKey("node-b"), state.SwapGroup).Val(); pend.Count != 0 {
		t.Fatalf("node-b's command was taken by someone: %+v", pend)
	}
	if admin.Exists(ctx, ops.SwapResultKey("node-b", "node-b-1")).Val() != 0 {
		t.Fatal("a result was written for node-b")
	}
}

// TestAgentPublishesMetricsEvents: a real agent (discovering a real
// server's simulator) announces its first beat whole ("up"), the next
// ones, where only its figures moved, as metrics events carrying them, and
// a beat whose service turned unhealthy (a change of shape) whole again.
func TestAgentPublishesMetricsEvents(t *testing.T) {
	c, prefix := testredis.New(t)
	store := state.New(c, prefix)
	ol := ollamaSim(t)
	cfg := Config{HostID: "gpu-m", Services: []ServiceConfig{
		{Name: "ollama", Kind: fleet.KindChat, Endpoint: ol.URL(), Protocol: fleet.ProtocolOllama},
		{Name: "static", Kind: fleet.KindSpeech, Endpoint: ol.URL(), Assets: []AssetConfig{{Name: "kokoro", Loaded: true}}},
	}}
	a := newAgent(t, cfg, store)
	ctx := context.Background()
	ps := c.Subscribe(ctx, store.Channel(state.EventNode+"gpu-m"))
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := ps.Channel()
	beat := func() (fleet.NodeState, string) {
		t.Helper()
		st, err := a.Beat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-msgs:
			return st, m.Payload
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
		}
		return st, ""
	}
	if _, p := beat(); p != "up" {
		t.Fatalf("first beat: %q, want up", p)
	}
	var st fleet.NodeState
	for i := 0; i < 3; i++ {
		var p string
		st, p = beat()
		if !state.IsMetricsEvent(p) || !strings.Contains(p, " "+st.Shape+" ") || len(p) > state.MaxMetricsEventBytes {
			t.Fatalf("beat %d with only figures moving: %q (shape %s)", i+2, p, st.Shape)
		}
	}
	ol.Close() // the services turn unhealthy: another shape
	if st2, p := beat(); p != "up" || st2.Shape == st.Shape {
		t.Fatalf("beat after the upstream died: %.60q, shape %s -> %s", p, st.Shape, st2.Shape)
	}
}
