package routing

import (
	"context"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/state"
)

// targetOp is the operation a target routes to.
func targetOp(t *policy.Target, f *RequestFacts) fleet.Kind {
	if t.Operation != "" {
		return t.Operation
	}
	return f.Operation
}

// serviceAsset is the asset a service target sends: its first loaded asset,
// else its first, else nil (the edge then keeps the request's model).
func serviceAsset(svc *fleet.ServiceEntry) *fleet.Asset {
	for i := range svc.Assets {
		if svc.Assets[i].Loaded {
			return &svc.Assets[i]
		}
	}
	if len(svc.Assets) > 0 {
		return &svc.Assets[0]
	}
	return nil
}

// latencyOf is the best latency figure for a service (0 = unknown).
func latencyOf(svc *fleet.ServiceEntry) float64 {
	if svc.Stats.Requests > 0 && svc.Stats.LatencyMS > 0 {
		return svc.Stats.LatencyMS
	}
	if l := svc.Metrics().LatencyMS; l > 0 {
		return l
	}
	if svc.Probe != nil && svc.Probe.LatencyMS > 0 {
		return svc.Probe.LatencyMS
	}
	return 0
}

// collect fills w.cands with every routable (service, asset) of every
// target, scored, and returns how many are saturated (by the local estimate).
// With rs (one asset target, see rankable) it walks the asset's ranking
// instead, keeps the top rs.k unsaturated in w.order, and stops at the
// first service that cannot enter them.
func (r *Router) collect(w *work, snap *fleet.Snapshot, dec *policy.Decision, f *RequestFacts, now time.Time, rs *rankState) int {
	w.cands = w.cands[:0]
	w.order = w.order[:0]
	w.leased = state.Lease{}
	text := f.Text
	if len(text) > r.cfg.TextChars {
		text = text[:r.cfg.TextChars]
	}
	rt := &w.text
	rt.words = rt.words[:0]
	rt.add(f.Model)
	rt.add(text)
	rt.base = len(rt.words)
	in := scoreInput{text: rt}
	lastRole := "\x00"
	var role *fleet.Role
	nowNS := now.UnixNano()
	sat := 0
	for ti := range dec.Targets {
		t := &dec.Targets[ti]
		if t.Role != lastRole {
			lastRole = t.Role
			role = nil
			if t.Role != "" {
				role, _ = snap.Role(t.Role)
			}
			if role != nil {
				rt.setRole(role.Name, role.Description)
			} else {
				rt.setRole("", "")
			}
		}
		in.hasText = !rt.empty()
		pos, n := 0, 0
		for k := range dec.Targets {
			if dec.Targets[k].Group == t.Group {
				if k < ti {
					pos++
				}
				n++
			}
		}
		op := targetOp(t, f)
		var list []*fleet.ServiceEntry
		var one [1]*fleet.ServiceEntry
		if t.Kind == policy.TargetService {
			if svc, ok := snap.ByID[t.Name]; ok {
				one[0] = svc
				list = one[:]
			}
		} else {
			list = snap.AssetServices[t.Name]
		}
		if rs != nil {
			list = rs.rk.svcs
		}
		tstart := len(w.cands)
		for li := 0; li < len(list); li++ {
			svc := list[li]
			if rs != nil && rs.set && len(w.order) == rs.k {
				kth := &w.cands[w.order[rs.k-1]]
				if rs.rk.key[li]+rs.rest+rankEps < kth.score {
					break // nor can any later service: keys only fall
				}
				if rs.rk.run[kth.rpos] == rs.rk.run[li] && kth.inflight == int64(kth.svc.Metrics().InFlight) {
					// In the k-th's run, after it: at most its score,
					// a larger id. Skip the run.
					li = int(rs.rk.run[li]) - 1
					continue
				}
			}
			if op != "" && svc.Kind != op || !svc.Routable(now) {
				continue
			}
			l := r.peekLoc(svc.ID)
			var localIn int64
			if l != nil {
				if l.coolUntil.Load() > nowNS {
					continue
				}
				localIn = l.inflight.Load()
			}
			var asset *fleet.Asset
			if t.Kind == policy.TargetService {
				asset = serviceAsset(svc)
			} else {
				asset, _ = svc.Asset(t.Name)
			}
			if asset != nil && (svc.AssetInCooldown(asset.Name, now) || (l != nil && l.assetCooling(asset.Name, nowNS))) {
				continue
			}
			// A (service, asset) pair listed by an earlier target is not
			// a second candidate. One target's list holds no pair twice,
			// so only the earlier targets' candidates are looked at.
			dup := false
			for k := range w.cands[:tstart] {
				if w.cands[k].svc == svc && w.cands[k].asset == asset {
					dup = true
					break
				}
			}
			if dup {
				continue
			}
			est := localIn
			if rep := int64(svc.Metrics().InFlight); rep > est {
				est = rep
			}
			w.cands = append(w.cands, cand{svc: svc, asset: asset, target: t, group: t.Group, pos: pos, inflight: est})
			c := &w.cands[len(w.cands)-1]
			c.saturated = svc.MaxConcurrency > 0 && est >= int64(svc.MaxConcurrency)
			if c.saturated {
				sat++
			}
			in.svc, in.asset, in.role, in.pos, in.n, in.inflight = svc, asset, role, pos, n, est
			in.host, in.bench = nil, nil
			if svc.Metrics().VRAMTotalBytes <= 0 {
				in.host = snap.Hosts[svc.HostID]
			}
			if asset != nil {
				in.bench = snap.Bench[asset.Name]
			}
			r.score(&in, &c.sig)
			c.score = c.sig.Sum()
			if rs != nil {
				c.rpos = li
				if !rs.set {
					rs.rest = r.restBound(rs, c, in, in.bench)
					rs.set = true
				}
				if !c.saturated {
					keep(w, len(w.cands)-1, rs.k)
				}
			}
		}
	}
	return sat
}

