package state_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/state"
)

// BenchmarkClusterPublish measures what one change event costs a Redis
// Cluster, in the two forms issue 12 asks to choose between: plain PUBLISH
// (what the store sends; the cluster bus carries every message to every
// node, and the watcher's one PSUBSCRIBE on any node sees them all) and
// sharded SPUBLISH (only the shard owning the channel's slot, its master and
// replicas, sees it; a subscriber needs one SSUBSCRIBE per shard). Both
// publish the same messages on three channels, one per master, each with
// its subscriber(s) receiving every message, in pipelines of 100 (so the
// servers' work is measured, not round trips). Reported per message:
// redis-cpu-us/msg (user+sys CPU of all six servers, INFO cpu), and
// bus-msgs/msg (cluster_stats_messages_publish(shard)_sent of all six).
// Run on the Cluster of scripts/redis-topology.sh:
//
//	GENIEHIVE_TEST_REDIS=$GENIEHIVE_TEST_REDIS_CLUSTER go test ./state -run '^$' -bench ClusterPublish -benchtime 20000x -count 3
func BenchmarkClusterPublish(b *testing.B) {
	if !testredis.IsCluster(b) {
		b.Skip("needs a Redis Cluster: GENIEHIVE_TEST_REDIS=redis+cluster://... (scripts/redis-topology.sh starts one)")
	}
	c, prefix := testredis.New(b)
	cc := c.(*redis.ClusterClient)
	ctx := context.Background()
	if err := cc.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error { return n.Ping(ctx).Err() }); err != nil {
		b.Fatal(err)
	}
	channels := shardChannels(b, cc, prefix+"events:node:")
	for _, mode := range []string{"publish", "spublish"} {
		b.Run(mode, func(b *testing.B) {
			var got atomic.Int64
			var subs []*redis.PubSub
			if mode == "publish" {
				subs = append(subs, cc.PSubscribe(ctx, prefix+"events:*"))
			} else {
				for _, ch := range channels {
					subs = append(subs, cc.SSubscribe(ctx, ch))
				}
			}
			var wg sync.WaitGroup
			for _, ps := range subs {
				if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
					b.Fatal(err)
				}
				wg.Add(1)
				go func(ps *redis.PubSub) {
					defer wg.Done()
					for range ps.Channel() {
						got.Add(1)
					}
				}(ps)
			}
			cpu0, bus0 := clusterCost(b, cc)
			b.ResetTimer()
			for i := 0; i < b.N; i += 100 {
				_, err := cc.Pipelined(ctx, func(p redis.Pipeliner) error {
					for j := i; j < i+100 && j < b.N; j++ {
						ch := channels[j%len(channels)]
						if mode == "publish" {
							p.Publish(ctx, ch, "up")
						} else {
							p.SPublish(ctx, ch, "up")
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			deadline := time.Now().Add(30 * time.Second)
			for got.Load() < int64(b.N) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			if n := got.Load(); n != int64(b.N) {
				b.Fatalf("%s: the subscribers received %d of %d messages", mode, n, b.N)
			}
			cpu1, bus1 := clusterCost(b, cc)
			b.ReportMetric((cpu1-cpu0)*1e6/float64(b.N), "redis-cpu-us/msg")
			b.ReportMetric(float64(bus1-bus0)/float64(b.N), "bus-msgs/msg")
			for _, ps := range subs {
				ps.Close()
			}
			wg.Wait()
		})
	}
}

// shardChannels returns one channel name (base + a hash tag) per master.
func shardChannels(tb testing.TB, cc *redis.ClusterClient, base string) []string {
	tb.Helper()
	ctx := context.Background()
	slots, err := cc.ClusterSlots(ctx).Result()
	if err != nil {
		tb.Fatal(err)
	}
	owner := func(slot int64) string {
		for _, r := range slots {
			if int64(r.Start) <= slot && slot <= int64(r.End) {
				return r.Nodes[0].Addr
			}
		}
		return ""
	}
	seen := map[string]bool{}
	var out []string
	for i := 0; len(seen) < len(slots) && i < 1000; i++ {
		ch := base + "{h" + strconv.Itoa(i) + "}"
		slot, err := cc.ClusterKeySlot(ctx, ch).Result()
		if err != nil {
			tb.Fatal(err)
		}
		if m := owner(slot); m != "" && !seen[m] {
			seen[m] = true
			out = append(out, ch)
		}
	}
	if len(out) < 3 {
		tb.Fatalf("found channels on %d masters, want 3", len(out))
	}
	return out
}

// clusterCost sums the CPU seconds (user+sys) and the pub/sub messages
// sent over the cluster bus of every master and replica.
func clusterCost(tb testing.TB, cc *redis.ClusterClient) (cpu float64, bus int64) {
	tb.Helper()
	var mu sync.Mutex
	err := cc.ForEachShard(context.Background(), func(ctx context.Context, n *redis.Client) error {
		info, err := n.Info(ctx, "cpu").Result()
		if err != nil {
			return err
		}
		ci, err := n.ClusterInfo(ctx).Result()
		if err != nil {
			return err
		}
		var c float64
		for _, f := range []string{"used_cpu_sys", "used_cpu_user"} {
			c += infoFloat(info, f)
		}
		b := int64(infoFloat(ci, "cluster_stats_messages_publish_sent") + infoFloat(ci, "cluster_stats_messages_publishshard_sent"))
		mu.Lock()
		cpu += c
		bus += b
		mu.Unlock()
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return cpu, bus
}

func infoFloat(info, field string) float64 {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return 0
}

// TestWatcherAcrossClusterFailover runs on a Redis Cluster only: a
// master's replica takes over (CLUSTER FAILOVER on the replica) while 60
// nodes' keys sit on all three masters and full rebuilds (Refresh: a SCAN
// of every master, then a pipelined read) run in a loop on a second
// watcher; then a heartbeat is written to the promoted replica. The first
// watcher, its periodic resync off, must see it through change events;
// after the switch a full rebuild completes with every node.
func TestWatcherAcrossClusterFailover(t *testing.T) {
	if !testredis.IsCluster(t) {
		t.Skip("needs a Redis Cluster: GENIEHIVE_TEST_REDIS=redis+cluster://... (scripts/test.sh starts one)")
	}
	c, prefix := testredis.New(t)
	cc := c.(*redis.ClusterClient)
	writer := state.New(c, prefix)
	w := state.NewWatcher(state.New(testredis.Client(t), prefix), state.WatcherOptions{Resync: time.Hour})
	scanner := state.NewWatcher(state.New(testredis.Client(t), prefix), state.WatcherOptions{Resync: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	waitFor(t, 5*time.Second, func() bool { return w.Current().RedisOK })

	slots, err := cc.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	masters := map[string]bool{}
	for i := 0; i < 60; i++ {
		id := fmt.Sprintf("n%02d", i)
		if err := writer.WriteHeartbeat(ctx, node(id, "chat"), time.Minute); err != nil {
			t.Fatal(err)
		}
		slot, err := cc.ClusterKeySlot(ctx, writer.NodeKey(id)).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range slots {
			if int64(r.Start) <= slot && slot <= int64(r.End) {
				masters[r.Nodes[0].Addr] = true
			}
		}
	}
	if len(masters) != 3 {
		t.Fatalf("the 60 nodes' keys are on %d masters, want 3", len(masters))
	}
	waitFor(t, 10*time.Second, func() bool { return len(w.Current().Hosts) == 60 })

	var scansOK, scansFailed atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := scanner.Refresh(ctx); err != nil {
				scansFailed.Add(1)
			} else {
				scansOK.Add(1)
			}
		}
	}()

	// One master fails over: the one holding the key of the node written
	// after the switch (one, not all three: the other packages' tests run
	// on this Cluster at the same time, and a manual failover pauses the
	// old master's clients for a moment).
	slot, err := cc.ClusterKeySlot(ctx, writer.NodeKey("beat")).Result()
	if err != nil {
		t.Fatal(err)
	}
	var sr redis.ClusterSlot
	for _, r := range slots {
		if int64(r.Start) <= slot && slot <= int64(r.End) {
			sr = r
		}
	}
	old, replica := testredis.FailOverSlots(ctx, t, cc, sr.Start)
	// A heartbeat after the switch, on the promoted replica, reaches the
	// watcher as an event. (A write may time out while the cluster is still
	// switching; the node agent retries, and so does this.)
	waitFor(t, 30*time.Second, func() bool {
		err := writer.WriteHeartbeat(ctx, node("beat", "after"), time.Minute)
		if err != nil {
			t.Logf("heartbeat after the failover: %v (retrying)", err)
		}
		return err == nil
	})
	waitFor(t, 10*time.Second, func() bool { _, ok := w.Current().ByID["beat/after"]; return ok })
	t.Logf("slots %d-%d: %s took over from %s; the watcher saw the next heartbeat", sr.Start, sr.End, replica, old)
	close(stop)
	<-done
	if err := scanner.Refresh(ctx); err != nil {
		t.Fatalf("full rebuild after the failover: %v", err)
	}
	t.Logf("full rebuilds during the failover: %d completed, %d failed", scansOK.Load(), scansFailed.Load())
	if n := len(scanner.Current().Hosts); n != 61 {
		t.Fatalf("full rebuild sees %d hosts, want 61", n)
	}
	if scansOK.Load() == 0 {
		t.Fatal("no full rebuild completed while the master failed over")
	}
}
