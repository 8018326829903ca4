package routing

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policy"
)

// rankMin is the fewest services an asset needs before a capped scored pick
// walks its ranking instead of scoring every service: below it, scoring all
// is as cheap as the ranking's bookkeeping.
const rankMin = 64

// assetRank is an asset's services ordered by their static key, best
// first: the part of a candidate's score that depends only on the snapshot
// (loaded, latency, throughput, queue depth, the reported in-flight count,
// VRAM headroom). The rest of a score is either the same for every service
// of one asset target (candidate order, workload overlap, bench quality),
// bounded (text overlap, preferred family: [0, weight]), or lowers it (this
// edge's in-flight count only ever raises the estimate above the reported
// one). So a service whose key plus that bound is below the k-th best score
// found cannot be in the top k, nor can any after it.
type assetRank struct {
	svcs []*fleet.ServiceEntry
	key  []float64
	// run[i] is the end (exclusive) of the run holding i: services with
	// bitwise equal static signals and the same asset family and tags,
	// ordered by id. Without in-flight above the reported count they
	// score exactly alike, so the first of a run always wins its ties.
	run []int32
	// variants holds one (service, asset) per distinct family and tags,
	// for the bound of text overlap and preferred family; nil when there
	// are more than maxVariants (the weights then bound them).
	variants []rankVariant

	// What the next snapshot's ranking reuses: the entries in rank
	// order, the asset's service list (by id) they were built from with
	// each one's rank position, and the bench summaries keyed in.
	ents  []rankEnt
	list  []*fleet.ServiceEntry
	pos   []int32
	bench []fleet.BenchSummary
	// built is when the ranking was built (monotonic): a later snapshot
	// with the same list and bench reuses it until rankRefresh after.
	built time.Time
}

// rankRefresh bounds how often a wide asset is re-ranked while only its
// services' figures move. A metrics event moves a node's figures in place
// (fleet.NodeCell) and publishes a snapshot that shares every list with
// the previous one; a ranking of such a list is reused for rankRefresh,
// then rebuilt, re-scoring only the services whose figures moved (their
// node's Figures pointer changed). So a ranking's keys are at most
// rankRefresh older than the figures (which are up to a heartbeat old
// anyway): a pick scores every candidate it walks with its current
// figures, and a service whose figures rose since the ranking may be
// pruned until the next one. At 10,000 nodes (2,000 metrics events a
// second, every one a new snapshot) re-ranking on every snapshot was
// O(services) per event.
const rankRefresh = 250 * time.Millisecond

// rankEnt is one service of an assetRank with its static signals.
type rankEnt struct {
	svc      *fleet.ServiceEntry
	asset    *fleet.Asset
	host     *fleet.HostEntry // the VRAM fallback read (usesHost)
	usesHost bool
	st       [len(staticSignals)]float64
	key      float64
	li       int32          // index in the asset's service list
	fig      *fleet.Figures // the node's figures it was scored from (nil: no cell)
}

type rankVariant struct {
	svc   *fleet.ServiceEntry
	asset *fleet.Asset
}

const maxVariants = 8

// rankCache holds the rankings built for one snapshot, copy-on-write, and
// the latest earlier ranking of each other wide asset (what the first
// ranking of that asset in this snapshot starts from).
type rankCache struct {
	snap *fleet.Snapshot
	m    map[string]*assetRank
	prev map[string]*assetRank
}

// staticSignals are the signals an assetRank key sums.
var staticSignals = [...]Signal{SigLoaded, SigLatency, SigThroughput, SigQueueDepth, SigInFlight, SigVRAMHeadroom}

// staticKey is the sum of sig's static signals.
func staticKey(sig *Signals) float64 {
	k := 0.0
	for _, s := range staticSignals {
		k += sig[s]
	}
	return k
}

// rankable reports whether the capped scored pick of dec may walk a
// ranking: one asset target (so no pair is shared between targets and all
// candidates are of one group), scored, and an in-flight weight that only
// lowers scores.
func (r *Router) rankable(dec *policy.Decision, snap *fleet.Snapshot) bool {
	if len(dec.Targets) != 1 || r.cfg.Weights.InFlight < 0 {
		return false
	}
	t := &dec.Targets[0]
	return t.Kind == policy.TargetAsset && r.strategyOf(t) == StrategyScored && len(snap.AssetServices[t.Name]) >= rankMin
}