// less orders candidates: earlier group, higher score, then service id and
// asset name so every replica agrees.
func less(a, b *cand) bool {
	if a.group != b.group {
		return a.group < b.group
	}
	if a.score != b.score {
		return a.score > b.score
	}
	if a.svc.ID != b.svc.ID {
		return a.svc.ID < b.svc.ID
	}
	return assetName(a.asset) < assetName(b.asset)
}

func assetName(a *fleet.Asset) string {
	if a == nil {
		return ""
	}
	return a.Name
}

// sortIdx sorts idx by less over cands without moving the large cand
// values or allocating: insertion sort for the usual handful, pdqsort
// (slices.SortFunc, O(n log n)) for an asset on hundreds of services.
func sortIdx(idx []int, cands []cand, lessFn func(a, b *cand) bool) {
	if len(idx) > 16 {
		slices.SortFunc(idx, func(a, b int) int {
			switch {
			case lessFn(&cands[a], &cands[b]):
				return -1
			case lessFn(&cands[b], &cands[a]):
				return 1
			}
			return 0
		})
		return
	}
	for i := 1; i < len(idx); i++ {
		for j := i; j > 0 && lessFn(&cands[idx[j]], &cands[idx[j-1]]); j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
		}
	}
}

func (r *Router) strategyOf(t *policy.Target) string {
	if t.Strategy != "" && ValidStrategy(t.Strategy) {
		return t.Strategy
	}
	return r.cfg.DefaultStrategy
}

// rrKey names the round-robin counter of a group: a hash of its set of
// targets (order-independent), so every replica and every request that
// resolves to the same set shares one rotation.
func rrKey(dec *policy.Decision, group int) string {
	var sum uint64
	for i := range dec.Targets {
		t := &dec.Targets[i]
		if t.Group != group {
			continue
		}
		h := uint64(14695981039346656037)
		for k := 0; k < len(t.Kind); k++ {
			h = (h ^ uint64(t.Kind[k])) * 1099511628211
		}
		h = (h ^ 0) * 1099511628211
		for k := 0; k < len(t.Name); k++ {
			h = (h ^ uint64(t.Name[k])) * 1099511628211
		}
		sum += h
	}
	var buf [18]byte
	b := append(buf[:0], 'g', ':')
	b = strconv.AppendUint(b, sum, 16)
	return string(b)
}

// order fills w.order with the plan: the strategy's pick, the rest of its
// group by score, then later groups by score. Saturated candidates are left
// out. dry makes round_robin peek and least_loaded read counts without
// taking a lease. It returns the strategy applied.
func (r *Router) order(ctx context.Context, w *work, dec *policy.Decision, dry bool) (string, error) {
	if w.limit > 0 && r.allScored(dec) {
		if r.topScored(w, w.limit); len(w.order) == 0 {
			return r.cfg.DefaultStrategy, nil
		}
		return StrategyScored, nil
	}
	idx := w.order[:0]
	for i := range w.cands {
		idx = append(idx, i)
	}
	sortIdx(idx, w.cands, less)
	w.order = idx
	// g: the first group with a usable candidate. least_loaded groups are
	// usable even when the local estimate says saturated: the cluster-wide
	// count decides.
	gi := -1
	for k, i := range idx {
		c := &w.cands[i]
		if !c.saturated || r.strategyOf(c.target) == StrategyLeastLoaded && r.inflight != nil {
			gi = k
			break
		}
	}
	if gi < 0 {
		w.order = w.order[:0]
		return r.cfg.DefaultStrategy, nil
	}
	g := w.cands[idx[gi]].group
	strategy := r.strategyOf(w.cands[idx[gi]].target)
	ge := gi
	for ge < len(idx) && w.cands[idx[ge]].group == g {
		ge++
	}
	grp := idx[gi:ge]
	if st := strategies[strategy]; st != nil && st.order != nil {
		if !st.usable(r) {
			strategy = StrategyScored
		} else if err := st.order(r, ctx, w, dec, g, grp, dry); err != nil {
			return strategy, err
		}
	}
	// Drop saturated candidates, keeping order.
	out := idx[:0]
	for _, i := range idx {
		if !w.cands[i].saturated {
			out = append(out, i)
		}
	}
	w.order = out
	return strategy, nil
}

