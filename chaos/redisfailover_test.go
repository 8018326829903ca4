package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geniehive/geniehive/deploy/localimages"
	"github.com/geniehive/geniehive/ghtest"
	"github.com/geniehive/geniehive/state"
)

// edgeYAMLRR is edgeYAMLNoProbe with round robin as the default strategy:
// every request takes a value of a shared counter in Redis (INCR) on its
// path, so Redis is on the request path of every request.
const edgeYAMLRR = `
presence_interval: 1s
timeouts:
  connect: 1s
  request: 5s
  stream_idle: 5s
  shutdown: 10s
failover:
  attempts: 3
routing:
  default_strategy: round_robin
  failure_threshold: 2
  cooldown: 30s
`

// failoverCatalog is the role catalog of the Redis failover scenarios; the
// load asks for its roles, so every request reads the catalog.
const failoverCatalog = `version: "chaos-failover-1"
roles:
  - name: assistant
    operation: chat
    candidates: ["` + chatModel + `"]
  - name: embedder
    operation: embeddings
    candidates: ["` + embedModel + `"]
`

// reconnectGrace is how long, after the topology has named the new master,
// clients may still fail: go-redis learns of the switch from Sentinel's
// +switch-master message or from a Cluster's errors and slot reload, and
// requests already waiting on the dead master's connections fail with
// them.
const reconnectGrace = 5 * time.Second

// Scenario 7: SIGKILL the Redis master of a Sentinel group (1 master,
// 1 replica, 3 sentinels) under steady load through the load balancer,
// with round robin (a Redis INCR on every request) and a role catalog
// (every request resolves a role). Sentinel promotes the replica.
// Promise: every request succeeds or gets a clean retryable OpenAI error
// (HTTP 503 with an OpenAI error body), and only within
// the failover window, from the kill until the sentinels name the new
// master plus reconnectGrace; nothing hangs, is cut or is truncated, and
// every request after the window succeeds. Then: every edge and node agent
// writes to the new master on its own; the round-robin counter went on
// from where it stood and the rotation stayed even; the catalog and the
// pushed policy bundle are intact in Redis and on every edge.
func TestSentinelKillMaster(t *testing.T) {
	redisFailover(t, "7 sentinel kill master", ghtest.RedisSentinel, func(ctx context.Context, c *ghtest.Cluster, s *state.Store) (string, error) {
		sc, err := c.SentinelClient(ctx, 0)
		if err != nil {
			return "", err
		}
		defer sc.Close()
		addr0, err := sentinelMaster(ctx, sc)
		if err != nil {
			return "", err
		}
		victim, err := c.RedisNode(ctx, addr0)
		if err != nil {
			return "", err
		}
		if err := c.Kill(ctx, victim); err != nil {
			return "", err
		}
		for {
			a, err := sentinelMaster(ctx, sc)
			if err == nil && a != addr0 {
				return fmt.Sprintf("killed master %s (%s); sentinels promoted %s", victim.Alias, addr0, a), nil
			}
			if ctx.Err() != nil {
				return "", fmt.Errorf("sentinels still name %s (err %v): %w", addr0, err, ctx.Err())
			}
			sleep(50 * time.Millisecond)
		}
	})
}

