package state_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/state"
)

// fleetNode is a node of n services with two assets each, one shared by
// the whole fleet ("shared") and one of its own.
func fleetNode(id string, n int) *fleet.NodeState {
	st := &fleet.NodeState{Host: fleet.Host{ID: id, UpdatedAt: time.Now()}}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("s%d", i)
		st.Services = append(st.Services, fleet.Service{
			ID: id + "/" + name, HostID: id, Name: name, Kind: fleet.KindChat, Endpoint: "http://127.0.0.1:1",
			Healthy: true, Assets: []fleet.Asset{{Name: "shared", Family: "llama", Loaded: true}, {Name: "own-" + id + "-" + name, Loaded: true}},
		})
	}
	return st
}

// startWatcher runs a watcher (no periodic resync) on its own connection
// and waits for its first snapshot.
func startWatcher(t *testing.T, prefix string) *state.Watcher {
	t.Helper()
	c2, _ := testredis.New(t)
	w := state.NewWatcher(state.New(c2, prefix), state.WatcherOptions{Resync: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go w.Run(ctx)
	// NewWatcher's empty build, the first refresh, then the one the subscription asks for.
	waitFor(t, 5*time.Second, func() bool { return w.Current().RedisOK && w.Stats().Build().FullBuilds >= 3 })
	return w
}

func mapPtr(m any) uintptr { return reflect.ValueOf(m).Pointer() }

// TestNodeEventTouchesOnlyThatNode: a heartbeat of one node rebuilds that
// node's entries and patches the indexes; every other node's HostEntry and
// ServiceEntry stays the very same pointer, no index is rebuilt whole, and
// a heartbeat that only moves metrics leaves DataVersion alone while one
// that adds an asset, or a node leaving, changes it.
func TestNodeEventTouchesOnlyThatNode(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	const nodes = 30
	for i := 0; i < nodes; i++ {
		if err := s.WriteHeartbeat(ctx, fleetNode(fmt.Sprintf("n%02d", i), 3), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	w := startWatcher(t, prefix)
	waitFor(t, 5*time.Second, func() bool { return len(w.Current().Hosts) == nodes })
	before := w.Current()
	b0 := w.Stats().Build()

	// A heartbeat of n07 that moves a field the policy data does not
	// read (one that moves metrics alone builds no view at all:
	// TestUpEventOfSameShapeMovesFiguresOnly).
	st := fleetNode("n07", 3)
	st.Services[1].Metrics.QueueDepth = 5
	st.Services[1].MaxConcurrency = 7
	if err := s.WriteHeartbeat(ctx, st, time.Minute); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool {
		e := w.Current().ByID["n07/s1"]
		return e != nil && e.Metrics().QueueDepth == 5 && e.MaxConcurrency == 7
	})
	after := w.Current()
	b1 := w.Stats().Build()
	if b1.IndexRebuilds != b0.IndexRebuilds || b1.FullBuilds != b0.FullBuilds {
		t.Fatalf("a node event rebuilt the fleet: before %+v after %+v", b0, b1)
	}
	if got := b1.ViewsBuilt - b0.ViewsBuilt; got != 1 {
		t.Fatalf("one node changed, %d node views built (before %+v, after %+v)", got, b0, b1)
	}
	if after.DataVersion != before.DataVersion {
		t.Fatalf("a heartbeat that moves no policy data changed DataVersion %d -> %d", before.DataVersion, after.DataVersion)
	}
	if len(after.Services) != len(before.Services) || len(after.ByID) != len(before.ByID) || len(after.Hosts) != nodes {
		t.Fatalf("sizes changed: services %d->%d, byID %d->%d, hosts %d", len(before.Services), len(after.Services), len(before.ByID), len(after.ByID), len(after.Hosts))
	}
	for id, h := range before.Hosts {
		if same := after.Hosts[id] == h; same != (id != "n07") {
			t.Fatalf("host %s: pointer-identical=%v", id, same)
		}
	}
	for i, e := range before.Services {
		if after.Services[i].ID != e.ID {
			t.Fatalf("Services order changed at %d: %s vs %s", i, after.Services[i].ID, e.ID)
		}
		if same := after.Services[i] == e && after.ByID[e.ID] == e; same != (e.HostID != "n07") {
			t.Fatalf("service %s: pointer-identical=%v", e.ID, same)
		}
	}
	shared := after.AssetServices["shared"]
	if len(shared) != 3*nodes {
		t.Fatalf("asset index holds %d services, want %d", len(shared), 3*nodes)
	}
	for i, e := range shared {
		if e != after.ByID[e.ID] || (i > 0 && shared[i-1].ID >= e.ID) {
			t.Fatalf("asset index entry %d (%s) stale or out of order", i, e.ID)
		}
	}
	// Assets of other nodes keep their very list.
	if l := after.AssetServices["own-n03-s0"]; len(l) != 1 || &l[0] != &before.AssetServices["own-n03-s0"][0] {
		t.Fatal("an untouched asset's list was rebuilt")
	}

	// A heartbeat that adds an asset changes DataVersion.
	st = fleetNode("n07", 3)
	st.Services[0].Assets = append(st.Services[0].Assets, fleet.Asset{Name: "newcomer", Loaded: true})
	if err := s.WriteHeartbeat(ctx, st, time.Minute); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return len(w.Current().AssetServices["newcomer"]) == 1 })
	if v := w.Current().DataVersion; v == after.DataVersion {
		t.Fatal("a new asset left DataVersion unchanged")
	}
	v2 := w.Current().DataVersion

	// A node leaving drops its entries from every index and changes it too.
	if err := s.RemoveNode(ctx, "n12"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return w.Current().Hosts["n12"] == nil })
	gone := w.Current()
	if gone.DataVersion == v2 {
		t.Fatal("a node leaving left DataVersion unchanged")
	}
	for _, e := range gone.Services {
		if e.HostID == "n12" {
			t.Fatalf("%s still listed", e.ID)
		}
	}
	if gone.ByID["n12/s0"] != nil || len(gone.AssetServices["own-n12-s0"]) != 0 || len(gone.AssetServices["shared"]) != 3*(nodes-1) {
		t.Fatal("the removed node is still indexed")
	}
	if b := w.Stats().Build(); b.IndexRebuilds != b0.IndexRebuilds {
		t.Fatalf("events rebuilt the indexes whole: %+v", b)
	}
}