// allScored reports whether every target is ordered by score alone: then
// the plan is the unsaturated candidates in less order, with no group
// reordered by a strategy.
func (r *Router) allScored(dec *policy.Decision) bool {
	for i := range dec.Targets {
		if r.strategyOf(&dec.Targets[i]) != StrategyScored {
			return false
		}
	}
	return true
}

// topScored fills w.order with the first k unsaturated candidates in less
// order: what order's full sort followed by dropping the saturated and
// keeping k gives (less is a total order: ties end on service id and asset
// name), in O(n·k) comparisons against the kept tail, usually one each.
// Only valid when every target is scored (allScored).
func (r *Router) topScored(w *work, k int) {
	w.order = w.order[:0]
	for i := range w.cands {
		if !w.cands[i].saturated {
			keep(w, i, k)
		}
	}
}

// moveFirst moves grp[k] to grp[0], shifting the others down.
func moveFirst(grp []int, k int) {
	v := grp[k]
	copy(grp[1:k+1], grp[:k])
	grp[0] = v
}

func cmpByID(a, b *cand) int {
	if c := strings.Compare(a.svc.ID, b.svc.ID); c != 0 {
		return c
	}
	return strings.Compare(assetName(a.asset), assetName(b.asset))
}

func byID(a, b *cand) bool {
	if a.svc.ID != b.svc.ID {
		return a.svc.ID < b.svc.ID
	}
	return assetName(a.asset) < assetName(b.asset)
}

func (r *Router) roundRobin(ctx context.Context, w *work, dec *policy.Decision, g int, grp []int, dry bool) error {
	ids := w.queue[:0] // reuse as an index list
	for k, i := range grp {
		if !w.cands[i].saturated {
			ids = append(ids, int64(k))
		}
	}
	w.queue = ids
	if len(ids) == 0 {
		return nil
	}
	if len(ids) == 1 {
		// Nothing to rotate: every counter value picks the same one, so
		// the shared counter is not consulted (no round trip). When a
		// second member appears the rotation resumes from wherever the
		// counter stands, which any value serves as well.
		moveFirst(grp, int(ids[0]))
		return nil
	}
	// Order the usable members by service id (what every replica agrees on).
	if len(ids) > 16 {
		slices.SortFunc(ids, func(a, b int64) int {
			return cmpByID(&w.cands[grp[a]], &w.cands[grp[b]])
		})
	} else {
		for a := 1; a < len(ids); a++ {
			for b := a; b > 0 && byID(&w.cands[grp[ids[b]]], &w.cands[grp[ids[b-1]]]); b-- {
				ids[b], ids[b-1] = ids[b-1], ids[b]
			}
		}
	}
	key := rrKey(dec, g)
	var n uint64
	var err error
	if dry {
		n, err = r.store.PeekRR(ctx, key)
		n++
	} else if r.rrc != nil {
		n, err = r.rrc.next(ctx, key)
	} else {
		n, err = r.store.NextRR(ctx, key)
	}
	if err != nil {
		return err
	}
	if n == 0 {
		n = 1
	}
	pick := int(ids[(n-1)%uint64(len(ids))])
	moveFirst(grp, pick)
	return nil
}

