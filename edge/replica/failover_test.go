package replica_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geniehive/geniehive/edge/replica"
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/loadtest/sim"
	"github.com/geniehive/geniehive/routing"
)

// TestSentinelFailoverUnderLoad runs on a Sentinel group only
// (GENIEHIVE_TEST_REDIS=redis+sentinel://..., as scripts/test.sh does): an
// edge serves steady round-robin traffic while Sentinel moves the master
// to the replica (SENTINEL FAILOVER); the edge reconnects on its own
// (checks: failoverUnderLoad).
//
// It starts on a settled group: after a failover the old master stays a
// master for about ten seconds, listed by the sentinels as a replica
// already; the next run's failover in that window (-count=2) could promote
// it, losing that run's writes (testredis.SentinelSettled).
func TestSentinelFailoverUnderLoad(t *testing.T) {
	sc, master, ok := testredis.Sentinel(t)
	if !ok {
		t.Skip("needs a Sentinel group: GENIEHIVE_TEST_REDIS=redis+sentinel://... (scripts/test.sh starts one)")
	}
	testredis.SentinelSettled(t, time.Minute)
	failoverUnderLoad(t, func(ctx context.Context) {
		addr0, err := sc.GetMasterAddrByName(ctx, master).Result()
		if err != nil {
			t.Fatal(err)
		}
		if err := sc.Failover(ctx, master).Err(); err != nil {
			t.Fatalf("SENTINEL FAILOVER: %v", err)
		}
		waitFor(t, "sentinel to name a new master", func() bool {
			a, err := sc.GetMasterAddrByName(ctx, master).Result()
			return err == nil && net.JoinHostPort(a[0], a[1]) != net.JoinHostPort(addr0[0], addr0[1])
		})
		t.Logf("sentinel: master %v replaced", addr0)
	})
}

// TestClusterFailoverUnderLoad runs on a Redis Cluster only: the same load
// while every shard's replica takes over from its master in turn (CLUSTER
// FAILOVER on the replica), so every key the edge uses moves to a promoted
// replica.
func TestClusterFailoverUnderLoad(t *testing.T) {
	if !testredis.IsCluster(t) {
		t.Skip("needs a Redis Cluster: GENIEHIVE_TEST_REDIS=redis+cluster://... (scripts/test.sh starts one)")
	}
	failoverUnderLoad(t, func(ctx context.Context) {
		c := testredis.Client(t).(*redis.ClusterClient)
		slots, err := c.ClusterSlots(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, sr := range slots {
			master, replica := testredis.FailOverSlots(ctx, t, c, sr.Start)
			t.Logf("cluster: slots %d-%d moved from %s to %s", sr.Start, sr.End, master, replica)
		}
	})
}

// failoverUnderLoad starts an edge on two upstreams with round robin,
// drives it with 4 clients, calls fail (which returns once the topology has
// switched), and checks: every request succeeded or got a clean retryable
// OpenAI error; requests succeed after the switch; the round-robin counter
// went on from where it stood (it was replicated), the rotation stayed even;
// no in-flight lease is left once the load stops.
func failoverUnderLoad(t *testing.T, fail func(context.Context)) {
	ctx := context.Background()
	url, st, prefix, up, _, cancel := start(t, func(c *replica.Config) {
		c.Routing.DefaultStrategy = routing.StrategyRoundRobin
	}, sim.Behavior{})
	defer cancel()
	// A second upstream serving the same model, so the rotation matters.
	up2, err := sim.Start(sim.Config{Models: []sim.Model{{Name: "llama3.1:8b", Family: "llama", Loaded: true}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up2.Close() })
	ns := &fleet.NodeState{Host: fleet.Host{ID: "gpu2"}, Services: []fleet.Service{{
		ID: "gpu2/chat", HostID: "gpu2", Name: "chat", Kind: fleet.KindChat, Protocol: fleet.ProtocolOpenAI,
		Endpoint: up2.URL(), Healthy: true, Assets: []fleet.Asset{{Name: "llama3.1:8b", Family: "llama", Loaded: true}},
	}}}
	if err := st.WriteHeartbeat(ctx, ns, time.Minute); err != nil {
		t.Fatal(err)
	}
	hits := func() (int64, int64) {
		return up.Requests("/v1/chat/completions"), up2.Requests("/v1/chat/completions")
	}
	waitFor(t, "both upstreams to take requests", func() bool {
		chat(url, false)
		a, b := hits()
		return a > 0 && b > 0
	})
	rrKeys := func() []string { return testredis.Keys(t, st.Client(), prefix+"rr:*") }
	rrValue := func() uint64 {
		var n uint64
		for _, k := range rrKeys() {
			v, _ := st.Client().Get(ctx, k).Uint64()
			n += v
		}
		return n
	}

	// Steady load: 4 clients, as fast as the edge answers.
	var okN, retryable, bad atomic.Int64
	var badMu sync.Mutex
	var badBodies []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, body, err := chat(url, false)
				switch {
				case err == nil && code == 200:
					okN.Add(1)
				case err == nil && (code == 502 || code == 503 || code == 504) && strings.Contains(body, `"error"`):
					retryable.Add(1)
				default:
					bad.Add(1)
					badMu.Lock()
					badBodies = append(badBodies, body)
					badMu.Unlock()
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	before := rrValue()
	t0 := time.Now()
	fail(ctx)
	okAtSwitch := okN.Load()
	// Serving after the switch: more successes through the new master.
	waitFor(t, "requests to succeed after the failover", func() bool { return okN.Load() > okAtSwitch+50 })
	recovered := time.Since(t0)
	close(stop)
	wg.Wait()
	after := rrValue()
	t.Logf("requests ok %d, retryable errors %d, other %d; rr counter %d before, %d after; serving again %v after the failover began",
		okN.Load(), retryable.Load(), bad.Load(), before, after, recovered)
	if bad.Load() > 0 {
		t.Fatalf("%d requests failed without a clean retryable error: %.300q", bad.Load(), badBodies)
	}
	if after < before {
		t.Fatalf("round-robin counter went back from %d to %d: the rotation started over", before, after)
	}
	a, b := hits()
	if d := a - b; d > (a+b)/5 || -d > (a+b)/5 {
		t.Fatalf("round robin uneven across the failover: %d vs %d", a, b)
	}
	// Every lease ends: no request stays counted on the new master.
	waitFor(t, "in-flight counts to return to 0", func() bool {
		n, err := st.InflightCounts(ctx, []string{"gpu1/chat", "gpu2/chat"})
		return err == nil && n[0] == 0 && n[1] == 0
	})
}
