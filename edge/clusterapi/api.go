// Package clusterapi serves GenieHive's cluster and operator API under
// /v1/cluster/: the registry (hosts, services, roles, benchmarks), the
// edge's own health, the live edge replicas and their policy versions,
// routing explanations (routes/match, routes/resolve), benchmark ingest and
// a server-sent event stream of snapshot changes (events, events.go; its
// hub runs in RunEvents).
//
// Reads need reader scope and changes operator scope; Deps.Authorize checks
// and answers 401/403 itself. routes/match is a POST but changes nothing (a
// dry run that consumes no round-robin step and takes no in-flight lease),
// so it needs reader scope only.
//
// This is the operator path, not the request path: it uses encoding/json
// and may make a few Redis calls per request. An API is safe for concurrent
// use; its only state is the event stream hub.
package clusterapi

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/geniehive/geniehive/edge"
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/routing"
	"github.com/geniehive/geniehive/state"
	"github.com/geniehive/geniehive/swap"
)

// Prefix is the path prefix the API serves.
const Prefix = "/v1/cluster/"

// EdgeHealth is what the edge reports about itself in GET /v1/cluster/health.
type EdgeHealth struct {
	ID        string    `json:"id"`
	Version   string    `json:"version,omitempty"`
	Addr      string    `json:"addr,omitempty"`
	StartedAt time.Time `json:"started_at"`
	// InFlight is the number of requests this edge is serving.
	InFlight int64 `json:"in_flight"`
	// Degraded lists why the edge is degraded (edge.Server.Problems); the
	// health status is then "degraded".
	Degraded []edge.Problem `json:"degraded,omitempty"`
	// Extra holds anything else the edge wants to show.
	Extra map[string]any `json:"extra,omitempty"`
}

// PolicyStatus is the policy this edge runs.
type PolicyStatus struct {
	Engine   string    `json:"engine"`
	Version  string    `json:"version"`
	Error    string    `json:"error,omitempty"`    // last failed reload, if any
	LoadedAt time.Time `json:"loaded_at,omitzero"` // absent while nothing was loaded (never "0001-01-01...")
}

// Deps is what the API needs from the edge.
type Deps struct {
	// Store is the shared state. Required.
	Store *state.Store
	// Snapshot returns the edge's current snapshot (never nil). Required.
	Snapshot func() *fleet.Snapshot
	// Router explains routing decisions. Required.
	Router *routing.Router
	// Authorize checks the caller's key for need and, when it answers
	// false, has already written the 401/403. Required.
	Authorize func(ctx *fasthttp.RequestCtx, need fleet.Scope) bool
	// Resolve evaluates the edge's active policy for the snapshot. When nil,
	// the reference Go policy (policies.NewGo) is built per call.
	Resolve func(ctx context.Context, snap *fleet.Snapshot, in *policy.Input, out *policy.Decision) error
	// Health returns the edge's own figures. Optional.
	Health func() EdgeHealth
	// Policy returns the active policy of this edge. Optional.
	Policy func() PolicyStatus
	// BenchKeep is the samples kept per (asset, workload); default the
	// router's Config().BenchKeep.
	BenchKeep int
	// Changes delivers each new snapshot (state.Watcher.Changes) to the
	// event stream hub. Optional: without it, the hub recomputes at entry
	// deadlines and once a second while a stream is open.
	Changes <-chan *fleet.Snapshot
	// Stopping is closed when the edge begins to stop
	// (edge.Server.Stopping): event streams end on it. Optional.
	Stopping <-chan struct{}
	// MaxEventStreams caps the open /v1/cluster/events streams of this
	// edge. Default DefaultMaxEventStreams.
	MaxEventStreams int
	// MaxBodyBytes caps a benchmark report. Default 8 MiB.
	MaxBodyBytes int
	Logger       *slog.Logger
	// Swap is the edge's swap settings (nil: swapping off).
	Swap *swap.Settings
}

// API serves /v1/cluster/*.
type API struct {
	d  Deps
	ev *hub
}

