package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/geniehive/geniehive/deploy/localimages"
	"github.com/geniehive/geniehive/ghtest"
)

// Scenario 1: SIGKILL one edge replica under load, then start it again.
// Promise: only the connections the kill cut (requests in flight at the
// kill) may fail, as a transport error, never a short body or an error
// answer; everything else succeeds: HAProxy retries connection failures on
// another replica and its health check takes the dead one out.
func TestKillEdge(t *testing.T) {
	c := startCluster(t)
	ctx := ctxT(t, 2*time.Minute)
	load := startLoad(c)
	sleep(3 * time.Second)
	victim := c.Edges[1]
	killed := load.Mark()
	if err := c.Kill(ctx, victim); err != nil {
		t.Fatal(err)
	}
	killed()
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
	report(t, "1 kill edge (SIGKILL)", s, promise{cutAtFault: true})
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
	report(t, "2 rolling restart", s, promise{})
	verifyInflight(t, c)
	verifyRegistry(t, c, "node1", "node2")
}

// Scenario 3: restart Redis, losing all state. Promise: every request
// succeeds (edges serve from their snapshots; the scored strategy needs no
// Redis on the request path); node agents re-register on their next
// heartbeat and routing converges (every model listed again).
func TestRedisRestart(t *testing.T) {
	// Production-like heartbeats (the defaults are 5s/15s): a Redis restart
	// is shorter than the TTL, so the edges' snapshot entries stay valid.
	c := startCluster(t, ghtest.WithHeartbeat(time.Second, 10*time.Second))
	ctx := ctxT(t, 2*time.Minute)
	load := startLoad(c)
	sleep(3 * time.Second)
	if err := c.Stop(ctx, c.Redis, time.Second); err != nil {
		t.Fatal(err)
	}
	sleep(time.Second) // edges run on their snapshots with Redis down
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
	report(t, "3 redis restart", s, promise{})
	verifyInflight(t, c)
}

// Scenario 4: SIGKILL a node agent and its upstream. Promises: its models
// leave /v1/models on every edge within the heartbeat TTL (plus the edges'
// resync slack) through the TTL path alone (active probing is off here, so
// it cannot take the models out first); every request succeeds through
// failover, except streams already under way on up2 at the kill, which
// cannot fail over and end with an error event.
func TestKillNode(t *testing.T) {
	c := startClusterYAML(t, edgeYAMLNoProbe)
	ctx := ctxT(t, 2*time.Minute)
	load := startLoad(c)
	sleep(3 * time.Second)
	t0 := time.Now()
	killed := load.Mark()
	if err := c.Kill(ctx, c.Nodes[1]); err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(ctx, c.Upstreams[1]); err != nil {
		t.Fatal(err)
	}
	killed()
	// Every edge, each on its own: the load balancer would show only one.
	for i := range c.Edges {
		wctx := ctxT(t, hbTTL+10*time.Second)
		for {
			ids, err := edgeModels(wctx, c, i)
			if err == nil && !contains(ids, soloModel) && contains(ids, chatModel) && contains(ids, embedModel) {
				break
			}
			if wctx.Err() != nil {
				t.Fatalf("edge %d still lists %v (err %v) %s after the kill", i, ids, err, time.Since(t0).Round(time.Millisecond))
			}
			sleep(50 * time.Millisecond)
		}
		gone := time.Since(t0)
		t.Logf("edge %d: %s left /v1/models %s after the kill (heartbeat TTL %s)", i, soloModel, gone.Round(time.Millisecond), hbTTL)
		if gone > hbTTL+2*time.Second {
			t.Errorf("edge %d: %s took %s to leave /v1/models; the heartbeat TTL is %s", i, soloModel, gone, hbTTL)
		}
	}
	sleep(3 * time.Second)
	s := load.Stop()
	report(t, "4 kill node+upstream", s, promise{errorAtFault: true})
	verifyInflight(t, c)
	verifyRegistry(t, c, "node1")
}

