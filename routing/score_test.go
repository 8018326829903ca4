package routing

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/state"
)

// TestSignalsMoveRanking: for each signal, two candidates equal but for that
// signal; the one it favours must rank first, and the signal's contribution
// must be what made the difference. Where the two are different assets the
// favoured one is listed second, so it has to beat the candidate-order
// bonus too.
func TestSignalsMoveRanking(t *testing.T) {
	type tc struct {
		name   string
		sig    Signal
		build  func() (*fleet.Snapshot, *policy.Decision, *RequestFacts)
		winner string // service|asset
	}
	twoServices := func(mod func(a, b *fleet.ServiceEntry)) func() (*fleet.Snapshot, *policy.Decision, *RequestFacts) {
		return func() (*fleet.Snapshot, *policy.Decision, *RequestFacts) {
			a := svc("a", "s", fleet.KindChat, asset("m:7b", "llama"))
			b := svc("b", "s", fleet.KindChat, asset("m:7b", "llama"))
			mod(a, b)
			return snapOf(nil, a, b), directTargets("", fleet.KindChat, "m:7b"), &RequestFacts{Operation: fleet.KindChat, Model: "m"}
		}
	}
	twoAssets := func(cat *fleet.Catalog, role string, x, y fleet.Asset, mod func(s *fleet.Snapshot)) func() (*fleet.Snapshot, *policy.Decision, *RequestFacts) {
		return func() (*fleet.Snapshot, *policy.Decision, *RequestFacts) {
			s := snapOf(cat, svc("h", "s", fleet.KindChat, x, y))
			if mod != nil {
				mod(s)
			}
			d := directTargets("", fleet.KindChat, x.Name, y.Name)
			for i := range d.Targets {
				d.Targets[i].Role = role
			}
			return s, d, &RequestFacts{Operation: fleet.KindChat, Model: role}
		}
	}
	cases := []tc{
		{name: "text overlap with the prompt", sig: SigTextOverlap, winner: "h/s|coder-7b",
			build: func() (*fleet.Snapshot, *policy.Decision, *RequestFacts) {
				s, d, f := twoAssets(nil, "", asset("chat-7b", "x"), asset("coder-7b", "x", "code", "python"), nil)()
				f.Model, f.Text = "assistant", "Write python code that parses a CSV file"
				return s, d, f
			}},
		{name: "text overlap with the role", sig: SigTextOverlap, winner: "h/s|coder-7b",
			build: twoAssets(&fleet.Catalog{Roles: []fleet.Role{{Name: "coder", Description: "writes code"}}}, "coder",
				asset("chat-7b", "x"), asset("coder-7b", "x", "code"), nil)},
		{name: "preferred family", sig: SigPreferredFamily, winner: "h/s|q-7b",
			build: twoAssets(&fleet.Catalog{Roles: []fleet.Role{{Name: "r", PreferredFamilies: []string{"qwen3", "llama"}}}}, "r",
				asset("l-7b", "mistral"), asset("q-7b", "qwen3"), nil)},
		{name: "loaded beats not loaded", sig: SigLoaded, winner: "h/s|y",
			build: func() (*fleet.Snapshot, *policy.Decision, *RequestFacts) {
				y := asset("y", "f")
				y.Loaded = true
				return twoAssets(nil, "", asset("x", "f"), y, nil)()
			}},
		{name: "lower latency", sig: SigLatency, winner: "b/s|m:7b",
			build: twoServices(func(a, b *fleet.ServiceEntry) {
				a.Stats = fleet.ServiceStats{Requests: 10, LatencyMS: 3000}
				b.Stats = fleet.ServiceStats{Requests: 10, LatencyMS: 200}
			})},
		{name: "higher throughput", sig: SigThroughput, winner: "b/s|m:7b",
			build: twoServices(func(a, b *fleet.ServiceEntry) {
				a.Service.Metrics.TokensPerSecond = 8
				b.Service.Metrics.TokensPerSecond = 90
			})},
		{name: "shorter queue", sig: SigQueueDepth, winner: "b/s|m:7b",
			build: twoServices(func(a, b *fleet.ServiceEntry) { a.Service.Metrics.QueueDepth = 6 })},
		{name: "fewer in flight", sig: SigInFlight, winner: "b/s|m:7b",
			build: twoServices(func(a, b *fleet.ServiceEntry) { a.Service.Metrics.InFlight = 5 })},
		{name: "more VRAM headroom", sig: SigVRAMHeadroom, winner: "b/s|m:7b",
			build: twoServices(func(a, b *fleet.ServiceEntry) {
				a.Service.Metrics.VRAMTotalBytes, a.Service.Metrics.VRAMUsedBytes = 24<<30, 23<<30
				b.Service.Metrics.VRAMTotalBytes, b.Service.Metrics.VRAMUsedBytes = 24<<30, 4<<30
			})},
		{name: "benchmarks cover the role's workloads", sig: SigWorkloadOverlap, winner: "h/s|y",
			build: twoAssets(&fleet.Catalog{Roles: []fleet.Role{{Name: "r", Workloads: []string{"chat.short_reasoning"}}}}, "r",
				asset("x", "f"), asset("y", "f"), func(s *fleet.Snapshot) {
					s.Bench["x"] = []fleet.BenchSummary{{Model: "x", Workload: "other", Samples: 5, Quality: 0.5}}
					s.Bench["y"] = []fleet.BenchSummary{{Model: "y", Workload: "chat.short_reasoning", Samples: 5, Quality: 0.5}}
				})},
		{name: "higher benchmark quality", sig: SigBenchQuality, winner: "h/s|y",
			build: twoAssets(&fleet.Catalog{Roles: []fleet.Role{{Name: "r", Workloads: []string{"w"}}}}, "r",
				asset("x", "f"), asset("y", "f"), func(s *fleet.Snapshot) {
					s.Bench["x"] = []fleet.BenchSummary{{Model: "x", Workload: "w", Samples: 5, Quality: 0.3}}
					s.Bench["y"] = []fleet.BenchSummary{{Model: "y", Workload: "w", Samples: 5, Quality: 0.9}}
				})},
		{name: "candidate order", sig: SigCandidateOrder, winner: "h/s|x",
			build: twoAssets(nil, "", asset("x", "f"), asset("y", "f"), nil)},
	}
	r := newRouter(t, Config{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			snap, dec, f := c.build()
			p, err := r.Plan(context.Background(), snap, dec, f)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(p); got[0] != c.winner {
				t.Fatalf("plan %v, want %s first", got, c.winner)
			}
			ex := r.Explain(context.Background(), snap, dec, f)
			if ex.Picked+"|"+ex.PickedAsset != c.winner {
				t.Fatalf("explain picked %s|%s", ex.Picked, ex.PickedAsset)
			}
			win, lose := ex.Candidates[0], ex.Candidates[1]
			if !(win.Signals[c.sig.String()] > lose.Signals[c.sig.String()]) {
				t.Fatalf("signal %s: winner %v, loser %v", c.sig, win.Signals, lose.Signals)
			}
			// Turning the signal off must remove the difference it made.
			w := DefaultWeights()
			setWeight(&w, c.sig, 0)
			r0 := newRouter(t, Config{Weights: &w})
			ex0 := r0.Explain(context.Background(), snap, dec, f)
			for _, ce := range ex0.Candidates {
				if ce.Signals[c.sig.String()] != 0 {
					t.Fatalf("weight 0 still contributes: %v", ce.Signals)
				}
			}
		})
	}
}

