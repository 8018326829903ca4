package routing

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/state"
)

// ProbeLease is the name of the lease the probing replica holds.
const ProbeLease = "probe"

// ProberOptions configures a Prober.
type ProberOptions struct {
	// ID names this replica in the lease (the edge id). Required.
	ID string
	// Interval between probe rounds; 0 disables probing (Run returns).
	Interval time.Duration
	// Lease is how long the lease lasts without renewal; a replica that dies
	// is replaced within Lease plus one poll (Lease/5). Default 3×Interval,
	// at least 3s.
	Lease time.Duration
	// Timeout bounds one probe. Default 2s.
	Timeout time.Duration
	// Client is the HTTP client (default: a client with Timeout).
	Client *http.Client
	// Parallel probes at once. Default 8.
	Parallel int
	Logger   *slog.Logger
}

// Prober actively probes every service's health endpoint. Across replicas
// exactly one probes at a time: the holder of the "probe" lease in Redis,
// which it renews while it lives; when it dies, another replica's next poll
// takes the lease over once it expires.
type Prober struct {
	s      *state.Store
	snap   func() *fleet.Snapshot
	o      ProberOptions
	leader atomic.Bool
	rounds atomic.Int64
}

// NewProber returns a Prober; snap returns the current snapshot.
func NewProber(s *state.Store, snap func() *fleet.Snapshot, o ProberOptions) *Prober {
	if o.Lease <= 0 {
		o.Lease = 3 * o.Interval
		if o.Lease < 3*time.Second {
			o.Lease = 3 * time.Second
		}
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Timeout}
	}
	if o.Parallel <= 0 {
		o.Parallel = 8
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Prober{s: s, snap: snap, o: o}
}

// Leader reports whether this replica held the lease at its last poll.
func (p *Prober) Leader() bool { return p.leader.Load() }

// Rounds reports how many probe rounds this replica ran.
func (p *Prober) Rounds() int64 { return p.rounds.Load() }

// Run polls the lease every Lease/5 and, while holding it, probes every
// Interval, until ctx is done (state.RunLeased). It does not release the
// lease (a crash does not either); call Release on a graceful stop.
func (p *Prober) Run(ctx context.Context) {
	if p.o.Interval <= 0 {
		return
	}
	p.s.RunLeased(ctx, state.LeasedLoop{Name: ProbeLease, Holder: p.o.ID, Lease: p.o.Lease, Interval: p.o.Interval,
		Logger: p.o.Logger, Leader: &p.leader}, p.ProbeAll)
}

// Release gives the lease up (graceful stop) so another replica takes over
// at its next poll.
func (p *Prober) Release(ctx context.Context) error {
	p.leader.Store(false)
	return p.s.ReleaseLease(ctx, ProbeLease, p.o.ID)
}

// HealthPath is the path probed for a service of the given protocol.
func HealthPath(protocol string) string {
	switch protocol {
	case fleet.ProtocolOllama:
		return "/api/version"
	case fleet.ProtocolLlamaCPP, fleet.ProtocolVLLM, fleet.ProtocolWhisper:
		return "/health"
	}
	return "/v1/models"
}

// probeFlush is how long a probe result may wait to be written with
// others of its round (ProbeAll).
const probeFlush = 250 * time.Millisecond

// probeOut is one probe's result on its way to the writer.
type probeOut struct {
	id  string
	res fleet.ProbeResult
}

// ProbeAll probes every live service once and stores the results. They are
// written in batches (every probeFlush, every state.MaxProbesPerWrite
// results, and at the round's end), each one write and one health event:
// an event per service would make every edge re-read the fleet's probes
// and cooldowns once per service, O(services²) a round.
func (p *Prober) ProbeAll(ctx context.Context) {
	snap := p.snap()
	now := time.Now()
	out := make(chan probeOut, p.o.Parallel)
	written := make(chan struct{})
	go func() {
		defer close(written)
		p.storeProbes(ctx, out)
	}()
	sem := make(chan struct{}, p.o.Parallel)
	var wg sync.WaitGroup
	for _, svc := range snap.Services {
		if !svc.Live(now) || svc.Endpoint == "" {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(svc *fleet.ServiceEntry) {
			defer func() { <-sem; wg.Done() }()
			res := p.probe(ctx, svc)
			if ctx.Err() != nil {
				return
			}
			out <- probeOut{svc.ID, res}
		}(svc)
	}
	wg.Wait()
	close(out)
	<-written
	p.rounds.Add(1)
}

// storeProbes writes the results read from in until it is closed.
func (p *Prober) storeProbes(ctx context.Context, in <-chan probeOut) {
	pending := map[string]fleet.ProbeResult{}
	t := time.NewTicker(probeFlush)
	defer t.Stop()
	flush := func() {
		if len(pending) == 0 || ctx.Err() != nil {
			return
		}
		if err := p.s.PutProbes(ctx, pending); err != nil {
			p.o.Logger.Warn("store probes", "results", len(pending), "err", err)
		}
		clear(pending)
	}
	for {
		select {
		case r, ok := <-in:
			if !ok {
				flush()
				return
			}
			pending[r.id] = r.res
			if len(pending) >= state.MaxProbesPerWrite {
				flush()
			}
		case <-t.C:
			flush()
		}
	}
}

func (p *Prober) probe(ctx context.Context, svc *fleet.ServiceEntry) fleet.ProbeResult {
	ctx, cancel := context.WithTimeout(ctx, p.o.Timeout)
	defer cancel()
	start := time.Now()
	res := fleet.ProbeResult{At: start}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, svc.Endpoint+HealthPath(svc.Protocol), nil)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	resp, err := p.o.Client.Do(req)
	res.LatencyMS = float64(time.Since(start).Microseconds()) / 1000
	if err != nil {
		res.Error = err.Error()
		return res
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		res.Error = "status " + strconv.Itoa(resp.StatusCode)
		return res
	}
	res.Healthy = true
	return res
}
