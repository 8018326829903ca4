package edge

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go"
	"github.com/openai/openai-go/option"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/loadtest/sim"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/routing"
	"github.com/geniehive/geniehive/state"
)

const testKey = "sk-test-secret"

const testCatalog = `
roles:
  - name: coder
    aliases: [code]
    operation: chat
    candidates: [llama3.1:8b]
  - name: thinker
    operation: chat
    candidates: [qwen3:8b]
    request_policy:
      strip_reasoning: true
      thinking: true
  - name: summarizer
    operation: chat
    candidates: [nothing-here]
`

type stack struct {
	t       testing.TB
	store   *state.Store
	srv     *Server
	url     string // edge base URL, no trailing slash
	chat    *sim.Server
	emb     *sim.Server
	whisper *sim.Server
	cancel  context.CancelFunc
	done    chan error
}

type stackOpt func(*Config, *Deps)

func startSim(t testing.TB, cfg sim.Config) *sim.Server {
	t.Helper()
	s, err := sim.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func svc(host, name string, kind fleet.Kind, url string, assets ...fleet.Asset) fleet.Service {
	return fleet.Service{ID: host + "/" + name, HostID: host, Name: name, Kind: kind, Protocol: fleet.ProtocolOpenAI,
		Endpoint: url, Healthy: true, Assets: assets}
}

func heartbeat(t testing.TB, st *state.Store, host string, services ...fleet.Service) {
	t.Helper()
	ns := &fleet.NodeState{Host: fleet.Host{ID: host, StartedAt: time.Now(), UpdatedAt: time.Now()}, Services: services}
	if err := st.WriteHeartbeat(context.Background(), ns, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

func newStack(t testing.TB, opts ...stackOpt) *stack {
	t.Helper()
	c, prefix := testredis.New(t)
	st := state.New(c, prefix)
	s := &stack{t: t, store: st}
	s.chat = startSim(t, sim.Config{Models: []sim.Model{
		{Name: "llama3.1:8b", Family: "llama", Loaded: true, ContextLength: 32768},
		{Name: "qwen3:8b", Family: "qwen3", Thinking: true, Loaded: true},
	}, Behavior: sim.Behavior{ChunkInterval: time.Millisecond, Chunks: 4, ReasoningChunks: 2}})
	s.emb = startSim(t, sim.Config{Models: []sim.Model{{Name: "nomic-embed-text", Kind: sim.KindEmbeddings, Dims: 8}}})
	s.whisper = startSim(t, sim.Config{Flavor: sim.FlavorWhisper, Models: []sim.Model{{Name: "whisper-small", Kind: sim.KindTranscription}}})
	heartbeat(t, st, "gpu1",
		svc("gpu1", "chat", fleet.KindChat, s.chat.URL(),
			fleet.Asset{Name: "llama3.1:8b", Family: "llama", Loaded: true, ContextLength: 32768, SizeVRAM: 5 << 30},
			fleet.Asset{Name: "qwen3:8b", Family: "qwen3", Loaded: true, Thinking: true}),
		svc("gpu1", "embed", fleet.KindEmbeddings, s.emb.URL(), fleet.Asset{Name: "nomic-embed-text", Loaded: true}),
		svc("gpu1", "whisper", fleet.KindTranscription, s.whisper.URL(), fleet.Asset{Name: "whisper-small", Loaded: true}),
	)
	cat, err := state.ParseCatalog("test", []byte(testCatalog))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutCatalog(context.Background(), cat); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Listen: "127.0.0.1:0", ID: "edge-test", Keys: []KeyConfig{{ID: "tester", Secret: testKey}}}
	cfg.Timeouts.Heartbeat = 50 * time.Millisecond
	cfg.Timeouts.Shutdown = 3 * time.Second
	cfg.Timeouts.Read = 2 * time.Second
	lvl := slog.LevelWarn
	if os.Getenv("EDGE_TEST_LOG") != "" {
		lvl = slog.LevelDebug
	}
	d := Deps{Store: st, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))}
	for _, o := range opts {
		o(&cfg, &d)
	}
	if err := cfg.Provision(); err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.srv, s.url, s.cancel, s.done = srv, "http://"+ln.Addr().String(), cancel, make(chan error, 1)
	go func() { s.done <- srv.Run(ctx, ln) }()
	t.Cleanup(s.stop)
	s.waitFor(func(sn *fleet.Snapshot) bool { return len(sn.Services) >= 3 && len(sn.Catalog.Roles) > 0 })
	return s
}

func (s *stack) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		s.t.Error("edge did not stop")
	}
	s.cancel = nil
}

func (s *stack) waitFor(f func(*fleet.Snapshot) bool) {
	s.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		// The policy data follows the snapshot asynchronously: wait for
		// both, or a request may be decided on the data of before.
		if snap := s.srv.Watcher().Current(); f(snap) && s.srv.PolicyDataVersion() >= snap.DataVersion {
			return
		}
		_ = s.srv.Watcher().Refresh(context.Background())
		time.Sleep(10 * time.Millisecond)
	}
	s.t.Fatal("snapshot condition not met")
}

func (s *stack) client() openai.Client {
	return openai.NewClient(option.WithBaseURL(s.url+"/v1/"), option.WithAPIKey(testKey), option.WithMaxRetries(0))
}

// waitUntil polls cond for up to d.
// waitUntil polls cond. d is what a quiet machine needs; the deadline is at
// least 30s so a loaded machine fails only when the code is wrong.
func waitUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(max(d, 30*time.Second))
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func readAll(t testing.TB, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// stubRouter returns a fixed error, for error-mapping tests.
type stubRouter struct{ err error }

func (r stubRouter) Plan(context.Context, *fleet.Snapshot, *policy.Decision, *routing.RequestFacts) (routing.Plan, error) {
	return routing.Plan{}, r.err
}
