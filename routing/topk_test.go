package routing

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policy"
)

// randomPickCase builds a random fleet, router-local state and decision
// that exercise every input of a scored plan: groups, service and asset
// targets (duplicate pairs across targets), roles, kinds, health, expiry,
// shared and local cooldowns (service and pair), reported and local
// in-flight counts against max concurrency, and metrics drawn from a few
// values so that equal scores (ties) are common.
func randomPickCase(rng *rand.Rand, r *Router, now time.Time) (*fleet.Snapshot, *policy.Decision, *RequestFacts) {
	pool := []string{"m0", "m1", "m2", "m3"}
	families := []string{"llama", "qwen", ""}
	cat := &fleet.Catalog{Roles: []fleet.Role{{Name: "coder", Description: "writes code in go", PreferredFamilies: []string{"qwen", "llama"},
		Workloads: []string{"chat.code"}}}}
	n := 1 + rng.Intn(60)
	if rng.Intn(3) == 0 {
		// Past insertion sort into pdqsort, and past rankMin services per
		// asset: the capped pick walks the asset's ranking.
		n = 200 + rng.Intn(300)
	}
	var svcs []*fleet.ServiceEntry
	for i := 0; i < n; i++ {
		var as []fleet.Asset
		perm := rng.Perm(len(pool))[:1+rng.Intn(3)]
		for _, p := range perm {
			a := asset(pool[p], families[rng.Intn(len(families))])
			if rng.Intn(3) == 0 {
				a.Tags = []string{"code"}
			}
			a.Loaded = rng.Intn(2) == 0
			as = append(as, a)
		}
		kind := fleet.KindChat
		if rng.Intn(8) == 0 {
			kind = fleet.KindEmbeddings
		}
		s := svc("h"+strconv.Itoa(rng.Intn(10)), "s"+strconv.Itoa(i), kind, as...)
		s.Service.Metrics = fleet.Metrics{LatencyMS: float64(10 * rng.Intn(3)), QueueDepth: rng.Intn(2), InFlight: rng.Intn(3)}
		if rng.Intn(3) == 0 {
			s.Service.Metrics.TokensPerSecond = float64(20 * rng.Intn(3))
		}
		if rng.Intn(4) == 0 {
			s.Stats = fleet.ServiceStats{Requests: 10, LatencyMS: float64(100 * rng.Intn(3))}
		}
		if rng.Intn(2) == 0 {
			s.Service.Metrics.VRAMTotalBytes, s.Service.Metrics.VRAMUsedBytes = 24<<30, int64(rng.Intn(3))<<32
		}
		if rng.Intn(4) == 0 {
			s.MaxConcurrency = 1 + rng.Intn(3)
		}
		switch rng.Intn(20) {
		case 0:
			s.Healthy = false
		case 1:
			s.Deadline = now.Add(-time.Second)
		case 2:
			s.CooldownUntil = now.Add(time.Minute)
		case 3:
			s.AssetCooldowns = map[string]time.Time{as[0].Name: now.Add(time.Minute)}
		}
		switch rng.Intn(10) {
		case 0:
			r.loc(s.ID).coolUntil.Store(now.Add(time.Minute).UnixNano())
		case 1:
			r.loc(s.ID).setAssetCool(as[0].Name, now.Add(time.Minute).UnixNano())
		case 2, 3, 4:
			r.loc(s.ID).inflight.Store(int64(rng.Intn(4)))
		}
		svcs = append(svcs, s)
	}
	snap := snapOf(cat, svcs...)
	for _, m := range pool[:2] {
		snap.Bench[m] = []fleet.BenchSummary{{Model: m, Workload: "chat.code", Samples: rng.Intn(3), Quality: rng.Float64(), TokensPerSec: 30}}
	}
	dec := &policy.Decision{}
	nt := 1 + rng.Intn(4)
	if rng.Intn(2) == 0 {
		nt = 1
	}
	for t := 0; t < nt; t++ {
		tg := policy.Target{Kind: policy.TargetAsset, Name: pool[rng.Intn(len(pool))], Group: rng.Intn(3)}
		if rng.Intn(4) == 0 {
			tg.Kind, tg.Name = policy.TargetService, svcs[rng.Intn(len(svcs))].ID
		}
		if rng.Intn(3) == 0 {
			tg.Role = "coder"
		}
		if rng.Intn(5) == 0 {
			// Not usable without a store: scored stands in, through the
			// full sort (not the bounded selection).
			tg.Strategy = StrategyLeastLoaded
		}
		dec.Targets = append(dec.Targets, tg)
	}
	f := &RequestFacts{Operation: fleet.KindChat, Model: pool[rng.Intn(len(pool))], Now: now}
	if rng.Intn(2) == 0 {
		f.Text = "write go code for llama"
	}
	return snap, dec, f
}

