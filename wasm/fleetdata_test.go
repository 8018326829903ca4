package wasm

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
)

// fleetSnapshot is `geniehive loadtest fleet`'s fleet (loadtest/fleet.go):
// nodes hosts x 5 chat services x 4 assets drawn from 50 model names.
func fleetSnapshot(nodes int) *fleet.Snapshot {
	now := time.Now()
	snap := &fleet.Snapshot{Version: 1, BuiltAt: now, Catalog: &fleet.Catalog{Roles: []fleet.Role{{Name: "coder", Candidates: []string{"model-1:8b"}}}}}
	for i := 0; i < nodes; i++ {
		id := fmt.Sprintf("fleet-%05d", i)
		for j := 0; j < 5; j++ {
			e := &fleet.ServiceEntry{Service: &fleet.Service{ID: id + "/svc-" + strconv.Itoa(j), HostID: id, Kind: fleet.KindChat, Healthy: true},
				Deadline: now.Add(time.Minute)}
			for k := 0; k < 4; k++ {
				e.Assets = append(e.Assets, fleet.Asset{Name: "model-" + strconv.Itoa((i*20+j*4+k)%50) + ":8b", Family: "llama"})
			}
			snap.Services = append(snap.Services, e)
		}
	}
	return snap
}

// TestFleetDataFitsTheGuest: at 10,000 nodes x 5 services the data
// document is as large as at 100 nodes (it follows the catalog and the
// distinct assets, not the services: it was 6.4 MB, which the OPA guest
// refused at its default 16 MiB with "opa_malloc: failed"), the shipped
// policy takes it at the default memory cap, and a request naming one of
// the 50,000 services still resolves to it through input.service.
func TestFleetDataFitsTheGuest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 50,000-service snapshot")
	}
	small, _ := json.Marshal(policies.BuildData(fleetSnapshot(100)))
	snap := fleetSnapshot(10000)
	d := policies.BuildData(snap)
	big, _ := json.Marshal(d)
	t.Logf("policy data: %d bytes at 100 nodes, %d at 10,000", len(small), len(big))
	if len(big) != len(small) {
		t.Fatalf("policy data grows with the services: %d bytes at 100 nodes, %d at 10,000", len(small), len(big))
	}
	e, err := NewOPA(bg, policies.ShippedPolicy(), Options{PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.SetData(bg, d); err != nil {
		t.Fatalf("the 10,000-node data at the default memory cap: %v", err)
	}
	ix := policies.BuildServiceIndex(snap)
	if len(ix) != 50000 {
		t.Fatalf("service index: %d entries", len(ix))
	}
	for _, model := range []string{"FLEET-09999/svc-4", "model-7:8b", "coder"} {
		key := policies.NormalizeModel(model)
		in := &policy.Input{SchemaVersion: 1, Operation: fleet.KindChat, Model: model, ModelKey: key, Service: ix[key],
			Key: policy.Key{ID: "k", Scope: fleet.ScopeClient}}
		var dec policy.Decision
		if err := e.Eval(bg, in, &dec); err != nil {
			t.Fatal(err)
		}
		if len(dec.Targets) == 0 {
			t.Fatalf("%s: no targets: %+v", model, dec)
		}
		if model == "FLEET-09999/svc-4" && (dec.Targets[0].Kind != policy.TargetService || dec.Targets[0].Name != "fleet-09999/svc-4") {
			t.Fatalf("%s: %+v", model, dec.Targets)
		}
	}
}
