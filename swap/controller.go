// Package swap makes the fleet load and unload models on demand (issue
// 14). Three parts:
//
//   - Usage (every edge): what its requests use and wait for, published
//     into Redis (gh:swap:use:{<edge>}) every Interval.
//   - Controller (one edge at a time, holding the "swap" lease like the
//     prober): every Interval it settles the commands in flight (their
//     results, or an expiry when the deadline passed without one), builds
//     a policy.SwapInput from the snapshot and every edge's usage,
//     evaluates the bundle's swap rule, checks each action against the
//     hard limits (Guard) and sends what passes on the node's command
//     stream. Its state (gh:swap:ctl) and log (gh:swap:log) live in
//     Redis, so a new lease holder carries on where the last one stopped.
//   - Waiter (every edge): a request whose candidates have no loaded
//     replica of their model waits, bounded, for a snapshot that has one.
//
// Controller.Run and Publish loop until their context ends; a Controller
// is safe for concurrent use, Round is called by Run only.
package swap

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/state"
)

// Settings are the operator's swap settings (edge config swap.*).
type Settings struct {
	// Enabled runs the controller (on the lease holder) and makes
	// requests wait for loads. Default off.
	Enabled bool `yaml:"enabled"`
	// Interval between controller rounds and usage publications. Default 1s.
	Interval time.Duration `yaml:"interval"`
	// Lease: a dead controller is replaced within Lease plus one poll.
	// Default 3×Interval, at least 3s.
	Lease time.Duration `yaml:"lease"`
	// MinResidency: a model loaded less than this long ago is not unloaded
	// to make room. Default 2m.
	MinResidency time.Duration `yaml:"min_residency"`
	// Idle: a model is unloaded to make room only after this long without
	// a request. Default 30s.
	Idle time.Duration `yaml:"idle"`
	// Cooldown between the end of one swap on a service and the start of
	// the next. Default 10s.
	Cooldown time.Duration `yaml:"cooldown"`
	// CommandTimeout is a command's deadline. Default 2m.
	CommandTimeout time.Duration `yaml:"command_timeout"`
	// KeepAlive sent with a load: negative (the default; 0 means it too)
	// keeps the model until the controller unloads it; a positive value
	// lets the upstream unload it after that long idle (Ollama's
	// keep_alive; llama.cpp's router has none and keeps it).
	KeepAlive time.Duration `yaml:"keep_alive"`
	// Wait bounds how long a request waits for its model to be loaded
	// before it goes to a host that does not have it loaded (which then
	// loads it on demand, as without swapping), or, while a node is still
	// loading it (fleet.Asset.Loading) and no host has it ready, fails
	// with a retryable 503 model_loading. Default 30s.
	Wait time.Duration `yaml:"wait"`
}

// Provision fills defaults.
func (s *Settings) Provision() {
	if s.Interval <= 0 {
		s.Interval = time.Second
	}
	if s.Lease <= 0 {
		s.Lease = max(3*s.Interval, 3*time.Second)
	}
	if s.MinResidency == 0 {
		s.MinResidency = 2 * time.Minute
	}
	if s.Idle == 0 {
		s.Idle = 30 * time.Second
	}
	if s.Cooldown == 0 {
		s.Cooldown = 10 * time.Second
	}
	if s.CommandTimeout <= 0 {
		s.CommandTimeout = 2 * time.Minute
	}
	if s.KeepAlive == 0 {
		s.KeepAlive = -1
	}
	if s.Wait == 0 {
		s.Wait = 30 * time.Second
	}
}

// Validate checks provisioned settings.
func (s *Settings) Validate() error {
	if s.MinResidency < 0 || s.Idle < 0 || s.Cooldown < 0 || s.Wait < 0 {
		return errors.New("swap: min_residency, idle, cooldown and wait must not be negative")
	}
	if s.Lease < s.Interval {
		return errors.New("swap: lease must be at least interval")
	}
	return nil
}

// Evaluator evaluates the swap rule (policies.Holder.EvalSwap).
type Evaluator func(ctx context.Context, in *policy.SwapInput, out *policy.SwapDecision) error

