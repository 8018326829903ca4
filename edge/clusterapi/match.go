package clusterapi

import (
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/geniehive/geniehive/edge"
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/routing"
	"github.com/geniehive/geniehive/swap"
)

// MatchRequest is the body of POST /v1/cluster/routes/match. Give one of
// Model, Role or Task (that order of precedence).
type MatchRequest struct {
	// Model is resolved exactly as a request's "model" would be.
	Model string `json:"model,omitempty"`
	// Role is a role name or alias.
	Role string `json:"role,omitempty"`
	// Task is free text ("summarise a support ticket"): the best-matching
	// role is used, or, when no role matches, every asset of the operation.
	// It also feeds the text-overlap signal.
	Task string `json:"task,omitempty"`
	// Operation defaults to chat (or the role's own operation).
	Operation fleet.Kind `json:"operation,omitempty"`
	// Prompt optionally feeds the text-overlap signal like a request's
	// first message would. Not logged.
	Prompt string `json:"prompt,omitempty"`
}

type targetView struct {
	Kind      string     `json:"kind"`
	Name      string     `json:"name"`
	Operation fleet.Kind `json:"operation"`
	Role      string     `json:"role,omitempty"`
	Group     int        `json:"group"`
	Strategy  string     `json:"strategy,omitempty"`
	// Policy is what the request policy does to a request for this target.
	Policy *targetPolicy `json:"policy,omitempty"`
}

// targetPolicy says what the edge does to a request sent to a target and to
// its answer: thinking (off: in which switch, per service, as the edge
// writes it for that upstream), reasoning stripped, and the body patch.
type targetPolicy struct {
	// Thinking: "off" (turned off whatever the client asks, or by the
	// automatic default unless the client asks for it) or "as requested".
	Thinking string `json:"thinking"`
	// ThinkingSwitch is the switch written per service id when off.
	ThinkingSwitch map[string]string `json:"thinking_switch,omitempty"`
	// StripReasoning: "always", "if the upstream reasons anyway" (thinking
	// turned off), or "no".
	StripReasoning string              `json:"strip_reasoning"`
	Defaults       map[string]any      `json:"defaults,omitempty"`
	Overrides      map[string]any      `json:"overrides,omitempty"`
	SystemPrompt   *fleet.SystemPrompt `json:"system_prompt,omitempty"`
}

// thinkingSwitch is the off switch the edge writes for an upstream
// protocol (edge/proxy.go rewrite; docs/API.md "Thinking").
func thinkingSwitch(protocol string) string {
	if protocol == fleet.ProtocolOllama {
		return `reasoning_effort: "none"`
	}
	return "chat_template_kwargs.enable_thinking: false"
}

func viewPolicy(snap *fleet.Snapshot, t *policy.Target) *targetPolicy {
	p := t.Patch
	v := &targetPolicy{Thinking: "as requested", StripReasoning: "no"}
	if p == nil {
		return v
	}
	v.Defaults, v.Overrides, v.SystemPrompt = p.Defaults, p.Overrides, p.SystemPrompt
	if p.DisableThinking {
		v.Thinking = "off"
		v.ThinkingSwitch = map[string]string{}
		for _, se := range snap.AssetServices[t.Name] {
			if se.Kind == t.Operation {
				v.ThinkingSwitch[se.ID] = thinkingSwitch(se.Protocol)
			}
		}
		v.StripReasoning = "if the upstream reasons anyway"
		if keeps(snap, t) {
			v.StripReasoning = "no"
		}
	}
	if p.StripReasoning {
		v.StripReasoning = "always"
	}
	return v
}

// keeps: the role's or asset's policy says strip_reasoning: false.
func keeps(snap *fleet.Snapshot, t *policy.Target) bool {
	if snap.Catalog == nil {
		return false
	}
	if r, ok := snap.Catalog.Role(t.Role); t.Role != "" && ok && r.RequestPolicy != nil && r.RequestPolicy.StripReasoning != nil {
		return !*r.RequestPolicy.StripReasoning
	}
	if ap := snap.Catalog.AssetPolicies[t.Name]; ap != nil && ap.StripReasoning != nil {
		return !*ap.StripReasoning
	}
	return false
}

// MatchResponse is the answer of routes/match and routes/resolve.
type MatchResponse struct {
	Query      MatchRequest         `json:"query"`
	ResolvedAs string               `json:"resolved_as"`
	Operation  fleet.Kind           `json:"operation"`
	Targets    []targetView         `json:"targets"`
	Tried      []string             `json:"tried,omitempty"`
	Deny       *policy.Denial       `json:"deny,omitempty"`
	Routing    *routing.Explanation `json:"routing,omitempty"`
	// Swap says whether the pick's model is loaded, being loaded, or
	// would be waited for (model swapping, issue 14; absent when
	// swap.enabled is off).
	Swap *swap.View `json:"swap,omitempty"`
}

func (a *API) match(ctx *fasthttp.RequestCtx) {
	var q MatchRequest
	dec := json.NewDecoder(strings.NewReader(string(ctx.PostBody())))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "invalid_request_error", "invalid_json", "", "routes/match body: "+err.Error())
		return
	}
	if q.Model == "" && q.Role == "" && q.Task == "" {
		writeError(ctx, fasthttp.StatusBadRequest, "invalid_request_error", "missing_field", "model",
			"routes/match needs one of model, role or task")
		return
	}
	if q.Operation != "" && !q.Operation.Valid() {
		writeError(ctx, fasthttp.StatusBadRequest, "invalid_request_error", "invalid_value", "operation",
			"unknown operation "+string(q.Operation)+" (want chat, embeddings, transcription, speech or images)")
		return
	}
	resp, err := a.explain(ctx, q, true)
	if err != nil {
		edge.WriteError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, resp)
}

