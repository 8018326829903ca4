package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	openai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/cli"
	"github.com/geniehive/geniehive/internal/testollama"
	"github.com/geniehive/geniehive/loadtest/sim"
)

// TestDevQuickstartRealOllama: `geniehive dev` with a real Ollama serves
// chat (the README's "general" role and the thinking-off "summarizer"),
// embeddings through the embedding model, and the thinking model, each
// with real content; /v1/models shows what each model can do.
func TestDevQuickstartRealOllama(t *testing.T) {
	devQuickstart(t, testollama.Start(t).URL)
}

// TestDevQuickstartSimOllama: the same against the simulated Ollama with
// the recorded models' capabilities (qwen3-tiny's whole output is
// reasoning while thinking is on).
func TestDevQuickstartSimOllama(t *testing.T) {
	s, err := sim.Start(sim.Config{Flavor: sim.FlavorOllama, Behavior: sim.Behavior{Chunks: 4, ReasoningChunks: 3}, Models: []sim.Model{
		{Name: testollama.ChatModel, Family: "llama"},
		{Name: testollama.ThinkingModel, Family: "llama", Thinking: true, ThinksOnly: true},
		{Name: testollama.EmbedModel, Family: "llama", Kind: sim.KindEmbeddings, Capabilities: []string{"embedding"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	devQuickstart(t, s.URL())
}

func devQuickstart(t *testing.T, ollama string) {
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan string, 1)
	done := make(chan error, 1)
	dc := devConfig{Listen: "127.0.0.1:0", Ollama: ollama, LogLevel: "warn"}
	go func() {
		done <- serveDev(ctx, dc, slog.New(slog.NewTextHandler(io.Discard, nil)), func(addr, _ string, _ []string) { addrs <- addr })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev: %v", err)
		}
	})
	var addr string
	select {
	case addr = <-addrs:
	case err := <-done:
		t.Fatalf("dev stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("dev stack not ready in 30s")
	}
	c := openai.NewClient(option.WithBaseURL("http://"+addr+"/v1/"), option.WithAPIKey("none"), option.WithMaxRetries(0))

	page, err := c.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	caps := map[string][]string{}
	ops := map[string][]string{}
	for _, m := range page.Data {
		var meta struct {
			GenieHive struct {
				Capabilities []string `json:"capabilities"`
				Operations   []string `json:"operations"`
			} `json:"geniehive"`
		}
		if err := json.Unmarshal([]byte(m.RawJSON()), &meta); err != nil {
			t.Fatal(err)
		}
		caps[m.ID], ops[m.ID] = meta.GenieHive.Capabilities, meta.GenieHive.Operations
	}
	if !slices.Contains(caps[testollama.ThinkingModel+":latest"], fleet.CapThinking) ||
		!slices.Equal(ops[testollama.EmbedModel+":latest"], []string{"embeddings"}) ||
		!slices.Equal(ops[testollama.ChatModel+":latest"], []string{"chat"}) {
		t.Fatalf("/v1/models capabilities %v operations %v", caps, ops)
	}

	msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")}
	for _, model := range []string{"general", "summarizer", testollama.ThinkingModel, testollama.ChatModel} {
		for i := 0; i < 3; i++ {
			r, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model, Messages: msgs})
			if err != nil {
				t.Fatalf("%s: %v", model, err)
			}
			if r.Choices[0].Message.Content == "" {
				t.Fatalf("%s: empty content: %s", model, r.RawJSON())
			}
		}
	}
	// A client that asks for thinking gets the model's reasoning.
	r, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: testollama.ThinkingModel, Messages: msgs, ReasoningEffort: shared.ReasoningEffortHigh})
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Reasoning string `json:"reasoning"`
	}
	_ = json.Unmarshal([]byte(r.Choices[0].Message.RawJSON()), &m)
	if m.Reasoning == "" {
		t.Fatalf("thinking asked, no reasoning: %s", r.RawJSON())
	}
	e, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: testollama.EmbedModel,
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("hello")}})
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Data) != 1 || len(e.Data[0].Embedding) == 0 {
		t.Fatalf("embeddings %+v", e)
	}
	// The embedding model is not a chat model.
	if _, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: testollama.EmbedModel, Messages: msgs}); err == nil {
		t.Fatal("chat routed to the embedding model")
	}
}

// TestDevRefusesOllamaNotURL: --ollama (GENIEHIVE_OLLAMA) that is not an
// http(s) URL — "0", as the test harness's old switch was spelled — is a
// usage error, not an address dev dials and silently gives up on.
func TestDevRefusesOllamaNotURL(t *testing.T) {
	for _, c := range []struct {
		env  string
		args []string
	}{
		{"", []string{"--ollama", "0", "--listen", "127.0.0.1:0"}},
		{"0", []string{"--listen", "127.0.0.1:0"}},
		{"", []string{"--ollama", "127.0.0.1:11434", "--listen", "127.0.0.1:0"}},
	} {
		t.Setenv("GENIEHIVE_OLLAMA", c.env)
		if c.env == "" {
			os.Unsetenv("GENIEHIVE_OLLAMA")
		}
		res := make(chan error, 1)
		go func() { res <- runDev(c.args) }()
		select {
		case err := <-res:
			if !errors.Is(err, cli.ErrUsage) || !strings.Contains(err.Error(), "--ollama") {
				t.Errorf("GENIEHIVE_OLLAMA=%q dev %v: %v, want a usage error naming --ollama", c.env, c.args, err)
			}
		case <-time.After(time.Minute): // a hang guard, not a speed bound: the stack started
			t.Fatalf("GENIEHIVE_OLLAMA=%q dev %v started instead of refusing", c.env, c.args)
		}
	}
	// --no-ollama needs no URL: the check lets it through.
	if err := checkOllamaURL(devConfig{Ollama: "0", NoOllama: true}); err != nil {
		t.Fatal(err)
	}
}
