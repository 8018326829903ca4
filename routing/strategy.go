package routing

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/geniehive/geniehive/policy"
)

// strategy is one way of ordering the first usable group of candidates.
// Every strategy starts from the scored order (the sort by score that also
// orders the later groups); a strategy with an order function then reorders
// the group (and may take an in-flight lease for its pick).
type strategy struct {
	// usable reports whether this router can run the strategy (a Redis
	// store, cluster-wide in-flight counts); when it cannot, scored stands
	// in.
	usable func(r *Router) bool
	// order reorders grp (indexes into w.cands, all of group g); dry makes
	// it read without writing (explanations). nil: the scored order stays.
	order func(r *Router, ctx context.Context, w *work, dec *policy.Decision, g int, grp []int, dry bool) error
}

// strategies are the registered strategies, by the name a config or a
// role's strategy: field uses. Written only by init-time registration.
var strategies = map[string]*strategy{}

// registerStrategy adds a strategy under name (at init; a duplicate panics).
func registerStrategy(name string, s *strategy) {
	if _, dup := strategies[name]; dup {
		panic("routing: strategy " + name + " registered twice")
	}
	strategies[name] = s
}

// StrategyNames lists the registered strategies, sorted.
func StrategyNames() []string {
	out := make([]string, 0, len(strategies))
	for n := range strategies {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func init() {
	registerStrategy(StrategyScored, &strategy{usable: func(*Router) bool { return true }})
	registerStrategy(StrategyRoundRobin, &strategy{
		usable: func(r *Router) bool { return r.store != nil },
		order: func(r *Router, ctx context.Context, w *work, dec *policy.Decision, g int, grp []int, dry bool) error {
			return sharedStateErr(r.roundRobin(ctx, w, dec, g, grp, dry))
		},
	})
	registerStrategy(StrategyLeastLoaded, &strategy{
		usable: func(r *Router) bool { return r.store != nil && r.inflight != nil },
		order: func(r *Router, ctx context.Context, w *work, _ *policy.Decision, _ int, grp []int, dry bool) error {
			return sharedStateErr(r.leastLoaded(ctx, w, grp, dry))
		},
	})
}

// sharedStateErr marks a Redis-backed strategy's failure as ErrSharedState
// (the cause stays reachable with errors.Is / errors.As).
func sharedStateErr(err error) error {
	if err == nil || errors.Is(err, ErrNoCandidates) || errors.Is(err, ErrSaturated) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrSharedState, err)
}
