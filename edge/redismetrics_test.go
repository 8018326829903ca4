package edge

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/geniehive/geniehive/internal/testredis"
)

// TestRedisHookCounts: one round trip per command and per pipeline, every
// command counted by name, failures counted, redis.Nil not a failure.
func TestRedisHookCounts(t *testing.T) {
	c, prefix := testredis.New(t)
	reg := prometheus.NewRegistry()
	h := newRedisHook(reg)
	c.AddHook(h)
	ctx := context.Background()
	c.Set(ctx, prefix+"k", "v", 0)
	c.Get(ctx, prefix+"missing") // redis.Nil
	c.Incr(ctx, prefix+"k")      // an error: "v" is not an integer
	pipe := func() {
		_, _ = c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Get(ctx, prefix+"k")
			p.Incr(ctx, prefix+"n")
			return nil
		})
	}
	pipe() // may open a connection (HELLO, CLIENT SETINFO: real round trips, counted)
	before := val(h.trips)
	pipe()
	if got := val(h.trips) - before; got != 1 {
		t.Fatalf("a pipeline counted %v round trips, want 1", got)
	}
	if got := val(h.cmds.WithLabelValues("get")); got != 3 {
		t.Fatalf("get commands %v", got)
	}
	if got := val(h.errs.WithLabelValues("get")); got != 0 {
		t.Fatalf("redis.Nil counted as an error")
	}
	if got := val(h.errs.WithLabelValues("incr")); got != 1 {
		t.Fatalf("failed command counted %v times, want 1", got)
	}
}

func val(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
