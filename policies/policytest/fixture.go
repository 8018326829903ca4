// Package policytest is the decision table every policy engine must pass:
// the Go reference engine, the Rego engine, and the Wasm engines (the wasm
// package runs Run against its own engines).
//
//	func TestTable(t *testing.T) { policytest.Run(t, myEngine) }
//
// Cases share Data values; engines must not modify them.
package policytest

import (
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
)

func ptr[T any](v T) *T { return &v }

// Fleet returns the snapshot the table's main Data is built from:
//
//	node-a/ollama  chat            qwen3:8b (qwen3), llama3.1:8b-instruct-q4_K_M (llama),
//	                               mistral:latest (mistral), deepseek-r1:8b (qwen2, thinking)
//	node-b/vllm    chat            Qwen/Qwen3-14B (qwen3), llama3.1:70b (llama)
//	node-b/embed   embeddings      nomic-embed-text (nomic-bert)
//	node-c/whisper transcription   whisper-large-v3
//	node-d/dead    chat            expired heartbeat: gone-model
//
// Roles: coder (candidates, falls back to general), general (families
// llama, mistral; aliases default, chatbot; falls back to coder: a
// cycle), embedder (embeddings), writer (family qwen3, thinking on, falls
// back to embedder and to a role that does not exist), reasoner (thinking
// off, strip reasoning), summarizer (overrides, replace prompt, max_tokens
// 512).
func Fleet() *fleet.Snapshot {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	live := now.Add(time.Minute)
	svc := func(id string, kind fleet.Kind, deadline time.Time, assets ...fleet.Asset) *fleet.ServiceEntry {
		return &fleet.ServiceEntry{Service: &fleet.Service{ID: id, Kind: kind, Healthy: true, Assets: assets}, Deadline: deadline}
	}
	return &fleet.Snapshot{
		Version: 7,
		BuiltAt: now,
		RedisOK: true,
		Services: []*fleet.ServiceEntry{
			svc("node-a/ollama", fleet.KindChat, live,
				fleet.Asset{Name: "qwen3:8b", Family: "qwen3"},
				fleet.Asset{Name: "llama3.1:8b-instruct-q4_K_M", Family: "llama"},
				fleet.Asset{Name: "mistral:latest", Family: "mistral"},
				fleet.Asset{Name: "deepseek-r1:8b", Family: "qwen2", Thinking: true},
			),
			svc("node-b/embed", fleet.KindEmbeddings, live, fleet.Asset{Name: "nomic-embed-text", Family: "nomic-bert"}),
			svc("node-b/vllm", fleet.KindChat, live,
				fleet.Asset{Name: "Qwen/Qwen3-14B", Family: "Qwen3"},
				fleet.Asset{Name: "llama3.1:70b", Family: "llama"},
			),
			svc("node-c/whisper", fleet.KindTranscription, live, fleet.Asset{Name: "whisper-large-v3"}),
			svc("node-d/dead", fleet.KindChat, now.Add(-time.Second), fleet.Asset{Name: "gone-model"}),
		},
		Catalog: &fleet.Catalog{
			Roles: []fleet.Role{
				{
					Name:          "coder",
					Candidates:    []string{"qwen3:8b", "qwen/qwen3-14b", "missing-model", "nomic-embed-text"},
					FallbackRoles: []string{"general"},
					Strategy:      "least_loaded",
					RequestPolicy: &fleet.RequestPolicy{
						Defaults:     map[string]any{"temperature": 0.2, "options": map[string]any{"num_ctx": 8192}},
						SystemPrompt: &fleet.SystemPrompt{Mode: fleet.PromptPrepend, Text: "You write code."},
						MaxTokens:    4096,
					},
				},
				{
					Name:              "general",
					Aliases:           []string{"default", "ChatBot"},
					PreferredFamilies: []string{"llama", "Mistral"},
					FallbackRoles:     []string{"coder"},
				},
				{
					Name:       "embedder",
					Operation:  fleet.KindEmbeddings,
					Candidates: []string{"nomic-embed-text"},
				},
				{
					Name:              "writer",
					PreferredFamilies: []string{"qwen3"},
					FallbackRoles:     []string{"embedder", "ghost"},
					RequestPolicy:     &fleet.RequestPolicy{Thinking: ptr(true)},
				},
				{
					Name:          "reasoner",
					Candidates:    []string{"deepseek-r1:8b"},
					RequestPolicy: &fleet.RequestPolicy{Thinking: ptr(false), StripReasoning: ptr(true)},
				},
				{
					Name:       "summarizer",
					Candidates: []string{"llama3.1:70b"},
					RequestPolicy: &fleet.RequestPolicy{
						Overrides:    map[string]any{"temperature": 0, "options": map[string]any{"top_k": 10}},
						SystemPrompt: &fleet.SystemPrompt{Mode: fleet.PromptReplace, Text: "Summarize."},
						MaxTokens:    512,
					},
				},
			},
			AssetPolicies: map[string]*fleet.RequestPolicy{
				"llama3.1:70b": {
					Defaults:     map[string]any{"options": map[string]any{"num_ctx": 4096, "top_p": 0.9}},
					Overrides:    map[string]any{"options": map[string]any{"top_k": 40}, "stop": []any{"</s>"}},
					SystemPrompt: &fleet.SystemPrompt{Mode: fleet.PromptAppend, Text: "Be brief."},
					MaxTokens:    2048,
				},
				"qwen3:8b": {StripReasoning: ptr(true)},
			},
		},
	}
}

// chainData is a fleet with a fallback chain deeper than the walk goes:
// r0 -> r1 -> ... -> r10, where only r10 has a live candidate, and r3 also
// falls back to r1 (cut).
func chainData() *policy.Data {
	snap := &fleet.Snapshot{
		Services: []*fleet.ServiceEntry{{Service: &fleet.Service{ID: "h/s", Kind: fleet.KindChat, Assets: []fleet.Asset{{Name: "m1"}, {Name: "m9"}}}}},
		Catalog:  &fleet.Catalog{},
	}
	for i := 0; i <= 10; i++ {
		r := fleet.Role{Name: "r" + itoa(i)}
		if i < 10 {
			r.FallbackRoles = []string{"r" + itoa(i+1)}
		}
		switch i {
		case 3:
			r.FallbackRoles = append(r.FallbackRoles, "R1")
		case 8:
			r.Candidates = []string{"m9"}
		case 10:
			r.Candidates = []string{"m1"}
		}
		snap.Catalog.Roles = append(snap.Catalog.Roles, r)
	}
	return policies.BuildData(snap)
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
