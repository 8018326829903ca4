package edge

import (
	"context"
	"sync"
	"time"

	"github.com/geniehive/geniehive/fleet"
)

// statsBatch accumulates what the edge observes per service between two
// flushes; flush turns each batch into one ServiceStats (means over the
// batch) and Store.MergeStats blends it into the shared figures.
type statsBatch struct {
	mu sync.Mutex
	m  map[string]*statAcc
}

type statAcc struct {
	n, fail int64
	latSum  float64
	ttftSum float64
	ttftN   int64
	tpsSum  float64
	tpsN    int64
}

func (b *statsBatch) observe(service string, ok bool, latency, ttft time.Duration, tokens int, genTime time.Duration) {
	b.mu.Lock()
	if b.m == nil {
		b.m = map[string]*statAcc{}
	}
	a := b.m[service]
	if a == nil {
		a = &statAcc{}
		b.m[service] = a
	}
	a.n++
	if !ok {
		a.fail++
	} else {
		a.latSum += float64(latency) / float64(time.Millisecond)
		if ttft > 0 {
			a.ttftSum += float64(ttft) / float64(time.Millisecond)
			a.ttftN++
		}
		if tokens > 1 && genTime > 0 {
			a.tpsSum += float64(tokens) / genTime.Seconds()
			a.tpsN++
		}
	}
	b.mu.Unlock()
}

func (b *statsBatch) take() map[string]fleet.ServiceStats {
	b.mu.Lock()
	m := b.m
	b.m = nil
	b.mu.Unlock()
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]fleet.ServiceStats, len(m))
	for svc, a := range m {
		s := fleet.ServiceStats{Requests: a.n, Failures: a.fail}
		if ok := a.n - a.fail; ok > 0 {
			s.LatencyMS = a.latSum / float64(ok)
		}
		if a.ttftN > 0 {
			s.TTFTMS = a.ttftSum / float64(a.ttftN)
		}
		if a.tpsN > 0 {
			s.TokensPerSec = a.tpsSum / float64(a.tpsN)
		}
		out[svc] = s
	}
	return out
}

func (s *Server) statsLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.StatsInterval)
	defer t.Stop()
	flush := func(ctx context.Context) {
		if m := s.stats.take(); m != nil {
			if err := s.store.MergeStats(ctx, m); err != nil {
				s.log.Warn("stats write-back failed", "err", err, "services", len(m))
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			flush(fctx)
			cancel()
			return
		case <-t.C:
			flush(ctx)
		}
	}
}
