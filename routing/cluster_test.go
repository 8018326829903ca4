package routing

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/state"
)

// roundTrips counts what a client sends to Redis: one per command, one per
// pipeline (a pipeline is one round trip).
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !setup(cmd.Name()) {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if !setup(c.Name()) {
				h.n.Add(1)
				break
			}
		}
		return next(ctx, cmds)
	}
}

// setup reports connection set-up commands (sent once per connection).
func setup(name string) bool {
	switch name {
	case "hello", "client", "auth", "select", "readonly":
		return true
	}
	return false
}

// edgeInst is one simulated edge replica: its own client, store, watcher,
// in-flight tracker and router.
type edgeInst struct {
	id     string
	store  *state.Store
	w      *state.Watcher
	inf    *state.Inflight
	r      *Router
	rt     *roundTrips // on the router's client only
	engine policy.Engine
	data   uint64 // snapshot version the engine's data was built from
	mu     sync.Mutex
}

type fixture struct {
	admin *state.Store
	edges []*edgeInst
}

// newCluster starts n edges sharing one Redis prefix. Watchers run (pub/sub
// + resync) until the test ends.
func newCluster(t *testing.T, n int, cfg Config) *fixture {
	t.Helper()
	c, prefix := testredis.New(t)
	f := &fixture{admin: state.New(c, prefix)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i := 0; i < n; i++ {
		// The router's client (round trips counted) and the watcher's.
		rc, wc := testredis.Client(t), testredis.Client(t)
		e := &edgeInst{id: "edge-" + string(rune('a'+i)), rt: &roundTrips{}, engine: policies.NewGo()}
		rc.AddHook(e.rt)
		e.store = state.New(rc, prefix)
		if err := e.store.LoadScripts(context.Background()); err != nil { // as edges do at start
			t.Fatal(err)
		}
		e.w = state.NewWatcher(state.New(wc, prefix), state.WatcherOptions{Resync: time.Second})
		e.inf = state.NewInflight(e.store, e.id, time.Minute)
		r, err := New(cfg, e.store, e.inf)
		if err != nil {
			t.Fatal(err)
		}
		e.r = r
		wg.Add(3)
		go func() { defer wg.Done(); e.w.Run(ctx) }()
		go func() { defer wg.Done(); e.inf.Run(ctx) }()
		go func() { defer wg.Done(); e.r.Run(ctx, nil) }()
		f.edges = append(f.edges, e)
	}
	return f
}

// heartbeat registers one host with the given services.
func (f *fixture) heartbeat(t *testing.T, host string, svcs ...fleet.Service) {
	t.Helper()
	for i := range svcs {
		svcs[i].HostID = host
		svcs[i].ID = host + "/" + svcs[i].Name
		svcs[i].Healthy = true
	}
	st := &fleet.NodeState{Host: fleet.Host{ID: host}, Services: svcs}
	if err := f.admin.WriteHeartbeat(context.Background(), st, time.Minute); err != nil {
		t.Fatal(err)
	}
}

// settle waits until every edge's watcher shows cond. (It does not call
// Refresh itself: a Refresh racing the watcher's own loop can publish an
// older view after a newer one.)
func (f *fixture) settle(t *testing.T, cond func(*fleet.Snapshot) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, e := range f.edges {
		for !cond(e.w.Current()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: snapshot never reached the expected state", e.id)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// decide runs the reference policy on the edge's current snapshot.
func (e *edgeInst) decide(t testing.TB, model string) (*fleet.Snapshot, *policy.Decision) {
	snap := e.w.Current()
	e.mu.Lock()
	if e.data != snap.Version {
		if err := e.engine.SetData(context.Background(), policies.BuildData(snap)); err != nil {
			t.Fatal(err)
		}
		e.data = snap.Version
	}
	e.mu.Unlock()
	var d policy.Decision
	in := policy.Input{SchemaVersion: 1, Operation: fleet.KindChat, Model: model, ModelKey: policies.NormalizeModel(model)}
	in.Service = policies.FindService(snap, in.ModelKey)
	if err := e.engine.Eval(context.Background(), &in, &d); err != nil {
		t.Fatal(err)
	}
	return snap, &d
}

func chatSvc(name string, latency float64, assets ...string) fleet.Service {
	s := fleet.Service{Name: name, Kind: fleet.KindChat, Endpoint: "http://127.0.0.1:1", Metrics: fleet.Metrics{LatencyMS: latency}}
	for _, a := range assets {
		s.Assets = append(s.Assets, fleet.Asset{Name: a, Family: "llama", Loaded: true})
	}
	return s
}

func putCatalog(t *testing.T, f *fixture, roles ...fleet.Role) {
	t.Helper()
	if err := f.admin.PutCatalog(context.Background(), &fleet.Catalog{Roles: roles}); err != nil {
		t.Fatal(err)
	}
}

func TestClusterRoundRobinExact(t *testing.T) {
	f := newCluster(t, 3, Config{})
	for _, h := range []string{"h1", "h2", "h3"} {
		f.heartbeat(t, h, chatSvc("ollama", 50, "llama3.1:8b"))
	}
	putCatalog(t, f, fleet.Role{Name: "rr", Operation: fleet.KindChat, Candidates: []string{"llama3.1:8b"}, Strategy: StrategyRoundRobin})
	f.settle(t, func(s *fleet.Snapshot) bool {
		_, ok := s.Role("rr")
		return ok && len(s.AssetServices["llama3.1:8b"]) == 3
	})

	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	rtBefore := make([]int64, 3)
	for i, e := range f.edges {
		rtBefore[i] = e.rt.n.Load()
	}
	// 300 requests spread over the three edges, concurrently.
	for i, e := range f.edges {
		wg.Add(1)
		go func(i int, e *edgeInst) {
			defer wg.Done()
			for k := 0; k < 100; k++ {
				snap, dec := e.decide(t, "rr")
				p, err := e.r.Plan(context.Background(), snap, dec, &RequestFacts{Operation: fleet.KindChat, Model: "rr"})
				if err != nil {
					t.Error(err)
					return
				}
				if p.Strategy != StrategyRoundRobin || len(p.Candidates) != 3 {
					t.Errorf("plan %s %v", p.Strategy, ids(p))
					return
				}
				mu.Lock()
				counts[p.Candidates[0].Service.ID]++
				mu.Unlock()
			}
		}(i, e)
	}
	wg.Wait()
	for _, h := range []string{"h1/ollama", "h2/ollama", "h3/ollama"} {
		if counts[h] != 100 {
			t.Fatalf("round robin counts %v, want 100 each", counts)
		}
	}
	var trips int64
	for i, e := range f.edges {
		trips += e.rt.n.Load() - rtBefore[i]
	}
	// One round trip per pick, or fewer when concurrent picks share one
	// (rrCombiner, on whenever the router has a store).
	if f.edges[0].r.rrc == nil {
		t.Fatal("round-robin combiner not in use with a state.Store")
	}
	if trips > 300 || trips < 1 {
		t.Fatalf("round_robin: %d Redis round trips for 300 requests, want 300", trips)
	}
	t.Logf("round_robin: %v, %.2f round trips/request", counts, float64(trips)/300)
}

// TestRoundRobinConcurrentPicksShareRoundTrips: many concurrent picks on
// one edge, through the combiner and real Redis: the rotation stays exact.
func TestRoundRobinConcurrentPicksShareRoundTrips(t *testing.T) {
	f := newCluster(t, 1, Config{})
	for _, h := range []string{"h1", "h2", "h3"} {
		f.heartbeat(t, h, chatSvc("ollama", 50, "llama3.1:8b"))
	}
	putCatalog(t, f, fleet.Role{Name: "rr", Operation: fleet.KindChat, Candidates: []string{"llama3.1:8b"}, Strategy: StrategyRoundRobin})
	f.settle(t, func(s *fleet.Snapshot) bool {
		_, ok := s.Role("rr")
		return ok && len(s.AssetServices["llama3.1:8b"]) == 3
	})
	e := f.edges[0]
	snap, dec := e.decide(t, "rr")
	before := e.rt.n.Load()
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 60; k++ {
				p, err := e.r.Plan(context.Background(), snap, dec, &RequestFacts{Operation: fleet.KindChat, Model: "rr"})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				counts[p.Candidates[0].Service.ID]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, h := range []string{"h1/ollama", "h2/ollama", "h3/ollama"} {
		if counts[h] != 160 {
			t.Fatalf("round robin counts %v, want 160 each", counts)
		}
	}
	trips := e.rt.n.Load() - before
	if trips < 1 || trips > 480 {
		t.Fatalf("%d round trips for 480 picks", trips)
	}
	t.Logf("480 concurrent picks: %d Redis round trips", trips)
}

// TestRoundRobinSingleCandidateNoRoundTrip: a group with one usable member
// has nothing to rotate, so round_robin skips the shared counter.
func TestRoundRobinSingleCandidateNoRoundTrip(t *testing.T) {
	f := newCluster(t, 1, Config{})
	f.heartbeat(t, "h1", chatSvc("ollama", 50, "llama3.1:8b"))
	putCatalog(t, f, fleet.Role{Name: "rr", Operation: fleet.KindChat, Candidates: []string{"llama3.1:8b"}, Strategy: StrategyRoundRobin})
	f.settle(t, func(s *fleet.Snapshot) bool {
		_, ok := s.Role("rr")
		return ok && len(s.AssetServices["llama3.1:8b"]) == 1
	})
	e := f.edges[0]
	before := e.rt.n.Load()
	for k := 0; k < 20; k++ {
		snap, dec := e.decide(t, "rr")
		p, err := e.r.Plan(context.Background(), snap, dec, &RequestFacts{Operation: fleet.KindChat, Model: "rr"})
		if err != nil {
			t.Fatal(err)
		}
		if p.Strategy != StrategyRoundRobin || len(p.Candidates) != 1 || p.Candidates[0].Service.ID != "h1/ollama" {
			t.Fatalf("plan %s %v", p.Strategy, ids(p))
		}
	}
	if n := e.rt.n.Load() - before; n != 0 {
		t.Fatalf("%d Redis round trips for 20 single-candidate round_robin plans, want 0", n)
	}
}

func TestClusterLeastLoaded(t *testing.T) {
	var slowHits, fastHits atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slowHits.Add(1)
		time.Sleep(150 * time.Millisecond)
	}))
	defer slow.Close()
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fastHits.Add(1)
		time.Sleep(10 * time.Millisecond)
	}))
	defer fast.Close()
	f := newCluster(t, 3, Config{DefaultStrategy: StrategyLeastLoaded})
	s1 := chatSvc("fast", 10, "m:7b")
	s1.Endpoint = fast.URL
	s2 := chatSvc("slow", 150, "m:7b")
	s2.Endpoint = slow.URL
	f.heartbeat(t, "h1", s1)
	f.heartbeat(t, "h2", s2)
	f.settle(t, func(s *fleet.Snapshot) bool { return len(s.AssetServices["m:7b"]) == 2 })
	ctx := context.Background()
	pick := func(e *edgeInst) Candidate {
		t.Helper()
		snap, dec := e.decide(t, "m:7b")
		before := e.rt.n.Load()
		p, err := e.r.Plan(ctx, snap, dec, &RequestFacts{Operation: fleet.KindChat, Model: "m:7b"})
		if err != nil {
			t.Fatal(err)
		}
		// One Lua call; on a Cluster, where the candidates' sets live in
		// different slots, a pipelined count and a ZADD (state/inflight.go).
		want := int64(1)
		if testredis.IsCluster(t) {
			want = 2
		}
		if n := e.rt.n.Load() - before; n != want {
			t.Fatalf("least_loaded: %d round trips, want %d", n, want)
		}
		if !p.Candidates[0].Leased {
			t.Fatal("least_loaded pick carries no lease")
		}
		return p.Candidates[0]
	}
	a, b, c := f.edges[0], f.edges[1], f.edges[2]
	// Warm up: the first EVALSHA on a server loads the script (one extra
	// round trip, once per Redis server, not per request).
	for _, e := range f.edges {
		snap, dec := e.decide(t, "m:7b")
		p, err := e.r.Plan(ctx, snap, dec, &RequestFacts{Operation: fleet.KindChat, Model: "m:7b"})
		if err != nil {
			t.Fatal(err)
		}
		e.r.End(&p.Candidates[0], p.Candidates[0].Lease)
		e.inf.Flush(ctx)
	}
	// Flush returns at once when the edge's own flusher (Inflight.Run) took
	// the release first and is still writing it: wait until Redis counts
	// nothing, or another edge's warm-up lease may still be counted at the
	// first pick (an edge discounts only its own releases in flight).
	deadline := time.Now().Add(30 * time.Second)
	for {
		cs, err := f.admin.InflightCounts(ctx, []string{"h1/fast", "h2/slow"})
		if err != nil {
			t.Fatal(err)
		}
		if cs[0] == 0 && cs[1] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("warm-up leases still counted: %v", cs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Ties go to the lower latency: fast.
	c1 := pick(a)
	if c1.Service.ID != "h1/fast" {
		t.Fatalf("first pick %s, want h1/fast", c1.Service.ID)
	}
	l1 := a.r.Begin(&c1)
	// Edge b has nothing open itself, but fast is busy cluster-wide.
	c2 := pick(b)
	if c2.Service.ID != "h2/slow" {
		t.Fatalf("second pick (other edge) %s, want h2/slow", c2.Service.ID)
	}
	l2 := b.r.Begin(&c2)
	c3 := pick(c)
	if c3.Service.ID != "h1/fast" {
		t.Fatalf("third pick at 1/1: %s, want h1/fast (latency tie-break)", c3.Service.ID)
	}
	l3 := c.r.Begin(&c3)
	// fast: 2 (a, c), slow: 1 (b). a finishes: 1/1; c finishes: 0/1 -> fast.
	a.r.End(&c1, l1)
	a.inf.Flush(ctx)
	c.r.End(&c3, l3)
	c.inf.Flush(ctx)
	if got := pick(b); got.Service.ID != "h1/fast" {
		t.Fatalf("after fast drained: %s, want h1/fast", got.Service.ID)
	} else {
		b.r.End(&got, got.Lease)
	}
	b.r.End(&c2, l2)
	b.inf.Flush(ctx)

	// Under load from the three edges, the fast upstream takes most requests.
	var wg sync.WaitGroup
	for _, e := range f.edges {
		for k := 0; k < 2; k++ {
			wg.Add(1)
			go func(e *edgeInst) {
				defer wg.Done()
				for n := 0; n < 15; n++ {
					snap, dec := e.decide(t, "m:7b")
					p, err := e.r.Plan(ctx, snap, dec, &RequestFacts{Operation: fleet.KindChat, Model: "m:7b"})
					if err != nil {
						t.Error(err)
						return
					}
					cd := &p.Candidates[0]
					l := e.r.Begin(cd)
					resp, err := http.Get(cd.Service.Endpoint)
					if err == nil {
						resp.Body.Close()
					}
					e.r.End(cd, l)
				}
			}(e)
		}
	}
	wg.Wait()
	t.Logf("least_loaded under load: fast %d, slow %d", fastHits.Load(), slowHits.Load())
	// On a Cluster the pick is a count, then a lease (two round trips, not
	// one atomic script: state/inflight.go), so concurrent picks on a busy
	// machine see each other less; the fast upstream must still win clearly.
	factor := int64(6)
	if testredis.IsCluster(t) {
		factor = 3
	}
	if 2*fastHits.Load() < factor*slowHits.Load() {
		t.Fatalf("fast %d vs slow %d: least_loaded did not favour the less busy upstream", fastHits.Load(), slowHits.Load())
	}
}

func TestClusterCooldownShared(t *testing.T) {
	f := newCluster(t, 3, Config{FailureThreshold: 3, Cooldown: 30 * time.Second})
	f.heartbeat(t, "h1", chatSvc("ollama", 50, "m:7b"))
	f.heartbeat(t, "h2", chatSvc("ollama", 50, "m:7b"))
	f.settle(t, func(s *fleet.Snapshot) bool { return len(s.AssetServices["m:7b"]) == 2 })
	a := f.edges[0]
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		a.r.ReportFailure("h1/ollama")
	}
	a.r.Drain(ctx)
	snapOn := func(e *edgeInst) []string {
		snap, dec := e.decide(t, "m:7b")
		p, err := e.r.Plan(ctx, snap, dec, &RequestFacts{Operation: fleet.KindChat, Model: "m:7b"})
		if err != nil {
			t.Fatal(err)
		}
		return ids(p)
	}
	// The edge that saw the failures honours the cooldown at once.
	if got := snapOn(a); len(got) != 1 || got[0] != "h2/ollama|m:7b" {
		t.Fatalf("edge a after cooldown: %v", got)
	}
	// The others honour it once their watchers have the health event.
	start := time.Now()
	for _, e := range f.edges[1:] {
		for e.w.Current().ByID["h1/ollama"] == nil || !e.w.Current().ByID["h1/ollama"].InCooldown(time.Now()) {
			if time.Since(start) > time.Minute {
				t.Fatalf("%s never saw the cooldown", e.id)
			}
			time.Sleep(2 * time.Millisecond)
		}
		for i := 0; i < 20; i++ {
			if got := snapOn(e); len(got) != 1 || got[0] != "h2/ollama|m:7b" {
				t.Fatalf("%s routes to a service in cooldown: %v", e.id, got)
			}
		}
	}
	t.Logf("cooldown seen by every edge %v after it was set", time.Since(start))
	// A success clears it for everyone.
	b := f.edges[1]
	b.r.ReportSuccess(b.w.Current().ByID["h1/ollama"])
	b.r.Drain(ctx)
	for _, e := range f.edges {
		for e.w.Current().ByID["h1/ollama"].InCooldown(time.Now()) {
			if time.Since(start) > time.Minute {
				t.Fatalf("%s still sees the cooldown after a success", e.id)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

func TestProbeLeaseHandover(t *testing.T) {
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/health" {
			w.WriteHeader(404)
		}
	}))
	defer up.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer down.Close()
	f := newCluster(t, 3, Config{})
	s1 := chatSvc("vllm", 5, "m:7b")
	s1.Protocol, s1.Endpoint = fleet.ProtocolVLLM, up.URL
	s2 := chatSvc("vllm", 5, "m:7b")
	s2.Protocol, s2.Endpoint = fleet.ProtocolVLLM, down.URL
	f.heartbeat(t, "h1", s1)
	f.heartbeat(t, "h2", s2)
	f.settle(t, func(s *fleet.Snapshot) bool { return len(s.AssetServices["m:7b"]) == 2 })

	const lease = 600 * time.Millisecond
	probers := make([]*Prober, 3)
	cancels := make([]context.CancelFunc, 3)
	var wg sync.WaitGroup
	defer wg.Wait()
	for i, e := range f.edges {
		probers[i] = NewProber(e.store, e.w.Current, ProberOptions{ID: e.id, Interval: 100 * time.Millisecond, Lease: lease})
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i] = cancel
		defer cancel()
		wg.Add(1)
		go func(p *Prober) { defer wg.Done(); p.Run(ctx) }(probers[i])
	}
	leader := func() int {
		n, who := 0, -1
		for i, p := range probers {
			if p.Leader() {
				n++
				who = i
			}
		}
		if n > 1 {
			t.Fatalf("%d probe leaders at once", n)
		}
		return who
	}
	deadline := time.Now().Add(time.Minute) // generous: a loaded machine
	for leader() < 0 || probers[leader()].Rounds() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("no probe leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	first := leader()
	for i, p := range probers {
		if i != first && p.Rounds() != 0 {
			t.Fatalf("replica %d probed while %d held the lease", i, first)
		}
	}
	// The failing service is out of routing on every edge; the healthy one stays.
	f.settle(t, func(s *fleet.Snapshot) bool {
		e := s.ByID["h2/vllm"]
		return e != nil && e.Probe != nil && !e.Probe.Healthy && s.ByID["h1/vllm"].Routable(time.Now())
	})
	if e := f.edges[2].w.Current().ByID["h2/vllm"]; e.Routable(time.Now()) || e.Service.Healthy != true {
		t.Fatalf("probe result: routable=%v node-healthy=%v (probe must override health, not other fields)", e.Routable(time.Now()), e.Service.Healthy)
	}
	// Kill the leader: cancel without releasing. Its lease carries a TTL of
	// at most the lease (checked in Redis, not on the wall clock: a loaded
	// machine may take any time to get here), and another replica takes it
	// over once it expires.
	killed := time.Now()
	cancels[first]()
	if ttl := f.admin.Client().PTTL(context.Background(), f.admin.Prefix()+"lease:"+ProbeLease).Val(); ttl > lease {
		t.Fatalf("the dead leader's lease has a TTL of %v, more than the lease %v", ttl, lease)
	}
	for {
		who, _ := f.admin.LeaseHolder(context.Background(), ProbeLease)
		if who != "" && who != f.edges[first].id {
			t.Logf("lease moved from %s to %s in %v (lease %v)", f.edges[first].id, who, time.Since(killed), lease)
			break
		}
		if time.Since(killed) > time.Minute {
			t.Fatalf("lease not taken over %v after the leader died (lease %v)", time.Since(killed), lease)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
