package testredis

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// FailOverSlots makes a replica of the Cluster slot range that starts at
// start take over (CLUSTER FAILOVER on it) and returns the old master's and
// the new master's addresses. scripts/test.sh runs the packages of several
// tests that fail masters over on the same Cluster at once: it waits for a
// listed replica in sync, and tries again (up to 10 times) when another
// test's failover of the same range overtook its own.
func FailOverSlots(ctx context.Context, t testing.TB, cc *redis.ClusterClient, start int) (oldMaster, newMaster string) {
	t.Helper()
	for try := 0; try < 10; try++ {
		var master, replica string
		deadline := time.Now().Add(30 * time.Second)
		for {
			master, replica = slotRange(ctx, t, cc, start)
			if replica != "" && inSync(ctx, replica) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("slots from %d: no replica in sync within 30s (master %q, replica %q)", start, master, replica)
			}
			time.Sleep(50 * time.Millisecond)
		}
		rc := redis.NewClient(&redis.Options{Addr: replica, ContextTimeoutEnabled: true})
		err := rc.Do(ctx, "CLUSTER", "FAILOVER").Err()
		if err != nil {
			rc.Close()
			if strings.Contains(err.Error(), "replica") { // promoted in between
				continue
			}
			t.Fatalf("CLUSTER FAILOVER on %s: %v", replica, err)
		}
		for until := time.Now().Add(5 * time.Second); time.Now().Before(until); time.Sleep(10 * time.Millisecond) {
			info, err := rc.Info(ctx, "replication").Result()
			if err == nil && strings.Contains(info, "role:master") {
				rc.Close()
				return master, replica
			}
		}
		rc.Close()
	}
	t.Fatalf("slots from %d: no replica took over after 10 CLUSTER FAILOVERs", start)
	return "", ""
}

// slotRange is the master and a replica ("" if none is listed now: one may
// be resyncing after a failover) of the slot range that starts at start.
func slotRange(ctx context.Context, t testing.TB, cc *redis.ClusterClient, start int) (master, replica string) {
	t.Helper()
	slots, err := cc.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range slots {
		if r.Start == start {
			master = r.Nodes[0].Addr
			if len(r.Nodes) > 1 {
				replica = r.Nodes[1].Addr
			}
		}
	}
	return master, replica
}

func inSync(ctx context.Context, addr string) bool {
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	return err == nil && strings.Contains(info, "role:slave") && strings.Contains(info, "master_link_status:up")
}
