package swap_test

import (
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/swap"
)

// TestExplainLoadingFromHeartbeat: routes/match says "loading" when only
// the node's heartbeat knows a load is under way (Asset.Loading, set by the
// agent from the command until it confirms the load: another edge's
// controller sent it, or this edge has not read its swap state), not
// "would_wait" as for a model nobody is loading.
func TestExplainLoadingFromHeartbeat(t *testing.T) {
	now := time.Now()
	dec := &policy.Decision{Targets: []policy.Target{{Kind: policy.TargetAsset, Name: "m", Operation: fleet.KindChat}}}
	snapWith := func(loaded, loading bool, swp string) *fleet.Snapshot {
		svc := func(id string, as fleet.Asset) *fleet.ServiceEntry {
			return &fleet.ServiceEntry{Deadline: now.Add(time.Minute), Service: &fleet.Service{ID: id, HostID: id[:2], Kind: fleet.KindChat,
				Healthy: true, Swap: swp, Assets: []fleet.Asset{as}}}
		}
		return &fleet.Snapshot{AssetServices: map[string][]*fleet.ServiceEntry{"m": {
			svc("n1/ollama", fleet.Asset{Name: "m"}),
			svc("n2/ollama", fleet.Asset{Name: "m", Loaded: loaded, Loading: loading}),
		}}}
	}
	for _, c := range []struct {
		name            string
		loaded, loading bool
		swp             string
		enabled         bool
		state, service  string
	}{
		// Ollama lists a loading model in /api/ps: loaded and loading.
		{"listed while loading", true, true, fleet.SwapOllama, true, "loading", "n2/ollama"},
		{"not listed yet", false, true, fleet.SwapOllama, true, "loading", "n2/ollama"},
		{"nobody loading", false, false, fleet.SwapOllama, true, "would_wait", ""},
		{"loaded", true, false, fleet.SwapOllama, true, "loaded", "n2/ollama"},
		{"swapping off here", true, true, fleet.SwapOllama, false, "on_demand", ""},
	} {
		v := swap.Explain(snapWith(c.loaded, c.loading, c.swp), dec, nil, c.enabled, 5*time.Second, now)
		if v == nil || v.State != c.state || v.Service != c.service || v.Model != "m" {
			t.Errorf("%s: %+v, want state %q on %q", c.name, v, c.state, c.service)
			continue
		}
		if c.state == "loading" && (v.Op != string(fleet.SwapLoad) || v.WaitS != 5) {
			t.Errorf("%s: %+v, want op load and wait_s 5", c.name, v)
		}
	}
}