// rank returns the ranking of asset in snap, building it on first use in
// that snapshot (later picks in the same snapshot read it without locking).
// Only the newest snapshot's rankings are kept: a pick still holding an
// older snapshot gets nil (and scores every candidate) rather than evict
// them.
func (r *Router) rank(snap *fleet.Snapshot, asset string) *assetRank {
	if c := r.ranks.Load(); c != nil {
		if c.snap == snap {
			if rk := c.m[asset]; rk != nil {
				return rk
			}
		} else if snap.Version < c.snap.Version {
			return nil
		}
	}
	r.rankMu.Lock()
	defer r.rankMu.Unlock()
	c := r.ranks.Load()
	if c != nil && c.snap == snap {
		if rk := c.m[asset]; rk != nil {
			return rk
		}
	} else if c != nil && snap.Version < c.snap.Version {
		return nil
	}
	if c == nil || c.snap != snap {
		// A newer snapshot: this one's rankings start empty; every ranking
		// so far of an asset still wide is where its next one starts.
		nc := &rankCache{snap: snap, m: map[string]*assetRank{}, prev: map[string]*assetRank{}}
		if c != nil {
			for _, from := range []map[string]*assetRank{c.prev, c.m} {
				for k, v := range from {
					if len(snap.AssetServices[k]) >= rankMin {
						nc.prev[k] = v
					}
				}
			}
		}
		c = nc
	}
	var rk *assetRank
	if p := c.prev[asset]; p != nil && sameList(p.list, snap.AssetServices[asset]) && sameList(p.bench, snap.Bench[asset]) && time.Since(p.built) < rankRefresh {
		rk = p // only figures moved, and recently: see rankRefresh
	} else {
		rk = r.buildRank(snap, asset, p)
	}
	m := make(map[string]*assetRank, len(c.m)+1)
	for k, v := range c.m {
		m[k] = v
	}
	m[asset] = rk
	r.ranks.Store(&rankCache{snap: snap, m: m, prev: c.prev})
	return rk
}