// New returns an API over deps (defaults filled in).
func New(d Deps) *API {
	if d.BenchKeep <= 0 && d.Router != nil {
		d.BenchKeep = d.Router.Config().BenchKeep
	}
	if d.MaxBodyBytes <= 0 {
		d.MaxBodyBytes = 8 << 20
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Resolve == nil {
		d.Resolve = resolveGo
	}
	if d.MaxEventStreams <= 0 {
		d.MaxEventStreams = DefaultMaxEventStreams
	}
	return &API{d: d, ev: newHub(d.MaxEventStreams)}
}

// resolveGo evaluates the reference policy against snap.
func resolveGo(ctx context.Context, snap *fleet.Snapshot, in *policy.Input, out *policy.Decision) error {
	e := policies.NewGo()
	defer e.Close()
	if err := e.SetData(ctx, policies.BuildData(snap)); err != nil {
		return err
	}
	return e.Eval(ctx, in, out)
}

type route struct {
	method string
	scope  fleet.Scope
	fn     func(*API, *fasthttp.RequestCtx)
}

var routes = map[string][]route{
	"hosts":          {{fasthttp.MethodGet, fleet.ScopeReader, (*API).hosts}},
	"services":       {{fasthttp.MethodGet, fleet.ScopeReader, (*API).services}},
	"roles":          {{fasthttp.MethodGet, fleet.ScopeReader, (*API).roles}},
	"benchmarks":     {{fasthttp.MethodGet, fleet.ScopeReader, (*API).benchmarks}, {fasthttp.MethodPost, fleet.ScopeOperator, (*API).ingest}},
	"health":         {{fasthttp.MethodGet, fleet.ScopeReader, (*API).health}},
	"events":         {{fasthttp.MethodGet, fleet.ScopeReader, (*API).events}},
	"edges":          {{fasthttp.MethodGet, fleet.ScopeReader, (*API).edges}},
	"policy":         {{fasthttp.MethodGet, fleet.ScopeReader, (*API).policy}},
	"routes/match":   {{fasthttp.MethodPost, fleet.ScopeReader, (*API).match}},
	"routes/resolve": {{fasthttp.MethodGet, fleet.ScopeReader, (*API).resolve}},
	"swaps":          {{fasthttp.MethodGet, fleet.ScopeReader, (*API).swaps}},
}

// Handle serves the request when its path is under /v1/cluster/ and
// reports whether it did (false: not ours, nothing written).
func (a *API) Handle(ctx *fasthttp.RequestCtx) bool {
	p := ctx.Path()
	if !bytes.HasPrefix(p, []byte(Prefix)) {
		return false
	}
	name := strings.TrimSuffix(string(p[len(Prefix):]), "/")
	rs, ok := routes[name]
	if !ok {
		// Every route needs a key: an unknown path is not revealed as
		// unknown to a caller without one.
		if !a.d.Authorize(ctx, fleet.ScopeReader) {
			return true
		}
		writeError(ctx, fasthttp.StatusNotFound, "invalid_request_error", "not_found", "", "no cluster endpoint "+string(p))
		return true
	}
	method := string(ctx.Method())
	if method == fasthttp.MethodHead {
		method = fasthttp.MethodGet
	}
	for _, r := range rs {
		if r.method == method {
			if !a.d.Authorize(ctx, r.scope) {
				return true
			}
			r.fn(a, ctx)
			return true
		}
	}
	allow := make([]string, 0, len(rs))
	for _, r := range rs {
		allow = append(allow, r.method)
	}
	ctx.Response.Header.Set("Allow", strings.Join(allow, ", "))
	writeError(ctx, fasthttp.StatusMethodNotAllowed, "invalid_request_error", "method_not_allowed", "",
		method+" is not allowed on "+string(p)+" (allowed: "+strings.Join(allow, ", ")+")")
	return true
}

// writeError answers with an OpenAI error through the edge's one error
// writer (edge.WriteError).
func writeError(ctx *fasthttp.RequestCtx, status int, typ, code, param, msg string) {
	edge.WriteError(ctx, &edge.APIError{Status: status, Type: typ, Code: code, Param: param, Message: msg})
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status = fasthttp.StatusInternalServerError
		b = []byte(`{"error":{"message":"encoding the answer failed","type":"server_error","code":"internal_error","param":null}}`)
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '\n'))
}

// list is the OpenAI-style list envelope.
type list[T any] struct {
	Object string `json:"object"`
	Data   []T    `json:"data"`
}

func newList[T any](data []T) list[T] {
	if data == nil {
		data = []T{}
	}
	return list[T]{Object: "list", Data: data}
}

func opCtx(ctx *fasthttp.RequestCtx) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 3*time.Second)
}
