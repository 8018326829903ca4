package routing

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/state"
)

// TestSharedStateFailureIsMarked: when the Redis call a strategy's pick
// needs fails (here a real client to a port nothing listens on, as during
// a failover), Plan's error is ErrSharedState, which the edge answers with
// a retryable 503, keeping the cause reachable.
func TestSharedStateFailureIsMarked(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	rc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ContextTimeoutEnabled: true})
	defer rc.Close()
	st := state.New(rc, "ght:shared:")
	r, err := New(Config{}, st, state.NewInflight(st, "e1", time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	a := asset("llama3.1:8b", "llama")
	snap := snapOf(nil, svc("h1", "chat", fleet.KindChat, a), svc("h2", "chat", fleet.KindChat, a))
	for _, strat := range []string{StrategyRoundRobin, StrategyLeastLoaded} {
		_, err := r.Plan(context.Background(), snap, directTargets(strat, fleet.KindChat, "llama3.1:8b"),
			&RequestFacts{Operation: fleet.KindChat, Model: "llama3.1:8b"})
		var op *net.OpError
		if !errors.Is(err, ErrSharedState) || !errors.As(err, &op) {
			t.Errorf("%s with Redis unreachable: %v, want ErrSharedState wrapping the dial error", strat, err)
		}
	}
	// The scored strategy needs no Redis: it still plans.
	if p, err := r.Plan(context.Background(), snap, directTargets(StrategyScored, fleet.KindChat, "llama3.1:8b"),
		&RequestFacts{Operation: fleet.KindChat, Model: "llama3.1:8b"}); err != nil || len(p.Candidates) != 2 {
		t.Errorf("scored with Redis unreachable: %v %v", ids(p), err)
	}
}
