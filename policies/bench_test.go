package policies_test

import (
	"testing"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policies/opa"
	"github.com/geniehive/geniehive/policies/policytest"
	"github.com/geniehive/geniehive/policy"
)

func benchEngines(b *testing.B) map[string]policy.Engine {
	r, err := opa.NewRego(policies.ShippedPolicy(), opa.RegoOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return map[string]policy.Engine{"go": policies.NewGo(), "rego": r}
}

// BenchmarkDecision: one "coder" decision per op, per engine.
func BenchmarkDecision(b *testing.B) {
	for _, name := range []string{"go", "rego"} {
		e := benchEngines(b)[name]
		b.Run(name, func(b *testing.B) { policytest.BenchDecision(b, e) })
	}
}

// BenchmarkDecisionLatency: p50/p99 per decision under 2 goroutines.
func BenchmarkDecisionLatency(b *testing.B) {
	for _, name := range []string{"go", "rego"} {
		e := benchEngines(b)[name]
		b.Run(name, func(b *testing.B) { policytest.BenchLatency(b, e, 2) })
	}
}

// BenchmarkSetData: building the engine state for a new snapshot version.
func BenchmarkSetData(b *testing.B) {
	d := policytest.FleetData()
	for _, name := range []string{"go", "rego"} {
		e := benchEngines(b)[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if err := e.SetData(b.Context(), d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("BuildData", func(b *testing.B) {
		snap := policytest.Fleet()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			policies.BuildData(snap)
		}
	})
}

var benchBody = []byte(`{"model":"coder","stream":true,"temperature":0.7,"messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"Write a function that reverses a linked list in Go, with tests and a short explanation of its complexity."}]}`)

// BenchmarkApplyPatch: the fast path (model only) against a full rewrite.
func BenchmarkApplyPatch(b *testing.B) {
	full := &policy.Patch{
		Defaults:        map[string]any{"temperature": 0.2, "options": map[string]any{"num_ctx": 8192}},
		SystemPrompt:    &fleet.SystemPrompt{Mode: "prepend", Text: "You write code."},
		DisableThinking: true,
	}
	b.Run("model-only", func(b *testing.B) {
		b.SetBytes(int64(len(benchBody)))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := policies.ApplyPatch(benchBody, nil, "openai", "qwen3:8b"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("model-only-append", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		b.SetBytes(int64(len(benchBody)))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var err error
			if buf, err = policies.SetModel(buf[:0], benchBody, "qwen3:8b"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("full", func(b *testing.B) {
		b.SetBytes(int64(len(benchBody)))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := policies.ApplyPatch(benchBody, full, "openai", "qwen3:8b"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestGoEngineAllocs guards the reference engine's hot path: a role
// decision into a reused Decision allocates nothing.
func TestGoEngineAllocs(t *testing.T) {
	e := policies.NewGo()
	if err := e.SetData(t.Context(), policytest.FleetData()); err != nil {
		t.Fatal(err)
	}
	in := policytest.BenchInputs()[0]
	var out policy.Decision
	_ = e.Eval(t.Context(), in, &out)
	if n := testing.AllocsPerRun(100, func() { _ = e.Eval(t.Context(), in, &out) }); n != 0 && !raceEnabled {
		t.Fatalf("%v allocs per decision, want 0", n)
	}
}