// resolve answers GET /v1/cluster/routes/resolve?model=...[&operation=...]:
// the policy's targets and the candidate order, without signal detail.
func (a *API) resolve(ctx *fasthttp.RequestCtx) {
	args := ctx.QueryArgs()
	q := MatchRequest{Model: string(args.Peek("model")), Operation: fleet.Kind(args.Peek("operation"))}
	if q.Model == "" {
		writeError(ctx, fasthttp.StatusBadRequest, "invalid_request_error", "missing_field", "model", "routes/resolve needs ?model=")
		return
	}
	if q.Operation != "" && !q.Operation.Valid() {
		writeError(ctx, fasthttp.StatusBadRequest, "invalid_request_error", "invalid_value", "operation", "unknown operation "+string(q.Operation))
		return
	}
	resp, err := a.explain(ctx, q, false)
	if err != nil {
		edge.WriteError(ctx, err)
		return
	}
	// Quick form: candidates without their signals.
	if resp.Routing != nil {
		for i := range resp.Routing.Candidates {
			resp.Routing.Candidates[i].Signals = nil
		}
	}
	writeJSON(ctx, fasthttp.StatusOK, resp)
}

func (a *API) explain(ctx *fasthttp.RequestCtx, q MatchRequest, allowTask bool) (*MatchResponse, error) {
	snap := a.d.Snapshot()
	c, cancel := opCtx(ctx)
	defer cancel()
	resp := &MatchResponse{Query: q, Targets: []targetView{}}
	op := q.Operation
	name := q.Model
	switch {
	case q.Model != "":
		resp.ResolvedAs = "model " + q.Model
	case q.Role != "":
		name = q.Role
		resp.ResolvedAs = "role " + q.Role
		if r, ok := snap.Role(q.Role); ok && op == "" {
			op = r.Operation
		}
	default:
		if r := bestRole(snap.Catalog, q.Task); r != nil {
			name = r.Name
			resp.ResolvedAs = "role " + r.Name + " (best match for the task)"
			if op == "" {
				op = r.Operation
			}
		}
	}
	if op == "" {
		op = fleet.KindChat
	}
	resp.Operation = op
	var d policy.Decision
	if name == "" {
		// No role matched the task: every asset of the operation competes.
		resp.ResolvedAs = "every " + string(op) + " asset (no role matches the task)"
		d.Targets = allAssets(snap, op)
		if len(d.Targets) == 0 {
			d.Tried = []string{"no live asset serves " + string(op)}
		}
	} else {
		in := policy.Input{SchemaVersion: policy.SchemaVersion, Operation: op, Model: name, ModelKey: policies.NormalizeModel(name)}
		in.Service = policies.FindService(snap, in.ModelKey)
		if err := a.d.Resolve(c, snap, &in, &d); err != nil {
			return nil, err
		}
	}
	for i := range d.Targets {
		t := &d.Targets[i]
		resp.Targets = append(resp.Targets, targetView{Kind: t.Kind, Name: t.Name, Operation: t.Operation, Role: t.Role, Group: t.Group, Strategy: t.Strategy,
			Policy: viewPolicy(snap, t)})
	}
	resp.Tried, resp.Deny = d.Tried, d.Deny
	if d.Deny != nil {
		return resp, nil
	}
	text := q.Task
	if q.Prompt != "" {
		text = strings.TrimSpace(text + " " + q.Prompt)
	}
	resp.Routing = a.d.Router.Explain(c, snap, &d, &routing.RequestFacts{Operation: op, Model: name, Text: text})
	if a.d.Swap != nil && a.d.Swap.Enabled {
		ctl, _ := a.d.Store.SwapControls(c) // best effort: without it no "loading"
		resp.Swap = swap.Explain(snap, &d, ctl, true, a.d.Swap.Wait, time.Now())
	}
	return resp, nil
}

// allAssets is a one-group decision over every live asset offered by a
// service of kind op, sorted by name.
func allAssets(snap *fleet.Snapshot, op fleet.Kind) []policy.Target {
	var names []string
	for name, svcs := range snap.AssetServices {
		for _, s := range svcs {
			if s.Kind == op {
				names = append(names, name)
				break
			}
		}
	}
	sort.Strings(names)
	out := make([]policy.Target, len(names))
	for i, n := range names {
		out[i] = policy.Target{Kind: policy.TargetAsset, Name: n, Operation: op}
	}
	return out
}

// bestRole is the role whose name, aliases, description, workloads and
// candidates share the most words with task (nil when none shares any).
func bestRole(cat *fleet.Catalog, task string) *fleet.Role {
	words := wordSet(task)
	if len(words) == 0 {
		return nil
	}
	var best *fleet.Role
	bestN := 0
	for i := range cat.Roles {
		r := &cat.Roles[i]
		text := r.Name + " " + strings.Join(r.Aliases, " ") + " " + r.Description + " " + strings.Join(r.Workloads, " ")
		n := 0
		for w := range wordSet(text) {
			if words[w] {
				n++
			}
		}
		if n > bestN {
			best, bestN = r, n
		}
	}
	return best
}

func wordSet(s string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r >= 0x80)
	}) {
		if len(w) > 2 && !stop[w] {
			m[w] = true
			// "summarizer" ~ "summarize": match on a shared stem too.
			if len(w) > 5 {
				m[w[:5]] = true
			}
		}
	}
	return m
}

var stop = map[string]bool{"the": true, "and": true, "for": true, "with": true, "that": true, "this": true,
	"from": true, "into": true, "your": true, "you": true, "are": true, "not": true, "can": true, "please": true}
