package loadtest

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/state"
)

// TestRunFleet: a short fleet run writes heartbeats as node agents do (the
// node keys exist with the agent's TTL while it runs; another watcher sees
// every node and each heartbeat's latency), stops by itself at its
// duration, and removes its nodes at the end.
func TestRunFleet(t *testing.T) {
	c, prefix := testredis.New(t)
	oc, _ := testredis.New(t)
	st := state.New(c, prefix)
	ctx := context.Background()
	seen := make(chan int, 1)
	go func() {
		// Midway, the keys are there with a TTL.
		time.Sleep(700 * time.Millisecond)
		n := 0
		for _, k := range testredis.Keys(t, c, prefix+"node:{*}:state") {
			if ttl := c.PTTL(ctx, k).Val(); ttl > 0 && ttl <= 3*time.Second && strings.Contains(k, "{ft-") {
				n++
			}
		}
		seen <- n
	}()
	start := time.Now()
	rep, err := RunFleet(ctx, st, FleetConfig{Nodes: 20, Services: 3, Assets: 2, Interval: 200 * time.Millisecond, TTL: 3 * time.Second,
		Warmup: 300 * time.Millisecond, Duration: 1500 * time.Millisecond, HostPrefix: "ft-", Observe: state.New(oc, prefix)})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Minute {
		t.Fatalf("run did not stop by itself (%v)", took)
	}
	if n := <-seen; n != 20 {
		t.Fatalf("%d node keys with the agent's TTL midway, want 20", n)
	}
	// A write that misses the agent's deadline (here the 200ms interval)
	// happens on a starved machine and is what an agent retries; any
	// other error is a bug, and so are timeouts on more than a tenth.
	if rep.Heartbeats < 40 || rep.Errors != rep.Timeouts || rep.Timeouts > rep.Heartbeats/10 || rep.ElapsedS < 1.4 {
		t.Fatalf("heartbeats %d errors %d (timeouts %d, first: %s)", rep.Heartbeats, rep.Errors, rep.Timeouts, rep.FirstError)
	}
	if rep.Visible == nil || rep.Visible.Count == 0 {
		t.Fatal("the observer saw no heartbeat")
	}
	// Every node joined in the warm-up: the measured heartbeats only move
	// metrics, so the policy data's inputs never changed.
	if o := rep.Observer; o == nil || o.FinalHosts != 20 || o.FinalServices != 60 || o.EventsApplied == 0 || o.Build.DataVersion != 0 {
		t.Fatalf("observer: %+v", rep.Observer)
	}
	if rep.Redis == nil || rep.Redis.Commands == 0 {
		t.Fatalf("no Redis usage read: %+v", rep.Redis)
	}
	if keys := testredis.Keys(t, c, prefix+"node:{ft-*}:state"); len(keys) != 0 {
		t.Fatalf("nodes left behind: %v", keys)
	}
}

// TestBuildNodesStopsOnCancel: building a large fleet checks its context,
// so an interrupt (SIGINT/SIGTERM cancel the command's context) stops the
// build rather than waiting for a million nodes to exist in memory.
func TestBuildNodesStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cfg := FleetConfig{Nodes: 1_000_000, Services: 5, Assets: 4}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	nodes, err := buildNodes(ctx, &cfg, rand.New(rand.NewPCG(1, 2)))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if len(nodes) >= cfg.Nodes {
		t.Fatalf("built %d nodes after cancel, want fewer than %d", len(nodes), cfg.Nodes)
	}
	// Through RunFleet too: the cancelled run names the build, not a
	// Redis write, and never touches the store (nil here).
	if _, err := RunFleet(ctx, nil, cfg); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "building") {
		t.Fatalf("RunFleet err = %v, want the build's context.Canceled", err)
	}
}
