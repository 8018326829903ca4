package opa

import (
	"context"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/topdown"
)

// Bounding OPA's evaluator in time and memory.
//
// OPA v1 checks a topdown.Cancel before every expression it evaluates
// (topdown/eval.go, evalExpr) and inside the builtins that build large
// values (numbers.range, net.cidr_expand), so a cancelled evaluation stops
// within one step. rego.EvalExternalCancel hands OPA our own Cancel (OPA
// then starts no goroutine of its own per evaluation to watch ctx).
//
// OPA has no memory limit (open-policy-agent/opa#1810 asks for complexity
// controls, still open), and Go cannot count one goroutine's allocations.
// So the guard counts the whole process's: runtime/metrics'
// /gc/heap/allocs:bytes (cumulative bytes allocated, updated as
// allocation caches are refilled) is read when an evaluation starts and
// at every check; an evaluation during which the process allocated more
// than its budget is cancelled. That is a real bound on what one
// evaluation can allocate (at most its budget plus what the process
// allocates in one check interval), and an over-approximation: other work
// of the process counts against the evaluations in flight, so the budget
// is set far above what a policy decision needs (the shipped policy
// allocates tens of KiB per decision), and a cancelled evaluation is a
// typed, retryable-looking failure for one request, never a crash.
//
// One guard goroutine per engine, ticking every guardTick only while
// evaluations are in flight; it also enforces the deadline (the engine's
// EvalTimeout or ctx's, whichever is earlier) and ctx's cancellation.

// guardTick is how often the guard checks evaluations in flight.
const guardTick = time.Millisecond

// Why a guarded evaluation was cancelled.
const (
	stopNone int32 = iota
	stopTimeout
	stopMemory
	stopCanceled
)

// guarded is one evaluation in flight; it is OPA's topdown.Cancel for it.
type guarded struct {
	ctx        context.Context
	deadline   time.Time
	budget     uint64
	allocStart uint64
	reason     atomic.Int32
}

func (g *guarded) Cancel()         { g.reason.CompareAndSwap(stopNone, stopCanceled) }
func (g *guarded) Cancelled() bool { return g.reason.Load() != stopNone }

var _ topdown.Cancel = (*guarded)(nil)

// guard watches the evaluations in flight of one engine.
type guard struct {
	mu      sync.Mutex
	running map[*guarded]struct{}
	wake    chan struct{}
	done    chan struct{}
	once    sync.Once
	sample  []metrics.Sample // used by the guard goroutine and start, under mu
}

func newGuard() *guard {
	g := &guard{
		running: map[*guarded]struct{}{},
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		sample:  []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}},
	}
	go g.loop()
	return g
}

// allocated reads the process's cumulative heap allocations (under mu).
func (g *guard) allocated() uint64 {
	metrics.Read(g.sample)
	if g.sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return g.sample[0].Value.Uint64()
}

// start registers an evaluation bounded by timeout (or ctx's deadline,
// when earlier) and budget bytes of allocation.
func (g *guard) start(ctx context.Context, timeout time.Duration, budget uint64) *guarded {
	dl := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	e := &guarded{ctx: ctx, deadline: dl, budget: budget}
	if ctx.Err() != nil { // cancelled before it started
		e.reason.Store(stopCanceled)
	} else if !time.Now().Before(dl) {
		e.reason.Store(stopTimeout)
	}
	g.mu.Lock()
	e.allocStart = g.allocated()
	g.running[e] = struct{}{}
	first := len(g.running) == 1
	g.mu.Unlock()
	if first {
		select {
		case g.wake <- struct{}{}:
		default:
		}
	}
	return e
}

func (g *guard) finish(e *guarded) {
	g.mu.Lock()
	delete(g.running, e)
	g.mu.Unlock()
}

func (g *guard) loop() {
	t := time.NewTicker(guardTick)
	defer t.Stop()
	for {
		g.mu.Lock()
		idle := len(g.running) == 0
		g.mu.Unlock()
		if idle {
			select {
			case <-g.wake:
			case <-g.done:
				return
			}
		}
		select {
		case <-t.C:
		case <-g.done:
			return
		}
		g.check(time.Now())
	}
}

// check cancels every evaluation past its deadline, its budget or its
// caller's cancellation.
func (g *guard) check(now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.running) == 0 {
		return
	}
	alloc := g.allocated()
	for e := range g.running {
		switch {
		case e.ctx.Err() != nil:
			e.reason.CompareAndSwap(stopNone, stopCanceled)
		case !now.Before(e.deadline):
			e.reason.CompareAndSwap(stopNone, stopTimeout)
		case alloc-e.allocStart > e.budget:
			e.reason.CompareAndSwap(stopNone, stopMemory)
		}
	}
}

func (g *guard) close() { g.once.Do(func() { close(g.done) }) }
