package state_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/state"
)

func node(id string, svcs ...string) *fleet.NodeState {
	st := &fleet.NodeState{Host: fleet.Host{ID: id, UpdatedAt: time.Now()}}
	for _, s := range svcs {
		st.Services = append(st.Services, fleet.Service{
			ID: id + "/" + s, HostID: id, Name: s, Kind: fleet.KindChat, Endpoint: "http://127.0.0.1:1",
			Healthy: true, Assets: []fleet.Asset{{Name: "m-" + s, Loaded: true}},
		})
	}
	return st
}

func TestHeartbeatReachesOtherWatcher(t *testing.T) {
	c, prefix := testredis.New(t)
	writer := state.New(c, prefix)
	c2, _ := testredis.New(t) // a separate connection, as another process would have
	w := state.NewWatcher(state.New(c2, prefix), state.WatcherOptions{Resync: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := w.Changes()
	go w.Run(ctx)
	waitFor(t, 2*time.Second, func() bool { return w.Current().RedisOK })

	wrote := time.Now()
	if err := writer.WriteHeartbeat(ctx, node("a", "ollama"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, func() bool { _, ok := w.Current().ByID["a/ollama"]; return ok })
	snap := w.Current()
	e := snap.ByID["a/ollama"]
	if !e.Routable(time.Now()) || len(snap.AssetServices["m-ollama"]) != 1 {
		t.Fatalf("service not routable / indexed: %+v", e)
	}
	// The deadline comes from the key's real TTL, read after the write: it
	// can never lie past the write plus the TTL (ms rounding aside). No
	// lower bound: a loaded machine may take seconds to get here.
	if late := e.Expiry().Sub(wrote.Add(10 * time.Second)); late > 50*time.Millisecond {
		t.Fatalf("deadline %v past the write plus its 10s TTL", late)
	}
	if e.Routable(e.Expiry().Add(time.Millisecond)) {
		t.Fatal("entry past its deadline must not be routable")
	}
	select {
	case <-changes:
	case <-time.After(time.Minute):
		t.Fatal("the heartbeat's snapshot change was never announced on Changes()")
	}
	if err := writer.RemoveNode(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, func() bool { _, ok := w.Current().ByID["a/ollama"]; return !ok })
}

func TestHeartbeatRejectsForeignServices(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	st := node("a", "x")
	st.Services[0].HostID = "b"
	if err := s.WriteHeartbeat(context.Background(), st, 5*time.Second); !errors.Is(err, fleet.ErrInvalid) {
		t.Fatalf("want fleet.ErrInvalid, got %v", err)
	}
	if err := s.WriteHeartbeat(context.Background(), node("bad{id}"), 5*time.Second); !errors.Is(err, fleet.ErrInvalid) {
		t.Fatalf("want fleet.ErrInvalid for brace id, got %v", err)
	}
	if n, _ := c.Exists(context.Background(), s.NodeKey("a"), s.NodeKey("b")).Result(); n != 0 {
		t.Fatal("rejected heartbeat wrote keys")
	}
}

func TestTwoNodesKeepOwnKeys(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if err := s.WriteHeartbeat(ctx, node("a", "x"), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := s.WriteHeartbeat(ctx, node("b", "x"), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := s.ReadNodes(ctx)
	if err != nil || len(recs) != 2 {
		t.Fatalf("got %d nodes, err %v", len(recs), err)
	}
	for _, r := range recs {
		if r.State.Services[0].ID != r.State.Host.ID+"/x" {
			t.Fatalf("node %s holds %s", r.State.Host.ID, r.State.Services[0].ID)
		}
	}
}

func TestRoundRobinSharedExactlyOnce(t *testing.T) {
	_, prefix := testredis.New(t)
	const clients, per = 3, 200
	stores := make([]*state.Store, clients)
	for i := range stores {
		c, _ := testredis.New(t)
		stores[i] = state.New(c, prefix)
	}
	var mu sync.Mutex
	seen := map[uint64]int{}
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(s *state.Store) {
			defer wg.Done()
			for j := 0; j < per; j++ {
				n, err := s.NextRR(context.Background(), "role:coder")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[n]++
				mu.Unlock()
			}
		}(stores[i])
	}
	wg.Wait()
	if len(seen) != clients*per {
		t.Fatalf("%d distinct values, want %d", len(seen), clients*per)
	}
	for v := uint64(1); v <= clients*per; v++ {
		if seen[v] != 1 {
			t.Fatalf("value %d handed out %d times", v, seen[v])
		}
	}
	// Each index of a 3-way rotation therefore goes out exactly per times.
	counts := [3]int{}
	for v := range seen {
		counts[(v-1)%3]++
	}
	if counts != [3]int{per, per, per} {
		t.Fatalf("rotation counts %v", counts)
	}
}

func TestInflightReturnsToZeroAfterCrash(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A healthy edge: begin/end balance out.
	live := state.NewInflight(s, "edge-live", time.Minute)
	go live.Run(ctx)
	var ls []state.Lease
	for i := 0; i < 10; i++ {
		ls = append(ls, live.Begin("svc-a"))
	}
	waitFor(t, 2*time.Second, func() bool { n, _ := s.InflightCounts(ctx, []string{"svc-a"}); return n[0] == 10 })
	for _, l := range ls {
		live.End(l)
		live.End(l) // a double End must not go negative or remove others
	}
	waitFor(t, 2*time.Second, func() bool { n, _ := s.InflightCounts(ctx, []string{"svc-a"}); return n[0] == 0 })

	// A crashing edge: its leases stop counting after their TTL.
	crashCtx, crash := context.WithCancel(ctx)
	dying := state.NewInflight(s, "edge-dying", 1500*time.Millisecond)
	go dying.Run(crashCtx)
	for i := 0; i < 5; i++ {
		dying.Begin("svc-a")
	}
	dying.Flush(ctx)
	_, _, _, err := dying.PickLeastLoaded(ctx, []string{"svc-a", "svc-b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, func() bool {
		n, _ := s.InflightCounts(ctx, []string{"svc-a", "svc-b"})
		return n[0] == 5 && n[1] == 1
	})
	crash() // never calls End
	waitFor(t, 4*time.Second, func() bool {
		n, _ := s.InflightCounts(ctx, []string{"svc-a", "svc-b"})
		return n[0] == 0 && n[1] == 0
	})
}

func TestLeastLoadedPicksClusterWideMinimum(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	e1 := state.NewInflight(s, "e1", time.Minute)
	e2 := state.NewInflight(s, "e2", time.Minute)
	svcs := []string{"a", "b", "c"}
	// Six picks alternating between two edges spread 2/2/2.
	for i := 0; i < 6; i++ {
		e := e1
		if i%2 == 1 {
			e = e2
		}
		if _, _, _, err := e.PickLeastLoaded(ctx, svcs, nil); err != nil {
			t.Fatal(err)
		}
	}
	n, _ := s.InflightCounts(ctx, svcs)
	if fmt.Sprint(n) != "[2 2 2]" {
		t.Fatalf("counts %v, want [2 2 2]", n)
	}
	// Queue depth counts as load: b reports 5 queued, so a and c win.
	idx, _, _, _ := e1.PickLeastLoaded(ctx, svcs, []int64{0, 5, 0})
	if idx != 0 {
		t.Fatalf("picked %d, want 0", idx)
	}
	idx, _, _, _ = e2.PickLeastLoaded(ctx, svcs, []int64{0, 5, 0})
	if idx != 2 {
		t.Fatalf("picked %d, want 2", idx)
	}
}

func TestCooldownSharedAndCleared(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		cooled, err := s.RecordFailure(ctx, "h/svc", 3, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if cooled != (i == 3) {
			t.Fatalf("failure %d: cooled=%v", i, cooled)
		}
	}
	cd, _ := s.Cooldowns(ctx, []string{"h/svc", "h/other"})
	if until, ok := cd["h/svc"]; !ok || time.Until(until) < time.Second {
		t.Fatalf("cooldown not recorded: %v", cd)
	}
	if _, ok := cd["h/other"]; ok {
		t.Fatal("unrelated service in cooldown")
	}
	if err := s.RecordSuccess(ctx, "h/svc"); err != nil {
		t.Fatal(err)
	}
	if cd, _ := s.Cooldowns(ctx, []string{"h/svc"}); len(cd) != 0 {
		t.Fatalf("success did not clear cooldown: %v", cd)
	}
}

func TestLeaseTakeoverAfterExpiry(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	acquire := func(holder string, ttl time.Duration) bool {
		t.Helper()
		ok, err := s.AcquireLease(ctx, "probe", holder, ttl)
		if err != nil {
			t.Fatalf("AcquireLease(%s): %v", holder, err) // an error is not a refusal
		}
		return ok
	}
	// Long leases while checking who holds it: a loaded machine may take
	// longer than a short lease between two calls.
	if !acquire("e1", time.Minute) {
		t.Fatal("e1 could not take a free lease")
	}
	if acquire("e2", time.Minute) {
		t.Fatal("e2 took a held lease")
	}
	if !acquire("e1", 200*time.Millisecond) { // renewed, with a short TTL
		t.Fatal("e1 could not renew")
	}
	if ttl := c.PTTL(ctx, prefix+"lease:probe").Val(); ttl <= 0 || ttl > 200*time.Millisecond {
		t.Fatalf("renewed lease TTL %v, want (0, 200ms]", ttl)
	}
	waitFor(t, 30*time.Second, func() bool { return acquire("e2", time.Minute) })
	if h, _ := s.LeaseHolder(ctx, "probe"); h != "e2" {
		t.Fatalf("holder %q", h)
	}
}

func TestFlushAllThenHeartbeatRestores(t *testing.T) {
	srv := testredis.Private(t)
	c := srv.Client(t)
	s := state.New(c, "")
	ctx := context.Background()
	w := state.NewWatcher(state.New(srv.Client(t), ""), state.WatcherOptions{Resync: 100 * time.Millisecond})
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go w.Run(wctx)
	if err := s.WriteHeartbeat(ctx, node("a", "x"), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, func() bool { return len(w.Current().Services) == 1 })
	// Lost data: the snapshot keeps serving the node until its own deadline
	// (its agent re-registers within a heartbeat), and not past it.
	c.FlushAll(ctx)
	time.Sleep(300 * time.Millisecond) // several resyncs
	if len(w.Current().Services) != 1 {
		t.Fatal("a flush dropped a node still within its TTL")
	}
	waitFor(t, 3*time.Second, func() bool { return len(w.Current().Services) == 0 })
	if err := s.WriteHeartbeat(ctx, node("a", "x"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, func() bool { return len(w.Current().Services) == 1 })
	// Redis restart: the watcher keeps its last snapshot meanwhile, then recovers.
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteHeartbeat(ctx, node("a", "x", "y"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, func() bool { return len(w.Current().Services) == 2 && w.Current().RedisOK })
	// A graceful stop still removes the node at once.
	if err := s.RemoveNode(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, func() bool { return len(w.Current().Services) == 0 })
}

func TestRestoreOperatorStateAfterDataLoss(t *testing.T) {
	srv := testredis.Private(t)
	c := srv.Client(t)
	s := state.New(c, "")
	ctx := context.Background()
	cat, _ := state.ParseCatalog("c", []byte("roles:\n  - name: coder\n    candidates: [a]\n"))
	if err := s.PutCatalog(ctx, cat); err != nil {
		t.Fatal(err)
	}
	if err := s.PutKey(ctx, fleet.APIKey{ID: "k1", Hash: fleet.HashKeyHex("s1"), Scope: fleet.ScopeClient}); err != nil {
		t.Fatal(err)
	}
	w := state.NewWatcher(state.New(srv.Client(t), ""), state.WatcherOptions{Resync: 100 * time.Millisecond, Restore: true})
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go w.Run(wctx)
	waitFor(t, 2*time.Second, func() bool { return len(w.Current().Keys) == 1 && len(w.Current().Catalog.Roles) == 1 })

	if err := srv.Restart(); err != nil { // no persistence: everything is gone
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, func() bool {
		got, err := s.GetCatalog(ctx)
		keys, _ := s.ListKeys(ctx)
		return err == nil && len(got.Roles) == 1 && len(keys) == 1
	})
	if len(w.Current().Keys) != 1 {
		t.Fatal("the snapshot lost its keys: auth would have turned off")
	}
	// A real deletion (the marker is present) is respected, not undone.
	if err := s.DeleteKey(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, func() bool { return len(w.Current().Keys) == 0 })
	time.Sleep(300 * time.Millisecond)
	if keys, _ := s.ListKeys(ctx); len(keys) != 0 {
		t.Fatal("a deleted key was restored")
	}
}

func TestCatalogErrorsNameFileLineField(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"roles:\n  - name: coder\n    candidates: [a]\n    operation: painting\n", "cat.yaml:4: roles[0].operation: unknown operation"},
		{"roles:\n  - name: a\n    candidates: [x]\n  - name: b\n    aliases: [A]\n    candidates: [x]\n", "cat.yaml:5: roles[1].aliases[0]: alias \"A\" is already used"},
		{"roles:\n  - name: a\n    fallback_roles: [ghost]\n", "cat.yaml:3: roles[0].fallback_roles[0]: unknown role \"ghost\""},
		{"roles:\n  - name: a\n    candidates: [x]\n    colour: red\n", "cat.yaml:4: field colour not found"},
		{"roles:\n  - name: a\n    candidates: [x]\n    request_policy:\n      system_prompt: {mode: shout, text: hi}\n", "cat.yaml:5: roles[0].request_policy.system_prompt.mode: unknown mode"},
	}
	for _, tc := range cases {
		_, err := state.ParseCatalog("cat.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, fleet.ErrInvalid) {
			t.Errorf("yaml %q: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
	good := "roles:\n  - name: coder\n    aliases: [code]\n    candidates: [qwen3:8b]\n    fallback_roles: [general]\n  - name: general\n    preferred_families: [llama]\n"
	c, err := state.ParseCatalog("ok.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := c.Role("CODE"); !ok || r.Name != "coder" || r.Operation != fleet.KindChat {
		t.Fatalf("alias lookup: %+v %v", r, ok)
	}
}

func TestCatalogStoreRoundTrip(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	cat, err := state.ParseCatalog("x", []byte("roles:\n  - name: coder\n    candidates: [a]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutCatalog(ctx, cat); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetCatalog(ctx)
	if err != nil || len(got.Roles) != 1 || got.Version == "" {
		t.Fatalf("got %+v, %v", got, err)
	}
	bad := &fleet.Catalog{Roles: []fleet.Role{{Name: "x"}}}
	if err := s.PutCatalog(ctx, bad); !errors.Is(err, fleet.ErrInvalid) {
		t.Fatalf("invalid catalog stored: %v", err)
	}
	if again, _ := s.GetCatalog(ctx); again.Version != got.Version {
		t.Fatal("refused catalog changed the stored one")
	}
}

func TestBenchSamplesBounded(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	var samples []fleet.BenchSample
	for i := 0; i < 30; i++ {
		samples = append(samples, fleet.BenchSample{Workload: "w", Model: "m", Quality: 0.5, LatencyMS: 10})
	}
	if err := s.AddBenchSamples(ctx, samples, 20); err != nil {
		t.Fatal(err)
	}
	sum, err := s.BenchSummaries(ctx)
	if err != nil || len(sum) != 1 || sum[0].Samples != 20 || sum[0].Quality != 0.5 {
		t.Fatalf("summaries %+v %v", sum, err)
	}
	if err := s.AddBenchSamples(ctx, []fleet.BenchSample{{Workload: "w", Model: "m", Quality: 2}}, 20); !errors.Is(err, fleet.ErrInvalid) {
		t.Fatalf("quality 2 accepted: %v", err)
	}
}

// waitFor polls cond until it holds. d is what a quiet machine needs; the
// deadline is at least 30s so a loaded machine fails only when the code is
// wrong.
func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	d = max(d, 30*time.Second)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s", d)
}

func TestRoundRobinBatchesAreConsecutive(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	if v, err := s.NextRR(ctx, "t"); err != nil || v != 1 {
		t.Fatalf("first value %d %v", v, err)
	}
	if v, _ := s.NextRRN(ctx, "t", 5); v != 6 { // owns 2..6
		t.Fatalf("batch of 5 ends at %d, want 6", v)
	}
	if v, _ := s.NextRR(ctx, "t"); v != 7 {
		t.Fatalf("after the batch: %d, want 7", v)
	}
	if ttl := c.TTL(ctx, s.RRKey("t")).Val(); ttl <= 0 {
		t.Fatalf("counter has no idle expiry (ttl %v)", ttl)
	}
	if _, err := s.NextRRN(ctx, "t", 0); !errors.Is(err, fleet.ErrInvalid) {
		t.Fatalf("batch of 0: %v", err)
	}
}

// TestClusterKeysSpread: on a Redis Cluster the hot keys of 100 targets
// (round-robin counters, in-flight sets, cooldowns) land on every master,
// and every multi-key operation on them works (no CROSSSLOT). Elsewhere
// it checks the same operations on one slot-less server.
func TestClusterKeysSpread(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	inf := state.NewInflight(s, "e1", time.Minute)
	var svcs []string
	for i := 0; i < 100; i++ {
		target := fmt.Sprintf("t%03d", i)
		svc := fmt.Sprintf("h%03d/chat", i)
		svcs = append(svcs, svc)
		if _, err := s.NextRR(ctx, target); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RecordFailure(ctx, svc, 1, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i+4 <= len(svcs); i += 4 {
		if _, _, l, err := inf.PickLeastLoaded(ctx, svcs[i:i+4], nil); err != nil || !l.Valid() {
			t.Fatalf("least-loaded pick over 4 services: %v", err)
		}
	}
	inf.Flush(ctx)
	cool, err := s.Cooldowns(ctx, svcs)
	if err != nil || len(cool) != 100 {
		t.Fatalf("cooldowns: %d of 100, %v", len(cool), err)
	}
	counts, err := s.InflightCounts(ctx, svcs)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, n := range counts {
		total += n
	}
	if total != 25 {
		t.Fatalf("in-flight total %d, want 25 (one per pick)", total)
	}
	cc, ok := c.(*redis.ClusterClient)
	if !ok {
		t.Skip("not a Redis Cluster: the spread over masters is checked on one (GENIEHIVE_TEST_REDIS=redis+cluster://...)")
	}
	perMaster := map[string]map[string]int{}
	var mu sync.Mutex
	err = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		got := map[string]int{}
		for _, fam := range []string{"rr:", "if:", "health:"} {
			iter := m.Scan(ctx, 0, prefix+fam+"*", 1000).Iterator()
			for iter.Next(ctx) {
				got[fam]++
			}
			if err := iter.Err(); err != nil {
				return err
			}
		}
		mu.Lock()
		perMaster[m.Options().Addr] = got
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("keys per master: %v", perMaster)
	if len(perMaster) < 3 {
		t.Fatalf("%d masters, want 3", len(perMaster))
	}
	for addr, got := range perMaster {
		for _, fam := range []string{"rr:", "if:", "health:"} {
			if got[fam] == 0 {
				t.Errorf("master %s holds no %s keys: one shard carries the whole family", addr, fam)
			}
		}
	}
}
