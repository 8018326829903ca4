package swap_test

import (
	"strings"
	"testing"

	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/swap"
)

// TestGuard: whatever a pushed swap rule says, the hard limits hold.
func TestGuard(t *testing.T) {
	in := &policy.SwapInput{NowMS: 1000, Settings: policy.SwapSettings{MinResidencyMS: 500}, Pinned: []string{"pin"},
		Services: []policy.SwapService{
			{ID: "a/o", Host: "a", VRAMTotal: 4 * gib, VRAMUsed: 3 * gib, Models: []policy.SwapModel{
				{Name: "big", Size: 2 * gib}, {Name: "small", Size: gib},
				{Name: "busy", Loaded: true, Size: gib, InFlight: 1, ResidentMS: 9000},
				{Name: "pin", Loaded: true, Size: gib, ResidentMS: 9000},
				{Name: "young", Loaded: true, Size: gib, ResidentMS: 100},
				{Name: "idle", Loaded: true, Size: gib, ResidentMS: 9000},
			}},
			{ID: "b/o", Host: "b", Busy: true, VRAMTotal: 4 * gib, Models: []policy.SwapModel{{Name: "small", Size: gib}}},
			{ID: "c/o", Host: "c", CooldownUntilMS: 2000, VRAMTotal: 4 * gib, Models: []policy.SwapModel{{Name: "small", Size: gib}}},
			{ID: "d/o", Host: "d", Models: []policy.SwapModel{{Name: "small", Size: gib}}},
			{ID: "b/llama", Host: "b", VRAMTotal: 4 * gib, Models: []policy.SwapModel{{Name: "small", Size: gib}}},
			{ID: "e/o", Host: "e", CooldownUntilMS: 2000, Pending: "small", VRAMTotal: 4 * gib, Models: []policy.SwapModel{{Name: "small", Size: gib}}},
		}}
	for _, c := range []struct {
		op, svc, model, want string
	}{
		{"load", "a/o", "small", ""},
		{"load", "a/o", "big", "does not fit"},
		{"load", "a/o", "idle", "already loaded"},
		{"unload", "a/o", "idle", ""},
		{"unload", "a/o", "busy", "in flight"},
		{"unload", "a/o", "pin", "pinned"},
		{"unload", "a/o", "young", "minimum residency"},
		{"unload", "a/o", "small", "not loaded"},
		{"load", "b/o", "small", "in flight"},
		{"load", "b/llama", "small", "in flight"}, // another service of a busy node
		{"load", "c/o", "small", "cooling down"},
		{"load", "d/o", "small", "no VRAM figure"},
		{"load", "e/o", "small", ""}, // the swap under way goes on through its cooldown
		{"load", "x/o", "small", "not live"},
		{"load", "a/o", "nope", "does not offer"},
		{"evict", "a/o", "idle", "unknown op"},
	} {
		got := swap.Guard(in, &policy.SwapAction{Op: c.op, Service: c.svc, Model: c.model}, map[string]bool{})
		if (c.want == "") != (got == "") || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%s %s on %s: %q, want %q", c.op, c.model, c.svc, got, c.want)
		}
	}
	if got := swap.Guard(in, &policy.SwapAction{Op: "load", Service: "a/o", Model: "small"}, map[string]bool{"a": true}); got == "" {
		t.Error("a second action on one service in one round passed")
	}
}
