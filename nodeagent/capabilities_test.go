package nodeagent

import (
	"context"
	"slices"
	"testing"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testollama"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/loadtest/sim"
	"github.com/geniehive/geniehive/state"
)

// TestOllamaCapabilities: one Ollama configured as a chat service lists
// each model by what /api/show says it can do (an embedding model under
// the sibling embeddings service, thinking from the capability, not the
// name), asks once per digest, and falls back to the family on a server
// too old to report capabilities (before v0.6.4).
func TestOllamaCapabilities(t *testing.T) {
	c, prefix := testredis.New(t)
	store := state.New(c, prefix)
	models := []sim.Model{
		{Name: "qwen3:8b", Family: "qwen3", Thinking: true, Loaded: true},
		{Name: "my-reasoner:1b", Family: "llama", Capabilities: []string{"completion", "thinking"}},
		{Name: "qwen3-instruct:4b", Family: "qwen3", Capabilities: []string{"completion", "tools"}},
		{Name: "nomic-embed-text", Family: "nomic-bert", Kind: sim.KindEmbeddings, Loaded: true},
	}
	for _, v := range []struct {
		version string
		caps    bool
	}{{"0.17.4", true}, {"0.6.0", false}} {
		t.Run(v.version, func(t *testing.T) {
			ol := startSim(t, sim.Config{Flavor: sim.FlavorOllama, Version: v.version, Models: models})
			a := newAgent(t, Config{HostID: "gpu-" + v.version, Services: []ServiceConfig{
				{Name: "ollama", Endpoint: ol.URL(), Protocol: fleet.ProtocolOllama}}}, store)
			st := a.Collect(context.Background())
			chat, emb := service(st, a.cfg.ServiceID("ollama")), service(st, a.cfg.ServiceID("ollama-embeddings"))
			if chat == nil || emb == nil || chat.Kind != fleet.KindChat || emb.Kind != fleet.KindEmbeddings || emb.Endpoint != ol.URL() {
				t.Fatalf("services %+v", st.Services)
			}
			if len(emb.Assets) != 1 || emb.Assets[0].Name != "nomic-embed-text:latest" || !slices.Equal(emb.Assets[0].Capabilities, []string{"embedding"}) || emb.Metrics.LoadedModelCount != 1 {
				t.Fatalf("embeddings service %+v", emb)
			}
			if len(chat.Assets) != 3 || asset(chat, "nomic-embed-text:latest") != nil || chat.Metrics.LoadedModelCount != 1 {
				t.Fatalf("chat service %+v", chat)
			}
			q, r, i := asset(chat, "qwen3:8b"), asset(chat, "my-reasoner:1b"), asset(chat, "qwen3-instruct:4b")
			if !q.Thinking || !q.Can(fleet.CapCompletion) {
				t.Fatalf("qwen3 %+v", q)
			}
			if v.caps {
				// From the capability, not the name.
				if !r.Thinking || i.Thinking || !slices.Equal(i.Capabilities, []string{"completion", "tools"}) {
					t.Fatalf("thinking by name, not capability: %+v %+v", r, i)
				}
			} else if r.Thinking || !slices.Equal(r.Capabilities, []string{"completion"}) {
				t.Fatalf("old server: guess from the name expected: %+v", r)
			}
			shows := ol.Requests("/api/show")
			if shows != int64(len(models)) {
				t.Fatalf("%d /api/show for %d models", shows, len(models))
			}
			a.Collect(context.Background())
			if n := ol.Requests("/api/show"); n != shows {
				t.Fatalf("capabilities not cached per digest: %d more /api/show", n-shows)
			}
		})
	}
}

// TestRealOllamaCapabilities: the real Ollama's /api/show classifies the
// three test models (tiny-embed by its pooling type, qwen3-tiny as a
// thinking model by its template).
func TestRealOllamaCapabilities(t *testing.T) {
	o := testollama.Start(t)
	c, prefix := testredis.New(t)
	a := newAgent(t, Config{HostID: "real", Services: []ServiceConfig{
		{Name: "ollama", Endpoint: o.URL, Protocol: fleet.ProtocolOllama}}}, state.New(c, prefix))
	st := a.Collect(context.Background())
	chat, emb := service(st, "real/ollama"), service(st, "real/ollama-embeddings")
	if chat == nil || !chat.Healthy || emb == nil {
		t.Fatalf("services %+v", st.Services)
	}
	l, q, e := asset(chat, testollama.ChatModel+":latest"), asset(chat, testollama.ThinkingModel+":latest"), asset(emb, testollama.EmbedModel+":latest")
	if l == nil || q == nil || e == nil || len(chat.Assets) != 2 {
		t.Fatalf("chat %+v\nembeddings %+v", chat, emb)
	}
	if l.Thinking || !l.Can(fleet.CapCompletion) || !q.Thinking || !q.Can(fleet.CapTools) || !e.Can(fleet.CapEmbedding) {
		t.Fatalf("capabilities: %+v %+v %+v", l, q, e)
	}
}
