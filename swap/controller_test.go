package swap_test

import (
	"context"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/state"
	"github.com/geniehive/geniehive/swap"
)

// TestRoundLifecycle drives Controller.Round by hand against real Redis
// with a scripted policy: an action the hard limits refuse is logged, not
// sent; one that passes is sent on the node's stream and the service is
// busy until its result; a done unload leaves the service reserved for
// the model it made room for while requests wait for it, and releases it
// once nobody does; a missing result expires at the deadline.
func TestRoundLifecycle(t *testing.T) {
	c, prefix := testredis.New(t)
	st := state.New(c, prefix)
	ctx := context.Background()
	if err := st.PutEdge(ctx, fleet.EdgeInfo{ID: "e1", Deadline: time.Now().Add(time.Hour)}, time.Hour); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	svc := &fleet.ServiceEntry{Service: &fleet.Service{ID: "n1/o", HostID: "n1", Name: "o", Kind: fleet.KindChat, Swap: fleet.SwapOllama, Healthy: true,
		Metrics: fleet.Metrics{VRAMTotalBytes: 4 * gib, VRAMUsedBytes: 4 * gib},
		Assets:  []fleet.Asset{{Name: "a", Loaded: true, SizeVRAM: 2 * gib}, {Name: "b", Loaded: true, SizeVRAM: 2 * gib}, {Name: "w", Size: 2 * gib}}},
		Deadline: now.Add(time.Hour)}
	snap := &fleet.Snapshot{Services: []*fleet.ServiceEntry{svc}, Hosts: map[string]*fleet.HostEntry{"n1": {Host: fleet.Host{ID: "n1", UpdatedAt: now}}},
		Catalog: &fleet.Catalog{Swap: &fleet.SwapCatalog{Pin: []string{"a"}}}}
	var script []policy.SwapAction
	var seen *policy.SwapInput
	eval := func(_ context.Context, in *policy.SwapInput, out *policy.SwapDecision) error {
		seen = in
		out.Actions = script
		return nil
	}
	ctl := swap.New(st, func() *fleet.Snapshot { return snap }, eval, swap.Options{ID: "e1", Logger: quiet,
		Settings: swap.Settings{MinResidency: time.Millisecond, CommandTimeout: 300 * time.Millisecond, Cooldown: time.Millisecond}})
	if ok, err := st.AcquireLease(ctx, state.SwapLease, "e1", time.Minute); err != nil || !ok {
		t.Fatal(err)
	}
	waiting := func(n int) {
		u := &state.SwapUsage{Waiting: map[string]int{}}
		if n > 0 {
			u.Waiting["w"] = n
		}
		if err := st.PutSwapUsage(ctx, "e1", u, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	round := func() {
		t.Helper()
		if err := ctl.Round(ctx); err != nil {
			t.Fatal(err)
		}
	}
	control := func() *fleet.SwapControl {
		m, err := st.SwapControls(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return m["n1/o"]
	}

	// No demand: the policy is not even asked.
	round()
	if seen != nil {
		t.Fatal("the policy was evaluated without demand")
	}
	waiting(2)
	time.Sleep(5 * time.Millisecond) // past min residency
	script = []policy.SwapAction{{Op: "unload", Service: "n1/o", Model: "a", For: "w", Reason: "evict the pinned one"}}
	round()
	if seen == nil || len(seen.Demand) != 1 || seen.Demand[0].Waiting != 2 || len(seen.Pinned) != 1 {
		t.Fatalf("input %+v", seen)
	}
	recs, _ := st.SwapRecords(ctx, 0)
	if len(recs) != 1 || recs[0].Event != "refused" || recs[0].Error != "model is pinned" {
		t.Fatalf("log %+v", recs)
	}
	if n := c.XLen(ctx, st.SwapStreamKey("n1")).Val(); n != 0 {
		t.Fatalf("%d commands sent for a refused action", n)
	}

	// An allowed unload is sent; while it is in flight nothing else goes.
	script = []policy.SwapAction{{Op: "unload", Service: "n1/o", Model: "b", For: "w", Reason: "idle"}, {Op: "unload", Service: "n1/o", Model: "b", For: "w"}}
	round()
	cs := control()
	if cs == nil || cs.Cmd == nil || cs.Cmd.Op != fleet.SwapUnload || cs.Pending != "w" {
		t.Fatalf("control %+v", cs)
	}
	round()
	if n := c.XLen(ctx, st.SwapStreamKey("n1")).Val(); n != 1 {
		t.Fatalf("%d commands on the stream, want 1 (one in flight per node)", n)
	}
	// The node answers done; the next heartbeat shows b gone.
	got, err := st.ReadSwaps(ctx, "n1", "n1", false, 8, 0)
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	if _, err := st.FinishSwap(ctx, "n1", got[0].StreamID, &fleet.SwapResult{ID: got[0].Cmd.ID, Status: fleet.SwapDone, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	script = nil
	round()
	cs = control()
	if cs.Cmd != nil || cs.Pending != "w" {
		t.Fatalf("after the unload: %+v, want no command and w pending", cs)
	}
	recs, _ = st.SwapRecords(ctx, 0)
	if recs[0].Event != "outcome" || recs[0].Result != fleet.SwapDone || recs[0].For != "w" {
		t.Fatalf("outcome %+v", recs[0])
	}
	// Nobody waits for w any more: the service is released.
	waiting(0)
	round()
	if cs = control(); cs.Pending != "" {
		t.Fatalf("the swap nobody waits for still reserves the service: %+v", cs)
	}

	// A load nobody answers expires at its deadline, decided by the edge.
	waiting(1)
	svc.Service.Metrics.VRAMUsedBytes = 2 * gib
	snap.Hosts["n1"].Host.UpdatedAt = time.Now().Add(time.Second) // the heartbeat after the unload
	script = []policy.SwapAction{{Op: "load", Service: "n1/o", Model: "w", Reason: "fits"}}
	round()
	if cs = control(); cs.Cmd == nil || cs.Cmd.Op != fleet.SwapLoad {
		t.Fatalf("load not sent: %+v", cs)
	}
	id := cs.Cmd.ID
	script = nil
	time.Sleep(300*time.Millisecond + 2100*time.Millisecond) // deadline + grace
	round()
	if cs = control(); cs.Cmd != nil || cs.Pending != "" {
		t.Fatalf("after the deadline: %+v", cs)
	}
	res, found, err := st.SwapResult(ctx, "n1", id)
	if err != nil || !found || res.Status != fleet.SwapExpired || res.By != "e1" {
		t.Fatalf("result %+v %v %v", res, found, err)
	}
}