func (r *Router) leastLoaded(ctx context.Context, w *work, grp []int, dry bool) error {
	// Pass services in latency order (unknown last): the script's tie-break
	// is the first minimum.
	ord := w.lat[:0]
	for _, i := range grp {
		l := latencyOf(w.cands[i].svc)
		if l <= 0 {
			l = math.MaxFloat64
		}
		ord = append(ord, l)
	}
	w.lat = ord
	perm := w.perm[:0] // positions in grp, latency-sorted
	for k := range grp {
		perm = append(perm, k)
	}
	w.perm = perm
	for a := 1; a < len(perm); a++ {
		for b := a; b > 0 && (ord[perm[b]] < ord[perm[b-1]] || ord[perm[b]] == ord[perm[b-1]] && w.cands[grp[perm[b]]].svc.ID < w.cands[grp[perm[b-1]]].svc.ID); b-- {
			perm[b], perm[b-1] = perm[b-1], perm[b]
		}
	}
	ids := w.ids[:0]
	q := w.queue[:0]
	for _, k := range perm {
		c := &w.cands[grp[k]]
		ids = append(ids, c.svc.ID)
		q = append(q, int64(c.svc.Metrics().QueueDepth))
	}
	w.ids, w.queue = ids, q
	var pk int
	var counts []int64
	if dry {
		cs, err := r.store.InflightCounts(ctx, ids)
		if err != nil {
			return err
		}
		counts = cs
		pk = -1
		best := int64(math.MaxInt64)
		for k := range ids {
			if load := cs[k] + q[k]; load < best {
				pk, best = k, load
			}
		}
	} else {
		k, cs, lease, err := r.inflight.PickLeastLoaded(ctx, ids, q)
		if err != nil {
			return err
		}
		pk, counts = k, cs
		w.leased = lease
		if k >= 0 {
			counts[k]-- // figures without this request, like the others
		}
	}
	if w.counts == nil || cap(w.counts) < len(w.cands) {
		w.counts = make([]int64, len(w.cands))
	}
	w.counts = w.counts[:len(w.cands)]
	for i := range w.counts {
		w.counts[i] = -1
	}
	// Saturation by the cluster-wide count.
	for j, k := range perm {
		c := &w.cands[grp[k]]
		w.counts[grp[k]] = counts[j]
		c.inflight = counts[j]
		c.saturated = c.svc.MaxConcurrency > 0 && counts[j] >= int64(c.svc.MaxConcurrency)
	}
	if pk >= 0 && w.cands[grp[perm[pk]]].saturated {
		// The least loaded is full: hand its lease back and pick the least
		// loaded of the rest that has room (the edge will Begin it).
		if w.leased.Valid() {
			r.inflight.End(w.leased)
			w.leased = state.Lease{}
		}
		pk = -1
		best := int64(math.MaxInt64)
		for j, k := range perm {
			if c := &w.cands[grp[k]]; !c.saturated && counts[j]+q[j] < best {
				pk, best = j, counts[j]+q[j]
			}
		}
	}
	if pk >= 0 {
		target := perm[pk]
		moveFirst(grp, target)
	}
	return nil
}

// tried describes, for an error message, every target and why each of its
// services was not used. Built on the failure path only.
func (r *Router) tried(snap *fleet.Snapshot, dec *policy.Decision, f *RequestFacts, now time.Time) []string {
	out := append([]string(nil), dec.Tried...)
	for ti := range dec.Targets {
		t := &dec.Targets[ti]
		op := targetOp(t, f)
		var b strings.Builder
		b.WriteString(t.Kind)
		b.WriteString(" ")
		b.WriteString(t.Name)
		if t.Role != "" {
			b.WriteString(" (role ")
			b.WriteString(t.Role)
			b.WriteString(")")
		}
		b.WriteString(": ")
		var list []*fleet.ServiceEntry
		if t.Kind == policy.TargetService {
			if svc, ok := snap.ByID[t.Name]; ok {
				list = []*fleet.ServiceEntry{svc}
			}
		} else {
			list = snap.AssetServices[t.Name]
		}
		if len(list) == 0 {
			b.WriteString("no service offers it")
		}
		for k, svc := range list {
			if k > 0 {
				b.WriteString(", ")
			}
			b.WriteString(svc.ID)
			b.WriteString(" ")
			b.WriteString(r.whyNot(svc, op, now))
		}
		out = append(out, b.String())
	}
	if len(dec.Targets) == 0 && len(out) == 0 {
		out = append(out, "nothing matched the model, a role or an alias")
	}
	return out
}

// whyNot says why a service is not usable now ("ok" when it is).
func (r *Router) whyNot(svc *fleet.ServiceEntry, op fleet.Kind, now time.Time) string {
	switch {
	case op != "" && svc.Kind != op:
		return "serves " + string(svc.Kind) + ", not " + string(op)
	case !svc.Live(now):
		return "heartbeat expired"
	case !svc.IsHealthy():
		msg := "unhealthy"
		if svc.Probe != nil && !svc.Probe.Healthy && svc.Probe.Error != "" {
			msg += " (probe: " + svc.Probe.Error + ")"
		} else if svc.HealthError != "" {
			msg += " (" + svc.HealthError + ")"
		}
		return msg
	case svc.InCooldown(now):
		return "in cooldown until " + svc.CooldownUntil.UTC().Format(time.RFC3339)
	}
	if l := r.peekLoc(svc.ID); l != nil && l.coolUntil.Load() > now.UnixNano() {
		return "in cooldown (set by this edge)"
	}
	if svc.MaxConcurrency > 0 {
		est := int64(svc.Metrics().InFlight)
		if l := r.peekLoc(svc.ID); l != nil && l.inflight.Load() > est {
			est = l.inflight.Load()
		}
		if est >= int64(svc.MaxConcurrency) {
			return "at max concurrency " + strconv.Itoa(svc.MaxConcurrency)
		}
	}
	return "ok"
}