func setWeight(w *Weights, s Signal, v float64) {
	p := map[Signal]*float64{SigTextOverlap: &w.TextOverlap, SigPreferredFamily: &w.PreferredFamily, SigCandidateOrder: &w.CandidateOrder,
		SigLoaded: &w.Loaded, SigLatency: &w.Latency, SigThroughput: &w.Throughput, SigQueueDepth: &w.QueueDepth,
		SigInFlight: &w.InFlight, SigVRAMHeadroom: &w.VRAMHeadroom, SigWorkloadOverlap: &w.WorkloadOverlap, SigBenchQuality: &w.BenchQuality}
	*p[s] = v
}

func TestSaturationAndLocalInflight(t *testing.T) {
	a := svc("a", "s", fleet.KindChat, asset("m", "f"))
	b := svc("b", "s", fleet.KindChat, asset("m", "f"))
	a.MaxConcurrency, b.MaxConcurrency = 1, 2
	snap := snapOf(nil, a, b)
	dec := directTargets("", fleet.KindChat, "m")
	r := newRouter(t, Config{})
	ctx := context.Background()
	f := &RequestFacts{Operation: fleet.KindChat, Model: "m"}
	var open []Candidate
	for i := 0; i < 3; i++ {
		p, err := r.Plan(ctx, snap, dec, f)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		r.Begin(&p.Candidates[0])
		open = append(open, p.Candidates[0])
	}
	_, err := r.Plan(ctx, snap, dec, f)
	var se *SaturatedError
	if !errors.As(err, &se) || se.RetryAfter <= 0 {
		t.Fatalf("4th request: %v, want saturated with Retry-After", err)
	}
	r.End(&open[0], state.Lease{})
	if _, err := r.Plan(ctx, snap, dec, f); err != nil {
		t.Fatalf("after End: %v", err)
	}
	// A saturated group falls through to the next group.
	c := svc("c", "s", fleet.KindChat, asset("n", "f"))
	snap = snapOf(nil, a, b, c)
	dec = directTargets("", fleet.KindChat, "m", "n")
	dec.Targets[1].Group = 1
	for i := 0; i < 2; i++ {
		p, _ := r.Plan(ctx, snap, dec, f)
		r.Begin(&p.Candidates[0])
	}
	p, err := r.Plan(ctx, snap, dec, f)
	if err != nil || p.Candidates[0].Service.ID != "c/s" {
		t.Fatalf("want fallback group: %v %v", ids(p), err)
	}
}

