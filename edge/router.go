package edge

import (
	"context"
	"strings"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/routing"
)

// simpleRouter is the built-in Router used when no routing strategy is
// configured: for each target in decision order, every routable service of
// the right kind, in snapshot order. No load awareness; routing.New is the
// real thing.
type simpleRouter struct{}

func (simpleRouter) Plan(_ context.Context, snap *fleet.Snapshot, dec *policy.Decision, req *routing.RequestFacts) (routing.Plan, error) {
	var p routing.Plan
	p.Strategy = "first"
	seen := map[string]bool{}
	for i := range dec.Targets {
		t := &dec.Targets[i]
		switch t.Kind {
		case policy.TargetService:
			se := snap.ByID[t.Name]
			if se == nil || se.Kind != t.Operation || !se.Routable(req.Now) || seen[se.ID] {
				p.Tried = append(p.Tried, "service "+t.Name+": not routable")
				continue
			}
			seen[se.ID] = true
			asset := ""
			if len(se.Assets) > 0 {
				asset = se.Assets[0].Name
			}
			p.Candidates = append(p.Candidates, routing.Candidate{Service: se, Asset: asset, Target: t})
		default:
			n := 0
			for _, se := range snap.AssetServices[t.Name] {
				if se.Kind != t.Operation || !se.Routable(req.Now) || seen[se.ID+"\x00"+t.Name] {
					continue
				}
				seen[se.ID+"\x00"+t.Name] = true
				p.Candidates = append(p.Candidates, routing.Candidate{Service: se, Asset: t.Name, Target: t})
				n++
			}
			if n == 0 {
				p.Tried = append(p.Tried, "asset "+t.Name+": no routable "+string(t.Operation)+" service")
			}
		}
	}
	if len(p.Candidates) == 0 {
		return p, &routing.NoCandidatesError{Model: req.Model, Tried: append(append([]string(nil), dec.Tried...), p.Tried...)}
	}
	return p, nil
}

// unknownModel is the 404 for a model or role nothing resolves to; the
// message lists what is available for the operation.
func unknownModel(snap *fleet.Snapshot, model string, op fleet.Kind, tried []string) *APIError {
	model = clipName(model)
	var names []string
	now := snap.BuiltAt
	for name, ses := range snap.AssetServices {
		for _, se := range ses {
			if se.Kind == op && (now.IsZero() || se.Live(now)) {
				names = append(names, name)
				break
			}
		}
	}
	liveAssets := len(names)
	for _, r := range snap.Catalog.Roles {
		rop := r.Operation
		if rop == "" {
			rop = fleet.KindChat
		}
		if rop == op {
			names = append(names, r.Name)
		}
	}
	var b strings.Builder
	if liveAssets == 0 {
		// Nothing of this kind is live at all: the fleet is away (Redis
		// lost, agents re-registering, hosts restarting), which is worth a
		// retry, unlike a name that does not exist among live models.
		b.WriteString("No model serving ")
		b.WriteString(string(op))
		b.WriteString(" is available right now (requested '")
		b.WriteString(model)
		b.WriteString("'); retry shortly, or see GET /v1/models.")
		return &APIError{Status: 503, Type: "server_error", Code: "no_models_available", Param: "model", Message: b.String(), RetryAfter: 2}
	}
	sortStrings(names)
	b.WriteString("The model '")
	b.WriteString(model)
	b.WriteString("' does not exist or does not serve ")
	b.WriteString(string(op))
	b.WriteString(". Available: ")
	for i, n := range names {
		if i == 20 {
			b.WriteString(", … (see GET /v1/models)")
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(n)
	}
	b.WriteString(". See GET /v1/models.")
	return &APIError{Status: 404, Type: "invalid_request_error", Code: "model_not_found", Param: "model", Message: b.String()}
}
