package routing

import (
	"context"
	"log/slog"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/state"
)

type healthOp struct {
	service string
	ok      bool
}

// Begin counts a request about to be sent to c (this edge's local figure,
// used for the max-concurrency estimate of scored and round_robin) and
// returns the cluster-wide in-flight lease for it: c.Lease when the strategy
// took one, otherwise a new one from the Inflight tracker. Pair every Begin
// with one End.
func (r *Router) Begin(c *Candidate) state.Lease {
	r.loc(c.Service.ID).inflight.Add(1)
	if c.Leased {
		return c.Lease
	}
	if r.inflight != nil {
		return r.inflight.Begin(c.Service.ID)
	}
	return state.Lease{}
}

// End undoes Begin.
func (r *Router) End(c *Candidate, l state.Lease) {
	r.loc(c.Service.ID).inflight.Add(-1)
	if r.inflight != nil {
		r.inflight.End(l)
	}
}

// Observe implements Feedback: a failed attempt (connect error, 5xx
// before the first byte, timeout) counts towards the service's cooldown; a
// successful one clears its failures. Never blocks.
func (r *Router) Observe(c *Candidate, ok bool, _ time.Duration) {
	if ok {
		r.ReportSuccess(c.Service)
	} else {
		r.ReportFailure(c.Service.ID)
	}
}

// ReportFailure queues a failure of service for Store.RecordFailure. When it
// completes the threshold, the cooldown is honoured locally at once and by
// other replicas when their snapshot refreshes. Never blocks: when the queue
// is full the report is dropped (and counted in Dropped).
func (r *Router) ReportFailure(service string) {
	r.loc(service).failed.Store(true)
	r.enqueue(healthOp{service: service})
}

// ReportSuccess queues a success, but only when it can change anything: this
// edge saw the service fail since its last success, or the snapshot shows a
// cooldown (set by any replica). Otherwise it costs one map lookup.
func (r *Router) ReportSuccess(svc *fleet.ServiceEntry) {
	l := r.peekLoc(svc.ID)
	if (l == nil || !l.failed.Load()) && svc.CooldownUntil.IsZero() {
		return
	}
	r.enqueue(healthOp{service: svc.ID, ok: true})
}

// Dropped reports how many health reports were dropped on a full queue.
func (r *Router) Dropped() int64 { return r.dropped.Load() }

func (r *Router) enqueue(op healthOp) {
	r.pending.Add(1)
	select {
	case r.health <- op:
	default:
		r.pending.Add(-1)
		r.dropped.Add(1)
	}
}

// Run sends queued health reports to Redis until ctx is done.
func (r *Router) Run(ctx context.Context, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case op := <-r.health:
			r.apply(ctx, op, log)
		}
	}
}

// Drain applies every queued health report now and waits for those Run is
// applying (tests, graceful shutdown), or until ctx is done.
func (r *Router) Drain(ctx context.Context) {
	for r.pending.Load() > 0 && ctx.Err() == nil {
		select {
		case op := <-r.health:
			r.apply(ctx, op, nil)
		default:
			time.Sleep(time.Millisecond)
		}
	}
}

func (r *Router) apply(ctx context.Context, op healthOp, log *slog.Logger) {
	defer r.pending.Add(-1)
	l := r.loc(op.service)
	if op.ok {
		l.failed.Store(false)
		l.coolUntil.Store(0)
		if r.store == nil {
			return
		}
		if err := r.store.RecordSuccess(ctx, op.service); err != nil && log != nil {
			log.Warn("record success", "service", op.service, "err", err)
		}
		return
	}
	if r.store == nil {
		return
	}
	cooled, err := r.store.RecordFailure(ctx, op.service, r.cfg.FailureThreshold, r.cfg.Cooldown)
	if err != nil {
		if log != nil {
			log.Warn("record failure", "service", op.service, "err", err)
		}
		return
	}
	if cooled {
		l.coolUntil.Store(time.Now().Add(r.cfg.Cooldown).UnixNano())
		if log != nil {
			log.Warn("service in cooldown", "service", op.service, "cooldown", r.cfg.Cooldown)
		}
	}
}

var (
	_ Planner  = (*Router)(nil)
	_ Feedback = (*Router)(nil)
)
