package routing

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/state"
)

// Router implements Planner and Feedback over a shared Store.
// Create it with New; it is safe for concurrent use.
type Router struct {
	cfg      Config
	store    *state.Store    // nil: round_robin and least_loaded unavailable, health local only
	inflight *state.Inflight // nil: least_loaded falls back to scored

	local atomic.Pointer[map[string]*svcLocal] // copy-on-write
	mu    sync.Mutex                           // serialises writers of local

	health  chan healthOp
	dropped atomic.Int64
	pending atomic.Int64 // queued or being applied

	pool sync.Pool   // *work
	rrc  *rrCombiner // nil only without a store

	// ranks: the asset rankings of the last snapshot a capped scored pick
	// of a wide asset ran on (rank.go); rankMu serialises their building.
	ranks  atomic.Pointer[rankCache]
	rankMu sync.Mutex
}

// svcLocal is what this process knows about a service beyond the snapshot.
type svcLocal struct {
	inflight  atomic.Int64 // requests this edge has open to it (Begin/End)
	failed    atomic.Bool  // a failure was reported and no success since
	coolUntil atomic.Int64 // unix ns; local copy of a cooldown this edge set
	// assetFailed: a (service, asset) failure was reported since the last
	// success of that pair. assetCool holds the pair cooldowns this edge
	// set (asset -> unix ns), copy-on-write; nil when none.
	assetFailed atomic.Bool
	assetCool   atomic.Pointer[map[string]int64]
	assetMu     sync.Mutex
}

// assetCooling reports whether this edge cooled the pair down until past now.
func (l *svcLocal) assetCooling(asset string, nowNS int64) bool {
	m := l.assetCool.Load()
	return m != nil && (*m)[asset] > nowNS
}

func (l *svcLocal) setAssetCool(asset string, until int64) {
	l.assetMu.Lock()
	defer l.assetMu.Unlock()
	m := map[string]int64{asset: until}
	if old := l.assetCool.Load(); old != nil {
		for k, v := range *old {
			if k != asset {
				m[k] = v
			}
		}
	}
	l.assetCool.Store(&m)
}

func (l *svcLocal) clearAssetCool(asset string) {
	l.assetMu.Lock()
	defer l.assetMu.Unlock()
	old := l.assetCool.Load()
	if old == nil {
		return
	}
	if _, ok := (*old)[asset]; !ok {
		return
	}
	m := make(map[string]int64, len(*old))
	for k, v := range *old {
		if k != asset {
			m[k] = v
		}
	}
	l.assetCool.Store(&m)
}

// New returns a Router. store may be nil in unit tests (round_robin and
// least_loaded then fail with an error); inflight may be nil (least_loaded
// then behaves as scored).
//
// # Errors
// Those of Config.Provision.
func New(cfg Config, store *state.Store, inflight *state.Inflight) (*Router, error) {
	c, err := cfg.Provision()
	if err != nil {
		return nil, err
	}
	r := &Router{cfg: c, store: store, inflight: inflight, health: make(chan healthOp, 4096)}
	m := map[string]*svcLocal{}
	r.local.Store(&m)
	r.pool.New = func() any { return new(work) }
	if store != nil {
		r.rrc = &rrCombiner{incr: store.NextRRN}
	}
	return r, nil
}

// Config returns the provisioned configuration.
func (r *Router) Config() Config { return r.cfg }

func (r *Router) loc(id string) *svcLocal {
	if l, ok := (*r.local.Load())[id]; ok {
		return l
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.local.Load()
	if l, ok := old[id]; ok {
		return l
	}
	m := make(map[string]*svcLocal, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	l := &svcLocal{}
	m[id] = l
	r.local.Store(&m)
	return l
}

func (r *Router) peekLoc(id string) *svcLocal { return (*r.local.Load())[id] }

// cand is one (service, asset) under consideration.
type cand struct {
	svc       *fleet.ServiceEntry
	asset     *fleet.Asset
	target    *policy.Target
	group     int
	pos       int // target position within its group
	sig       Signals
	score     float64
	inflight  int64 // local estimate
	saturated bool
	rpos      int // position in the asset ranking walked (rank.go)
}

// work is the per-call scratch, pooled.
type work struct {
	cands []cand
	ids   []string
	queue []int64
	order []int
	lat   []float64
	perm  []int
	text  requestText
	// leased is the lease least_loaded took for the pick, handed to the plan.
	leased state.Lease
	// counts are the cluster-wide in-flight figures least_loaded read,
	// parallel to cands (-1 = not read).
	counts []int64
	// limit is RequestFacts.MaxCandidates of the call (0: the whole plan).
	limit int
}

// Plan implements Planner.
//
// # Errors
// *NoCandidatesError, *SaturatedError (see Planner), or a
// Redis error from round_robin / least_loaded.
func (r *Router) Plan(ctx context.Context, snap *fleet.Snapshot, dec *policy.Decision, f *RequestFacts) (Plan, error) {
	w := r.pool.Get().(*work)
	defer r.pool.Put(w)
	now := f.Now
	if now.IsZero() {
		now = time.Now()
	}
	w.limit = f.MaxCandidates
	var nSat int
	var strategy string
	if w.limit > 0 && r.rankable(dec, snap) {
		// One wide scored asset: walk its ranking, stop once no later
		// service can enter the top limit (rank.go).
		rs := rankState{rk: r.rank(snap, dec.Targets[0].Name), k: w.limit}
		var rsp *rankState
		if rs.rk != nil {
			rsp = &rs
		}
		nSat = r.collect(w, snap, dec, f, now, rsp)
		if rsp == nil {
			r.topScored(w, w.limit)
		}
		strategy = StrategyScored
		if len(w.order) == 0 {
			strategy = r.cfg.DefaultStrategy
		}
	} else {
		nSat = r.collect(w, snap, dec, f, now, nil)
		var err error
		if strategy, err = r.order(ctx, w, dec, false); err != nil {
			return Plan{}, err
		}
	}
	if w.limit > 0 && len(w.order) > w.limit {
		w.order = w.order[:w.limit] // the full plan's first limit
	}
	if len(w.order) == 0 {
		if nSat > 0 || anySaturated(w) {
			return Plan{}, &SaturatedError{Model: f.Model, RetryAfter: r.cfg.RetryAfter, Tried: r.tried(snap, dec, f, now)}
		}
		return Plan{}, &NoCandidatesError{Model: f.Model, Tried: r.tried(snap, dec, f, now)}
	}
	p := Plan{Strategy: strategy, Candidates: make([]Candidate, len(w.order))}
	for i, k := range w.order {
		c := &w.cands[k]
		rc := &p.Candidates[i]
		rc.Service = c.svc
		rc.Target = c.target
		if c.asset != nil {
			rc.Asset = c.asset.Name
		}
	}
	if w.leased.Valid() {
		p.Candidates[0].Leased = true
		p.Candidates[0].Lease = w.leased
		w.leased = state.Lease{}
	}
	return p, nil
}

func anySaturated(w *work) bool {
	for i := range w.cands {
		if w.cands[i].saturated {
			return true
		}
	}
	return false
}
