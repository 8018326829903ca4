package replica

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
)

// TestPolicyMaxMemoryMiB: policy.max_memory_mib reaches the wasm engine:
// a data document of 5,000 distinct assets does not fit the default 16 MiB
// instance (refused, as the edge then reports) and fits at 64 MiB; values
// outside 0..4096 are refused by Validate.
func TestPolicyMaxMemoryMiB(t *testing.T) {
	now := time.Now()
	snap := &fleet.Snapshot{Version: 1, BuiltAt: now, Catalog: &fleet.Catalog{}}
	for i := 0; i < 1250; i++ {
		e := &fleet.ServiceEntry{Service: &fleet.Service{ID: "h/s" + strconv.Itoa(i), Kind: fleet.KindChat}, Deadline: now.Add(time.Minute)}
		for k := 0; k < 4; k++ {
			e.Assets = append(e.Assets, fleet.Asset{Name: "model-" + strconv.Itoa(i*4+k) + ":8b", Family: "llama"})
		}
		snap.Services = append(snap.Services, e)
	}
	d := policies.BuildData(snap)
	ctx := context.Background()
	for _, c := range []struct {
		mib  int
		fits bool
	}{{0, false}, {64, true}} {
		mk, _ := lookupEngine(EngineWasm)
		f, _, err := mk(PolicyConfig{MaxMemoryMiB: c.mib})
		if err != nil {
			t.Fatal(err)
		}
		e, err := f(ctx, policy.NewBundle(policies.ShippedFiles()))
		if err != nil {
			t.Fatal(err)
		}
		err = e.SetData(ctx, d)
		e.Close()
		if (err == nil) != c.fits {
			t.Fatalf("max_memory_mib %d: SetData of 5,000 assets: %v, want fits=%v", c.mib, err, c.fits)
		}
	}
	for _, mib := range []int{0, 4096, -1, 4097} {
		var cfg Config
		cfg.Policy.MaxMemoryMiB = mib
		if err := cfg.Provision(); err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); (err == nil) != (mib == 0 || mib == 4096) {
			t.Fatalf("max_memory_mib %d: Validate: %v", mib, err)
		}
	}
}
