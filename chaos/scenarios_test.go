package chaos

import (
	"strings"
	"testing"
	"time"
)

// Scenario 1: SIGKILL one edge replica under load, then start it again.
// Requests in flight on the killed replica may see their connection cut
// (the client gets a transport error, never a short body); everything else
// must succeed: HAProxy retries connection failures on another replica and
// its health check takes the dead one out of the pool.
func TestKillEdge(t *testing.T) {
	c := startCluster(t)
	ctx := ctxT(t, 2*time.Minute)
	load := startLoad(c)
	sleep(3 * time.Second)
	victim := c.Edges[1]
	if err := c.Kill(ctx, victim); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitLBStatus(ctx, victim.Alias, func(s string) bool { return strings.HasPrefix(s, "DOWN") || strings.HasPrefix(s, "MAINT") }); err != nil {
		t.Error(err)
	}
	sleep(2 * time.Second)
	if err := c.Restart(ctx, victim); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitLBServers(ctx, 3); err != nil {
		t.Error(err)
	}
	sleep(3 * time.Second)
	s := load.Stop()
	report(t, "1 kill edge (SIGKILL)", s, true, true)
	verifyInflight(t, c, victim.Alias)
	verifyRegistry(t, c, "node1", "node2")
}

// Scenario 2: rolling restart of every edge, one at a time, with graceful
// drain (SIGTERM, bounded grace): zero failed requests.
func TestRollingRestart(t *testing.T) {
	c := startCluster(t)
	ctx := ctxT(t, 3*time.Minute)
	load := startLoad(c)
	sleep(2 * time.Second)
	for _, e := range c.Edges {
		if err := c.Stop(ctx, e, 15*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := c.Restart(ctx, e); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitLBServers(ctx, 3); err != nil {
			t.Fatal(err)
		}
		sleep(time.Second)
	}
	sleep(2 * time.Second)
	s := load.Stop()
	report(t, "2 rolling restart", s, false, false)
	verifyInflight(t, c)
	verifyRegistry(t, c, "node1", "node2")
}

// Scenario 3: restart Redis, losing all state. Edges keep serving from
// their snapshots; node agents re-register on their next heartbeat; routing
// converges (every model listed again, requests still answered).
func TestRedisRestart(t *testing.T) {
	c := startCluster(t)
	ctx := ctxT(t, 2*time.Minute)
	load := startLoad(c)
	sleep(3 * time.Second)
	if err := c.Stop(ctx, c.Redis, time.Second); err != nil {
		t.Fatal(err)
	}
	sleep(2 * time.Second) // edges run on their snapshots with Redis down
	if err := c.Restart(ctx, c.Redis); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	verifyRegistry(t, c, "node1", "node2")
	t.Logf("node agents re-registered %s after Redis came back", time.Since(t0).Round(time.Millisecond))
	if err := c.WaitModels(ctx, []string{chatModel, embedModel, soloModel}, nil); err != nil {
		t.Error(err)
	}
	sleep(3 * time.Second)
	s := load.Stop()
	report(t, "3 redis restart", s, true, false)
	verifyInflight(t, c)
}

// Scenario 4: SIGKILL a node agent and its upstream. Its models leave
// /v1/models within the heartbeat TTL (plus the edges' resync slack);
// requests for shared models fail over to the other upstream before the
// first byte, so none fails.
func TestKillNode(t *testing.T) {
	c := startCluster(t)
	ctx := ctxT(t, 2*time.Minute)
	load := startLoad(c)
	sleep(3 * time.Second)
	t0 := time.Now()
	if err := c.Kill(ctx, c.Nodes[1]); err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(ctx, c.Upstreams[1]); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitModels(ctxT(t, hbTTL+5*time.Second), []string{chatModel, embedModel}, []string{soloModel}); err != nil {
		t.Error(err)
	}
	gone := time.Since(t0)
	t.Logf("%s left /v1/models %s after the kill (heartbeat TTL %s)", soloModel, gone.Round(time.Millisecond), hbTTL)
	if gone > hbTTL+2*time.Second {
		t.Errorf("%s took %s to leave /v1/models; the heartbeat TTL is %s", soloModel, gone, hbTTL)
	}
	sleep(3 * time.Second)
	s := load.Stop()
	report(t, "4 kill node+upstream", s, false, false)
	verifyInflight(t, c)
	verifyRegistry(t, c, "node1")
}

// Scenario 5: cut up2 off from the edges (disconnect it from the cluster
// network) while its node agent still reaches it and Redis: the agent keeps
// reporting it healthy, so only the edges' active probing or passive
// cooldown can take it out of rotation. Requests fail over meanwhile; after
// a detection window no request is attempted on it any more.
func TestPartitionUpstream(t *testing.T) {
	c := startCluster(t)
	ctx := ctxT(t, 2*time.Minute)
	load := startLoad(c)
	sleep(3 * time.Second)
	if err := c.Disconnect(ctx, c.Upstreams[1], c.Network); err != nil {
		t.Fatal(err)
	}
	sleep(6 * time.Second) // detection window
	before, err := edgesMetricSum(ctx, c, "geniehive_failovers_total", "up2")
	if err != nil {
		t.Fatal(err)
	}
	sleep(5 * time.Second)
	after, err := edgesMetricSum(ctx, c, "geniehive_failovers_total", "up2")
	if err != nil {
		t.Fatal(err)
	}
	s := load.Stop()
	report(t, "5 partition upstream", s, false, false)
	t.Logf("failovers away from up2: %v at the end of the detection window, %v five seconds later", before, after)
	if before == 0 {
		t.Errorf("no failover away from the cut-off upstream was recorded; was it ever tried?")
	}
	if after > before {
		t.Errorf("the cut-off upstream is still in rotation: %v more failed attempts after the detection window", after-before)
	}
	if err := c.Connect(ctx, c.Upstreams[1], c.Network); err != nil {
		t.Error(err)
	}
	verifyInflight(t, c)
	verifyRegistry(t, c, "node1", "node2")
}
