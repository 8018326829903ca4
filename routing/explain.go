package routing

import (
	"context"
	"math"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policy"
)

// Explanation is a dry run of Route: every candidate with each signal's
// contribution, the strategy that would apply and what would be picked now.
// It consumes nothing shared (no round-robin step, no in-flight lease).
type Explanation struct {
	Strategy string `json:"strategy"`
	// Picked is the candidate a request would go to now ("" when none).
	Picked      string `json:"picked,omitempty"`
	PickedAsset string `json:"picked_asset,omitempty"`
	// Candidates in the order the edge would try them; saturated ones
	// (not tried) follow with Rank 0.
	Candidates []CandidateExplanation `json:"candidates"`
	// Skipped lists services of the targets that are not routable now.
	Skipped []SkippedService `json:"skipped,omitempty"`
	// Outcome is "ok", "no_candidates" or "saturated".
	Outcome string   `json:"outcome"`
	Tried   []string `json:"tried,omitempty"`
	// Note explains a degraded answer (e.g. Redis unreachable: the order
	// shown is by score only).
	Note string `json:"note,omitempty"`
}

// CandidateExplanation is one candidate's score, signal by signal.
type CandidateExplanation struct {
	Rank    int     `json:"rank"`
	Service string  `json:"service"`
	Host    string  `json:"host"`
	Asset   string  `json:"asset,omitempty"`
	Target  string  `json:"target"`
	Role    string  `json:"role,omitempty"`
	Group   int     `json:"group"`
	Score   float64 `json:"score"`
	// Signals maps each signal's name to its contribution to Score.
	Signals         map[string]float64 `json:"signals"`
	InFlight        int64              `json:"in_flight"`
	ClusterInFlight *int64             `json:"cluster_in_flight,omitempty"`
	QueueDepth      int                `json:"queue_depth"`
	MaxConcurrency  int                `json:"max_concurrency,omitempty"`
	Saturated       bool               `json:"saturated,omitempty"`
	Picked          bool               `json:"picked,omitempty"`
}

// SkippedService is a service a target names that is not routable now.
type SkippedService struct {
	Service string `json:"service"`
	Target  string `json:"target"`
	Reason  string `json:"reason"`
}

// Explain runs the strategy as a dry run.
func (r *Router) Explain(ctx context.Context, snap *fleet.Snapshot, dec *policy.Decision, f *RequestFacts) *Explanation {
	w := new(work)
	now := f.Now
	if now.IsZero() {
		now = time.Now()
	}
	r.collect(w, snap, dec, f, now, nil)
	ex := &Explanation{Candidates: []CandidateExplanation{}}
	strategy, err := r.order(context.WithoutCancel(ctx), w, dec, true)
	if err != nil {
		ex.Note = "shared state unreachable (" + err.Error() + "): order shown by score only"
		w.order = w.order[:0]
		for i := range w.cands {
			if !w.cands[i].saturated {
				w.order = append(w.order, i)
			}
		}
		sortIdx(w.order, w.cands, less)
	}
	ex.Strategy = strategy
	in := make([]bool, len(w.cands))
	add := func(i, rank int) {
		c := &w.cands[i]
		ce := CandidateExplanation{
			Rank: rank, Service: c.svc.ID, Host: c.svc.HostID, Asset: assetName(c.asset),
			Target: c.target.Kind + ":" + c.target.Name, Role: c.target.Role, Group: c.group,
			Score: round(c.score), Signals: make(map[string]float64, NumSignals),
			InFlight: c.inflight, QueueDepth: c.svc.Metrics().QueueDepth, MaxConcurrency: c.svc.MaxConcurrency,
			Saturated: c.saturated, Picked: rank == 1,
		}
		for s := Signal(0); s < NumSignals; s++ {
			ce.Signals[s.String()] = round(c.sig[s])
		}
		if i < len(w.counts) && w.counts[i] >= 0 {
			v := w.counts[i]
			ce.ClusterInFlight = &v
		}
		ex.Candidates = append(ex.Candidates, ce)
	}
	for k, i := range w.order {
		in[i] = true
		add(i, k+1)
	}
	rest := make([]int, 0, len(w.cands))
	for i := range w.cands {
		if !in[i] {
			rest = append(rest, i)
		}
	}
	sortIdx(rest, w.cands, less)
	for _, i := range rest {
		add(i, 0)
	}
	if len(w.order) > 0 {
		c := &w.cands[w.order[0]]
		ex.Picked, ex.PickedAsset = c.svc.ID, assetName(c.asset)
		ex.Outcome = "ok"
	} else if len(w.cands) > 0 {
		ex.Outcome = "saturated"
	} else {
		ex.Outcome = "no_candidates"
	}
	if ex.Outcome != "ok" {
		ex.Tried = r.tried(snap, dec, f, now)
	}
	for ti := range dec.Targets {
		t := &dec.Targets[ti]
		op := targetOp(t, f)
		var list []*fleet.ServiceEntry
		if t.Kind == policy.TargetService {
			if svc, ok := snap.ByID[t.Name]; ok {
				list = []*fleet.ServiceEntry{svc}
			}
		} else {
			list = snap.AssetServices[t.Name]
		}
		for _, svc := range list {
			if why := r.whyNot(svc, op, now); why != "ok" && !(svc.MaxConcurrency > 0 && why[:2] == "at") {
				ex.Skipped = append(ex.Skipped, SkippedService{Service: svc.ID, Target: t.Kind + ":" + t.Name, Reason: why})
			}
		}
	}
	return ex
}

func round(v float64) float64 { return math.Round(v*1000) / 1000 }
