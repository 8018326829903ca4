package clusterapi

import (
	"sort"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/routing"
)

type hostView struct {
	fleet.Host
	Deadline time.Time `json:"deadline"`
	Live     bool      `json:"live"`
	Services []string  `json:"services"`
}

func (a *API) hosts(ctx *fasthttp.RequestCtx) {
	snap := a.d.Snapshot()
	now := time.Now()
	out := make([]hostView, 0, len(snap.Hosts))
	for _, h := range snap.Hosts {
		dl := h.Expiry()
		v := hostView{Host: h.Current(), Deadline: dl, Live: now.Before(dl), Services: []string{}}
		for _, s := range snap.Services {
			if s.HostID == h.ID {
				v.Services = append(v.Services, s.ID)
			}
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	writeJSON(ctx, fasthttp.StatusOK, newList(out))
}

type serviceView struct {
	fleet.Service
	Deadline        time.Time          `json:"deadline"`
	Live            bool               `json:"live"`
	HealthyNow      bool               `json:"healthy_now"` // node verdict overridden by a failed probe
	Routable        bool               `json:"routable"`
	CooldownUntil   *time.Time         `json:"cooldown_until,omitempty"`
	Stats           fleet.ServiceStats `json:"stats"`
	Probe           *fleet.ProbeResult `json:"probe,omitempty"`
	ClusterInFlight *int64             `json:"cluster_in_flight,omitempty"`
}

func (a *API) services(ctx *fasthttp.RequestCtx) {
	snap := a.d.Snapshot()
	now := time.Now()
	ids := make([]string, len(snap.Services))
	for i, s := range snap.Services {
		ids[i] = s.ID
	}
	var counts []int64
	if len(ids) > 0 {
		c, cancel := opCtx(ctx)
		counts, _ = a.d.Store.InflightCounts(c, ids)
		cancel()
	}
	out := make([]serviceView, 0, len(snap.Services))
	for i, s := range snap.Services {
		v := serviceView{Service: s.Current(), Deadline: s.Expiry(), Live: s.Live(now), HealthyNow: s.IsHealthy(),
			Routable: s.Routable(now), Stats: s.Stats, Probe: s.Probe}
		if s.InCooldown(now) {
			t := s.CooldownUntil
			v.CooldownUntil = &t
		}
		if i < len(counts) {
			n := counts[i]
			v.ClusterInFlight = &n
		}
		out = append(out, v)
	}
	writeJSON(ctx, fasthttp.StatusOK, newList(out))
}

type roleView struct {
	fleet.Role
	// Resolves is what the role resolves to now (the policy's targets).
	Resolves []string `json:"resolves_to"`
	Tried    []string `json:"tried,omitempty"`
	Strategy string   `json:"effective_strategy"`
}

func (a *API) roles(ctx *fasthttp.RequestCtx) {
	snap := a.d.Snapshot()
	c, cancel := opCtx(ctx)
	defer cancel()
	out := make([]roleView, 0, len(snap.Catalog.Roles))
	for _, r := range snap.Catalog.Roles {
		v := roleView{Role: r, Resolves: []string{}, Strategy: r.Strategy}
		if v.Strategy == "" {
			v.Strategy = a.d.Router.Config().DefaultStrategy
		}
		op := r.Operation
		if op == "" {
			op = fleet.KindChat
		}
		var d policy.Decision
		in := policy.Input{SchemaVersion: policy.SchemaVersion, Operation: op, Model: r.Name, ModelKey: policies.NormalizeModel(r.Name)}
		in.Service = policies.FindService(snap, in.ModelKey)
		if err := a.d.Resolve(c, snap, &in, &d); err == nil {
			for _, t := range d.Targets {
				v.Resolves = append(v.Resolves, t.Kind+":"+t.Name)
			}
			v.Tried = d.Tried
		} else {
			v.Tried = []string{"policy error: " + err.Error()}
		}
		out = append(out, v)
	}
	writeJSON(ctx, fasthttp.StatusOK, struct {
		list[roleView]
		CatalogVersion string `json:"catalog_version,omitempty"`
	}{newList(out), snap.CatalogVersion})
}

type benchView struct {
	fleet.BenchSummary
	Recent []fleet.BenchSample `json:"recent,omitempty"`
}

// benchmarks lists every (asset, workload) summary; ?model= and
// ?workload= filter, ?samples=N adds the N newest samples of each.
func (a *API) benchmarks(ctx *fasthttp.RequestCtx) {
	snap := a.d.Snapshot()
	args := ctx.QueryArgs()
	model, workload := string(args.Peek("model")), string(args.Peek("workload"))
	n, _ := args.GetUint("samples")
	if n > 1000 {
		n = 1000
	}
	c, cancel := opCtx(ctx)
	defer cancel()
	out := []benchView{}
	for asset, sums := range snap.Bench {
		if model != "" && asset != model {
			continue
		}
		for _, s := range sums {
			if workload != "" && s.Workload != workload {
				continue
			}
			v := benchView{BenchSummary: s}
			if n > 0 {
				v.Recent, _ = a.d.Store.BenchSamples(c, asset, s.Workload, n)
			}
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Model != out[j].Model {
			return out[i].Model < out[j].Model
		}
		return out[i].Workload < out[j].Workload
	})
	writeJSON(ctx, fasthttp.StatusOK, newList(out))
}

type healthView struct {
	Status   string        `json:"status"` // ok | degraded
	Edge     EdgeHealth    `json:"edge"`
	Redis    redisHealth   `json:"redis"`
	Snapshot snapshotView  `json:"snapshot"`
	Policy   *PolicyStatus `json:"policy,omitempty"`
	Replicas []string      `json:"replicas"`
	// ProbeLeader is the replica running active probes ("" when none).
	ProbeLeader string `json:"probe_leader,omitempty"`
}

type redisHealth struct {
	OK        bool    `json:"ok"`
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
}

type snapshotView struct {
	Version          uint64    `json:"version"`
	BuiltAt          time.Time `json:"built_at"`
	AgeMS            int64     `json:"age_ms"`
	RedisOK          bool      `json:"redis_ok"`
	Hosts            int       `json:"hosts"`
	Services         int       `json:"services"`
	RoutableServices int       `json:"routable_services"`
	Roles            int       `json:"roles"`
	CatalogVersion   string    `json:"catalog_version,omitempty"`
}

func (a *API) health(ctx *fasthttp.RequestCtx) {
	snap := a.d.Snapshot()
	now := time.Now()
	h := healthView{Status: "ok", Replicas: []string{}}
	if a.d.Health != nil {
		h.Edge = a.d.Health()
	}
	if a.d.Policy != nil {
		p := a.d.Policy()
		h.Policy = &p
	}
	c, cancel := opCtx(ctx)
	defer cancel()
	start := time.Now()
	if err := a.d.Store.Client().Ping(c).Err(); err != nil {
		h.Redis.Error = err.Error()
		h.Status = "degraded"
	} else {
		h.Redis.OK = true
		h.Redis.LatencyMS = float64(time.Since(start).Microseconds()) / 1000
		if edges, err := a.d.Store.ListEdges(c); err == nil {
			for _, e := range edges {
				h.Replicas = append(h.Replicas, e.ID)
			}
		}
		h.ProbeLeader, _ = a.d.Store.LeaseHolder(c, routing.ProbeLease)
	}
	h.Snapshot = snapshotView{Version: snap.Version, BuiltAt: snap.BuiltAt, AgeMS: now.Sub(snap.BuiltAt).Milliseconds(),
		RedisOK: snap.RedisOK, Hosts: len(snap.Hosts), Services: len(snap.Services), Roles: len(snap.Catalog.Roles),
		CatalogVersion: snap.CatalogVersion}
	for _, s := range snap.Services {
		if s.Routable(now) {
			h.Snapshot.RoutableServices++
		}
	}
	if !snap.RedisOK || len(h.Edge.Degraded) > 0 {
		h.Status = "degraded"
	}
	writeJSON(ctx, fasthttp.StatusOK, h)
}

func (a *API) edges(ctx *fasthttp.RequestCtx) {
	c, cancel := opCtx(ctx)
	defer cancel()
	edges, err := a.d.Store.ListEdges(c)
	if err != nil {
		writeError(ctx, fasthttp.StatusServiceUnavailable, "server_error", "redis_unavailable", "", "shared state unreachable: "+err.Error())
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, newList(edges))
}

type policyReplica struct {
	Edge    string `json:"edge"`
	Engine  string `json:"engine"`
	Version string `json:"version"`
	Error   string `json:"error,omitempty"`
}

type policyView struct {
	Local    *PolicyStatus   `json:"local,omitempty"`
	Bundle   *bundleView     `json:"bundle,omitempty"`
	Replicas []policyReplica `json:"replicas"`
	// Consistent is true when every live replica runs the same engine and version.
	Consistent bool `json:"consistent"`
}

type bundleView struct {
	Version  string    `json:"version"`
	PushedAt time.Time `json:"pushed_at"`
	Files    []string  `json:"files"`
}

func (a *API) policy(ctx *fasthttp.RequestCtx) {
	c, cancel := opCtx(ctx)
	defer cancel()
	edges, err := a.d.Store.ListEdges(c)
	if err != nil {
		writeError(ctx, fasthttp.StatusServiceUnavailable, "server_error", "redis_unavailable", "", "shared state unreachable: "+err.Error())
		return
	}
	v := policyView{Replicas: []policyReplica{}, Consistent: true}
	if a.d.Policy != nil {
		p := a.d.Policy()
		v.Local = &p
	}
	if b := a.d.Snapshot().Policy; b != nil {
		bv := &bundleView{Version: b.Version, PushedAt: b.PushedAt, Files: []string{}}
		for f := range b.Files {
			bv.Files = append(bv.Files, f)
		}
		sort.Strings(bv.Files)
		v.Bundle = bv
	}
	for i, e := range edges {
		v.Replicas = append(v.Replicas, policyReplica{Edge: e.ID, Engine: e.PolicyEngine, Version: e.PolicyVersion, Error: e.PolicyError})
		if i > 0 && (e.PolicyEngine != edges[0].PolicyEngine || e.PolicyVersion != edges[0].PolicyVersion) {
			v.Consistent = false
		}
	}
	writeJSON(ctx, fasthttp.StatusOK, v)
}