// sameList reports whether a and b are the same slice (not merely equal):
// the watcher shares an unchanged list between snapshots.
func sameList[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func rankFamily(a *fleet.Asset) string {
	if a == nil {
		return "\x00"
	}
	return a.Family
}

func rankTags(a *fleet.Asset) []string {
	if a == nil {
		return nil
	}
	return a.Tags
}

func sameVariant(a, b *fleet.Asset) bool {
	return rankFamily(a) == rankFamily(b) && slices.Equal(rankTags(a), rankTags(b))
}

// cmpRankEnt is the ranking's total order: key (best first), the static
// signals, family and tags (so equal services are adjacent), then id.
func cmpRankEnt(a, b *rankEnt) int {
	if c := cmp.Compare(b.key, a.key); c != 0 {
		return c
	}
	for k := range a.st {
		if c := cmp.Compare(a.st[k], b.st[k]); c != 0 {
			return c
		}
	}
	if c := strings.Compare(rankFamily(a.asset), rankFamily(b.asset)); c != 0 {
		return c
	}
	if c := slices.Compare(rankTags(a.asset), rankTags(b.asset)); c != 0 {
		return c
	}
	return strings.Compare(a.svc.ID, b.svc.ID)
}

// rankEntOf scores svc's static signals for asset name.
func (r *Router) rankEntOf(snap *fleet.Snapshot, svc *fleet.ServiceEntry, name string, bench []fleet.BenchSummary, li int) rankEnt {
	var sig Signals
	// The figures first: if they move while svc is scored, the ranking
	// holds the older pointer and the next one re-scores svc.
	fig := svc.Figures()
	m := svc.Metrics()
	in := scoreInput{svc: svc, n: 1, inflight: int64(m.InFlight), bench: bench}
	in.asset, _ = svc.Asset(name)
	usesHost := m.VRAMTotalBytes <= 0
	if usesHost {
		in.host = snap.Hosts[svc.HostID]
	}
	r.score(&in, &sig)
	e := rankEnt{svc: svc, asset: in.asset, host: in.host, usesHost: usesHost, key: staticKey(&sig), li: int32(li), fig: fig}
	for k, s := range staticSignals {
		e.st[k] = sig[s]
	}
	return e
}

// buildRank ranks asset name's services in snap. With prev (the ranking
// of an earlier snapshot) the services whose entries are unchanged (the
// same pointer: the watcher rebuilds only changed nodes' entries, state/
// snapbuild.go) and figures (the same fleet.Figures of their node's cell)
// keep their place and only the changed ones are scored, sorted and
// merged in: O(n) plus O(changed log changed), the same
// ranking as a full build (TestRankIncrementalMatchesFull).
func (r *Router) buildRank(snap *fleet.Snapshot, name string, prev *assetRank) *assetRank {
	list := snap.AssetServices[name]
	bench := snap.Bench[name]
	n := len(list)
	var es []rankEnt
	if prev != nil && len(prev.bench) == len(bench) && (len(bench) == 0 || &prev.bench[0] == &bench[0]) {
		keepOld := make([]bool, len(prev.ents))
		var fresh []rankEnt
		newLi := make([]int32, len(prev.ents))
		i := 0
		for j, svc := range list {
			for i < len(prev.list) && prev.list[i].ID < svc.ID {
				i++
			}
			if i < len(prev.list) && prev.list[i] == svc {
				p := prev.pos[i]
				if e := &prev.ents[p]; e.fig == svc.Figures() && (!e.usesHost || snap.Hosts[svc.HostID] == e.host) {
					keepOld[p], newLi[p] = true, int32(j)
					continue
				}
			}
			fresh = append(fresh, r.rankEntOf(snap, svc, name, bench, j))
		}
		slices.SortFunc(fresh, func(a, b rankEnt) int { return cmpRankEnt(&a, &b) })
		es = make([]rankEnt, 0, n)
		f := 0
		for p := range prev.ents {
			if !keepOld[p] {
				continue
			}
			e := prev.ents[p]
			e.li = newLi[p]
			for f < len(fresh) && cmpRankEnt(&fresh[f], &e) < 0 {
				es = append(es, fresh[f])
				f++
			}
			es = append(es, e)
		}
		es = append(es, fresh[f:]...)
	} else {
		es = make([]rankEnt, n)
		for i, svc := range list {
			es[i] = r.rankEntOf(snap, svc, name, bench, i)
		}
		slices.SortFunc(es, func(a, b rankEnt) int { return cmpRankEnt(&a, &b) })
	}
	rk := &assetRank{svcs: make([]*fleet.ServiceEntry, n), key: make([]float64, n), run: make([]int32, n),
		ents: es, list: list, pos: make([]int32, n), bench: bench, built: time.Now()}
	for i := range es {
		rk.svcs[i], rk.key[i] = es[i].svc, es[i].key
		rk.pos[es[i].li] = int32(i)
	}
	for i := 0; i < n; {
		j := i + 1
		for j < n && es[j].st == es[i].st && sameVariant(es[j].asset, es[i].asset) {
			j++
		}
		for k := i; k < j; k++ {
			rk.run[k] = int32(j)
		}
		i = j
	}
	for i := range es {
		seen := false
		for _, v := range rk.variants {
			if sameVariant(v.asset, es[i].asset) {
				seen = true
				break
			}
		}
		if !seen {
			if len(rk.variants) == maxVariants {
				rk.variants = nil
				break
			}
			rk.variants = append(rk.variants, rankVariant{es[i].svc, es[i].asset})
		}
	}
	return rk
}

// rankState is what collect needs to walk a ranking and stop early.
type rankState struct {
	rk   *assetRank
	k    int
	rest float64 // bound of a candidate's non-static signals (set after the first)
	set  bool
}

// restBound is the most a candidate's non-static signals add, given c, the
// first candidate scored, and in, its score input (role, text, position).
func (r *Router) restBound(rs *rankState, c *cand, in scoreInput, bench []fleet.BenchSummary) float64 {
	wt := r.cfg.Weights
	// The same for every service of the target (one asset, one role, one
	// position), or zero when the asset is missing.
	rest := c.sig[SigCandidateOrder] + max(0, c.sig[SigWorkloadOverlap]) + max(0, c.sig[SigBenchQuality])
	if rs.rk.variants == nil {
		return rest + max(0, wt.TextOverlap) + max(0, wt.PreferredFamily)
	}
	tp := math.Inf(-1)
	var sig Signals
	for _, v := range rs.rk.variants {
		in.svc, in.asset, in.bench, in.host = v.svc, v.asset, bench, nil
		r.score(&in, &sig)
		tp = max(tp, sig[SigTextOverlap]+sig[SigPreferredFamily])
	}
	return rest + max(0, tp)
}

// rankEps absorbs the rounding between a key plus a bound and a score
// summed in another order: a pruned candidate is below the k-th score by
// more than this.
const rankEps = 1e-9

// keep inserts cand i into w.order (the top k unsaturated, in less order).
func keep(w *work, i, k int) {
	c := &w.cands[i]
	top := w.order
	if len(top) == k {
		if !less(c, &w.cands[top[k-1]]) {
			return
		}
		top = top[:k-1]
	}
	j := len(top)
	top = append(top, i)
	for ; j > 0 && less(c, &w.cands[top[j-1]]); j-- {
		top[j] = top[j-1]
	}
	top[j] = i
	w.order = top
}
