package edge

import (
	"strconv"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
)

// bigSnapshot is one node with nSvc services of perSvc distinct assets
// each (the node validation caps: 64 services, 4096 assets per service).
func bigSnapshot(nSvc, perSvc int) *fleet.Snapshot {
	now := time.Now()
	snap := &fleet.Snapshot{Version: 1, BuiltAt: now, ByID: map[string]*fleet.ServiceEntry{},
		AssetServices: map[string][]*fleet.ServiceEntry{}, Catalog: &fleet.Catalog{}}
	for s := 0; s < nSvc; s++ {
		name := "svc" + strconv.Itoa(s)
		e := &fleet.ServiceEntry{Service: fleet.Service{ID: "big/" + name, HostID: "big", Name: name, Kind: fleet.KindChat,
			Healthy: true}, Deadline: now.Add(time.Minute)}
		for a := 0; a < perSvc; a++ {
			e.Assets = append(e.Assets, fleet.Asset{Name: name + "-model-" + strconv.Itoa(a), Loaded: true})
		}
		snap.Services = append(snap.Services, e)
		snap.ByID[e.ID] = e
		for _, a := range e.Assets {
			snap.AssetServices[a.Name] = append(snap.AssetServices[a.Name], e)
		}
	}
	return snap
}

// The hostile review: a node with 100k assets made /v1/models an
// 81-CPU-second request. Run with -run TestModelsBuildLinear -v for the
// figure; the assertion is on work done, not time: doubling the assets
// must not much more than double the build (quadratic would quadruple).
func TestModelsBuildLinear(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 100k-asset documents")
	}
	snap := bigSnapshot(25, 4000) // 100k assets on one node
	start := time.Now()
	entries := buildModels(snap, time.Now())
	t.Logf("/v1/models for 100k assets on one node: %d entries in %v", len(entries), time.Since(start))
	if len(entries) != 100000 {
		t.Fatalf("%d entries", len(entries))
	}
	// Per-asset lookups: count the asset comparisons a build makes.
	small, big := bigSnapshot(2, 1000), bigSnapshot(2, 4000)
	cs, cb := assetScans(small), assetScans(big)
	t.Logf("asset comparisons: 2x1000 assets %d, 2x4000 assets %d", cs, cb)
	if cb > 5*cs {
		t.Fatalf("asset comparisons grow faster than linearly: %d for 2000 assets, %d for 8000", cs, cb)
	}
}

// assetScans counts how many asset entries buildModels visits.
func assetScans(snap *fleet.Snapshot) int {
	_, n := buildModelsCounted(snap, time.Now())
	return n
}
