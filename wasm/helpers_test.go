package wasm

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
)

// testPolicy returns the wasm tests' own Rego policy.
func testPolicy(t testing.TB) map[string]string {
	t.Helper()
	files := map[string]string{}
	ms, _ := filepath.Glob("testdata/policy/*.rego")
	for _, m := range ms {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(m)] = string(b)
	}
	if len(files) == 0 {
		t.Fatal("no test policy")
	}
	return files
}

func testData() *policy.Data {
	no := false
	return &policy.Data{
		SchemaVersion: 1,
		Roles: map[string]fleet.Role{
			"coder": {Name: "coder", Operation: fleet.KindChat, Candidates: []string{"qwen3:8b", "llama3.1:8b"}, Strategy: "least_loaded",
				RequestPolicy: &fleet.RequestPolicy{StripReasoning: new(true), Thinking: &no}},
		},
		Aliases: map[string]string{"coder": "coder", "dev": "coder"},
		Models:  map[string][]string{"qwen3:8b": {"qwen3:8b"}, "llama3.1:8b": {"llama3.1:8b"}, "nomic": {"nomic-embed"}},
		Assets: map[string]policy.AssetData{
			"qwen3:8b":    {Family: "qwen3", Kinds: []fleet.Kind{fleet.KindChat}, Thinking: true, Qwen3: true},
			"llama3.1:8b": {Family: "llama", Kinds: []fleet.Kind{fleet.KindChat}},
			"nomic-embed": {Family: "nomic", Kinds: []fleet.Kind{fleet.KindEmbeddings}},
		},
		AssetPolicies: map[string]*fleet.RequestPolicy{
			"llama3.1:8b": {Defaults: map[string]any{"temperature": 0.2, "options": map[string]any{"num_ctx": 8192.0}}, MaxTokens: 4096},
		},
	}
}

func testInput(model string) *policy.Input {
	return &policy.Input{SchemaVersion: 1, Operation: fleet.KindChat, Model: model, ModelKey: policies.NormalizeModel(model),
		MaxTokens: 256, BodyBytes: 512, Key: policy.Key{ID: "k1", Scope: fleet.ScopeClient}}
}

var bg = context.Background()

type policiesDecision = policy.Decision

type (
	policiesInput = policy.Input
	contextT      = context.Context
)
