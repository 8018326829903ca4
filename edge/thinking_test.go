package edge

// Thinking switches end to end through openai-go/v3: the edge writes each
// upstream's own switch (Ollama's OpenAI layer: reasoning_effort "none";
// llama.cpp and vLLM: chat_template_kwargs.enable_thinking), and a
// client's own choice, in whatever switch it sends, wins over the automatic
// default. The simulated upstreams do what the real servers do with each
// switch (loadtest/sim TestThinkingSwitches, docs/UPSTREAMS.md), so
// "off" here is asserted as the server's own answer: no reasoning and only
// the answer's tokens generated (usage.completion_tokens).

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	openai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/loadtest/sim"
	"github.com/geniehive/geniehive/state"
)

// Answer sizes of the simulated thinking upstreams: 4 content chunks, 3
// reasoning chunks, one token each.
const (
	simContentTokens   = 4
	simReasoningTokens = 3
)

// thinkingStack adds, to the base stack, a simulated Ollama, vLLM and
// llama.cpp each serving a Qwen3 (thinking on by default upstream, off by
// default in GenieHive's policy) and, on Ollama and vLLM, a non-Qwen3
// thinking model (no automatic default), plus the role "quiet" (thinking
// off by policy, no strip).
func thinkingStack(t *testing.T) (*stack, map[string]*sim.Server) {
	t.Helper()
	s := newStack(t)
	b := sim.Behavior{ChunkInterval: time.Millisecond, Chunks: simContentTokens, ReasoningChunks: simReasoningTokens}
	ups := map[string]*sim.Server{
		fleet.ProtocolOllama: startSim(t, sim.Config{Flavor: sim.FlavorOllama, Behavior: b, Models: []sim.Model{
			{Name: "qwen3:4b", Family: "qwen3", Thinking: true, Loaded: true},
			{Name: "deepseek-r1:7b", Family: "qwen2", Thinking: true, Loaded: true}}}),
		fleet.ProtocolVLLM: startSim(t, sim.Config{Flavor: sim.FlavorVLLM, Behavior: b, Models: []sim.Model{
			{Name: "Qwen/Qwen3-4B", Family: "qwen3", Thinking: true, Loaded: true},
			{Name: "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", Family: "qwen2", Thinking: true, Loaded: true}}}),
		fleet.ProtocolLlamaCPP: startSim(t, sim.Config{Flavor: sim.FlavorLlamaCPP, Behavior: b, Models: []sim.Model{
			{Name: "qwen3-4b-q4_k_m.gguf", Family: "qwen3", Thinking: true, Loaded: true}}}),
	}
	up := func(proto, url string, assets ...fleet.Asset) fleet.Service {
		se := svc("gpu2", proto, fleet.KindChat, url, assets...)
		se.Protocol = proto
		return se
	}
	heartbeat(t, s.store, "gpu2",
		up(fleet.ProtocolOllama, ups[fleet.ProtocolOllama].URL(),
			fleet.Asset{Name: "qwen3:4b", Family: "qwen3", Thinking: true, Loaded: true},
			fleet.Asset{Name: "deepseek-r1:7b", Family: "qwen2", Thinking: true, Loaded: true}),
		up(fleet.ProtocolVLLM, ups[fleet.ProtocolVLLM].URL(),
			fleet.Asset{Name: "Qwen/Qwen3-4B", Family: "qwen3", Thinking: true, Loaded: true},
			fleet.Asset{Name: "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", Family: "qwen2", Thinking: true, Loaded: true}),
		up(fleet.ProtocolLlamaCPP, ups[fleet.ProtocolLlamaCPP].URL(),
			fleet.Asset{Name: "qwen3-4b-q4_k_m.gguf", Family: "qwen3", Thinking: true, Loaded: true}),
	)
	cat, err := state.ParseCatalog("test", []byte(testCatalog+`
  - name: quiet
    operation: chat
    candidates: [deepseek-r1:7b]
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
		return len(sn.Services) >= 6 && ok
	})
	return s, ups
}

func (s *stack) clientV3() openai.Client {
	return openai.NewClient(option.WithBaseURL(s.url+"/v1/"), option.WithAPIKey(testKey), option.WithMaxRetries(0))
}

// reasoningOf returns the reasoning text of a chat answer (Ollama and
// vLLM: "reasoning", llama.cpp: "reasoning_content").
func reasoningOf(t *testing.T, raw string) string {
	t.Helper()
	var m struct {
		Reasoning        string `json:"reasoning"`
		ReasoningContent string `json:"reasoning_content"`
	}
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatal(err)
	}
	return m.Reasoning + m.ReasoningContent
}

func TestThinkingSwitchPerUpstream(t *testing.T) {
	s, _ := thinkingStack(t)
	c := s.clientV3()
	msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}
	type tc struct {
		name  string
		model string
		opts  []option.RequestOption
		eff   shared.ReasoningEffort
		on    bool
	}
	var cases []tc
	for _, m := range []string{"qwen3:4b", "Qwen/Qwen3-4B", "qwen3-4b-q4_k_m.gguf"} {
		cases = append(cases,
			// GenieHive's automatic default for Qwen3: off, in the upstream's own switch.
			tc{name: "default off", model: m},
			// Every way a client asks for thinking wins over that default.
			tc{name: "reasoning_effort medium", model: m, eff: shared.ReasoningEffortMedium, on: true},
			tc{name: "reasoning.effort high", model: m, opts: []option.RequestOption{option.WithJSONSet("reasoning", map[string]any{"effort": "high"})}, on: true},
			tc{name: "think true", model: m, opts: []option.RequestOption{option.WithJSONSet("think", true)}, on: true},
			tc{name: "enable_thinking true", model: m, opts: []option.RequestOption{option.WithJSONSet("chat_template_kwargs", map[string]any{"enable_thinking": true})}, on: true},
		)
	}
	for _, m := range []string{"deepseek-r1:7b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"} {
		cases = append(cases,
			// No automatic default: the upstream's own default (on).
			tc{name: "no default", model: m, on: true},
			// A client's off, in any server's switch, is really off.
			tc{name: "think false", model: m, opts: []option.RequestOption{option.WithJSONSet("think", false)}},
			tc{name: "enable_thinking false", model: m, opts: []option.RequestOption{option.WithJSONSet("chat_template_kwargs", map[string]any{"enable_thinking": false})}},
			tc{name: "reasoning_effort none", model: m, eff: shared.ReasoningEffortNone},
			tc{name: "reasoning.effort none", model: m, opts: []option.RequestOption{option.WithJSONSet("reasoning", map[string]any{"effort": "none"})}},
		)
	}
	// Policy thinking:false (operator's choice) beats the client's.
	cases = append(cases, tc{name: "role off beats client", model: "quiet", eff: shared.ReasoningEffortHigh})
	for _, k := range cases {
		t.Run(k.model+"/"+k.name, func(t *testing.T) {
			p := openai.ChatCompletionNewParams{Model: k.model, Messages: msgs, ReasoningEffort: k.eff}
			r, err := c.Chat.Completions.New(context.Background(), p, k.opts...)
			if err != nil {
				t.Fatal(err)
			}
			reasoning := reasoningOf(t, r.Choices[0].Message.RawJSON())
			want := int64(simContentTokens)
			if k.on {
				want += simReasoningTokens
				if reasoning == "" {
					t.Fatalf("thinking not on: %s", r.RawJSON())
				}
			} else if reasoning != "" {
				t.Fatalf("thinking not off: %s", r.RawJSON())
			}
			if r.Usage.CompletionTokens != want || r.Choices[0].Message.Content != sim.Text(simContentTokens) {
				t.Fatalf("upstream generated %d tokens (want %d), content %q", r.Usage.CompletionTokens, want, r.Choices[0].Message.Content)
			}
		})
	}
}

// TestThinkingOffStreamOllama: streamed, the Ollama upstream really does
// not think when the policy turns thinking off (no reasoning deltas).
func TestThinkingOffStreamOllama(t *testing.T) {
	s, _ := thinkingStack(t)
	c := s.clientV3()
	for _, model := range []string{"qwen3:4b", "quiet"} {
		st := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: model,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
		var content, raw strings.Builder
		for st.Next() {
			ch := st.Current()
			raw.WriteString(ch.RawJSON())
			if len(ch.Choices) > 0 {
				content.WriteString(ch.Choices[0].Delta.Content)
			}
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(raw.String(), `"reasoning`) || content.String() != sim.Text(simContentTokens) {
			t.Fatalf("%s: thinking not off: content %q, chunks %s", model, content.String(), raw.String())
		}
	}
}
