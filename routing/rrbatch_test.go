package routing

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeCounter is a counter whose increments can be held in flight.
type fakeCounter struct {
	mu    sync.Mutex
	v     uint64
	calls atomic.Int64
	gate  chan struct{} // when set, increments wait for it
	err   error
}

func (f *fakeCounter) incr(_ context.Context, _ string, n int) (uint64, error) {
	f.calls.Add(1)
	if g := f.gate; g != nil {
		<-g
	}
	if f.err != nil {
		return 0, f.err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.v += uint64(n)
	return f.v, nil
}

func pendingN(c *rrCombiner, key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ks := c.keys[key]; ks != nil && ks.pending != nil {
		return ks.pending.n
	}
	return 0
}

// TestRRCombinerBatches: callers arriving while an increment is in flight
// share the next one, and every caller still gets its own value.
func TestRRCombinerBatches(t *testing.T) {
	f := &fakeCounter{gate: make(chan struct{})}
	c := &rrCombiner{incr: f.incr}
	var wg sync.WaitGroup
	got := make(chan uint64, 6)
	call := func() {
		defer wg.Done()
		v, err := c.next(context.Background(), "k")
		if err != nil {
			t.Error(err)
		}
		got <- v
	}
	wg.Add(1)
	go call() // the first flight, held at the gate
	waitFor(t, func() bool { return f.calls.Load() == 1 })
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go call()
	}
	waitFor(t, func() bool { return pendingN(c, "k") == 5 })
	close(f.gate)
	wg.Wait()
	close(got)
	var vs []uint64
	for v := range got {
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i] < vs[j] })
	for i, v := range vs {
		if v != uint64(i+1) {
			t.Fatalf("values %v, want 1..6 once each", vs)
		}
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("%d increments for 6 callers, want 2 (one flight, one batch of 5)", n)
	}
}

// TestRRCombinerHammer: many goroutines, many calls: the values handed out
// are exactly 1..N, whatever the batching.
func TestRRCombinerHammer(t *testing.T) {
	f := &fakeCounter{}
	c := &rrCombiner{incr: func(ctx context.Context, key string, n int) (uint64, error) {
		time.Sleep(20 * time.Microsecond)
		return f.incr(ctx, key, n)
	}}
	const P, N = 8, 300
	seen := make([]atomic.Int32, P*N+1)
	var wg sync.WaitGroup
	for p := 0; p < P; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < N; i++ {
				v, err := c.next(context.Background(), "k")
				if err != nil || v == 0 || v > P*N {
					t.Errorf("value %d, %v", v, err)
					return
				}
				seen[v].Add(1)
			}
		}()
	}
	wg.Wait()
	for v := 1; v <= P*N; v++ {
		if n := seen[v].Load(); n != 1 {
			t.Fatalf("value %d handed out %d times", v, n)
		}
	}
	t.Logf("%d increments for %d picks", f.calls.Load(), P*N)
}

// TestRRCombinerError: a failed increment fails every member of its batch.
func TestRRCombinerError(t *testing.T) {
	boom := errors.New("redis down")
	f := &fakeCounter{gate: make(chan struct{}), err: boom}
	c := &rrCombiner{incr: f.incr}
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() { _, err := c.next(context.Background(), "k"); errs <- err }()
		if i == 0 {
			waitFor(t, func() bool { return f.calls.Load() == 1 })
		}
	}
	waitFor(t, func() bool { return pendingN(c, "k") == 2 })
	close(f.gate)
	for i := 0; i < 3; i++ {
		if err := <-errs; !errors.Is(err, boom) {
			t.Fatalf("err %v", err)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met")
		}
		time.Sleep(time.Millisecond)
	}
}
