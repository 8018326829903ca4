package nodeagent

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"sync"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/state"
)

// Version is reported in Host.Agent.
var Version = "geniehive-node/dev"

// Options are an Agent's collaborators; every field is optional.
type Options struct {
	Logger *slog.Logger // default slog.Default()
	// HTTPClient talks to the upstreams (default: a client with short dial
	// and header timeouts; per-service deadlines come from the context).
	HTTPClient *http.Client
	// GPUs reads the host's GPUs. Default: nvidia-smi per Config.NvidiaSMI.
	GPUs func(context.Context) ([]fleet.GPU, error)
}

// Agent discovers a host's services and heartbeats them into Redis.
// Methods are safe for concurrent use, but Run is meant to be called once.
type Agent struct {
	cfg     Config
	store   *state.Store
	log     *slog.Logger
	hc      *http.Client
	gpus    func(context.Context) ([]fleet.GPU, error)
	started time.Time

	mu       sync.Mutex
	lastGood map[string][]fleet.Asset // last discovered assets per service
	lastErr  map[string]string        // last health error per service (for change logs)
	warned   map[string]bool
	tokens   map[string]tokenMark // last generated-token counter per service
	// steady: per service, the last successful health check and how many
	// have timed out in a row since (held.go)
	steady map[string]*steadyProbe

	capsMu sync.Mutex
	caps   map[string][]string // Ollama model capabilities by endpoint, name and digest

	swaps map[string]swapTarget // service id (siblings too) -> how it swaps; under mu
	// loading: service id -> the model a load command is loading there,
	// until the agent has confirmed it (reported as Asset.Loading); under mu
	loading map[string]string
	swapHC  *http.Client  // swap commands: no header timeout (loads take long)
	kick    chan struct{} // a swap finished: beat now

	beatMu sync.Mutex
	beats  state.Beats // what the last beats published (metrics events); under beatMu
}

type tokenMark struct {
	total float64
	at    time.Time
}

// New validates cfg (a copy is kept) and returns an Agent writing to store.
//
// # Errors
// The validation errors of cfg.
func New(cfg Config, store *state.Store, o Options) (*Agent, error) {
	cfg.Services = append([]ServiceConfig(nil), cfg.Services...)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, store: store, log: o.Logger, hc: o.HTTPClient, gpus: o.GPUs,
		started: time.Now(), lastGood: map[string][]fleet.Asset{}, lastErr: map[string]string{}, warned: map[string]bool{}, tokens: map[string]tokenMark{}, steady: map[string]*steadyProbe{}, caps: map[string][]string{},
		swaps: map[string]swapTarget{}, loading: map[string]string{}, kick: make(chan struct{}, 1)}
	if a.log == nil {
		a.log = slog.Default()
	}
	a.log = a.log.With("host", cfg.HostID)
	if a.hc == nil {
		a.hc = &http.Client{Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			ResponseHeaderTimeout: cfg.DiscoveryTimeout,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       2 * cfg.Interval,
		}}
	}
	a.swapHC = o.HTTPClient
	if a.swapHC == nil {
		a.swapHC = &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     2 * cfg.Interval,
		}}
	}
	if a.gpus == nil && cfg.NvidiaSMI != "off" {
		path := cfg.NvidiaSMI
		if path == "" {
			path, _ = exec.LookPath("nvidia-smi")
		}
		if path != "" {
			a.gpus = nvidiaGPUs(path)
		}
	}
	return a, nil
}

// Config returns the validated configuration (defaults filled).
func (a *Agent) Config() Config { return a.cfg }