// TestTopKMatchesFullSort: a plan capped at k candidates (bounded
// selection) is, on thousands of random fleets, the first k of the full
// plan (the full sort this branch started from): same services, assets and
// targets in the same order, ties included, the same strategy and the same
// error when there is no candidate.
func TestTopKMatchesFullSort(t *testing.T) {
	rng := rand.New(rand.NewSource(12))
	now := time.Now()
	ctx := context.Background()
	cases, capped := 4000, 0
	ranked := 0
	for c := 0; c < cases; c++ {
		cfg := Config{}
		if rng.Intn(4) == 0 {
			// Other weights, some negative: the ranking's bound must hold
			// (a negative in-flight weight is not ranked).
			w := DefaultWeights()
			w.TextOverlap, w.PreferredFamily = float64(rng.Intn(5)-2), float64(rng.Intn(5)-2)
			w.BenchQuality, w.WorkloadOverlap, w.InFlight = float64(rng.Intn(5)-2), float64(rng.Intn(5)-2), float64(rng.Intn(4)-1)
			w.Loaded, w.CandidateOrder = float64(rng.Intn(5)-2), float64(rng.Intn(3)-1)
			cfg.Weights = &w
		}
		r := newRouter(t, cfg)
		snap, dec, f := randomPickCase(rng, r, now)
		k := 1 + rng.Intn(5)
		fk := *f
		fk.MaxCandidates = k
		if rng.Intn(2) == 0 {
			// A ranking built by an earlier pick on the same snapshot,
			// then this edge's in-flight counts change.
			r.Plan(ctx, snap, dec, &fk)
			for _, s := range snap.Services {
				if rng.Intn(4) == 0 {
					r.loc(s.ID).inflight.Store(int64(rng.Intn(4)))
				}
			}
		}
		full, errFull := r.Plan(ctx, snap, dec, f)
		top, errTop := r.Plan(ctx, snap, dec, &fk)
		if rc := r.ranks.Load(); rc != nil && rc.snap == snap && len(full.Candidates) > k {
			ranked++
		}
		if (errFull == nil) != (errTop == nil) || errFull != nil && reflect.TypeOf(errFull) != reflect.TypeOf(errTop) {
			t.Fatalf("case %d: errors differ: full %v, top-%d %v", c, errFull, k, errTop)
		}
		if errFull != nil {
			var ne *NoCandidatesError
			var se *SaturatedError
			if !errors.As(errFull, &ne) && !errors.As(errFull, &se) {
				t.Fatalf("case %d: unexpected error %v", c, errFull)
			}
			continue
		}
		want := full.Candidates
		if len(want) > k {
			want = want[:k]
			capped++
		}
		if len(top.Candidates) != len(want) || top.Strategy != full.Strategy {
			t.Fatalf("case %d: top-%d %v (%s), full %v (%s)", c, k, ids(top), top.Strategy, ids(full), full.Strategy)
		}
		for i := range want {
			g, w := &top.Candidates[i], &want[i]
			if g.Service != w.Service || g.Asset != w.Asset || g.Target != w.Target {
				t.Fatalf("case %d: top-%d %v, full %v", c, k, ids(top), ids(full))
			}
		}
	}
	if capped < cases/4 || ranked < cases/20 {
		t.Fatalf("%d of %d cases had more than k candidates, %d of them ranked: the cases do not test the cap", capped, cases, ranked)
	}
	t.Logf("%d cases, %d capped, %d through a ranking", cases, capped, ranked)
}