func TestLocalCooldownAndSuccessIsCheap(t *testing.T) {
	a := svc("a", "s", fleet.KindChat, asset("m", "f"))
	b := svc("b", "s", fleet.KindChat, asset("m", "f"))
	snap := snapOf(nil, a, b)
	r := newRouter(t, Config{})
	r.ReportSuccess(a)
	if len(r.health) != 0 {
		t.Fatal("success of a service with no failures was queued")
	}
	r.ReportFailure("a/s")
	r.ReportSuccess(a)
	if len(r.health) != 2 {
		t.Fatalf("queued %d, want failure+success", len(r.health))
	}
	r.Drain(context.Background())
	if l := r.peekLoc("a/s"); l.failed.Load() {
		t.Fatal("success did not clear the local failure mark")
	}
	_ = snap
}

func TestConfigProvision(t *testing.T) {
	c, err := Config{ProbeIntervalS: 10}.Provision()
	if err != nil || c.ProbeInterval != 10*time.Second || c.ProbeLease != 30*time.Second || c.DefaultStrategy != StrategyScored || c.Weights.BenchQuality != 2 {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := (Config{DefaultStrategy: "random"}).Provision(); err == nil {
		t.Fatal("unknown strategy accepted")
	}
}

// TestPlanUsesRequestText: the edge's entry point (Plan, with
// RequestFacts) feeds the prompt text to the text signal exactly as
// Route does with Facts.Text.
func TestPlanUsesRequestText(t *testing.T) {
	snap := snapOf(nil, svc("h", "s", fleet.KindChat, asset("chat-7b", "x"), asset("coder-7b", "x", "code", "python")))
	dec := directTargets("", fleet.KindChat, "chat-7b", "coder-7b")
	r := newRouter(t, Config{})
	plan := func(text string) []string {
		p, err := r.Plan(context.Background(), snap, dec, &RequestFacts{Operation: fleet.KindChat, Model: "assistant", Text: text})
		if err != nil {
			t.Fatal(err)
		}
		return ids(p)
	}
	if got := plan(""); got[0] != "h/s|chat-7b" {
		t.Fatalf("without text: %v, want candidate order (chat-7b first)", got)
	}
	if got := plan("Write python code that parses a CSV file"); got[0] != "h/s|coder-7b" {
		t.Fatalf("with a coding prompt: %v, want coder-7b first", got)
	}
	// Only the first TextChars bytes count.
	long := strings.Repeat("x ", 200) + "python code"
	if got := plan(long); got[0] != "h/s|chat-7b" {
		t.Fatalf("words past text_chars moved the ranking: %v", got)
	}
}