// Scenario 5: cut up2 off from the edges (disconnect it from the cluster
// network) while its node agent still reaches it and Redis: the agent keeps
// reporting it healthy, so only the edges' active probing or passive
// cooldown can take it out of rotation. Promises: every request succeeds
// through failover, except streams already under way on up2 at the cut
// (they end with an error event); after a detection window no request is
// attempted on any of node2's up2 services (node2/up2 and
// node2/up2-embeddings) any more.
func TestPartitionUpstream(t *testing.T) {
	c := startCluster(t)
	ctx := ctxT(t, 2*time.Minute)
	load := startLoad(c)
	sleep(3 * time.Second)
	cut := load.Mark()
	if err := c.Disconnect(ctx, c.Upstreams[1], c.Network); err != nil {
		t.Fatal(err)
	}
	cut()
	tried := func() (float64, float64) {
		// No closing quote: node2/up2 and node2/up2-embeddings both.
		served, err := edgesMetricSum(ctx, c, "geniehive_requests_total", `service="node2/up2`)
		if err != nil {
			t.Fatal(err)
		}
		failed, err := edgesMetricSum(ctx, c, "geniehive_failovers_total", `"node2/up2`)
		if err != nil {
			t.Fatal(err)
		}
		return served, failed
	}
	// Detection window: attempts already on the wire when the cut happened
	// end after the edges' request timeout (5s); new attempts stop once
	// probing or cooldown has taken the upstream out.
	var timeline []string
	for i := 0; i < 10; i++ {
		sleep(time.Second)
		sv, fl := tried()
		timeline = append(timeline, fmt.Sprintf("%ds:%v/%v", i+1, sv, fl))
	}
	t.Logf("up2 served/failed attempts, by second after the cut: %s", strings.Join(timeline, " "))
	served0, failed0 := tried()
	sleep(5 * time.Second)
	served1, failed1 := tried()
	s := load.Stop()
	report(t, "5 partition upstream", s, promise{errorAtFault: true})
	t.Logf("up2 after the cut: %v failed attempts (failed over) within the detection window; in the 5s after it: %v served, %v failed attempts",
		failed0, served1-served0, failed1-failed0)
	if served1 > served0 || failed1 > failed0 {
		t.Errorf("the cut-off upstream is still in rotation after the detection window: %v requests served, %v attempts failed", served1-served0, failed1-failed0)
	}
	if err := c.Connect(ctx, c.Upstreams[1], c.Network); err != nil {
		t.Error(err)
	}
	verifyInflight(t, c)
	verifyRegistry(t, c, "node1", "node2")
}

// Scenario 6: push a new policy bundle (the shipped Rego policy with a
// change) into Redis mid-load with `geniehive policy push`: every replica
// switches to it, and nothing fails.
func TestPolicyPush(t *testing.T) {
	c := startCluster(t)
	ctx := ctxT(t, 2*time.Minute)
	files := map[string]string{}
	ents, err := os.ReadDir(filepath.Join(localimages.RepoRoot(), "policies", "rego"))
	if err != nil {
		t.Fatal(err)
	}
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(localimages.RepoRoot(), "policies", "rego", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "geniehive.rego" {
			b = append(b, []byte("\n# chaos push "+nonce+"\n")...)
		}
		files["/bundle/"+e.Name()] = string(b)
	}
	load := startLoad(c)
	sleep(3 * time.Second)
	out, err := c.Command(ctx, files, "policy", "push", "/bundle")
	t.Log(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	s0, err := c.Store(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s0.Client().Close()
	pb, err := s0.GetPolicyBundle(ctx)
	if err != nil || pb == nil {
		t.Fatalf("no bundle in Redis after the push: %v", err)
	}
	t0 := time.Now()
	var last []string
	for {
		edges, err := s0.ListEdges(ctx)
		last = last[:0]
		synced := 0
		for _, e := range edges {
			last = append(last, e.ID+"="+short(e.PolicyVersion)+" "+e.PolicyError)
			if e.PolicyVersion == pb.Version {
				synced++
			}
		}
		if err == nil && synced == len(c.Edges) {
			break
		}
		if time.Since(t0) > 20*time.Second {
			t.Errorf("edges did not all switch to bundle %s: %v (err %v)", short(pb.Version), last, err)
			break
		}
		sleep(200 * time.Millisecond)
	}
	t.Logf("every replica reports bundle %s %s after the push", short(pb.Version), time.Since(t0).Round(time.Millisecond))
	sleep(3 * time.Second)
	s := load.Stop()
	report(t, "6 policy push", s, promise{})
	verifyInflight(t, c)
	verifyRegistry(t, c, "node1", "node2")
}

func short(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	return v
}