// Options are a Controller's collaborators.
type Options struct {
	ID       string // this edge's id (lease holder, command ids); required
	Settings Settings
	Logger   *slog.Logger
	// Observe, when set, is told every outcome, every refused action and
	// the demand of each round (metrics).
	Observe Observer
}

// Observer receives what the controller does, for metrics.
type Observer interface {
	Outcome(op fleet.SwapOp, result fleet.SwapStatus, took time.Duration)
	Refused(op string)
	Demand(waiting map[string]int)
}

// Controller decides and sends swaps; see the package comment.
type Controller struct {
	s      *state.Store
	snap   func() *fleet.Snapshot
	eval   Evaluator
	o      Options
	leader atomic.Bool
	rounds atomic.Int64
	seq    atomic.Uint64

	mu        sync.Mutex
	refusedAt map[string]time.Time // log a repeated refusal once a minute
	lastErr   string
}

// New returns a Controller.
func New(s *state.Store, snap func() *fleet.Snapshot, eval Evaluator, o Options) *Controller {
	o.Settings.Provision()
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Controller{s: s, snap: snap, eval: eval, o: o, refusedAt: map[string]time.Time{}}
}

// Leader reports whether this edge held the lease at its last poll.
func (c *Controller) Leader() bool { return c.leader.Load() }

// Rounds is how many rounds this edge ran.
func (c *Controller) Rounds() int64 { return c.rounds.Load() }

// Run polls the lease every Lease/5 (at most Interval) and, while holding
// it, runs a round every Interval, until ctx ends. Release on a graceful
// stop lets another edge take over at once.
func (c *Controller) Run(ctx context.Context) {
	st := c.o.Settings
	c.s.RunLeased(ctx, state.LeasedLoop{Name: state.SwapLease, Holder: c.o.ID, Lease: st.Lease, Interval: st.Interval,
		Logger: c.o.Logger, Leader: &c.leader}, func(ctx context.Context) {
		rctx, cancel := context.WithTimeout(ctx, st.Lease)
		if err := c.Round(rctx); err != nil && ctx.Err() == nil {
			c.noteErr(err)
		}
		cancel()
		c.rounds.Add(1)
	})
}

func (c *Controller) noteErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err.Error() != c.lastErr {
		c.lastErr = err.Error()
		c.o.Logger.Warn("swap round failed", "err", err)
	}
}

// Release gives the lease up.
func (c *Controller) Release(ctx context.Context) error {
	c.leader.Store(false)
	return c.s.ReleaseLease(ctx, state.SwapLease, c.o.ID)
}

// settleGrace: a command's result may arrive this long after its
// deadline (the node answers "expired" itself) before the controller
// expires it.
const settleGrace = 2 * time.Second

// settleMax bounds how long a service stays busy waiting for a heartbeat
// newer than its last command (a node whose clock lags).
const settleMax = 30 * time.Second

