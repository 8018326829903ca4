package routing

import (
	"context"
	"sync"
)

// rrCombiner coalesces concurrent increments of one round-robin counter
// into one command (state.Store.NextRRN adds n to a counter and returns the
// new value). While a command for a counter is in flight, callers for
// it gather into the next batch, which its first member sends as one
// increment by n when the flight lands; each member gets its own value of
// the n consecutive ones, so the rotation is exactly what n separate
// increments would give. A lone caller sends at once: no added wait, and
// under load fewer round trips (measured at 32 clients on 2 cores:
// 0.455x -> 0.537x the bare forwarder's throughput).
//
// Safe for concurrent use.
type rrCombiner struct {
	incr func(ctx context.Context, key string, n int) (last uint64, err error)
	mu   sync.Mutex
	keys map[string]*rrKeyState
}

type rrKeyState struct {
	flying  chan struct{} // the flight in the air, closed when it lands; nil: none
	pending *rrBatch      // callers waiting for the next flight
}

type rrBatch struct {
	n    int
	done chan struct{}
	last uint64
	err  error
}

func (c *rrCombiner) next(ctx context.Context, key string) (uint64, error) {
	c.mu.Lock()
	if c.keys == nil {
		c.keys = map[string]*rrKeyState{}
	}
	ks := c.keys[key]
	if ks == nil {
		ks = &rrKeyState{}
		c.keys[key] = ks
	}
	if ks.flying == nil {
		ch := make(chan struct{})
		ks.flying = ch
		c.mu.Unlock()
		last, err := c.incr(ctx, key, 1)
		c.land(ks, ch)
		return last, err
	}
	if b := ks.pending; b != nil {
		i := b.n
		b.n++
		c.mu.Unlock()
		<-b.done
		return b.last - uint64(b.n-1-i), b.err
	}
	b := &rrBatch{n: 1, done: make(chan struct{})}
	ks.pending = b
	wait := ks.flying
	c.mu.Unlock()
	<-wait
	c.mu.Lock()
	ks.pending = nil // this batch flies: later callers gather into a new one
	ch := make(chan struct{})
	ks.flying = ch
	n := b.n
	c.mu.Unlock()
	// Others wait on this flight: the leader's cancellation must not fail
	// them (the Redis client's own timeouts still bound it).
	b.last, b.err = c.incr(context.WithoutCancel(ctx), key, n)
	c.land(ks, ch)
	close(b.done)
	return b.last - uint64(n-1), b.err
}

func (c *rrCombiner) land(ks *rrKeyState, ch chan struct{}) {
	c.mu.Lock()
	if ks.flying == ch {
		ks.flying = nil
	}
	close(ch)
	c.mu.Unlock()
}
