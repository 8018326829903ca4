package edge

// The agent APIs against a real Ollama 0.17.4 (internal/testollama; skipped
// unless GENIEHIVE_TEST_OLLAMA names the binary): passed through to its
// /v1/responses and /v1/messages, translated where the registry lists no
// native API, and translated whenever thinking must be off — the native
// routes ignore reasoning.effort "none" and thinking "disabled".

import (
	"context"
	"testing"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	openai3 "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testollama"
)

func TestAgentAPIsRealOllama(t *testing.T) {
	ol := testollama.Start(t)
	for _, native := range []bool{true, false} {
		name := "translated"
		if native {
			name = "native"
		}
		t.Run(name, func(t *testing.T) {
			s := newStack(t)
			o := fleet.Service{ID: "gpu1/ollama", HostID: "gpu1", Name: "ollama", Kind: fleet.KindChat, Protocol: fleet.ProtocolOllama,
				Endpoint: ol.URL, Healthy: true, Assets: []fleet.Asset{
					{Name: testollama.ChatModel, Loaded: true},
					{Name: testollama.ThinkingModel, Family: "qwen3", Loaded: true, Thinking: true}}}
			if native {
				// What the node agent discovers from /api/version 0.17.4.
				o.APIs = []string{fleet.APIChat, fleet.APICompletions, fleet.APIResponses, fleet.APIMessages}
			}
			heartbeat(t, s.store, "gpu1", o)
			s.waitFor(func(sn *fleet.Snapshot) bool { return serviceByID(sn, "gpu1/ollama") != nil })
			ctx := context.Background()

			res, err := s.openai3().Responses.New(ctx, responses.ResponseNewParams{Model: testollama.ChatModel,
				MaxOutputTokens: openai3.Int(16), Input: responses.ResponseNewParamsInputUnion{OfString: openai3.String("hello")}})
			// The tiny model's weights are random: it may stop by itself
			// (completed) or run into the 16-token cap (incomplete, reason
			// max_output_tokens, as OpenAI answers); either way with text.
			if err != nil || res.OutputText() == "" ||
				!(res.Status == "completed" || res.Status == "incomplete" && res.IncompleteDetails.Reason == "max_output_tokens") {
				t.Fatalf("responses: %v status %q %+v", err, res.Status, res.IncompleteDetails)
			}

			ac := s.anthropic()
			st := ac.Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: testollama.ChatModel, MaxTokens: 16,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))}})
			var acc anthropic.Message
			for st.Next() {
				if err := acc.Accumulate(st.Current()); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.Err(); err != nil || len(acc.Content) == 0 {
				t.Fatalf("messages stream: %v %+v", err, acc)
			}

			// Thinking off on the thinking model: the recorded qwen3-tiny
			// answers only in thinking while thinking is on, so text and no
			// thinking block prove it was really off (the native route
			// would have ignored the switch).
			msg, err := ac.Messages.New(ctx, anthropic.MessageNewParams{Model: testollama.ThinkingModel, MaxTokens: 32,
				Thinking: anthropic.ThinkingConfigParamUnion{OfDisabled: &anthropic.ThinkingConfigDisabledParam{}},
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))}})
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range msg.Content {
				if b.Type == "thinking" {
					t.Errorf("thinking block although thinking was off: %+v", msg.Content)
				}
			}

			// Ollama has no count_tokens: the estimate answers.
			ct, err := ac.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{Model: testollama.ChatModel,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("count me"))}})
			if err != nil || ct.InputTokens <= 0 {
				t.Fatalf("count_tokens: %v %+v", err, ct)
			}
		})
	}
}