// Round runs one controller round (see the package comment).
//
// # Errors
// Redis errors reading state (nothing is sent then); evaluation errors
// (policy.ErrNoSwapRule when the policy has none: no swaps).
func (c *Controller) Round(ctx context.Context) error {
	now := time.Now()
	st := c.o.Settings
	snap := c.snap()
	ctl, err := c.s.SwapControls(ctx)
	if err != nil {
		return err
	}
	edges, err := c.s.ListEdges(ctx)
	if err != nil {
		return err
	}
	ids := make([]string, len(edges))
	for i := range edges {
		ids[i] = edges[i].ID
	}
	use, err := c.s.SwapUsages(ctx, ids)
	if err != nil {
		return err
	}
	if c.o.Observe != nil {
		c.o.Observe.Demand(use.Waiting)
	}
	put := map[string]*fleet.SwapControl{}
	var del []string
	var recs []fleet.SwapRecord

	// 1. Settle the commands in flight.
	for id, sc := range ctl {
		if sc.Cmd == nil {
			continue
		}
		host := state.SwapHost(id)
		r, found, err := c.s.SwapResult(ctx, host, sc.Cmd.ID)
		if err != nil && errors.Is(err, fleet.ErrInvalid) {
			r, found = fleet.SwapResult{ID: sc.Cmd.ID, Status: fleet.SwapFailed, Error: "result unreadable: " + err.Error()}, true
		} else if err != nil {
			return err
		}
		if !found && now.After(sc.Cmd.Deadline.Add(settleGrace)) {
			if r, err = c.s.ExpireSwap(ctx, host, sc.Cmd.ID, c.o.ID); err != nil {
				return err
			}
			found = true
		}
		if !found {
			continue
		}
		took := max(now.Sub(sc.SentAt), 0)
		recs = append(recs, fleet.SwapRecord{At: now, Edge: c.o.ID, Event: "outcome", Op: sc.Cmd.Op, Service: id, Model: sc.Cmd.Model,
			For: forOf(sc), CmdID: sc.Cmd.ID, Result: r.Status, Error: r.Error, TookMS: took.Milliseconds()})
		if c.o.Observe != nil {
			c.o.Observe.Outcome(sc.Cmd.Op, r.Status, took)
		}
		if sc.LoadedAt == nil {
			sc.LoadedAt = map[string]time.Time{}
		}
		switch {
		case sc.Cmd.Op == fleet.SwapLoad:
			sc.Pending = ""
			sc.CooldownUntil = now.Add(st.Cooldown)
			if r.Status == fleet.SwapDone {
				sc.LoadedAt[sc.Cmd.Model] = now
			}
		case r.Status == fleet.SwapDone: // an unload: the load it made room for follows
			delete(sc.LoadedAt, sc.Cmd.Model)
		default:
			sc.Pending = ""
			sc.CooldownUntil = now.Add(st.Cooldown)
		}
		sc.Cmd, sc.Settle = nil, now
		put[id] = sc
	}

	// 2. The input: live swappable services, their models and use.
	in := &policy.SwapInput{SchemaVersion: policy.SchemaVersion, NowMS: now.UnixMilli(),
		Settings: policy.SwapSettings{MinResidencyMS: st.MinResidency.Milliseconds(), IdleMS: st.Idle.Milliseconds(), CooldownMS: st.Cooldown.Milliseconds()},
		Pinned:   slices.Clone(snap.Catalog.Pinned())}
	if in.Pinned == nil {
		in.Pinned = []string{}
	}
	seen := map[string]bool{}
	for _, svc := range snap.Services {
		if svc.Swap == fleet.SwapNone || !svc.Routable(now) {
			continue
		}
		seen[svc.ID] = true
		sc := ctl[svc.ID]
		if sc == nil {
			sc = &fleet.SwapControl{Service: svc.ID}
			ctl[svc.ID] = sc
		}
		if sc.LoadedAt == nil {
			sc.LoadedAt = map[string]time.Time{}
		}
		changed := false
		sm := svc.Metrics() // one load: used and total of one report
		ss := policy.SwapService{ID: svc.ID, Host: svc.HostID, VRAMTotal: sm.VRAMTotalBytes, VRAMUsed: sm.VRAMUsedBytes,
			Busy: sc.Cmd != nil || c.settling(snap, svc.HostID, sc, now), Pending: sc.Pending, Models: []policy.SwapModel{}}
		if !sc.CooldownUntil.IsZero() {
			ss.CooldownUntilMS = sc.CooldownUntil.UnixMilli()
		}
		u := use.Use[svc.ID]
		for i := range svc.Assets {
			a := &svc.Assets[i]
			m := policy.SwapModel{Name: a.Name, Loaded: a.Loaded, Size: a.SizeVRAM}
			if m.Size == 0 {
				m.Size = a.Size
			}
			at, ok := sc.LoadedAt[a.Name]
			switch {
			case a.Loaded && !ok:
				at, changed = now, true
				sc.LoadedAt[a.Name] = at
			case !a.Loaded && ok:
				delete(sc.LoadedAt, a.Name)
				changed = true
			}
			if a.Loaded {
				x := u[a.Name]
				m.InFlight = x.InFlight
				last := at
				if x.LastUsed.After(last) {
					last = x.LastUsed
				}
				m.IdleMS, m.ResidentMS = now.Sub(last).Milliseconds(), now.Sub(at).Milliseconds()
			}
			ss.Models = append(ss.Models, m)
		}
		// A swap under way that nobody waits for any more (the requests
		// gave up), or whose model is resident now, is over: without this
		// the service would stay reserved for it.
		if sc.Cmd == nil && sc.Pending != "" && (use.Waiting[sc.Pending] == 0 || loadedOn(svc, sc.Pending)) {
			sc.Pending, ss.Pending = "", ""
			changed = true
		}
		if changed {
			put[svc.ID] = sc
		}
		in.Services = append(in.Services, ss)
	}
	for id, sc := range ctl {
		if !seen[id] && sc.Cmd == nil {
			del = append(del, id) // gone, or cannot swap any more: nothing in flight to settle
			delete(put, id)
		}
	}
	for m, n := range use.Waiting {
		in.Demand = append(in.Demand, policy.SwapDemand{Model: m, Waiting: n})
	}
	sort.Slice(in.Demand, func(i, j int) bool {
		if in.Demand[i].Waiting != in.Demand[j].Waiting {
			return in.Demand[i].Waiting > in.Demand[j].Waiting
		}
		return in.Demand[i].Model < in.Demand[j].Model
	})
	if in.Demand == nil {
		in.Demand = []policy.SwapDemand{}
	}
	if in.Services == nil {
		in.Services = []policy.SwapService{}
	}

	// 3. Decide, guard, send.
	var dec policy.SwapDecision
	var evalErr error
	if len(in.Demand) > 0 && len(in.Services) > 0 {
		evalErr = c.eval(ctx, in, &dec)
	}
	acted := map[string]bool{}
	for _, a := range dec.Actions {
		why := Guard(in, &a, acted)
		if why == "" {
			if ok, err := c.s.AcquireLease(ctx, state.SwapLease, c.o.ID, st.Lease); err != nil || !ok {
				why = "this edge lost the swap lease"
			}
		}
		if why != "" {
			if c.o.Observe != nil {
				c.o.Observe.Refused(a.Op)
			}
			if c.shouldLog(a, why, now) {
				recs = append(recs, fleet.SwapRecord{At: now, Edge: c.o.ID, Event: "refused", Op: fleet.SwapOp(a.Op), Service: a.Service, Model: a.Model, For: a.For, Reason: a.Reason, Error: why})
			}
			continue
		}
		cmd := &fleet.SwapCommand{ID: c.o.ID + "-" + strconv.FormatInt(now.UnixNano(), 36) + "-" + strconv.FormatUint(c.seq.Add(1), 10),
			Op: fleet.SwapOp(a.Op), Service: a.Service, Model: a.Model, Deadline: now.Add(st.CommandTimeout), Issuer: c.o.ID, Reason: a.Reason}
		if cmd.Op == fleet.SwapLoad {
			cmd.KeepAliveMS = st.KeepAlive.Milliseconds()
			if st.KeepAlive < 0 {
				cmd.KeepAliveMS = -1
			}
		}
		if _, err := c.s.SendSwap(ctx, cmd); err != nil {
			recs = append(recs, fleet.SwapRecord{At: now, Edge: c.o.ID, Event: "refused", Op: cmd.Op, Service: a.Service, Model: a.Model, For: a.For, Reason: a.Reason, Error: "send: " + err.Error()})
			continue
		}
		acted[state.SwapHost(a.Service)] = true
		sc := ctl[a.Service]
		sc.Cmd, sc.SentAt = cmd, now
		if cmd.Op == fleet.SwapUnload {
			sc.Pending = a.For
		} else {
			sc.Pending = a.Model
		}
		put[a.Service] = sc
		recs = append(recs, fleet.SwapRecord{At: now, Edge: c.o.ID, Event: "sent", Op: cmd.Op, Service: a.Service, Model: a.Model, For: a.For, Reason: a.Reason, CmdID: cmd.ID})
		c.o.Logger.Info("swap command sent", "op", cmd.Op, "service", a.Service, "model", a.Model, "for", a.For, "reason", a.Reason)
	}
	if err := c.s.PutSwapControls(ctx, put, del); err != nil {
		return err
	}
	if err := c.s.AddSwapRecords(ctx, recs...); err != nil {
		return err
	}
	return evalErr
}

