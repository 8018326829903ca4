package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	openai "github.com/openai/openai-go/v3"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testollama"
	"github.com/geniehive/geniehive/loadtest/sim"
)

// serviceTPS waits for the edge's batched stats of service id to reach
// Redis and returns its tokens_per_sec.
func serviceTPS(t *testing.T, s *stack, id string) float64 {
	t.Helper()
	var tps float64
	waitUntil(t, 5*time.Second, "stats of "+id, func() bool {
		_ = s.srv.Watcher().Refresh(context.Background())
		if se := s.srv.Watcher().Current().ByID[id]; se != nil {
			tps = se.Stats.TokensPerSec
		}
		return tps > 0
	})
	return tps
}

func fastStats(c *Config, _ *Deps) { c.StatsInterval = 20 * time.Millisecond }

// TestTokensPerSecNonStreaming: a non-streamed answer arrives whole, so
// its rate is its tokens over the whole exchange (here 5 tokens, at least
// 4 chunk intervals of 10ms apart: at most 125 tokens/s), not over the time
// after its first byte (thousands per second).
func TestTokensPerSecNonStreaming(t *testing.T) {
	s := newStack(t, fastStats)
	up := startSim(t, sim.Config{Behavior: sim.Behavior{ChunkInterval: 10 * time.Millisecond, Chunks: 5}, Models: []sim.Model{{Name: "slow-llama", Loaded: true}}})
	heartbeat(t, s.store, "gpu4", svc("gpu4", "slow", fleet.KindChat, up.URL(), fleet.Asset{Name: "slow-llama", Loaded: true}))
	s.waitFor(func(sn *fleet.Snapshot) bool { return sn.ByID["gpu4/slow"] != nil })
	c := s.clientV3()
	for i := 0; i < 3; i++ {
		r, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "slow-llama",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
		if err != nil || r.Usage.CompletionTokens != 5 {
			t.Fatalf("%v %+v", err, r)
		}
	}
	if tps := serviceTPS(t, s, "gpu4/slow"); tps > 125 {
		t.Fatalf("tokens_per_sec %.0f for 5 tokens spread over >= 40ms", tps)
	}
}

// TestRealOllamaTokensPerSec: through the edge, a real Ollama's
// non-streamed answers are rated at most a few times Ollama's own
// generation rate (eval_count / eval_duration of a native answer), never
// the millions per second of time-after-first-byte.
func TestRealOllamaTokensPerSec(t *testing.T) {
	s := realOllamaStack(t, fastStats)
	// Ollama's own rate for the model, from its native API.
	body, _ := json.Marshal(map[string]any{"model": testollama.ChatModel, "stream": false,
		"messages": []map[string]string{{"role": "user", "content": "hi"}}})
	se := s.srv.Watcher().Current().ByID["ollama1/ollama"]
	resp, err := http.Post(se.Endpoint+"/api/chat", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var native struct {
		EvalCount    int   `json:"eval_count"`
		EvalDuration int64 `json:"eval_duration"`
	}
	err = json.NewDecoder(resp.Body).Decode(&native)
	resp.Body.Close()
	if err != nil || native.EvalCount == 0 || native.EvalDuration == 0 {
		t.Fatalf("native answer: %v %+v", err, native)
	}
	own := float64(native.EvalCount) / time.Duration(native.EvalDuration).Seconds()
	c := s.clientV3()
	for i := 0; i < 3; i++ {
		if _, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: testollama.ChatModel,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}}); err != nil {
			t.Fatal(err)
		}
	}
	tps := serviceTPS(t, s, "ollama1/ollama")
	t.Logf("edge %.0f tokens/s, Ollama's own %.0f", tps, own)
	if tps > 3*own {
		t.Fatalf("edge says %.0f tokens/s; Ollama's own rate is %.0f", tps, own)
	}
}
