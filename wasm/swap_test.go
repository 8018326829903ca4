package wasm

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"

	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policies/opa"
	"github.com/geniehive/geniehive/policy"
)

// randomSwapInput builds a fleet of 1-3 services over 6 models with random
// loaded sets, sizes, in-flight counts, idle and residency times, pins,
// busy and cooling services and demand.
func randomSwapInput(r *rand.Rand) *policy.SwapInput {
	const gib = int64(1) << 30
	in := &policy.SwapInput{SchemaVersion: 1, NowMS: 1_000_000,
		Settings: policy.SwapSettings{MinResidencyMS: 60_000, IdleMS: 30_000, CooldownMS: 10_000}}
	models := []string{"m0", "m1", "m2", "m3", "m4", "m5"}
	if r.IntN(3) == 0 {
		in.Pinned = []string{models[r.IntN(6)]}
	}
	for i := range 1 + r.IntN(3) {
		s := policy.SwapService{ID: "h" + strconv.Itoa(i) + "/o", Host: "h" + strconv.Itoa(i), VRAMTotal: int64(2+r.IntN(4)) * gib,
			Busy: r.IntN(5) == 0, Pending: ""}
		if r.IntN(6) == 0 {
			s.VRAMTotal = 0
		}
		if r.IntN(5) == 0 {
			s.CooldownUntilMS = in.NowMS + 5000
		}
		for _, m := range models {
			if r.IntN(3) == 0 {
				continue
			}
			x := policy.SwapModel{Name: m, Size: int64(1+r.IntN(2)) * gib, Loaded: r.IntN(3) == 0}
			if x.Loaded {
				if s.VRAMUsed+x.Size > s.VRAMTotal {
					x.Loaded = false
				} else {
					s.VRAMUsed += x.Size
					x.InFlight = int64(r.IntN(3) / 2)
					x.IdleMS = int64(r.IntN(4)) * 20_000
					x.ResidentMS = int64(r.IntN(4)) * 40_000
				}
			}
			s.Models = append(s.Models, x)
		}
		if r.IntN(5) == 0 && len(s.Models) > 0 {
			s.Pending = s.Models[r.IntN(len(s.Models))].Name
		}
		in.Services = append(in.Services, s)
	}
	for _, m := range models {
		if r.IntN(2) == 0 {
			in.Demand = append(in.Demand, policy.SwapDemand{Model: m, Waiting: r.IntN(4)})
		}
	}
	return in
}

// TestSwapEnginesAgree runs the shipped swap rule on the wasm engine (the
// default), OPA's Rego evaluator and the Go reference over the same 300
// random fleets: every decision must be identical, and across the run each
// kind of action must occur (so agreement is not "all empty").
func TestSwapEnginesAgree(t *testing.T) {
	ctx := context.Background()
	files := policies.ShippedPolicy()
	we, err := NewOPA(ctx, files, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer we.Close()
	re, err := opa.NewRego(files, opa.RegoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	engines := map[string]policy.SwapEvaluator{"wasm": we, "rego": re.(policy.SwapEvaluator), "go": policies.NewGo().(policy.SwapEvaluator)}
	r := rand.New(rand.NewPCG(14, 14))
	kinds := map[string]int{}
	for i := range 300 {
		in := randomSwapInput(r)
		var want policy.SwapDecision
		if err := engines["go"].EvalSwap(ctx, in, &want); err != nil {
			t.Fatal(err)
		}
		for _, a := range want.Actions {
			kinds[a.Op]++
		}
		for name, e := range engines {
			var got policy.SwapDecision
			if err := e.EvalSwap(ctx, in, &got); err != nil {
				t.Fatalf("case %d: %s: %v", i, name, err)
			}
			if len(got.Actions) == 0 && len(want.Actions) == 0 {
				continue
			}
			if !reflect.DeepEqual(got.Actions, want.Actions) {
				t.Fatalf("case %d: %s decided\n%+v\ngo decided\n%+v\ninput %+v", i, name, got.Actions, want.Actions, in)
			}
		}
	}
	if kinds["load"] == 0 || kinds["unload"] == 0 {
		t.Fatalf("the random fleets never produced both kinds of action: %v", kinds)
	}
	t.Logf("actions over 300 fleets: %v", kinds)
}

// TestSwapRuleAbsent: a bundle without a swap rule makes no swaps, on
// both Rego-based engines (ErrNoSwapRule, never the shipped default).
func TestSwapRuleAbsent(t *testing.T) {
	ctx := context.Background()
	files := map[string]string{}
	for k, v := range policies.ShippedPolicy() {
		if k != "rego/swap.rego" {
			files[k] = v
		}
	}
	we, err := NewOPA(ctx, files, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer we.Close()
	re, err := opa.NewRego(files, opa.RegoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	in := &policy.SwapInput{SchemaVersion: 1}
	var out policy.SwapDecision
	if err := we.EvalSwap(ctx, in, &out); !errors.Is(err, policy.ErrNoSwapRule) {
		t.Fatalf("wasm: %v", err)
	}
	if err := re.(policy.SwapEvaluator).EvalSwap(ctx, in, &out); !errors.Is(err, policy.ErrNoSwapRule) {
		t.Fatalf("rego: %v", err)
	}
}