// TestResyncReusesUnchangedNodes: a full resync over nodes that did not
// change decodes and rebuilds none of them and keeps the indexes.
func TestResyncReusesUnchangedNodes(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		if err := s.WriteHeartbeat(ctx, fleetNode(fmt.Sprintf("r%02d", i), 2), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	w := state.NewWatcher(s, state.WatcherOptions{Resync: time.Hour})
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	first := w.Current()
	b0 := w.Stats().Build()
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	second := w.Current()
	b1 := w.Stats().Build()
	if b1.ViewsBuilt != b0.ViewsBuilt || b1.ViewsReused-b0.ViewsReused != 20 || b1.IndexRebuilds != b0.IndexRebuilds {
		t.Fatalf("unchanged resync rebuilt: before %+v after %+v", b0, b1)
	}
	if mapPtr(first.ByID) != mapPtr(second.ByID) || mapPtr(first.AssetServices) != mapPtr(second.AssetServices) || second.DataVersion != first.DataVersion {
		t.Fatal("unchanged resync replaced the indexes or the data version")
	}
	// One node changed behind the watcher's back (no event seen): the
	// resync rebuilds that one only.
	st := fleetNode("r05", 2)
	st.Services[0].Metrics.InFlight = 3
	if err := s.WriteHeartbeat(ctx, st, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	third := w.Current()
	if b2 := w.Stats().Build(); b2.ViewsBuilt-b1.ViewsBuilt != 1 {
		t.Fatalf("one changed node, %d views built", b2.ViewsBuilt-b1.ViewsBuilt)
	}
	if third.ByID["r05/s0"].Metrics().InFlight != 3 || third.ByID["r06/s0"] != second.ByID["r06/s0"] {
		t.Fatal("resync did not take the changed node, or rebuilt an unchanged one")
	}
}

// TestIncrementalMatchesFullBuild: after a run of joins, updates and
// departures applied as events, the patched snapshot lists exactly what a
// fresh watcher's full build lists, in the same order.
func TestIncrementalMatchesFullBuild(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	w := startWatcher(t, prefix)
	hb := func(id string, n int) {
		t.Helper()
		if err := s.WriteHeartbeat(ctx, fleetNode(id, n), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	// "c-1" sorts before "c/…" ('-' < '/'): a host's run of ids must be
	// found by its "<host>/" prefix, not by the host name's order.
	for _, id := range []string{"m", "c-1", "c", "x", "a", "k"} {
		hb(id, 2)
	}
	hb("c", 4) // grows
	hb("x", 1) // shrinks
	if err := s.RemoveNode(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	hb("b", 3)
	hb("c-1", 2) // again, beside its neighbour "c"
	waitFor(t, 5*time.Second, func() bool {
		snap := w.Current()
		return len(snap.Hosts) == 6 && snap.Hosts["a"] == nil && len(snap.Services) == 2+2+4+1+2+3
	})
	fresh := state.NewWatcher(state.New(c, prefix), state.WatcherOptions{Resync: time.Hour})
	if err := fresh.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	got, want := w.Current(), fresh.Current()
	ids := func(l []*fleet.ServiceEntry) []string {
		var out []string
		for _, e := range l {
			out = append(out, e.ID)
		}
		return out
	}
	if !slices.Equal(ids(got.Services), ids(want.Services)) {
		t.Fatalf("Services\n got %v\nwant %v", ids(got.Services), ids(want.Services))
	}
	if len(got.AssetServices) != len(want.AssetServices) || len(got.ByID) != len(want.ByID) {
		t.Fatalf("index sizes: assets %d vs %d, byID %d vs %d", len(got.AssetServices), len(want.AssetServices), len(got.ByID), len(want.ByID))
	}
	for name, l := range want.AssetServices {
		if !slices.Equal(ids(got.AssetServices[name]), ids(l)) {
			t.Fatalf("asset %s: got %v want %v", name, ids(got.AssetServices[name]), ids(l))
		}
	}
	for id := range want.ByID {
		if got.ByID[id] == nil {
			t.Fatalf("ByID lacks %s", id)
		}
	}
}
