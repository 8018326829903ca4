package routing

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
)

var farFuture = time.Now().Add(time.Hour)

// svc builds a live, healthy service on host h offering assets.
func svc(h, name string, kind fleet.Kind, assets ...fleet.Asset) *fleet.ServiceEntry {
	return &fleet.ServiceEntry{
		Service: &fleet.Service{ID: h + "/" + name, HostID: h, Name: name, Kind: kind, Healthy: true,
			Endpoint: "http://" + h + ".invalid", Assets: assets},
		Deadline: farFuture,
	}
}

func asset(name, family string, tags ...string) fleet.Asset {
	return fleet.Asset{Name: name, Family: family, Tags: tags}
}

// snapOf indexes services the way the Watcher does.
func snapOf(cat *fleet.Catalog, svcs ...*fleet.ServiceEntry) *fleet.Snapshot {
	s := &fleet.Snapshot{BuiltAt: time.Now(), RedisOK: true, Hosts: map[string]*fleet.HostEntry{},
		ByID: map[string]*fleet.ServiceEntry{}, AssetServices: map[string][]*fleet.ServiceEntry{},
		Catalog: cat, Bench: map[string][]fleet.BenchSummary{}}
	if s.Catalog == nil {
		s.Catalog = &fleet.Catalog{}
	}
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].ID < svcs[j].ID })
	for _, e := range svcs {
		s.Services = append(s.Services, e)
		s.ByID[e.ID] = e
		if s.Hosts[e.HostID] == nil {
			s.Hosts[e.HostID] = &fleet.HostEntry{Host: fleet.Host{ID: e.HostID}, Deadline: e.Deadline}
		}
		for _, a := range e.Assets {
			s.AssetServices[a.Name] = append(s.AssetServices[a.Name], e)
		}
	}
	return s
}

// resolve runs the reference policy engine.
func resolve(t testing.TB, snap *fleet.Snapshot, model string, op fleet.Kind) *policy.Decision {
	t.Helper()
	e := policies.NewGo()
	if err := e.SetData(context.Background(), policies.BuildData(snap)); err != nil {
		t.Fatal(err)
	}
	var d policy.Decision
	in := policy.Input{SchemaVersion: policy.SchemaVersion, Operation: op, Model: model, ModelKey: policies.NormalizeModel(model)}
	in.Service = policies.FindService(snap, in.ModelKey) // as the edge does (its index)
	if err := e.Eval(context.Background(), &in, &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

func newRouter(t testing.TB, cfg Config) *Router {
	t.Helper()
	r, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ids lists a plan's candidates as "service|asset".
func ids(p Plan) []string {
	var out []string
	for _, c := range p.Candidates {
		out = append(out, c.Service.ID+"|"+c.Asset)
	}
	return out
}

// directTargets is a one-group decision over assets, in order.
func directTargets(strategy string, op fleet.Kind, names ...string) *policy.Decision {
	d := &policy.Decision{}
	for _, n := range names {
		d.Targets = append(d.Targets, policy.Target{Kind: policy.TargetAsset, Name: n, Operation: op, Strategy: strategy})
	}
	return d
}
