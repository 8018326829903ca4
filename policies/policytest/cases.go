package policytest

import (
	"sync"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
)

// Case is one row of the decision table.
type Case struct {
	Name  string
	Data  *policy.Data
	Input *policy.Input
	Want  *policy.Decision
}

var (
	fleetOnce sync.Once
	fleetData *policy.Data
	chain     *policy.Data
)

// FleetData is BuildData(Fleet()), built once and shared.
func FleetData() *policy.Data {
	fleetOnce.Do(func() {
		fleetData = policies.BuildData(Fleet())
		chain = chainData()
	})
	return fleetData
}

// in builds a request as the edge would (ModelKey normalised, the
// Fleet() service it names looked up).
func in(op fleet.Kind, model string) *policy.Input {
	key := policies.NormalizeModel(model)
	return &policy.Input{SchemaVersion: policy.SchemaVersion, Operation: op, Model: model, ModelKey: key, Service: policies.FindService(Fleet(), key)}
}

func with(i *policy.Input, f func(*policy.Input)) *policy.Input { f(i); return i }

func asset(name string, op fleet.Kind, role string, group int, p *policy.Patch) policy.Target {
	return policy.Target{Kind: policy.TargetAsset, Name: name, Operation: op, Role: role, Group: group, Patch: p}
}

func dec(targets []policy.Target, tried ...string) *policy.Decision {
	d := &policy.Decision{SchemaVersion: policy.SchemaVersion, Targets: targets, Tried: tried}
	for _, t := range targets {
		if t.Patch != nil && t.Patch.StripReasoning {
			d.StripReasoning = true
		}
	}
	return d
}

func denied(status int, code, reason string, tried ...string) *policy.Decision {
	return &policy.Decision{SchemaVersion: policy.SchemaVersion, Deny: &policy.Denial{Status: status, Code: code, Reason: reason}, Tried: tried}
}

type obj = map[string]any