// Scenario 8: SIGKILL the Redis Cluster master (of 3 masters + 3
// replicas) that holds the chat role's round-robin counter, under the same
// load; its replica takes over its slots. The same promise and checks as
// scenario 7, the window ending when the surviving nodes map the slots to
// the promoted replica and report cluster_state:ok, plus reconnectGrace.
func TestClusterKillMaster(t *testing.T) {
	redisFailover(t, "8 cluster kill master", ghtest.RedisCluster, func(ctx context.Context, c *ghtest.Cluster, s *state.Store) (string, error) {
		cc := s.Client().(*redis.ClusterClient)
		rr, err := scanKeys(ctx, cc, s.Prefix()+"rr:*")
		if err != nil || len(rr) == 0 {
			return "", fmt.Errorf("no round-robin counter to follow (%v)", err)
		}
		slot, err := cc.ClusterKeySlot(ctx, rr[0]).Result()
		if err != nil {
			return "", err
		}
		slots, err := cc.ClusterSlots(ctx).Result()
		if err != nil {
			return "", err
		}
		var master, replica string
		for _, r := range slots {
			if int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 1 {
				master, replica = r.Nodes[0].Addr, r.Nodes[1].Addr
			}
		}
		if master == "" {
			return "", fmt.Errorf("slot %d of %s has no master with a replica in %v", slot, rr[0], slots)
		}
		victim, err := c.RedisNode(ctx, master)
		if err != nil {
			return "", err
		}
		if err := c.Kill(ctx, victim); err != nil {
			return "", err
		}
		// Ask a survivor (not the promoted replica) for its view.
		var witness *ghtest.Container
		for _, n := range c.RedisNodes {
			if ip, err := c.IP(ctx, n); err == nil && n != victim && net.JoinHostPort(ip, "6379") != replica {
				witness = n
				break
			}
		}
		ep, err := witness.PortEndpoint(ctx, ghtest.RedisPort, "")
		if err != nil {
			return "", err
		}
		wc := redis.NewClient(&redis.Options{Addr: ep, ContextTimeoutEnabled: true})
		defer wc.Close()
		for {
			info, _ := wc.ClusterInfo(ctx).Result()
			now, _ := wc.ClusterSlots(ctx).Result()
			for _, r := range now {
				if int64(r.Start) <= slot && slot <= int64(r.End) && r.Nodes[0].Addr == replica && strings.Contains(info, "cluster_state:ok") {
					return fmt.Sprintf("killed master %s (%s, slots %d-%d, key %s); replica %s took over", victim.Alias, master, r.Start, r.End, rr[0], replica), nil
				}
			}
			if ctx.Err() != nil {
				return "", fmt.Errorf("slot %d not moved to %s: %w", slot, replica, ctx.Err())
			}
			sleep(50 * time.Millisecond)
		}
	})
}

func sentinelMaster(ctx context.Context, sc *redis.SentinelClient) (string, error) {
	a, err := sc.GetMasterAddrByName(ctx, ghtest.SentinelMaster).Result()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(a[0], a[1]), nil
}

