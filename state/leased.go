package state

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// LeasedLoop describes a job one replica at a time runs for the whole
// cluster (the active prober, the swap controller): the replica holding
// the named lease runs it, renewing the lease while it lives; when it dies,
// another replica's next poll takes the lease over once it expires.
type LeasedLoop struct {
	// Name is the lease's name (and the log's: "<name> lease taken").
	Name string
	// Holder names this replica in the lease (the edge id).
	Holder string
	// Lease is how long the lease lasts without renewal; Interval the
	// time between rounds. The lease is polled every min(Lease/5,
	// Interval).
	Lease, Interval time.Duration
	Logger          *slog.Logger
	// Leader is set to whether the last poll held the lease (false once
	// the loop returns).
	Leader *atomic.Bool
}

// RunLeased polls l's lease and, while this replica holds it, calls round
// at most every l.Interval, until ctx ends. It does not release the lease
// (a crash does not either): the caller releases it on a graceful stop.
func (s *Store) RunLeased(ctx context.Context, l LeasedLoop, round func(context.Context)) {
	t := time.NewTicker(min(l.Lease/5, l.Interval))
	defer t.Stop()
	var last time.Time
	for {
		ok, err := s.AcquireLease(ctx, l.Name, l.Holder, l.Lease)
		if err != nil && ctx.Err() == nil {
			l.Logger.Warn(l.Name+" lease", "err", err)
		}
		held := ok && err == nil
		if was := l.Leader.Swap(held); held && !was {
			l.Logger.Info(l.Name+" lease taken", "edge", l.Holder)
		}
		if held && time.Since(last) >= l.Interval {
			last = time.Now()
			round(ctx)
		}
		select {
		case <-ctx.Done():
			l.Leader.Store(false)
			return
		case <-t.C:
		}
	}
}