// TestTopKTies: equal scores are broken by service id then asset name, as
// the full sort breaks them, whatever order the candidates arrive in.
func TestTopKTies(t *testing.T) {
	var svcs []*fleet.ServiceEntry
	for i := 9; i >= 0; i-- {
		svcs = append(svcs, svc("h", "s"+strconv.Itoa(i), fleet.KindChat, asset("m", "f")))
	}
	snap := snapOf(nil, svcs...)
	// Reverse the index so candidates arrive in descending id order.
	l := snap.AssetServices["m"]
	for i, j := 0, len(l)-1; i < j; i, j = i+1, j-1 {
		l[i], l[j] = l[j], l[i]
	}
	r := newRouter(t, Config{})
	dec := directTargets("", fleet.KindChat, "m")
	f := &RequestFacts{Operation: fleet.KindChat, Model: "m", MaxCandidates: 3}
	p, err := r.Plan(context.Background(), snap, dec, f)
	if err != nil {
		t.Fatal(err)
	}
	got := ids(p)
	want := []string{"h/s0|m", "h/s1|m", "h/s2|m"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// TestRankOlderSnapshot: a pick still holding an older snapshot than the
// one ranked scores every candidate (same plan) and leaves the newer
// snapshot's ranking in place.
func TestRankOlderSnapshot(t *testing.T) {
	r := newRouter(t, Config{})
	old, nw := fleetSnap(20), fleetSnap(20) // 100 services on "hot"
	old.Version, nw.Version = 1, 2
	dec := directTargets("", fleet.KindChat, "hot")
	f := &RequestFacts{Operation: fleet.KindChat, Model: "hot", MaxCandidates: 3}
	pn, err := r.Plan(context.Background(), nw, dec, f)
	if err != nil {
		t.Fatal(err)
	}
	if c := r.ranks.Load(); c == nil || c.snap != nw {
		t.Fatal("the newest snapshot's ranking was not kept")
	}
	po, err := r.Plan(context.Background(), old, dec, f)
	if err != nil {
		t.Fatal(err)
	}
	if c := r.ranks.Load(); c.snap != nw {
		t.Fatal("an older snapshot evicted the newer ranking")
	}
	full, _ := r.Plan(context.Background(), old, dec, &RequestFacts{Operation: fleet.KindChat, Model: "hot"})
	if !reflect.DeepEqual(ids(po), ids(full)[:3]) || !reflect.DeepEqual(ids(pn), ids(po)) {
		t.Fatalf("older snapshot %v, newer %v, full %v", ids(po), ids(pn), ids(full)[:3])
	}
}

// TestRankIncrementalMatchesFull: a ranking built from the previous
// snapshot's (unchanged entries kept, changed ones scored and merged in)
// equals one built from scratch, as fleets change between snapshots:
// services changed, added, removed, hosts and bench summaries replaced.
func TestRankIncrementalMatchesFull(t *testing.T) {
	rng := rand.New(rand.NewSource(1212))
	now := time.Now()
	reused := 0
	for c := 0; c < 300; c++ {
		r := newRouter(t, Config{})
		snap, _, _ := randomPickCase(rng, r, now)
		for h := range snap.Hosts {
			snap.Hosts[h].Host.GPUs = []fleet.GPU{{VRAMTotalBytes: 24 << 30, VRAMUsedBytes: int64(rng.Intn(20)) << 30}}
		}
		name := "m" + strconv.Itoa(rng.Intn(4))
		prev := r.buildRank(snap, name, nil)
		for step := 0; step < 3; step++ {
			var svcs []*fleet.ServiceEntry
			for _, s := range snap.Services {
				switch rng.Intn(12) {
				case 0: // removed
					continue
				case 1, 2: // a new heartbeat: a new entry
					e := *s
					e.Service.Metrics.QueueDepth = rng.Intn(3)
					e.Service.Metrics.InFlight = rng.Intn(3)
					e.Assets = append([]fleet.Asset(nil), s.Assets...)
					svcs = append(svcs, &e)
					continue
				}
				svcs = append(svcs, s)
			}
			for a := rng.Intn(5); a > 0; a-- {
				svcs = append(svcs, svc("h"+strconv.Itoa(rng.Intn(10)), "new"+strconv.Itoa(c)+"-"+strconv.Itoa(step)+"-"+strconv.Itoa(a), fleet.KindChat, asset(name, "llama")))
			}
			next := snapOf(snap.Catalog, svcs...)
			for h, he := range snap.Hosts {
				if _, ok := next.Hosts[h]; ok && rng.Intn(5) != 0 {
					next.Hosts[h] = he // unchanged node: the same entry
				} else if ok {
					next.Hosts[h].Host.GPUs = []fleet.GPU{{VRAMTotalBytes: 24 << 30, VRAMUsedBytes: int64(rng.Intn(20)) << 30}}
				}
			}
			for k, v := range snap.Bench {
				if rng.Intn(6) == 0 {
					v = append([]fleet.BenchSummary(nil), v...)
					v[0].TokensPerSec = float64(rng.Intn(50))
				}
				next.Bench[k] = v
			}
			inc := r.buildRank(next, name, prev)
			full := r.buildRank(next, name, nil)
			if !reflect.DeepEqual(inc.ents, full.ents) || !reflect.DeepEqual(inc.run, full.run) || !reflect.DeepEqual(inc.pos, full.pos) ||
				!reflect.DeepEqual(inc.svcs, full.svcs) || !reflect.DeepEqual(inc.key, full.key) || !reflect.DeepEqual(inc.variants, full.variants) {
				t.Fatalf("case %d step %d: incremental ranking differs from a full build", c, step)
			}
			if len(prev.ents) > 0 && len(inc.ents) > 0 {
				reused++
			}
			snap, prev = next, inc
		}
	}
	if reused < 300 {
		t.Fatalf("only %d incremental builds compared", reused)
	}
}

// TestRankConcurrent: picks on several snapshots at once (rankings built,
// replaced and read concurrently) each get their snapshot's plan.
func TestRankConcurrent(t *testing.T) {
	r := newRouter(t, Config{})
	dec := directTargets("", fleet.KindChat, "hot")
	var snaps []*fleet.Snapshot
	var want [][]string
	for v := 0; v < 4; v++ {
		s := fleetSnap(20)
		for i, e := range s.AssetServices["hot"] {
			e.Service.Metrics.QueueDepth = (i * (v + 1)) % 4
		}
		s.Version = uint64(v + 1)
		full, err := r.Plan(context.Background(), s, dec, &RequestFacts{Operation: fleet.KindChat, Model: "hot"})
		if err != nil {
			t.Fatal(err)
		}
		snaps, want = append(snaps, s), append(want, ids(full)[:3])
	}
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(g)))
			for i := 0; i < 300; i++ {
				v := rng.Intn(len(snaps))
				p, err := r.Plan(context.Background(), snaps[v], dec, &RequestFacts{Operation: fleet.KindChat, Model: "hot", MaxCandidates: 3})
				if err != nil || !reflect.DeepEqual(ids(p), want[v]) {
					errs <- fmt.Sprintf("snapshot %d: %v %v, want %v", v+1, ids(p), err, want[v])
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// TestRankStartsFromPrevious: on a new snapshot, every wide asset's
// ranking starts from its latest earlier one, not only the first asset
// picked; an asset no longer wide is let go.
func TestRankStartsFromPrevious(t *testing.T) {
	r := newRouter(t, Config{})
	s1 := fleetSnap(20)
	s1.Version = 1
	wide := func(s *fleet.Snapshot, n int) { // n services on "w" too
		l := s.AssetServices["hot"][:n]
		s.AssetServices["w"] = l
	}
	wide(s1, 80)
	a1, b1 := r.rank(s1, "hot"), r.rank(s1, "w")
	s2 := fleetSnap(20)
	s2.Version = 2
	s2.AssetServices = s1.AssetServices // nothing changed
	r.rank(s2, "hot")
	c := r.ranks.Load()
	if c.prev["w"] != b1 || c.prev["hot"] != a1 {
		t.Fatalf("the new snapshot's cache lost an earlier ranking: %v", c.prev)
	}
	// The same lists, ranked within rankRefresh: the ranking is reused.
	// (Built "now" again, so a starved test does not pass rankRefresh.)
	b1.built = time.Now().Add(time.Minute)
	if b2 := r.rank(s2, "w"); b2 != b1 {
		t.Fatal("w re-ranked though its list is the same and its ranking recent")
	}
	// Past rankRefresh it is re-ranked (figures may have moved), alike.
	b1.built = time.Now().Add(-rankRefresh)
	s2b := fleetSnap(20)
	s2b.Version = 3
	s2b.AssetServices = s1.AssetServices
	b2 := r.rank(s2b, "w")
	if b2 == b1 || !reflect.DeepEqual(b2.svcs, b1.svcs) {
		t.Fatal("w not re-ranked past rankRefresh, or ranked differently")
	}
	s3 := fleetSnap(20)
	s3.Version = 4
	r.rank(s3, "hot") // "w" is on no service of s3
	if _, ok := r.ranks.Load().prev["w"]; ok {
		t.Fatal("a ranking of an asset gone from the fleet is kept")
	}
}

// TestRankFollowsFigures: services whose entries stay but whose node's
// figures move in their cell (a metrics event, fleet.NodeCell) are
// re-scored when the ranking is next rebuilt, and the rebuilt ranking is
// a full build's; within rankRefresh the earlier ranking is kept.
func TestRankFollowsFigures(t *testing.T) {
	r := newRouter(t, Config{})
	s1 := fleetSnap(20)
	s1.Version = 1
	cells := map[string]*fleet.NodeCell{}
	figs := map[string]*fleet.Figures{}
	for _, e := range s1.Services { // one cell per host, as the watcher builds them
		f := figs[e.HostID]
		if f == nil {
			f = &fleet.Figures{Deadline: e.Deadline}
			figs[e.HostID] = f
		}
		e.CellIndex = len(f.Metrics)
		f.Metrics = append(f.Metrics, e.Service.Metrics)
	}
	for h, f := range figs {
		cells[h] = fleet.NewNodeCell(f)
		s1.Hosts[h].Cell = cells[h]
	}
	for _, e := range s1.Services {
		e.Cell = cells[e.HostID]
	}
	rk1 := r.rank(s1, "hot")
	last := rk1.svcs[len(rk1.svcs)-1]
	// The worst service's node reports an idle, fast service.
	f := *figs[last.HostID]
	f.Metrics = append([]fleet.Metrics(nil), f.Metrics...)
	f.Metrics[last.CellIndex] = fleet.Metrics{LatencyMS: 1, TokensPerSecond: 400, VRAMTotalBytes: 24 << 30}
	cells[last.HostID].Store(&f)
	next := func(v uint64) *fleet.Snapshot { // what publishFiguresLocked publishes
		s := *s1
		s.Version = v
		return &s
	}
	rk1.built = time.Now().Add(time.Minute) // within rankRefresh however slow the test runs
	if rk := r.rank(next(2), "hot"); rk != rk1 {
		t.Fatal("re-ranked within rankRefresh")
	}
	rk1.built = time.Now().Add(-rankRefresh)
	rk2 := r.rank(next(3), "hot")
	if rk2 == rk1 || rk2.svcs[0] != last {
		t.Fatalf("the service whose figures moved is not re-scored: first %s, want %s", rk2.svcs[0].ID, last.ID)
	}
	full := r.buildRank(next(4), "hot", nil)
	if !reflect.DeepEqual(rk2.svcs, full.svcs) || !reflect.DeepEqual(rk2.key, full.key) {
		t.Fatal("the ranking rebuilt from the previous one differs from a full build")
	}
}