// Collect discovers every service concurrently (each under
// DiscoveryTimeout) and reads the GPUs, returning the state to write. It
// never fails: a service that cannot be read is reported unhealthy.
func (a *Agent) Collect(ctx context.Context) fleet.NodeState {
	now := time.Now()
	st := fleet.NodeState{
		Host: fleet.Host{ID: a.cfg.HostID, Labels: a.cfg.Labels, Agent: Version,
			StartedAt: a.started, UpdatedAt: now},
		Services: make([]fleet.Service, 0, len(a.cfg.Services)),
	}
	var wg sync.WaitGroup
	probes := make([]probe, len(a.cfg.Services))
	for i := range a.cfg.Services {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, a.cfg.DiscoveryTimeout)
			defer cancel()
			probes[i] = a.discover(sctx, &a.cfg.Services[i])
		}(i)
	}
	if a.gpus != nil {
		gctx, cancel := context.WithTimeout(ctx, a.cfg.DiscoveryTimeout)
		gpus, err := a.gpus(gctx)
		cancel()
		if err != nil {
			a.warnOnce("gpus", "GPU figures unavailable", "err", err)
		}
		st.Host.GPUs = gpus
	}
	wg.Wait()
	var vramTotal int64
	for _, g := range st.Host.GPUs {
		vramTotal += g.VRAMTotalBytes
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range a.cfg.Services {
		sc, p := &a.cfg.Services[i], &probes[i]
		id := a.cfg.ServiceID(sc.Name)
		a.holdThroughTimeoutLocked(id, p)
		svc := fleet.Service{ID: id, HostID: a.cfg.HostID, Name: sc.Name, Kind: sc.Kind,
			Protocol: sc.Protocol, Endpoint: sc.Endpoint, MaxConcurrency: sc.MaxConcurrency,
			Healthy: p.err == nil, Labels: sc.Labels, APIs: p.apis, Swap: p.swap}
		if p.err != nil {
			svc.HealthError = p.err.Error()
			svc.Assets = a.lastGood[id] // keep what it offered, for operators
			if svc.Assets == nil {
				svc.Assets, _ = merge(nil, sc, false, nil)
			}
		} else {
			svc.Assets = p.assets
			a.lastGood[id] = p.assets
		}
		if svc.Assets == nil {
			svc.Assets = []fleet.Asset{}
		}
		if prev, seen := a.lastErr[id]; !seen || prev != svc.HealthError {
			if svc.Healthy {
				a.log.Info("service healthy", "service", id, "assets", len(svc.Assets))
			} else {
				a.log.Warn("service unhealthy", "service", id, "err", svc.HealthError)
			}
			a.lastErr[id] = svc.HealthError
		}
		for _, w := range p.warnings {
			a.warnOnceLocked(id+w, "discovery warning", "service", id, "warning", w)
		}
		m := &svc.Metrics
		m.LatencyMS = float64(p.latency.Microseconds()) / 1000
		m.QueueDepth, m.InFlight = p.queue, p.running
		m.VRAMUsedBytes, m.VRAMTotalBytes = p.vramUsed, vramTotal
		if sc.VRAMTotal > 0 {
			m.VRAMTotalBytes = sc.VRAMTotal // the operator's budget for this upstream
		}
		if p.tokens >= 0 {
			// Aggregate generation rate since the previous beat, from the
			// upstream's own counter (a reset restarts the measurement).
			if prev, ok := a.tokens[id]; ok && p.tokens >= prev.total && now.Sub(prev.at) > 0 {
				m.TokensPerSecond = (p.tokens - prev.total) / now.Sub(prev.at).Seconds()
			}
			a.tokens[id] = tokenMark{p.tokens, now}
		}
		for _, part := range a.splitByCapability(sc, svc) {
			part.Assets = a.markLoading(part.ID, part.Assets)
			part.Metrics.LoadedModelCount = 0
			for _, as := range part.Assets {
				if as.Loaded {
					part.Metrics.LoadedModelCount++
				}
			}
			st.Services = append(st.Services, part)
			a.swaps[part.ID] = swapTarget{kind: part.Swap, endpoint: sc.Endpoint}
		}
	}
	return st
}

// splitByCapability serves each model only for what it can do. One Ollama
// holds models of several kinds; its service (of the configured kind)
// keeps the models whose capabilities fit that kind, and the others are
// listed under a sibling service "<name>-<kind>" on the same endpoint (an
// embedding model under "ollama-embeddings"), unless another configured
// service on that endpoint already serves that kind (only the first
// service configured on an endpoint gets siblings). Models whose
// capabilities are unknown stay where they were configured.
func (a *Agent) splitByCapability(sc *ServiceConfig, svc fleet.Service) []fleet.Service {
	if sc.Protocol != fleet.ProtocolOllama {
		return []fleet.Service{svc}
	}
	var keep []fleet.Asset
	others := map[fleet.Kind][]fleet.Asset{}
	var order []fleet.Kind
	for _, as := range svc.Assets {
		k := as.CapabilityKind()
		if k == "" || k == sc.Kind {
			keep = append(keep, as)
			continue
		}
		if _, seen := others[k]; !seen {
			order = append(order, k)
		}
		others[k] = append(others[k], as)
	}
	if len(order) == 0 {
		return []fleet.Service{svc}
	}
	if keep == nil {
		keep = []fleet.Asset{}
	}
	svc.Assets = keep
	out := []fleet.Service{svc}
	for _, k := range order {
		name := sc.Name + "-" + string(k)
		if a.configured(sc, k) || a.named(name) || !state.ValidHostID(name) {
			continue
		}
		sib := svc
		sib.ID, sib.Name, sib.Kind, sib.Assets = a.cfg.ServiceID(name), name, k, others[k]
		sib.MaxConcurrency = 0
		out = append(out, sib)
	}
	return out
}

