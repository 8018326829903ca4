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
	asset   string // "" for the whole service
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

// Observe implements Feedback: a failed attempt (5xx before the first
// byte, timeout) counts towards the cooldown of the (service, asset) pair
// only — one model failing must not take the service's other models out
// for every client; a successful one clears the service's and the pair's
// failures. Never blocks.
func (r *Router) Observe(c *Candidate, ok bool, _ time.Duration) {
	if ok {
		r.ReportSuccess(c.Service)
		if c.Asset != "" {
			if l := r.peekLoc(c.Service.ID); (l != nil && l.assetFailed.Load()) || len(c.Service.AssetCooldowns) > 0 {
				r.enqueue(healthOp{service: c.Service.ID, asset: c.Asset, ok: true})
			}
		}
		return
	}
	if c.Asset == "" {
		r.ReportFailure(c.Service.ID)
		return
	}
	r.loc(c.Service.ID).assetFailed.Store(true)
	r.enqueue(healthOp{service: c.Service.ID, asset: c.Asset})
}

// ObserveServiceFailure implements ServiceFeedback: a failure of the whole
// service (connection refused or reset) counts towards its cooldown.
func (r *Router) ObserveServiceFailure(c *Candidate, _ time.Duration) {
	r.ReportFailure(c.Service.ID)
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
	if op.asset != "" {
		r.applyAsset(ctx, l, op, log)
		return
	}
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

// applyAsset records a success or failure of one (service, asset) pair.
func (r *Router) applyAsset(ctx context.Context, l *svcLocal, op healthOp, log *slog.Logger) {
	if op.ok {
		l.assetFailed.Store(false)
		l.clearAssetCool(op.asset)
		if r.store != nil {
			if err := r.store.RecordAssetSuccess(ctx, op.service, op.asset); err != nil && log != nil {
				log.Warn("record success", "service", op.service, "asset", op.asset, "err", err)
			}
		}
		return
	}
	if r.store == nil {
		return
	}
	cooled, err := r.store.RecordAssetFailure(ctx, op.service, op.asset, r.cfg.FailureThreshold, r.cfg.Cooldown)
	if err != nil {
		if log != nil {
			log.Warn("record failure", "service", op.service, "asset", op.asset, "err", err)
		}
		return
	}
	if cooled {
		l.setAssetCool(op.asset, time.Now().Add(r.cfg.Cooldown).UnixNano())
		if log != nil {
			log.Warn("model in cooldown on service", "service", op.service, "asset", op.asset, "cooldown", r.cfg.Cooldown)
		}
	}
}

var (
	_ Planner         = (*Router)(nil)
	_ ServiceFeedback = (*Router)(nil)
	_ Feedback        = (*Router)(nil)
)
