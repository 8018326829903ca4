package swap_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/geniehive/geniehive/edge/replica"
	"github.com/geniehive/geniehive/loadtest/sim"
)

// rotation is what one run of the rotating workload measured.
type rotation struct {
	requests, failed int64
	waited           int64 // requests that took at least the load time: they waited for a load
	swaps            int   // commands the controller sent
	loads            int64 // model loads on the upstreams (on demand or commanded)
	peak             int64 // the most VRAM one node held at once
}

// runRotation runs the workload on a fresh fleet: 6 models, 2 nodes that
// each fit 2, demand moving every phase to the other three models (m1-m3,
// m4-m6, m1-m3, ...): three hot models fit the fleet (4 slots) but not
// one node. 3 closed-loop clients per hot model, spread over both edges.
// A load takes loadTime, an answer ~10ms.
func runRotation(t *testing.T, swapping bool, phases int, phase, loadTime time.Duration) rotation {
	beh := sim.Behavior{LoadTime: loadTime, UnloadTime: 20 * time.Millisecond, Chunks: 4, ChunkInterval: 2 * time.Millisecond}
	h := newHarness(t, nil, map[string]sim.Behavior{"n1": beh, "n2": beh}, func(c *replica.Config) {
		c.Edge.Swap.Enabled = swapping
		c.Edge.Swap.Idle = phase / 3
		c.Edge.Swap.MinResidency = phase / 3
	})
	var r rotation
	var mu sync.Mutex
	var hot atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for slot := range 3 {
		for c := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e := h.edges[c%2]
				for ctx.Err() == nil {
					m := models[3*int(hot.Load())+slot]
					t0 := time.Now()
					code, body := chat(e, m)
					if code != 200 {
						t.Logf("%s via %s: %d %s", m, e.id, code, body)
					}
					d := time.Since(t0)
					mu.Lock()
					r.requests++
					if code != 200 {
						r.failed++
					}
					if d >= loadTime {
						r.waited++
					}
					mu.Unlock()
				}
			}()
		}
	}
	for p := range phases {
		hot.Store(int32(p % 2))
		time.Sleep(phase)
	}
	cancel()
	wg.Wait()
	for _, rec := range h.records() {
		if rec.Event == "sent" {
			r.swaps++
		}
	}
	for _, n := range h.nodes {
		st := n.sim.Stats()
		r.loads += st.Loads
		r.peak = max(r.peak, st.VRAMPeak)
	}
	h.checkInvariants()
	return r
}

// TestSwapRotation is the comparison issue 14 asks for, in one run: the
// same rotating workload without and with swapping. It asserts what must
// hold either way (every request answered, no node over its VRAM budget,
// swaps only when swapping is on) and logs the figures; the measured
// comparison is in the README (Model swapping).
func TestSwapRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("a measurement: runs without -short")
	}
	if u := os.Getenv("GENIEHIVE_TEST_REDIS"); strings.Contains(u, "+cluster") || strings.Contains(u, "+sentinel") {
		t.Skip("a measurement: it runs once, on the single-server run (the fleet tests cover Cluster and Sentinel)")
	}
	const phases, phase, load = 6, 2 * time.Second, 400 * time.Millisecond
	off := runRotation(t, false, phases, phase, load)
	on := runRotation(t, true, phases, phase, load)
	for name, r := range map[string]rotation{"without swapping": off, "with swapping": on} {
		t.Logf("%-17s requests %5d  failed %d  waited for a load %4d (%.1f%%)  swaps sent %3d  upstream loads %3d  VRAM peak %.1f GiB of %.1f",
			name, r.requests, r.failed, r.waited, 100*float64(r.waited)/float64(max(r.requests, 1)), r.swaps, r.loads, float64(r.peak)/float64(gib), float64(budget)/float64(gib))
		if r.failed != 0 || r.peak > budget || r.requests == 0 {
			t.Errorf("%s: %+v", name, r)
		}
	}
	if off.swaps != 0 || on.swaps == 0 {
		t.Errorf("swaps sent: %d without swapping, %d with", off.swaps, on.swaps)
	}
}
