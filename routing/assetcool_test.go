package routing

import (
	"context"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
)

// The hostile review: any client could put a whole service into shared
// cooldown by asking for a model whose upstream fails. Failures of one
// model now cool the (service, asset) pair on every edge; the service's
// other models stay routable. Only service-wide failures (connection
// refused or reset) cool the service.
func TestModelFailuresCoolThePairNotTheService(t *testing.T) {
	f := newCluster(t, 2, Config{FailureThreshold: 3, Cooldown: 30 * time.Second})
	f.heartbeat(t, "h1", chatSvc("ollama", 50, "good:7b", "bad:7b"))
	f.heartbeat(t, "h2", chatSvc("ollama", 50, "bad:7b"))
	f.settle(t, func(s *fleet.Snapshot) bool { return len(s.AssetServices["bad:7b"]) == 2 })
	a, b := f.edges[0], f.edges[1]
	ctx := context.Background()
	plan := func(e *edgeInst, model string) []string {
		snap, dec := e.decide(t, model)
		p, err := e.r.Plan(ctx, snap, dec, &RequestFacts{Operation: fleet.KindChat, Model: model})
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		return ids(p)
	}
	h1 := a.w.Current().ByID["h1/ollama"]
	for i := 0; i < 3; i++ { // the attack: a model that fails upstream, asked for three times
		a.r.Observe(&Candidate{Service: h1, Asset: "bad:7b"}, false, time.Millisecond)
	}
	a.r.Drain(ctx)
	for _, e := range []*edgeInst{a, b} {
		deadline := time.Now().Add(3 * time.Second)
		for {
			s := e.w.Current().ByID["h1/ollama"]
			if s != nil && s.AssetInCooldown("bad:7b", time.Now()) || e == a {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never saw the pair cooldown", e.id)
			}
			time.Sleep(2 * time.Millisecond)
		}
		if got := plan(e, "good:7b"); len(got) != 1 || got[0] != "h1/ollama|good:7b" {
			t.Fatalf("%s: good:7b on the service whose other model failed: %v (whole service cooled)", e.id, got)
		}
		if got := plan(e, "bad:7b"); len(got) != 1 || got[0] != "h2/ollama|bad:7b" {
			t.Fatalf("%s: bad:7b should avoid the failing pair: %v", e.id, got)
		}
	}
	if a.w.Current().ByID["h1/ollama"].InCooldown(time.Now()) {
		t.Fatal("service cooled down by one model's failures")
	}
	// A success of the pair clears it everywhere.
	a.r.Observe(&Candidate{Service: a.w.Current().ByID["h1/ollama"], Asset: "bad:7b"}, true, time.Millisecond)
	a.r.Drain(ctx)
	waitCond(t, "pair cooldown cleared", func() bool {
		return !b.w.Current().ByID["h1/ollama"].AssetInCooldown("bad:7b", time.Now()) && len(plan(a, "bad:7b")) == 2
	})
	// Service-wide failures cool the service.
	for i := 0; i < 3; i++ {
		Fail(a.r, &Candidate{Service: h1, Asset: "good:7b"}, true, time.Millisecond)
	}
	a.r.Drain(ctx)
	if got := plan(a, "good:7b"); len(got) == 1 && got[0] == "h1/ollama|good:7b" {
		t.Fatalf("connection failures did not cool the service: %v", got)
	}
}

func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
