package routing

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/geniehive/geniehive/edge/route"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/state"
)

var farFuture = time.Now().Add(time.Hour)

// svc builds a live, healthy service on host h offering assets.
func svc(h, name string, kind state.Kind, assets ...state.Asset) *state.ServiceEntry {
	return &state.ServiceEntry{
		Service: state.Service{ID: h + "/" + name, HostID: h, Name: name, Kind: kind, Healthy: true,
			Endpoint: "http://" + h + ".invalid", Assets: assets},
		Deadline: farFuture,
	}
}

func asset(name, family string, tags ...string) state.Asset {
	return state.Asset{Name: name, Family: family, Tags: tags}
}

// snapOf indexes services the way the Watcher does.
func snapOf(cat *state.Catalog, svcs ...*state.ServiceEntry) *state.Snapshot {
	s := &state.Snapshot{BuiltAt: time.Now(), RedisOK: true, Hosts: map[string]*state.HostEntry{},
		ByID: map[string]*state.ServiceEntry{}, AssetServices: map[string][]*state.ServiceEntry{},
		Catalog: cat, Bench: map[string][]state.BenchSummary{}}
	if s.Catalog == nil {
		s.Catalog = &state.Catalog{}
	}
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].ID < svcs[j].ID })
	for _, e := range svcs {
		s.Services = append(s.Services, e)
		s.ByID[e.ID] = e
		if s.Hosts[e.HostID] == nil {
			s.Hosts[e.HostID] = &state.HostEntry{Host: state.Host{ID: e.HostID}, Deadline: e.Deadline}
		}
		for _, a := range e.Assets {
			s.AssetServices[a.Name] = append(s.AssetServices[a.Name], e)
		}
	}
	return s
}

// resolve runs the reference policy engine.
func resolve(t testing.TB, snap *state.Snapshot, model string, op state.Kind) *policies.Decision {
	t.Helper()
	e := policies.NewGo()
	if err := e.SetData(context.Background(), policies.BuildData(snap)); err != nil {
		t.Fatal(err)
	}
	var d policies.Decision
	in := policies.Input{SchemaVersion: policies.SchemaVersion, Operation: op, Model: model, ModelKey: policies.NormalizeModel(model)}
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
func ids(p route.Plan) []string {
	var out []string
	for _, c := range p.Candidates {
		out = append(out, c.Service.ID+"|"+c.Asset)
	}
	return out
}

// directTargets is a one-group decision over assets, in order.
func directTargets(strategy string, op state.Kind, names ...string) *policies.Decision {
	d := &policies.Decision{}
	for _, n := range names {
		d.Targets = append(d.Targets, policies.Target{Kind: policies.TargetAsset, Name: n, Operation: op, Strategy: strategy})
	}
	return d
}
