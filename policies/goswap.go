package policies

import (
	"context"
	"slices"
	"strings"

	"github.com/geniehive/geniehive/policy"
)

// EvalSwap implements policy.SwapEvaluator: the shipped swap rule
// (rego/swap.rego) in plain Go, the reference the Rego is checked
// against (TestSwapEnginesAgree).
func (e *goEngine) EvalSwap(_ context.Context, in *policy.SwapInput, out *policy.SwapDecision) error {
	*out = policy.SwapDecision{}
	out.Actions = GoSwap(in)
	return nil
}

// GoSwap is the shipped swap rule in Go.
func GoSwap(in *policy.SwapInput) []policy.SwapAction {
	pinned := func(m string) bool { return slices.Contains(in.Pinned, m) }
	loadedSomewhere := func(m string) bool {
		for i := range in.Services {
			for _, x := range in.Services[i].Models {
				if x.Name == m && x.Loaded {
					return true
				}
			}
		}
		return false
	}
	evictable := func(x *policy.SwapModel) bool {
		return x.Loaded && x.InFlight == 0 && !pinned(x.Name) &&
			x.ResidentMS >= in.Settings.MinResidencyMS && x.IdleMS >= in.Settings.IdleMS
	}
	offer := func(s *policy.SwapService, m string) *policy.SwapModel {
		for i := range s.Models {
			if s.Models[i].Name == m && !s.Models[i].Loaded {
				return &s.Models[i]
			}
		}
		return nil
	}
	room := func(s *policy.SwapService) (n int64) {
		for i := range s.Models {
			if evictable(&s.Models[i]) {
				n += s.Models[i].Size
			}
		}
		return n
	}
	type want struct {
		waiting int
		model   string
	}
	var wanted []want
	for _, d := range in.Demand {
		if d.Waiting > 0 && !loadedSomewhere(d.Model) {
			wanted = append(wanted, want{d.Waiting, d.Model})
		}
	}
	slices.SortFunc(wanted, func(a, b want) int {
		if a.waiting != b.waiting {
			return b.waiting - a.waiting
		}
		return strings.Compare(a.model, b.model)
	})
	pendingSomewhere := func(m string) bool {
		for i := range in.Services {
			if in.Services[i].Pending == m {
				return true
			}
		}
		return false
	}
	var acts []policy.SwapAction
	for _, w := range wanted {
		underway := pendingSomewhere(w.model)
		var best *policy.SwapService
		bestCost := 2
		for i := range in.Services {
			s := &in.Services[i]
			x := offer(s, w.model)
			if s.VRAMTotal <= 0 || x == nil || s.Busy || underway && s.Pending != w.model {
				continue
			}
			if !(s.Pending == w.model || s.Pending == "" && s.CooldownUntilMS <= in.NowMS) {
				continue
			}
			free := s.VRAMTotal - s.VRAMUsed
			cost := -1
			switch {
			case s.Pending == w.model:
			case x.Size <= free:
				cost = 0
			case x.Size <= free+room(s):
				cost = 1
			default:
				continue
			}
			if cost < bestCost || cost == bestCost && s.ID < best.ID {
				best, bestCost = s, cost
			}
		}
		if best == nil {
			continue
		}
		x := offer(best, w.model)
		if x.Size <= best.VRAMTotal-best.VRAMUsed {
			acts = append(acts, policy.SwapAction{Op: "load", Service: best.ID, Model: w.model,
				Reason: "requests wait for " + w.model + "; it fits in the free VRAM of " + best.ID})
			continue
		}
		var victim *policy.SwapModel
		for i := range best.Models {
			v := &best.Models[i]
			if evictable(v) && (victim == nil || v.IdleMS > victim.IdleMS || v.IdleMS == victim.IdleMS && v.Name < victim.Name) {
				victim = v
			}
		}
		if victim != nil {
			acts = append(acts, policy.SwapAction{Op: "unload", Service: best.ID, Model: victim.Name, For: w.model,
				Reason: "make room on " + best.ID + " for " + w.model + ": " + victim.Name + " is the idlest model without requests"})
		}
	}
	return acts
}
