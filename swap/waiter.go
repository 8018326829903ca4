package swap

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/state"
)

// Waiter wakes requests waiting for a load on every new snapshot. Safe for
// concurrent use.
type Waiter struct {
	mu sync.Mutex
	ch chan struct{}
}

// NewWaiter returns a Waiter; Run feeds it.
func NewWaiter() *Waiter { return &Waiter{ch: make(chan struct{})} }

// Changed returns a channel closed at the next snapshot.
func (w *Waiter) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ch
}

// Run wakes the waiters on every snapshot from changes until ctx ends.
func (w *Waiter) Run(ctx context.Context, changes <-chan *fleet.Snapshot) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-changes:
		}
		w.mu.Lock()
		close(w.ch)
		w.ch = make(chan struct{})
		w.mu.Unlock()
	}
}

// Need says whether a request with this decision should wait for a load
// on snap: no live service that offers one of its first group's assets has
// it ready (loaded and not still loading: fleet.Asset.Ready), and one that
// can swap offers it. It returns the asset to wait for (the first such
// target's).
func Need(snap *fleet.Snapshot, dec *policy.Decision, now time.Time) (asset string, wait bool) {
	asset, wait, _ = need(snap, dec, now)
	return asset, wait
}

// Loading is Need that also says whether a live service is loading the
// asset to wait for (a load command its node has not confirmed yet): a
// request sent there now would queue inside the upstream until the load
// ends, however long it takes.
func Loading(snap *fleet.Snapshot, dec *policy.Decision, now time.Time) (asset string, wait, loading bool) {
	return need(snap, dec, now)
}

func need(snap *fleet.Snapshot, dec *policy.Decision, now time.Time) (asset string, wait, loading bool) {
	if len(dec.Targets) == 0 {
		return "", false, false
	}
	g := dec.Targets[0].Group
	for i := range dec.Targets {
		t := &dec.Targets[i]
		if t.Group != g {
			break
		}
		if t.Kind != policy.TargetAsset {
			return "", false, false // a service target: the client chose where
		}
		for _, svc := range snap.AssetServices[t.Name] {
			if svc.Kind != t.Operation || !svc.Routable(now) {
				continue
			}
			a, ok := svc.Asset(t.Name)
			if !ok {
				continue
			}
			if a.Ready() {
				return "", false, false
			}
			if svc.Swap != fleet.SwapNone && (asset == "" || asset == t.Name) {
				asset = t.Name
				loading = loading || a.Loading
			}
		}
	}
	return asset, asset != "", loading
}

// Publish writes usage every interval (alive for three), and at once when
// a model gets its first waiting request, until ctx ends, then removes it.
func Publish(ctx context.Context, s *state.Store, edge string, u *Usage, interval time.Duration, log func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var failing bool
	for {
		wctx, cancel := context.WithTimeout(ctx, interval)
		err := s.PutSwapUsage(wctx, edge, u.Snapshot(), 3*interval)
		cancel()
		if err != nil && ctx.Err() == nil && !failing {
			log(err)
		}
		failing = err != nil
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = s.PutSwapUsage(dctx, edge, &state.SwapUsage{}, time.Second)
			cancel()
			return
		case <-t.C:
		case <-u.kick:
		}
	}
}

// View is what routes/match says about a pick and model swapping.
type View struct {
	Model string `json:"model"`
	// State: "loaded" (a live service has it loaded: no wait);
	// "loading" (a load is in flight on Service: a request waits for it;
	// known from this edge's swap controller, with CommandID, or from the
	// node's heartbeat, Asset.Loading, without);
	// "would_wait" (nobody has it loaded: a request would wait up to
	// WaitS for the controller to load it where the swap policy says);
	// "on_demand" (swapping is off, or no live service that offers it can
	// swap: the upstream loads it when the request arrives).
	State     string  `json:"state"`
	Service   string  `json:"service,omitempty"`
	CommandID string  `json:"command_id,omitempty"`
	Op        string  `json:"op,omitempty"` // the command in flight (an unload making room)
	WaitS     float64 `json:"wait_s,omitempty"`
}

// Explain says how a request with this decision would meet model swapping
// (nil when it has no asset target). ctl is the controller's state
// (state.Store.SwapControls); enabled and wait are the edge's swap
// settings.
func Explain(snap *fleet.Snapshot, dec *policy.Decision, ctl map[string]*fleet.SwapControl, enabled bool, wait time.Duration, now time.Time) *View {
	if len(dec.Targets) == 0 || dec.Targets[0].Kind != policy.TargetAsset {
		return nil
	}
	// A command for one of the first group's assets in flight (a load, or
	// an unload making room for it): a request waits for it, whatever the
	// snapshot says (Ollama lists a model in /api/ps while it loads).
	ids := make([]string, 0, len(ctl))
	for id := range ctl {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	g := dec.Targets[0].Group
	for i := range dec.Targets {
		t := &dec.Targets[i]
		if t.Group != g || t.Kind != policy.TargetAsset {
			break
		}
		for _, id := range ids {
			c := ctl[id]
			if enabled && wait > 0 && c.Cmd != nil && (c.Cmd.Model == t.Name && c.Cmd.Op == fleet.SwapLoad || c.Pending == t.Name) {
				return &View{Model: t.Name, State: "loading", Service: id, CommandID: c.Cmd.ID, Op: string(c.Cmd.Op), WaitS: wait.Seconds()}
			}
		}
	}
	asset, need := Need(snap, dec, now)
	if !need {
		first := dec.Targets[0].Name
		for _, svc := range snap.AssetServices[first] {
			if a, ok := svc.Asset(first); ok && a.Ready() && svc.Routable(now) {
				return &View{Model: first, State: "loaded", Service: svc.ID}
			}
		}
		return &View{Model: first, State: "on_demand"}
	}
	if !enabled || wait <= 0 {
		return &View{Model: asset, State: "on_demand"}
	}
	// A load only the node's heartbeat knows of (Asset.Loading: another
	// edge's controller sent it, or the controller's state was unreadable):
	// a request waits for it as for one of ours.
	if svc := loadingService(snap, dec, asset, now); svc != "" {
		return &View{Model: asset, State: "loading", Service: svc, Op: string(fleet.SwapLoad), WaitS: wait.Seconds()}
	}
	return &View{Model: asset, State: "would_wait", WaitS: wait.Seconds()}
}

// loadingService is the first live service that can swap and reports
// asset loading for one of the first group's targets ("" when none),
// among the services need looks at.
func loadingService(snap *fleet.Snapshot, dec *policy.Decision, asset string, now time.Time) string {
	g := dec.Targets[0].Group
	for i := range dec.Targets {
		t := &dec.Targets[i]
		if t.Group != g {
			break
		}
		if t.Name != asset {
			continue
		}
		for _, svc := range snap.AssetServices[asset] {
			if svc.Kind != t.Operation || svc.Swap == fleet.SwapNone || !svc.Routable(now) {
				continue
			}
			if a, ok := svc.Asset(asset); ok && a.Loading {
				return svc.ID
			}
		}
	}
	return ""
}