// configured reports whether a configured service on endpoint serves kind
// k, or one configured before sc lists the endpoint's siblings.
func (a *Agent) configured(sc *ServiceConfig, k fleet.Kind) bool {
	first := true
	for i := range a.cfg.Services {
		s := &a.cfg.Services[i]
		if s.Endpoint != sc.Endpoint {
			continue
		}
		if s.Kind == k {
			return true
		}
		if first && s != sc {
			return true // the first service on the endpoint has the siblings
		}
		first = false
	}
	return false
}

// named reports whether a configured service has this name.
func (a *Agent) named(name string) bool {
	for i := range a.cfg.Services {
		if a.cfg.Services[i].Name == name {
			return true
		}
	}
	return false
}

func (a *Agent) warnOnce(key, msg string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.warnOnceLocked(key, msg, args...)
}

func (a *Agent) warnOnceLocked(key, msg string, args ...any) {
	if !a.warned[key] {
		a.warned[key] = true
		a.log.Warn(msg, args...)
	}
}

// Beat collects and writes one heartbeat, returning what it wrote.
//
// # Errors
// The Redis write's error (the state is still returned).
func (a *Agent) Beat(ctx context.Context) (fleet.NodeState, error) {
	st := a.Collect(ctx)
	a.beatMu.Lock()
	defer a.beatMu.Unlock()
	return st, WriteBeat(ctx, a.store, &st, a.cfg, &a.beats)
}

// WriteBeat writes one heartbeat of st as an agent configured with cfg
// does: the node's key with cfg.TTL and its change event (one MULTI/EXEC,
// state.Store.WriteBeat), under a deadline of min(Interval, 5s). b is
// what the node's previous beats published: when only its metrics moved,
// the event carries them (a metrics event, state/metricsevent.go) instead
// of "up", so edges need not read the state back. `geniehive loadtest
// fleet` writes its simulated nodes through it.
func WriteBeat(ctx context.Context, store *state.Store, st *fleet.NodeState, cfg Config, b *state.Beats) error {
	wctx, cancel := context.WithTimeout(ctx, min(cfg.Interval, 5*time.Second))
	defer cancel()
	return store.WriteBeat(wctx, st, cfg.TTL, b)
}

// Jitter is the fraction of the interval by which each wait between
// heartbeats varies (uniformly, either way), so that agents started
// together (a rack after a power cut, a fleet redeployed) spread their
// writes instead of beating in step.
const Jitter = 0.1

// NextBeat is the wait before the next heartbeat when the last one took
// took: interval - took, moved by up to ±Jitter×interval (u is uniform in
// [0,1)), never negative.
func NextBeat(interval, took time.Duration, u float64) time.Duration {
	j := time.Duration((2*u - 1) * Jitter * float64(interval))
	return max(interval-took+j, 0)
}

// Run heartbeats every Interval (jittered by ±Jitter, NextBeat) until ctx ends, then removes the node's key
// so edges drop it at once rather than after the TTL. Redis failures are
// logged and retried (backoff from 250ms doubling, capped at Interval); they
// never end Run.
//
// # Errors
// Only the final RemoveNode's error.
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("node agent started", "services", len(a.cfg.Services), "interval", a.cfg.Interval, "ttl", a.cfg.TTL)
	var backoff time.Duration
	failing := false
	t := time.NewTimer(0)
	defer t.Stop()
	sctx, stopSwaps := context.WithCancel(ctx)
	swapsDone := make(chan struct{})
	go func() { defer close(swapsDone); a.runSwaps(sctx) }()
	defer func() { stopSwaps(); <-swapsDone }()
	for {
		select {
		case <-ctx.Done():
			return a.remove()
		case <-t.C:
		case <-a.kick:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		}
		start := time.Now()
		_, err := a.Beat(ctx)
		if ctx.Err() != nil {
			return a.remove()
		}
		next := NextBeat(a.cfg.Interval, time.Since(start), rand.Float64())
		if err != nil {
			backoff = min(max(2*backoff, 250*time.Millisecond), a.cfg.Interval)
			next = backoff
			a.log.Warn("heartbeat not written; retrying", "err", err, "retry_in", backoff)
			failing = true
		} else {
			if failing {
				a.log.Info("heartbeat written again")
				failing = false
			}
			backoff = 0
		}
		t.Reset(max(next, 0))
	}
}

func (a *Agent) remove() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := a.store.RemoveNode(ctx, a.cfg.HostID); err != nil {
		a.log.Warn("could not remove node on stop; its key expires with the TTL", "err", err)
		return err
	}
	a.log.Info("node agent stopped; node removed")
	return nil
}
