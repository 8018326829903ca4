package routing

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/state"
)

// benchSnap: a role with 3 candidate assets on 4 services each, plus a
// fallback role, with stats, bench results and VRAM figures filled in.
func benchSnap() (*fleet.Snapshot, *policy.Decision) {
	cat := &fleet.Catalog{Roles: []fleet.Role{
		{Name: "coder", Description: "writes code", PreferredFamilies: []string{"qwen3"}, Workloads: []string{"chat.short_reasoning"}},
	}}
	var svcs []*fleet.ServiceEntry
	for h := 0; h < 4; h++ {
		s := svc("h"+strconv.Itoa(h), "ollama", fleet.KindChat,
			asset("qwen3-coder:30b", "qwen3", "code"), asset("qwen3:8b", "qwen3"), asset("llama3.1:8b", "llama"))
		s.Service.Metrics = fleet.Metrics{LatencyMS: float64(20 + h), TokensPerSecond: 40, QueueDepth: h % 2, VRAMTotalBytes: 24 << 30, VRAMUsedBytes: 10 << 30}
		s.Stats = fleet.ServiceStats{Requests: 100, LatencyMS: 900, TokensPerSec: 38}
		svcs = append(svcs, s)
	}
	snap := snapOf(cat, svcs...)
	snap.Bench["qwen3-coder:30b"] = []fleet.BenchSummary{{Model: "qwen3-coder:30b", Workload: "chat.short_reasoning", Samples: 20, Quality: 0.8}}
	d := directTargets("", fleet.KindChat, "qwen3-coder:30b", "qwen3:8b")
	d.Targets = append(d.Targets, policy.Target{Kind: policy.TargetAsset, Name: "llama3.1:8b", Operation: fleet.KindChat, Group: 1})
	for i := range d.Targets {
		d.Targets[i].Role = "coder"
	}
	return snap, d
}

func benchRouter(b *testing.B, strategy string) (*Router, *roundTrips) {
	var st *state.Store
	var inf *state.Inflight
	rt := &roundTrips{}
	if strategy != StrategyScored {
		c, prefix := testredis.New(b)
		c.(*redis.Client).AddHook(rt)
		st = state.New(c, prefix)
		inf = state.NewInflight(st, "bench", time.Minute)
		ctx, cancel := context.WithCancel(context.Background())
		b.Cleanup(cancel)
		go inf.Run(ctx)
	}
	r, err := New(Config{DefaultStrategy: strategy}, st, inf)
	if err != nil {
		b.Fatal(err)
	}
	return r, rt
}

func benchRoute(b *testing.B, strategy string) {
	r, rt := benchRouter(b, strategy)
	snap, dec := benchSnap()
	ctx := context.Background()
	f := &RequestFacts{Operation: fleet.KindChat, Model: "coder"}
	// Warm up (pool, script load).
	for i := 0; i < 10; i++ {
		p, err := r.Plan(ctx, snap, dec, f)
		if err != nil {
			b.Fatal(err)
		}
		if p.Candidates[0].Leased {
			r.inflight.End(p.Candidates[0].Lease)
		}
	}
	start := rt.n.Load()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p, err := r.Plan(ctx, snap, dec, f)
		if err != nil {
			b.Fatal(err)
		}
		if p.Candidates[0].Leased {
			b.StopTimer()
			r.inflight.End(p.Candidates[0].Lease) // async; not the routing decision's cost
			b.StartTimer()
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(rt.n.Load()-start)/float64(b.N), "redis-rt/op")
}

// BenchmarkRouteScored etc. measure one routing decision (12 candidates in
// two groups) per strategy; redis-rt/op counts round trips per decision.
func BenchmarkRouteScored(b *testing.B)      { benchRoute(b, StrategyScored) }
func BenchmarkRouteRoundRobin(b *testing.B)  { benchRoute(b, StrategyRoundRobin) }
func BenchmarkRouteLeastLoaded(b *testing.B) { benchRoute(b, StrategyLeastLoaded) }

// BenchmarkRouteScoredPrompt adds 256 bytes of prompt to the text signal.
func BenchmarkRouteScoredPrompt(b *testing.B) {
	r, _ := benchRouter(b, StrategyScored)
	snap, dec := benchSnap()
	f := &RequestFacts{Operation: fleet.KindChat, Model: "coder",
		Text: "Please write a Python function that parses a CSV file with quoted fields and returns a list of dicts; handle embedded newlines, escaped quotes and a header row, and include type hints and a couple of doctests so it is easy to review for correctness later on."}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := r.Plan(context.Background(), snap, dec, f); err != nil {
			b.Fatal(err)
		}
	}
}

func TestScoredAllocations(t *testing.T) {
	if raceEnabled {
		t.Log("allocation counts differ under -race: not asserted")
		return
	}
	r := newRouter(t, Config{})
	snap, dec := benchSnap()
	f := &RequestFacts{Operation: fleet.KindChat, Model: "coder"}
	r.Plan(context.Background(), snap, dec, f)
	n := testing.AllocsPerRun(200, func() { r.Plan(context.Background(), snap, dec, f) })
	if n > 1 { // the returned candidate slice
		t.Fatalf("scored Plan allocates %v times per call, want <= 1", n)
	}
}
