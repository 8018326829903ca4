package swap

import (
	"sync"
	"time"

	"github.com/geniehive/geniehive/state"
)

// Usage is one edge's record of what its requests use: per (service,
// model) the requests open there and the last time one was sent, and per
// model the requests waiting for it to be loaded. The edge publishes it
// (Publish) for the controller, wherever that runs. Safe for concurrent
// use; Begin and End allocate only the first time a pair is seen.
type Usage struct {
	mu      sync.Mutex
	use     map[pair]*use
	waiting map[string]int
	// kick: a model got its first waiter; publish now rather than at the
	// next tick, so the controller sees the demand a period sooner.
	kick chan struct{}
}

type pair struct{ svc, model string }

type use struct {
	inflight int64
	last     time.Time
}

// NewUsage returns an empty Usage.
func NewUsage() *Usage {
	return &Usage{use: map[pair]*use{}, waiting: map[string]int{}, kick: make(chan struct{}, 1)}
}

// Begin counts a request sent to model on svc.
func (u *Usage) Begin(svc, model string) {
	now := time.Now()
	u.mu.Lock()
	x := u.use[pair{svc, model}]
	if x == nil {
		x = &use{}
		u.use[pair{svc, model}] = x
	}
	x.inflight++
	x.last = now
	u.mu.Unlock()
}

// End undoes Begin (the request ended: the model was last used now).
func (u *Usage) End(svc, model string) {
	now := time.Now()
	u.mu.Lock()
	if x := u.use[pair{svc, model}]; x != nil {
		x.inflight--
		x.last = now
	}
	u.mu.Unlock()
}

// Waiting counts one request waiting for model to be loaded; call the
// returned func when it stops waiting.
func (u *Usage) Waiting(model string) (done func()) {
	u.mu.Lock()
	u.waiting[model]++
	first := u.waiting[model] == 1
	u.mu.Unlock()
	if first {
		select {
		case u.kick <- struct{}{}:
		default:
		}
	}
	return func() {
		u.mu.Lock()
		if u.waiting[model]--; u.waiting[model] <= 0 {
			delete(u.waiting, model)
		}
		u.mu.Unlock()
	}
}

// WaitingFor reports how many requests on this edge wait for model.
func (u *Usage) WaitingFor(model string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.waiting[model]
}

// forget is how long an idle pair is kept after its last use.
const forget = time.Hour

// Snapshot copies the record for publishing, dropping pairs idle longer
// than an hour.
func (u *Usage) Snapshot() *state.SwapUsage {
	now := time.Now()
	out := &state.SwapUsage{Use: map[string]map[string]state.SwapUse{}, Waiting: map[string]int{}}
	u.mu.Lock()
	defer u.mu.Unlock()
	for k, x := range u.use {
		if x.inflight <= 0 && now.Sub(x.last) > forget {
			delete(u.use, k)
			continue
		}
		m := out.Use[k.svc]
		if m == nil {
			m = map[string]state.SwapUse{}
			out.Use[k.svc] = m
		}
		m[k.model] = state.SwapUse{InFlight: x.inflight, LastUsed: x.last}
	}
	for k, n := range u.waiting {
		out.Waiting[k] = n
	}
	return out
}
