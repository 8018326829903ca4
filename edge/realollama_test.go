package edge

// Against a real Ollama 0.17.4 (internal/testollama; skipped unless
// GENIEHIVE_TEST_OLLAMA names the binary, a failure under CI=true): what
// the edge sends really turns thinking off, a client's own choice is
// honoured, and what the real server answers reaches the client.

import (
	"context"
	"testing"

	openai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testollama"
	"github.com/geniehive/geniehive/state"
)

// realOllamaStack adds the real Ollama's three models to the base stack
// (as the node agent lists them: tiny-embed under an embeddings service)
// and the role "quiet" (thinking off by policy) on the thinking model.
func realOllamaStack(t *testing.T, opts ...stackOpt) *stack {
	t.Helper()
	o := testollama.Start(t)
	s := newStack(t, opts...)
	chat := svc("ollama1", "ollama", fleet.KindChat, o.URL,
		fleet.Asset{Name: testollama.ChatModel + ":latest", Family: "llama", Capabilities: []string{fleet.CapCompletion}},
		fleet.Asset{Name: testollama.ThinkingModel + ":latest", Family: "llama", Thinking: true,
			Capabilities: []string{fleet.CapCompletion, fleet.CapTools, fleet.CapThinking}})
	chat.Protocol = fleet.ProtocolOllama
	emb := svc("ollama1", "ollama-embeddings", fleet.KindEmbeddings, o.URL,
		fleet.Asset{Name: testollama.EmbedModel + ":latest", Family: "llama", Capabilities: []string{fleet.CapEmbedding}})
	emb.Protocol = fleet.ProtocolOllama
	heartbeat(t, s.store, "ollama1", chat, emb)
	cat, err := state.ParseCatalog("test", []byte(testCatalog+`
  - name: quiet
    operation: chat
    candidates: [qwen3-tiny:latest]
    request_policy:
      thinking: false
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.store.PutCatalog(context.Background(), cat); err != nil {
		t.Fatal(err)
	}
	s.waitFor(func(sn *fleet.Snapshot) bool {
		_, ok := sn.Role("quiet")
		return len(sn.Services) >= 5 && ok
	})
	return s
}

// TestRealOllamaThinking: qwen3-tiny's template prefills <think> when
// thinking is on, so its whole answer lands in reasoning; really off, it
// is content. Every client switch and the policy's off reach Ollama's
// OpenAI layer as reasoning_effort "none".
func TestRealOllamaThinking(t *testing.T) {
	s := realOllamaStack(t)
	c := s.clientV3()
	msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}
	cases := []struct {
		name  string
		model string
		eff   shared.ReasoningEffort
		opts  []option.RequestOption
		on    bool
	}{
		// Ollama reports the thinking capability: GenieHive's automatic
		// default turns it off, as for Qwen3.
		{name: "automatic default off", model: testollama.ThinkingModel},
		{name: "client asks medium (a level Ollama refuses for this model)", model: testollama.ThinkingModel, eff: shared.ReasoningEffortMedium, on: true},
		{name: "think false", model: testollama.ThinkingModel, opts: []option.RequestOption{option.WithJSONSet("think", false)}},
		{name: "enable_thinking false", model: testollama.ThinkingModel, opts: []option.RequestOption{option.WithJSONSet("chat_template_kwargs", map[string]any{"enable_thinking": false})}},
		{name: "reasoning_effort none", model: testollama.ThinkingModel, eff: shared.ReasoningEffortNone},
		{name: "policy off", model: "quiet"},
		{name: "policy off beats the client", model: "quiet", eff: shared.ReasoningEffortHigh},
	}
	for _, k := range cases {
		t.Run(k.name, func(t *testing.T) {
			r, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: k.model, Messages: msgs, ReasoningEffort: k.eff}, k.opts...)
			if err != nil {
				t.Fatal(err)
			}
			reasoning := reasoningOf(t, r.Choices[0].Message.RawJSON())
			if k.on && reasoning == "" || !k.on && (reasoning != "" || r.Choices[0].Message.Content == "") {
				t.Fatalf("thinking on=%v wanted; real Ollama answered %s", k.on, r.RawJSON())
			}
		})
	}
}
