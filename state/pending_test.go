package state_test

import (
	"context"
	"testing"

	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/state"
)

// TestLeastLoadedIgnoresOwnFinished: back-to-back requests from one edge
// whose releases are still queued (batched, not yet in Redis) are never
// routed by counts that include their own finished predecessors. B (first:
// lower latency, wins ties) holds one request of another edge; A is idle
// but for this edge's finished requests. Every pick must be A.
func TestLeastLoadedIgnoresOwnFinished(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	other := state.NewInflight(s, "other-edge", 0)
	other.Begin("B")
	other.Flush(ctx)
	f := state.NewInflight(s, "edge", 0) // Run not started: every release stays queued
	services := []string{"B", "A"}
	for i := 0; i < 12; i++ {
		idx, counts, l, err := f.PickLeastLoaded(ctx, services, nil)
		if err != nil {
			t.Fatal(err)
		}
		if services[idx] != "A" {
			t.Fatalf("request %d went to %s (counts %v, with %d own finished requests still counted on A)", i, services[idx], counts, i)
		}
		f.End(l)
		if i == 5 {
			f.Flush(ctx) // half way, the batch reaches Redis: nothing is subtracted twice
		}
	}
	if rel := f.PendingReleases(services); rel[0] != 0 || rel[1] != 6 {
		t.Fatalf("pending releases %v", rel)
	}
	f.Flush(ctx)
	counts, err := s.InflightCounts(ctx, services)
	if err != nil || counts[0] != 1 || counts[1] != 0 {
		t.Fatalf("counts after flush %v %v", counts, err)
	}
}
