package policies

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/geniehive/geniehive/policy"
)

// Holder holds the active Engine and switches engines without disturbing
// requests: Eval runs on the engine that was active when it started, and an
// engine replaced by Swap is closed once the last Eval using it returns.
// It is safe for concurrent use; Eval takes no lock.
type Holder struct {
	cur atomic.Pointer[heldEngine]

	mu     sync.Mutex // serialises SetData, Swap and Close
	data   *policy.Data
	closed atomic.Bool
}

type heldEngine struct {
	e policy.Engine
	// refs counts the holder's own reference (1 while active) plus the
	// Evals in flight; the engine closes when it drops to 0.
	refs atomic.Int64
}

// NewHolder returns a holder whose active engine is e.
func NewHolder(e policy.Engine) *Holder {
	h := &Holder{}
	he := &heldEngine{e: e}
	he.refs.Store(1)
	h.cur.Store(he)
	return h
}

// acquire returns the active engine with a reference taken, nil once the
// holder is closed.
func (h *Holder) acquire() *heldEngine {
	for {
		if h.closed.Load() {
			return nil
		}
		he := h.cur.Load()
		n := he.refs.Load()
		if n <= 0 {
			continue // replaced and closing: the new one is stored already
		}
		if he.refs.CompareAndSwap(n, n+1) {
			return he
		}
	}
}

func (he *heldEngine) release() {
	if he.refs.Add(-1) == 0 {
		_ = he.e.Close()
	}
}

// Engine returns the active engine (for Name and Version; evaluate through
// Holder.Eval so that a concurrent Swap cannot close it under you).
func (h *Holder) Engine() policy.Engine { return h.cur.Load().e }

// Eval evaluates with the active engine.
//
// # Errors
// The engine's, and policy.ErrClosed once the holder is closed.
func (h *Holder) Eval(ctx context.Context, in *policy.Input, out *policy.Decision) error {
	he := h.acquire()
	if he == nil {
		return policy.ErrClosed
	}
	defer he.release()
	return he.e.Eval(ctx, in, out)
}

// EvalSwap evaluates the swap rule with the active engine.
//
// # Errors
// policy.ErrNoSwapRule when the engine cannot (the module engine) or the
// policy has no swap rule; the engine's; policy.ErrClosed.
func (h *Holder) EvalSwap(ctx context.Context, in *policy.SwapInput, out *policy.SwapDecision) error {
	he := h.acquire()
	if he == nil {
		return policy.ErrClosed
	}
	defer he.release()
	se, ok := he.e.(policy.SwapEvaluator)
	if !ok {
		return policy.ErrNoSwapRule
	}
	return se.EvalSwap(ctx, in, out)
}

// SetData installs d in the active engine and remembers it for engines
// swapped in later.
func (h *Holder) SetData(ctx context.Context, d *policy.Data) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.data = d
	he := h.acquire()
	if he == nil {
		return policy.ErrClosed
	}
	defer he.release()
	return he.e.SetData(ctx, d)
}

// Data returns the last data document given to SetData (nil when none).
func (h *Holder) Data() *policy.Data {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.data
}

// Swap installs the last SetData document in e, makes e active and
// releases the previous engine (closed when its in-flight Evals finish).
//
// # Errors
// e's SetData error; the previous engine then stays active and e is not
// closed. policy.ErrClosed once the holder is closed (e is not closed).
func (h *Holder) Swap(ctx context.Context, e policy.Engine) error {
	if e == nil {
		return errors.New("policies: swap to nil engine")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed.Load() {
		return policy.ErrClosed
	}
	if h.data != nil {
		if err := e.SetData(ctx, h.data); err != nil {
			return fmt.Errorf("policies: new engine refused data: %w", err)
		}
	}
	ne := &heldEngine{e: e}
	ne.refs.Store(1)
	old := h.cur.Swap(ne)
	old.release()
	return nil
}

// Close releases the active engine; it is closed when the last Eval in
// flight returns. Later Evals return policy.ErrClosed. Close is idempotent.
func (h *Holder) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed.Swap(true) {
		return nil
	}
	h.cur.Load().release()
	return nil
}

var _ policy.Engine = (*holderEngine)(nil)

// AsEngine returns the holder as an Engine (Name and Version of the active
// engine; Close closes the holder).
func (h *Holder) AsEngine() policy.Engine { return (*holderEngine)(h) }

type holderEngine Holder

func (x *holderEngine) h() *Holder      { return (*Holder)(x) }
func (x *holderEngine) Name() string    { return x.h().Engine().Name() }
func (x *holderEngine) Version() string { return x.h().Engine().Version() }
func (x *holderEngine) SetData(ctx context.Context, d *policy.Data) error {
	return x.h().SetData(ctx, d)
}
func (x *holderEngine) Eval(ctx context.Context, in *policy.Input, out *policy.Decision) error {
	return x.h().Eval(ctx, in, out)
}
func (x *holderEngine) Close() error { return x.h().Close() }