func loadedOn(svc *fleet.ServiceEntry, model string) bool {
	a, ok := svc.Asset(model)
	return ok && a.Loaded
}

func forOf(sc *fleet.SwapControl) string {
	if sc.Cmd != nil && sc.Cmd.Op == fleet.SwapUnload {
		return sc.Pending
	}
	return ""
}

// settling: the service's last command ended after its node's latest
// heartbeat, so the snapshot does not show its effect yet.
func (c *Controller) settling(snap *fleet.Snapshot, host string, sc *fleet.SwapControl, now time.Time) bool {
	if sc.Settle.IsZero() || now.Sub(sc.Settle) > settleMax {
		return false
	}
	h := snap.Hosts[host]
	return h == nil || !h.UpdatedAt().After(sc.Settle)
}

// shouldLog: a refusal is logged once a minute per (action, reason).
func (c *Controller) shouldLog(a policy.SwapAction, why string, now time.Time) bool {
	k := a.Op + "\x00" + a.Service + "\x00" + a.Model + "\x00" + why
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.refusedAt[k]; ok && now.Sub(t) < time.Minute {
		return false
	}
	if len(c.refusedAt) > 1024 {
		clear(c.refusedAt)
	}
	c.refusedAt[k] = now
	return true
}

// Guard checks an action against the hard limits, whatever the policy
// says, and returns why it is refused ("" when it may be sent): the
// service must be live and able to swap, and its node without a command in
// flight or one already sent this round (acted, by host); a load must fit the free VRAM of a
// service with a VRAM figure; an unload must be of a loaded model with no
// request in flight, not pinned, resident at least min_residency; a new
// swap must not start during the service's cooldown.
func Guard(in *policy.SwapInput, a *policy.SwapAction, acted map[string]bool) string {
	var s *policy.SwapService
	for i := range in.Services {
		if in.Services[i].ID == a.Service {
			s = &in.Services[i]
		}
	}
	if s == nil {
		return "service is not live or cannot swap"
	}
	// One command in flight per node, whatever service it is for (two
	// upstreams on one host share its GPUs).
	for i := range in.Services {
		if o := &in.Services[i]; o.Host == s.Host && o.Busy {
			return "node has a command in flight"
		}
	}
	if acted[s.Host] {
		return "node has a command in flight"
	}
	var m *policy.SwapModel
	for i := range s.Models {
		if s.Models[i].Name == a.Model {
			m = &s.Models[i]
		}
	}
	if m == nil {
		return "service does not offer the model"
	}
	starts := s.Pending == "" || (a.Op == "load" && s.Pending != a.Model) || (a.Op == "unload" && s.Pending != a.For)
	if starts && s.CooldownUntilMS > in.NowMS {
		return "service is cooling down"
	}
	switch a.Op {
	case "load":
		if m.Loaded {
			return "model already loaded"
		}
		if s.VRAMTotal <= 0 {
			return "service has no VRAM figure"
		}
		if m.Size > s.VRAMTotal-s.VRAMUsed {
			return "model does not fit the free VRAM"
		}
	case "unload":
		if !m.Loaded {
			return "model not loaded"
		}
		if m.InFlight > 0 {
			return "model has requests in flight"
		}
		if slices.Contains(in.Pinned, m.Name) {
			return "model is pinned"
		}
		if m.ResidentMS < in.Settings.MinResidencyMS {
			return "model is below its minimum residency"
		}
	default:
		return "unknown op"
	}
	return ""
}
