package policytest

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policy"
)

// BenchInputs are the requests the benchmarks cycle through: a role with a
// fallback (the common case), a direct asset, and an unknown model.
func BenchInputs() []*policy.Input {
	return []*policy.Input{
		in(fleet.KindChat, "coder"),
		in(fleet.KindChat, "qwen3:8b"),
		in(fleet.KindChat, "gpt-4o"),
	}
}

// BenchDecision measures one decision (the "coder" role on FleetData) per
// op. Engines are compared with:
//
//	func BenchmarkDecision(b *testing.B) {
//		b.Run("myengine", func(b *testing.B) { policytest.BenchDecision(b, e) })
//	}
func BenchDecision(b *testing.B, e policy.Engine) {
	ctx := context.Background()
	if err := e.SetData(ctx, FleetData()); err != nil {
		b.Fatal(err)
	}
	input := BenchInputs()[0]
	var out policy.Decision
	if err := e.Eval(ctx, input, &out); err != nil || len(out.Targets) == 0 {
		b.Fatalf("eval: %v, %d targets", err, len(out.Targets))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := e.Eval(ctx, input, &out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchLatency runs b.N decisions split over `goroutines` goroutines (each
// with its own Decision, cycling through BenchInputs), records every
// decision's duration and reports p50-ns and p99-ns next to ns/op.
func BenchLatency(b *testing.B, e policy.Engine, goroutines int) {
	ctx := context.Background()
	if err := e.SetData(ctx, FleetData()); err != nil {
		b.Fatal(err)
	}
	inputs := BenchInputs()
	durs := make([][]time.Duration, goroutines)
	per := b.N/goroutines + 1
	for g := range durs {
		durs[g] = make([]time.Duration, 0, per)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	errc := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			var out policy.Decision
			for i := 0; i < per; i++ {
				t0 := time.Now()
				if err := e.Eval(ctx, inputs[i%len(inputs)], &out); err != nil {
					errc <- err
					return
				}
				durs[g] = append(durs[g], time.Since(t0))
			}
		}(g)
	}
	wg.Wait()
	b.StopTimer()
	select {
	case err := <-errc:
		b.Fatal(err)
	default:
	}
	var all []time.Duration
	for _, d := range durs {
		all = append(all, d...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Nanoseconds()) }
	b.ReportMetric(q(0.50), "p50-ns")
	b.ReportMetric(q(0.99), "p99-ns")
}