// redisFailover runs one Redis failover scenario: fail kills a master and
// returns once the topology has switched (with a description).
func redisFailover(t *testing.T, name string, topo ghtest.RedisTopology, fail func(context.Context, *ghtest.Cluster, *state.Store) (string, error)) {
	// Production-like heartbeats (the defaults are 5s/15s): a failover is
	// shorter than the TTL, so no node expires while Redis is switching.
	const hb, ttl = time.Second, 10 * time.Second
	t0 := time.Now()
	c := startClusterYAML(t, edgeYAMLRR, ghtest.WithRedisTopology(topo), ghtest.WithHeartbeat(hb, ttl),
		ghtest.WithCatalog([]byte(failoverCatalog)))
	t.Logf("cluster up in %s", time.Since(t0).Round(time.Millisecond))
	ctx := ctxT(t, 90*time.Second)
	s, err := c.Store(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Client().Close()
	version := pushPolicy(ctx, t, c, s)
	cat0, err := s.GetCatalog(ctx)
	if err != nil || len(cat0.Roles) != 2 {
		t.Fatalf("catalog before the failover: %+v (err %v)", cat0, err)
	}

	load := StartLoad(LoadConfig{BaseURL: c.BaseURL, APIKey: c.APIKey, Workers: 4, Pause: 40 * time.Millisecond,
		ChatModel: "assistant", EmbedModel: "embedder"})
	sleep(3 * time.Second)
	rrBefore := rrSum(ctx, t, s)
	edges0, nodes0 := presence(ctx, t, s)

	tKill := time.Now()
	window := load.Mark()
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	what, err := fail(fctx, c, s)
	cancel()
	if err != nil {
		load.Stop()
		t.Fatal(err)
	}
	switched := time.Since(tKill)
	t.Logf("%s, %s after the kill", what, switched.Round(time.Millisecond))
	windowEnd := time.Now().Add(reconnectGrace)
	closed := time.AfterFunc(reconnectGrace, window)
	defer closed.Stop()

	// Every edge and node agent writes to the new master on its own: its
	// presence / heartbeat deadline moves past the one it had at the kill.
	var reconnected time.Duration
	for {
		e, n := presence(ctx, t, s)
		stale := staleOnes(edges0, e, 2*time.Second)
		stale = append(stale, staleOnes(nodes0, n, 2*time.Second)...)
		if len(stale) == 0 {
			reconnected = time.Since(tKill)
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("not writing to the new master: %v", stale)
		}
		sleep(100 * time.Millisecond)
	}
	// Load after the window: every request must succeed.
	sleep(time.Until(windowEnd) + 3*time.Second)
	sum := load.Stop()
	recovered := time.Duration(0)
	if !sum.LastFailure.IsZero() {
		recovered = sum.LastFailure.Sub(tKill)
	}
	report(t, name, sum, promise{errorAtFault: true})
	// The retryable errors are the edge's 503s (state_unavailable when a
	// round-robin INCR failed, Retry-After set), not a 500 or a timeout.
	for k, n := range sum.ByKind {
		if k != "retryable HTTP 503 server_error" {
			t.Errorf("%d requests failed as %q; a Redis failover may only cost 503s", n, k)
		}
	}
	figures := fmt.Sprintf("chaos %-28s switch=%s every_edge_and_node_rewrote=%s last_failure_after_kill=%s errors_by_kind=%v",
		name+":", switched.Round(time.Millisecond), reconnected.Round(time.Millisecond), recovered.Round(time.Millisecond), kinds(sum.ByKind))
	fmt.Println(figures)
	t.Log(figures)
	appendSummary(figures)

	// Round robin went on from where it stood, and stayed even.
	if after := rrSum(ctx, t, s); after < rrBefore {
		t.Errorf("round-robin counters went back from %d to %d: the rotation started over", rrBefore, after)
	} else {
		t.Logf("round-robin counters %d before the kill, %d after", rrBefore, after)
	}
	// The chat services (both upstreams serve the chat model; the
	// embeddings rotation is not compared: up2's may not be routable).
	a, err := edgesMetricSum(ctx, c, "geniehive_requests_total", `service="node1/up1"`)
	if err != nil {
		t.Fatal(err)
	}
	b, err := edgesMetricSum(ctx, c, "geniehive_requests_total", `service="node2/up2"`)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("chat requests served: node1/up1 %v, node2/up2 %v", a, b)
	if d := a - b; a == 0 || b == 0 || d > (a+b)/5 || -d > (a+b)/5 {
		t.Errorf("round robin uneven across the failover: node1/up1 %v, node2/up2 %v", a, b)
	}
	// Catalog and policy intact, in Redis and on every edge.
	cat, err := s.GetCatalog(ctx)
	if err != nil || cat.Version != cat0.Version || len(cat.Roles) != 2 {
		t.Errorf("catalog after the failover: %+v (err %v), want version %s", cat, err, cat0.Version)
	}
	for i := range c.Edges {
		ids, err := edgeModels(ctx, c, i)
		if err != nil || !contains(ids, "assistant") || !contains(ids, "embedder") {
			t.Errorf("edge %d lists %v (err %v): roles missing after the failover", i, ids, err)
		}
	}
	pb, err := s.GetPolicyBundle(ctx)
	if err != nil || pb == nil || pb.Version != version {
		t.Errorf("policy bundle after the failover: %v (err %v), want version %s", pb, err, short(version))
	}
	edges, err := s.ListEdges(ctx)
	if err != nil || len(edges) != len(c.Edges) {
		t.Errorf("edges after the failover: %d (err %v)", len(edges), err)
	}
	for _, e := range edges {
		if e.PolicyVersion != version || e.PolicyError != "" {
			t.Errorf("edge %s runs bundle %s (%s) after the failover, want %s", e.ID, short(e.PolicyVersion), e.PolicyError, short(version))
		}
	}
	verifyInflight(t, c)
	verifyRegistry(t, c, "node1", "node2")
}

func kinds(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	var out []string
	for k, n := range m {
		out = append(out, fmt.Sprintf("%s=%d", strings.ReplaceAll(k, " ", "_"), n))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// pushPolicy pushes the shipped Rego policy (with a nonce) with `geniehive
// policy push` and waits until every edge runs it; it returns its version.
func pushPolicy(ctx context.Context, t *testing.T, c *ghtest.Cluster, s *state.Store) string {
	t.Helper()
	dir := filepath.Join(localimages.RepoRoot(), "policies", "rego")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "geniehive.rego" {
			b = append(b, []byte("\n# chaos failover "+nonce+"\n")...)
		}
		files["/bundle/"+e.Name()] = string(b)
	}
	if out, err := c.Command(ctx, files, "policy", "push", "/bundle"); err != nil {
		t.Fatalf("policy push: %v: %s", err, out)
	}
	pb, err := s.GetPolicyBundle(ctx)
	if err != nil || pb == nil {
		t.Fatalf("no bundle in Redis after the push: %v", err)
	}
	for {
		edges, err := s.ListEdges(ctx)
		n := 0
		for _, e := range edges {
			if e.PolicyVersion == pb.Version {
				n++
			}
		}
		if err == nil && n == len(c.Edges) {
			return pb.Version
		}
		if ctx.Err() != nil {
			t.Fatalf("edges did not all switch to bundle %s: %v (err %v)", short(pb.Version), edges, err)
		}
		sleep(200 * time.Millisecond)
	}
}

// rrSum adds up every round-robin counter.
func rrSum(ctx context.Context, t *testing.T, s *state.Store) uint64 {
	t.Helper()
	keys, err := scanKeys(ctx, s.Client(), s.Prefix()+"rr:*")
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, k := range keys {
		v, err := s.Client().Get(ctx, k).Uint64()
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		n += v
	}
	return n
}

// presence returns each edge's presence deadline and each node's
// heartbeat deadline as Redis holds them now.
func presence(ctx context.Context, t *testing.T, s *state.Store) (edges, nodes map[string]time.Time) {
	t.Helper()
	edges, nodes = map[string]time.Time{}, map[string]time.Time{}
	for ctx.Err() == nil {
		es, err1 := s.ListEdges(ctx)
		ns, err2 := s.ReadNodes(ctx)
		if err1 == nil && err2 == nil {
			for _, e := range es {
				edges["edge "+e.ID] = e.Deadline
			}
			for _, n := range ns {
				nodes["node "+n.State.Host.ID] = n.Deadline
			}
			return edges, nodes
		}
		sleep(100 * time.Millisecond)
	}
	t.Fatal("Redis unreadable from the host")
	return
}

// staleOnes lists the entries of before whose deadline in now has not
// moved at least by d (not rewritten since).
func staleOnes(before, now map[string]time.Time, d time.Duration) []string {
	var out []string
	for id, t0 := range before {
		if t1, ok := now[id]; !ok || t1.Sub(t0) < d {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// scanKeys lists the keys matching pattern, on every master of a Cluster
// (KEYS on a cluster client asks one node only).
func scanKeys(ctx context.Context, rc redis.UniversalClient, pattern string) ([]string, error) {
	var mu sync.Mutex
	var keys []string
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		it := c.Scan(ctx, 0, pattern, 1000).Iterator()
		var local []string
		for it.Next(ctx) {
			local = append(local, it.Val())
		}
		mu.Lock()
		keys = append(keys, local...)
		mu.Unlock()
		return it.Err()
	}
	var err error
	if cc, ok := rc.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return scan(ctx, m) })
	} else {
		err = scan(ctx, rc)
	}
	sort.Strings(keys)
	return keys, err
}
