package edge

import (
	"time"

	"github.com/valyala/fasthttp"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/routing"
	"github.com/geniehive/geniehive/swap"
)

// awaitLoad: when no live service has the request's model loaded but one
// that can swap offers it, the request counts as demand for that model
// (published for the swap controller) and waits — at most swap.wait — for
// a snapshot where a service has it loaded, rather than piling onto a host
// that would load it on demand. x.snap is the snapshot to plan with. Past
// the wait it goes on as without swapping (the upstream loads on demand),
// unless a live service is still loading the model (a load command its
// node has not confirmed: fleet.Asset.Loading) and none has it ready:
// then the request would queue inside that upstream until the load ends,
// however long, so it fails now with a retryable 503 (model_loading).
func (s *Server) awaitLoad(ctx *fasthttp.RequestCtx, x *exchange) error {
	asset, wait := swap.Need(x.snap, &x.dec, x.start)
	if !wait || s.cfg.Swap.Wait <= 0 {
		return nil
	}
	done := s.usage.Waiting(asset)
	defer done()
	s.met.swapWaits.Inc()
	t0 := time.Now()
	timer := time.NewTimer(s.cfg.Swap.Wait)
	defer timer.Stop()
	result := "timeout"
wait:
	for {
		ch := s.waiter.Changed()
		snap := s.watcher.Current()
		if _, still := swap.Need(snap, &x.dec, time.Now()); !still {
			x.snap, result = snap, "loaded"
			break
		}
		select {
		case <-ch:
		case <-timer.C:
			x.snap = s.watcher.Current()
			if m, still, loading := swap.Loading(x.snap, &x.dec, time.Now()); still && loading {
				s.met.swapWaitSeconds.WithLabelValues("loading").Observe(time.Since(t0).Seconds())
				return &APIError{Status: 503, Type: "server_error", Code: "model_loading", RetryAfter: 1,
					Message: "model " + m + " is still loading; it was not ready within swap.wait (" + s.cfg.Swap.Wait.String() + "): retry"}
			}
			break wait
		case <-s.stopping: // draining: go on now rather than hold the drain
			x.snap, result = s.watcher.Current(), "stopping"
			break wait
		}
	}
	x.rf.Now = time.Now()
	s.met.swapWaitSeconds.WithLabelValues(result).Observe(time.Since(t0).Seconds())
	return nil
}

// SwapObserver is the swap controller's metrics sink on this edge.
func (s *Server) SwapObserver() swap.Observer { return (*swapObserver)(s.met) }

type swapObserver metrics

func (o *swapObserver) Outcome(op fleet.SwapOp, result fleet.SwapStatus, took time.Duration) {
	o.swaps.WithLabelValues(string(op), string(result)).Inc()
	if result == fleet.SwapDone {
		o.swapSeconds.WithLabelValues(string(op)).Observe(took.Seconds())
	}
}

func (o *swapObserver) Refused(op string) {
	if op != "load" && op != "unload" {
		op = "other"
	}
	o.swapRefused.WithLabelValues(op).Inc()
}

// Demand sets the gauge per model; models no longer wanted drop to 0 (a
// model's series stays once seen: the set is bounded by the fleet's
// models, which the controller reads from the registry).
func (o *swapObserver) Demand(waiting map[string]int) {
	o.swapDemand.Reset()
	for m, n := range waiting {
		if len(m) <= 256 {
			o.swapDemand.WithLabelValues(m).Set(float64(n))
		}
	}
}

// SwapUsage is this edge's swap usage record (nil when swapping is off).
func (s *Server) SwapUsage() *swap.Usage { return s.usage }

// preferLoaded moves the candidates whose model is loaded ahead of those
// whose model is not within each target group (fallback groups keep their
// place), keeping each side's order (the strategy's): with
// swapping on, a request goes to a host that has its model loaded when
// one exists, never to one that would load a second copy on demand (and
// evict what another request needs). In place, no allocation.
func preferLoaded(cs []routing.Candidate) {
	for i := 1; i < len(cs); i++ {
		if !candLoaded(&cs[i]) {
			continue
		}
		j := i
		for j > 0 && !candLoaded(&cs[j-1]) && cs[j-1].Target.Group == cs[j].Target.Group {
			cs[j-1], cs[j] = cs[j], cs[j-1]
			j--
		}
	}
}

func candLoaded(c *routing.Candidate) bool {
	a, ok := c.Service.Asset(c.Asset)
	return !ok || a.Ready()
}