// Cases returns the decision table. Every engine running the shipped policy
// must produce exactly these decisions.
func Cases() []Case {
	d := FleetData()
	const chat, emb = fleet.KindChat, fleet.KindEmbeddings
	coderDefaults := obj{"temperature": 0.2, "options": obj{"num_ctx": 8192}}
	coderPrompt := &fleet.SystemPrompt{Mode: fleet.PromptPrepend, Text: "You write code."}
	l70Patch := &policy.Patch{
		Defaults:     obj{"options": obj{"num_ctx": 4096, "top_p": 0.9}},
		Overrides:    obj{"options": obj{"top_k": 40}, "stop": []any{"</s>"}},
		SystemPrompt: &fleet.SystemPrompt{Mode: fleet.PromptAppend, Text: "Be brief."},
	}
	coderTargets := func(group int) []policy.Target {
		ts := []policy.Target{
			asset("qwen3:8b", chat, "coder", group, &policy.Patch{Defaults: coderDefaults, SystemPrompt: coderPrompt, DisableThinking: true, StripReasoning: true}),
			asset("Qwen/Qwen3-14B", chat, "coder", group, &policy.Patch{Defaults: coderDefaults, SystemPrompt: coderPrompt, DisableThinking: true}),
		}
		for i := range ts {
			ts[i].Strategy = "least_loaded"
		}
		return ts
	}
	generalTargets := func(group int) []policy.Target {
		return []policy.Target{
			asset("llama3.1:70b", chat, "general", group, l70Patch),
			asset("llama3.1:8b-instruct-q4_K_M", chat, "general", group, nil),
			asset("mistral:latest", chat, "general", group, nil),
		}
	}
	coderTried := []string{
		"role coder: candidate missing-model is not a live asset",
		"role coder: candidate nomic-embed-text not of kind chat",
	}
	const cutCoder = "role general: fallback coder cut (cycle or already tried)"
	const cutGeneral = "role coder: fallback general cut (cycle or already tried)"

	return []Case{
		{
			Name:  "direct asset, qwen3 thinking off by default",
			Data:  d,
			Input: in(chat, "qwen3:8b"),
			Want:  dec([]policy.Target{asset("qwen3:8b", chat, "", 0, &policy.Patch{DisableThinking: true, StripReasoning: true})}),
		},
		{
			Name:  "model without tag, request asks for thinking",
			Data:  d,
			Input: with(in(chat, "qwen3"), func(i *policy.Input) { i.Thinking = ptr(true) }),
			Want:  dec([]policy.Target{asset("qwen3:8b", chat, "", 0, &policy.Patch{StripReasoning: true})}),
		},
		{
			Name:  "model key computed by the engine when unset",
			Data:  d,
			Input: &policy.Input{SchemaVersion: 1, Operation: chat, Model: " QWEN3:8B ", Thinking: ptr(false)},
			Want:  dec([]policy.Target{asset("qwen3:8b", chat, "", 0, &policy.Patch{DisableThinking: true, StripReasoning: true})}),
		},
		{
			Name:  "Responses client: the same role resolution and request policy as chat",
			Data:  d,
			Input: with(in(chat, "coder"), func(i *policy.Input) { i.API = fleet.APIResponses; i.Stream = true }),
			Want:  dec(append(coderTargets(0), generalTargets(1)...), append(append([]string{}, coderTried...), cutCoder)...),
		},
		{
			Name:  "Messages client asking for thinking keeps it on",
			Data:  d,
			Input: with(in(chat, "qwen3"), func(i *policy.Input) { i.API = fleet.APIMessages; i.Thinking = ptr(true) }),
			Want:  dec([]policy.Target{asset("qwen3:8b", chat, "", 0, &policy.Patch{StripReasoning: true})}),
		},
		{
			Name:  "explicit :latest and upper case",
			Data:  d,
			Input: in(chat, "Mistral:latest"),
			Want:  dec([]policy.Target{asset("mistral:latest", chat, "", 0, nil)}),
		},
		{
			Name:  "name without quantisation suffix",
			Data:  d,
			Input: in(chat, "llama3.1:8b-instruct"),
			Want:  dec([]policy.Target{asset("llama3.1:8b-instruct-q4_K_M", chat, "", 0, nil)}),
		},
		{
			Name:  "base name matches every tag; asset max_tokens drops one",
			Data:  d,
			Input: with(in(chat, "llama3.1"), func(i *policy.Input) { i.MaxTokens = 3000 }),
			Want: dec([]policy.Target{asset("llama3.1:8b-instruct-q4_K_M", chat, "", 0, nil)},
				"asset llama3.1:70b: max_tokens 3000 exceeds the limit 2048"),
		},
		{
			Name:  "direct asset carries its asset policy",
			Data:  d,
			Input: in(chat, "llama3.1:70b"),
			Want:  dec([]policy.Target{asset("llama3.1:70b", chat, "", 0, l70Patch)}),
		},
		{
			Name:  "service id",
			Data:  d,
			Input: in(emb, "NODE-B/Embed"),
			Want:  dec([]policy.Target{{Kind: policy.TargetService, Name: "node-b/embed", Operation: emb}}),
		},
		{
			Name:  "service of another kind",
			Data:  d,
			Input: in(chat, "node-b/embed"),
			Want:  dec(nil, "service node-b/embed: kind embeddings, not chat"),
		},
		{
			Name:  "direct asset of another kind",
			Data:  d,
			Input: in(chat, "whisper-large-v3"),
			Want:  dec(nil, "asset whisper-large-v3: not of kind chat"),
		},
		{
			Name:  "transcription asset",
			Data:  d,
			Input: in(fleet.KindTranscription, "whisper-large-v3"),
			Want:  dec([]policy.Target{asset("whisper-large-v3", fleet.KindTranscription, "", 0, nil)}),
		},
		{
			Name:  "role with candidates, defaults and prompt, falls back to families",
			Data:  d,
			Input: in(chat, "coder"),
			Want:  dec(append(coderTargets(0), generalTargets(1)...), append(coderTried, cutCoder)...),
		},
		{
			Name:  "alias, fallback cycle cut",
			Data:  d,
			Input: in(chat, "Default"),
			Want:  dec(append(generalTargets(0), coderTargets(1)...), append(coderTried, cutGeneral)...),
		},
		{
			Name: "role scope allows the alias of a permitted role",
			Data: d,
			Input: with(in(chat, "chatbot"), func(i *policy.Input) {
				i.Key = policy.Key{ID: "k1", Scope: fleet.ScopeClient, Roles: []string{"General"}}
			}),
			Want: dec(append(generalTargets(0), coderTargets(1)...), append(coderTried, cutGeneral)...),
		},
		{
			Name:  "fallback chain: other operation and unknown role recorded",
			Data:  d,
			Input: in(chat, "writer"),
			Want: dec([]policy.Target{
				asset("Qwen/Qwen3-14B", chat, "writer", 0, nil),
				asset("qwen3:8b", chat, "writer", 0, &policy.Patch{StripReasoning: true}),
			},
				"role writer: fallback ghost is not a role",
				"role embedder: candidates not of kind chat",
			),
		},
		{
			Name:  "role of another operation",
			Data:  d,
			Input: in(emb, "coder"),
			Want: dec(nil,
				"role coder: candidates not of kind embeddings",
				"role general: candidates not of kind embeddings",
				cutCoder,
			),
		},
		{
			Name:  "embeddings role",
			Data:  d,
			Input: in(emb, "embedder"),
			Want:  dec([]policy.Target{asset("nomic-embed-text", emb, "embedder", 0, nil)}),
		},
		{
			Name:  "nothing found",
			Data:  d,
			Input: in(chat, "gpt-4o"),
			Want:  dec(nil, "no asset, service or role named gpt-4o"),
		},
		{
			Name:  "expired service's asset is gone",
			Data:  d,
			Input: in(chat, "gone-model"),
			Want:  dec(nil, "no asset, service or role named gone-model"),
		},
		{
			Name:  "policy thinking false beats the request; strip reasoning",
			Data:  d,
			Input: with(in(chat, "reasoner"), func(i *policy.Input) { i.Thinking = ptr(true) }),
			Want:  dec([]policy.Target{asset("deepseek-r1:8b", chat, "reasoner", 0, &policy.Patch{DisableThinking: true, StripReasoning: true})}),
		},
		{
			Name:  "role overrides deep-merged over asset's, role prompt wins",
			Data:  d,
			Input: with(in(chat, "summarizer"), func(i *policy.Input) { i.MaxTokens = 512 }),
			Want: dec([]policy.Target{asset("llama3.1:70b", chat, "summarizer", 0, &policy.Patch{
				Defaults:     obj{"options": obj{"num_ctx": 4096, "top_p": 0.9}},
				Overrides:    obj{"temperature": 0, "options": obj{"top_k": 10}, "stop": []any{"</s>"}},
				SystemPrompt: &fleet.SystemPrompt{Mode: fleet.PromptReplace, Text: "Summarize."},
			})}),
		},
		{
			Name: "key scoped to other roles",
			Data: d,
			Input: with(in(chat, "coder"), func(i *policy.Input) {
				i.Key = policy.Key{ID: "k1", Scope: fleet.ScopeClient, Roles: []string{"chatbot"}}
			}),
			Want: denied(403, "role_not_allowed", "key k1 may not use role coder", append(coderTried, cutCoder)...),
		},
		{
			Name:  "role-scoped key may not address an asset",
			Data:  d,
			Input: with(in(chat, "qwen3:8b"), func(i *policy.Input) { i.Key = policy.Key{ID: "k2", Roles: []string{"general"}} }),
			Want:  denied(403, "role_not_allowed", "key k2 may only use roles, not model qwen3:8b"),
		},
		{
			Name:  "max_tokens above every limit",
			Data:  d,
			Input: with(in(chat, "summarizer"), func(i *policy.Input) { i.MaxTokens = 1000 }),
			Want: denied(400, "max_tokens_exceeded", "max_tokens 1000 exceeds the limit 512",
				"role summarizer: asset llama3.1:70b: max_tokens 1000 exceeds the limit 512"),
		},
		{
			Name:  "max_tokens drops some targets; groups renumbered",
			Data:  d,
			Input: with(in(chat, "coder"), func(i *policy.Input) { i.MaxTokens = 5000 }),
			Want: dec([]policy.Target{
				asset("llama3.1:8b-instruct-q4_K_M", chat, "general", 0, nil),
				asset("mistral:latest", chat, "general", 0, nil),
			},
				coderTried[0], coderTried[1],
				"role coder: asset qwen3:8b: max_tokens 5000 exceeds the limit 4096",
				"role coder: asset Qwen/Qwen3-14B: max_tokens 5000 exceeds the limit 4096",
				"role general: asset llama3.1:70b: max_tokens 5000 exceeds the limit 2048",
				cutCoder,
			),
		},
		{
			Name:  "fallback depth limit",
			Data:  chain,
			Input: in(chat, "r0"),
			Want: dec([]policy.Target{asset("m9", chat, "r8", 0, nil)},
				"role r0: no candidate of kind chat",
				"role r1: no candidate of kind chat",
				"role r2: no candidate of kind chat",
				"role r3: no candidate of kind chat",
				"role r3: fallback r1 cut (cycle or already tried)",
				"role r4: no candidate of kind chat",
				"role r5: no candidate of kind chat",
				"role r6: no candidate of kind chat",
				"role r7: no candidate of kind chat",
				"fallback walk stopped at depth 8",
			),
		},
	}
}
