package state_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/state"
)

// TestLeastLoadedIgnoresOwnFinished: back-to-back requests from one edge
// whose releases are still queued (batched, not yet in Redis) are never
// routed by counts that include their own finished predecessors. B (first:
// lower latency, wins ties) holds one request of another edge; A is idle
// but for this edge's finished requests. Every pick must be A.
func TestLeastLoadedIgnoresOwnFinished(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	other := state.NewInflight(s, "other-edge", 0)
	other.Begin("B")
	other.Flush(ctx)
	f := state.NewInflight(s, "edge", 0) // Run not started: every release stays queued
	services := []string{"B", "A"}
	for i := 0; i < 12; i++ {
		idx, counts, l, err := f.PickLeastLoaded(ctx, services, nil)
		if err != nil {
			t.Fatal(err)
		}
		if services[idx] != "A" {
			t.Fatalf("request %d went to %s (counts %v, with %d own finished requests still counted on A)", i, services[idx], counts, i)
		}
		f.End(l)
		if i == 5 {
			f.Flush(ctx) // half way, the batch reaches Redis: nothing is subtracted twice
		}
	}
	if rel := f.PendingReleases(services); rel[0] != 0 || rel[1] != 6 {
		t.Fatalf("pending releases %v", rel)
	}
	f.Flush(ctx)
	counts, err := s.InflightCounts(ctx, services)
	if err != nil || counts[0] != 1 || counts[1] != 0 {
		t.Fatalf("counts after flush %v %v", counts, err)
	}
}

// lostReply is a go-redis hook that, while armed, lets a pick's command
// run on the server and then reports a timeout, as the edge sees it when
// its goroutine is scheduled after the read deadline (Go fails a read past
// its deadline even when the reply is already in the socket buffer): the
// pick is done on the server, failed on the edge.
type lostReply struct{ armed atomic.Bool }

func (h *lostReply) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *lostReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *lostReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		switch cmd.Name() {
		case "evalsha", "eval", "zadd":
			if err == nil && h.armed.Load() {
				cmd.SetErr(context.DeadlineExceeded)
				return context.DeadlineExceeded
			}
		}
		return err
	}
}

// TestFailedPickLeavesNoLease: a least-loaded pick that the server ran but
// whose answer the edge did not get in time fails on the edge's side; its
// lease stayed in Redis, refreshed by no one and ended by no one, counting
// against the service until its deadline (30s by default: the chaos
// suite's rolling restart found one after its load had stopped). The edge
// now removes the lease of every failed pick. Both forms of the pick: the
// script (one server) and, on a Cluster with two candidates, count+ZADD.
func TestFailedPickLeavesNoLease(t *testing.T) {
	for _, services := range [][]string{{"svc-orphan"}, {"svc-orphan-a", "svc-orphan-b"}} {
		c, prefix := testredis.New(t)
		hook := &lostReply{}
		c.AddHook(hook)
		s := state.New(c, prefix)
		ctx, cancel := context.WithCancel(context.Background())
		f := state.NewInflight(s, "edge", time.Minute) // a leaked lease would count for a minute
		go f.Run(ctx)
		// One pick that succeeds first, so the script is loaded and the
		// failed pick runs it as an edge past its first request does.
		_, _, l, err := f.PickLeastLoaded(ctx, services, nil)
		if err != nil {
			t.Fatal(err)
		}
		f.End(l)
		hook.armed.Store(true)
		if _, _, _, err := f.PickLeastLoaded(ctx, services, nil); err == nil {
			t.Fatal("the armed hook did not fail the pick")
		}
		hook.armed.Store(false)
		deadline := time.Now().Add(5 * time.Second)
		for {
			counts, err := s.InflightCounts(ctx, services)
			if err != nil {
				t.Fatal(err)
			}
			if counts[0]+counts[len(counts)-1] == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%v: a failed pick left leases counted %v", services, counts)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if f.Open() != 0 {
			t.Fatalf("open leases %d", f.Open())
		}
		cancel()
	}
}

// heldPipeline is a go-redis hook that, while armed, keeps a pipeline from
// the server and reports a timeout; the test sends the held commands
// later, as a server that reads the edge's connection late would run them.
type heldPipeline struct {
	armed atomic.Bool
	held  []redis.Cmder
}

func (h *heldPipeline) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *heldPipeline) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *heldPipeline) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !h.armed.Load() {
			return next(ctx, cmds)
		}
		h.held = append(h.held, cmds...)
		for _, c := range cmds {
			c.SetErr(context.DeadlineExceeded)
		}
		return context.DeadlineExceeded
	}
}

// TestLateAddAfterRemoveIsRemoved: a batch adding a lease fails on the
// edge's side (its answer lost) but reaches the server late, after the
// request has ended and its removal has run. The lease then stood until
// its deadline, refreshed by no one. Now the edge remembers such adds and
// its next refresh removes them.
func TestLateAddAfterRemoveIsRemoved(t *testing.T) {
	c, prefix := testredis.New(t)
	hook := &heldPipeline{}
	c.AddHook(hook)
	s := state.New(c, prefix)
	ctx := context.Background()
	f := state.NewInflight(s, "edge", time.Minute) // Run not started: flushes and refreshes by hand
	const svc = "svc-late"
	l := f.Begin(svc)
	hook.armed.Store(true)
	f.Flush(ctx) // the add: held, reported failed
	hook.armed.Store(false)
	if len(hook.held) == 0 {
		t.Fatal("the hook held no pipeline")
	}
	f.End(l)
	f.Flush(ctx) // the removal: runs now, before the add
	for _, cmd := range hook.held {
		if err := c.Do(ctx, cmd.Args()...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	counts, err := s.InflightCounts(ctx, []string{svc})
	if err != nil || counts[0] != 1 {
		t.Fatalf("after the late add: counts %v %v (the test must start from a leaked lease)", counts, err)
	}
	f.RefreshNow(ctx)
	if counts, err = s.InflightCounts(ctx, []string{svc}); err != nil || counts[0] != 0 {
		t.Fatalf("after a refresh the late add still counts: %v %v", counts, err)
	}
	// A request still open keeps its lease through the same bookkeeping.
	l2 := f.Begin(svc)
	hook.armed.Store(true)
	f.Flush(ctx)
	hook.armed.Store(false)
	f.RefreshNow(ctx) // restores the open request's lease, must not remove it
	if counts, err = s.InflightCounts(ctx, []string{svc}); err != nil || counts[0] != 1 {
		t.Fatalf("an open request's lease after a failed add and a refresh: %v %v", counts, err)
	}
	f.End(l2)
	f.Flush(ctx)
	if counts, err = s.InflightCounts(ctx, []string{svc}); err != nil || counts[0] != 0 {
		t.Fatalf("after the open request ended: %v %v", counts, err)
	}
}
