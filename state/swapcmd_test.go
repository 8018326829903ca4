package state_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/state"
)

// TestSwapCommandRoundTrip: an edge sends, the node reads with its
// consumer group, finishes (result + ack in one transaction); a restart
// finds nothing pending; the result is readable with a TTL.
func TestSwapCommandRoundTrip(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	if _, err := s.ReadSwaps(ctx, "n1", "n1", false, 8, 0); err != state.ErrNoSwapStream {
		t.Fatalf("read before any command: %v, want ErrNoSwapStream", err)
	}
	cmd := fleet.SwapCommand{ID: "e1-1", Op: fleet.SwapLoad, Service: "n1/ollama", Model: "m1", KeepAliveMS: -1, Deadline: time.Now().Add(time.Minute)}
	if _, err := s.SendSwap(ctx, &cmd); err != nil {
		t.Fatal(err)
	}
	cmd2 := cmd
	cmd2.ID, cmd2.Op = "e1-2", fleet.SwapUnload
	if _, err := s.SendSwap(ctx, &cmd2); err != nil { // BUSYGROUP on the second send is fine
		t.Fatal(err)
	}
	if ttl := c.PTTL(ctx, s.SwapStreamKey("n1")).Val(); ttl <= 0 {
		t.Fatalf("command stream without TTL (%v)", ttl)
	}
	got, err := s.ReadSwaps(ctx, "n1", "n1", false, 8, 0)
	if err != nil || len(got) != 2 || got[0].Cmd.ID != "e1-1" || got[0].Cmd.Op != fleet.SwapLoad || got[0].Cmd.KeepAliveMS != -1 || got[1].Cmd.Op != fleet.SwapUnload || got[0].Err != nil {
		t.Fatalf("read %+v, %v", got, err)
	}
	// Taken but not acknowledged: a restarted agent finds both pending.
	pend, err := s.ReadSwaps(ctx, "n1", "n1", true, 8, 0)
	if err != nil || len(pend) != 2 {
		t.Fatalf("pending %+v, %v", pend, err)
	}
	ok, err := s.FinishSwap(ctx, "n1", got[0].StreamID, &fleet.SwapResult{ID: "e1-1", Status: fleet.SwapDone, At: time.Now(), By: "node"})
	if err != nil || !ok {
		t.Fatalf("finish: %v %v", ok, err)
	}
	if pend, _ = s.ReadSwaps(ctx, "n1", "n1", true, 8, 0); len(pend) != 1 || pend[0].Cmd.ID != "e1-2" {
		t.Fatalf("after ack, pending %+v", pend)
	}
	r, found, err := s.SwapResult(ctx, "n1", "e1-1")
	if err != nil || !found || r.Status != fleet.SwapDone {
		t.Fatalf("result %+v %v %v", r, found, err)
	}
	if ttl := c.PTTL(ctx, s.SwapResultKey("n1", "e1-1")).Val(); ttl <= 0 || ttl > state.SwapResultTTL {
		t.Fatalf("result TTL %v", ttl)
	}
	// An edge expires e1-2 first; the node's late "done" does not replace it.
	if r, err := s.ExpireSwap(ctx, "n1", "e1-2", "edge-a"); err != nil || r.Status != fleet.SwapExpired {
		t.Fatalf("expire: %+v %v", r, err)
	}
	if ok, err := s.FinishSwap(ctx, "n1", pend[0].StreamID, &fleet.SwapResult{ID: "e1-2", Status: fleet.SwapDone}); err != nil || ok {
		t.Fatalf("a late result replaced the expiry: %v %v", ok, err)
	}
	if r, _, _ := s.SwapResult(ctx, "n1", "e1-2"); r.Status != fleet.SwapExpired {
		t.Fatalf("result %+v, want expired", r)
	}
	// And expiring a finished command keeps its result.
	if r, err := s.ExpireSwap(ctx, "n1", "e1-1", "edge-a"); err != nil || r.Status != fleet.SwapDone {
		t.Fatalf("expire after done: %+v %v", r, err)
	}
	if pend, _ = s.ReadSwaps(ctx, "n1", "n1", true, 8, 0); len(pend) != 0 {
		t.Fatalf("still pending %+v", pend)
	}
}

// TestSwapCommandRefused: malformed commands are not sent; a stored entry
// for another node, or one that does not decode, is read as an error (the
// agent answers it failed, never runs it); a result that does not decode
// is not believed.
func TestSwapCommandRefused(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	dl := time.Now().Add(time.Minute)
	for _, bad := range []fleet.SwapCommand{
		{ID: "", Op: fleet.SwapLoad, Service: "n1/o", Model: "m", Deadline: dl},
		{ID: "x", Op: "evict", Service: "n1/o", Model: "m", Deadline: dl},
		{ID: "x", Op: fleet.SwapLoad, Service: "n1", Model: "m", Deadline: dl},
		{ID: "x", Op: fleet.SwapLoad, Service: "n{1}/o", Model: "m", Deadline: dl},
		{ID: "x", Op: fleet.SwapLoad, Service: "n1/o", Model: "", Deadline: dl},
		{ID: "x", Op: fleet.SwapLoad, Service: "n1/o", Model: "m"},
	} {
		if _, err := s.SendSwap(ctx, &bad); err == nil {
			t.Errorf("sent %+v", bad)
		}
	}
	ok := fleet.SwapCommand{ID: "x", Op: fleet.SwapLoad, Service: "n1/o", Model: "m", Deadline: dl}
	if _, err := s.SendSwap(ctx, &ok); err != nil {
		t.Fatal(err)
	}
	c.XAdd(ctx, redisXAdd{key: s.SwapStreamKey("n1"), val: `{"id":"y","op":"load","service":"n2/o","model":"m"}`}.args())
	c.XAdd(ctx, redisXAdd{key: s.SwapStreamKey("n1"), val: `not json`}.args())
	got, err := s.ReadSwaps(ctx, "n1", "n1", false, 8, 0)
	if err != nil || len(got) != 3 || got[0].Err != nil || got[1].Err == nil || got[2].Err == nil {
		t.Fatalf("read %+v %v", got, err)
	}
	c.Set(ctx, s.SwapResultKey("n1", "x"), `{"id":"x","status":"maybe"}`, time.Minute)
	if _, found, err := s.SwapResult(ctx, "n1", "x"); found || err == nil {
		t.Fatalf("a result with an unknown status was believed: %v %v", found, err)
	}
}

type redisXAdd struct{ key, val string }

func (x redisXAdd) args() *redis.XAddArgs {
	return &redis.XAddArgs{Stream: x.key, Values: []string{"c", x.val}}
}
