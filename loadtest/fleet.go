package loadtest

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/nodeagent"
	"github.com/geniehive/geniehive/state"
)

// FleetConfig describes a simulated fleet: Nodes node agents, each with
// Services services of Assets models, heartbeating every Interval.
type FleetConfig struct {
	Nodes, Services, Assets int
	// Models is how many distinct model names the fleet's assets are drawn
	// from (default 50: a few hundred services offer each one).
	Models   int
	Interval time.Duration // default 5s
	TTL      time.Duration // default as a node agent's (nodeagent.Config)
	// Duration bounds the run (default 30s); the run also ends with ctx.
	Duration time.Duration
	// Warmup is the unmeasured start, in which every node joins (the fleet
	// appearing is not churn): default one Interval plus a second. It lasts
	// longer while a node has not written its first heartbeat, or the
	// observer (Observe) does not yet hold every node, by at most
	// MaxJoinWait (a starved machine must not turn joins into churn). The
	// figures (heartbeats, latencies, CPU, Redis) cover Duration after it.
	Warmup time.Duration
	// HostPrefix names the hosts (<prefix>00001, …). Default "fleet-".
	HostPrefix string
	// Endpoint is every service's base URL (default http://127.0.0.1:9,
	// the discard port: the fleet is for state churn, not for requests).
	Endpoint string
	// Writers bounds the heartbeats written at once (default 32).
	Writers int
	// Observe, when set, is a second store (its own connection, as another
	// edge's) on which a state.Watcher follows the fleet; the report then
	// has the heartbeat-to-snapshot latency and the watcher's figures.
	Observe *state.Store
	// Keep leaves the nodes in Redis at the end (by default they are
	// removed, as agents do when they stop).
	Keep bool
	// Watch names processes (an edge, redis-server) whose CPU time and RSS
	// to report over the run.
	Watch map[string]int
	// Progress, when set, gets a line every 5s.
	Progress io.Writer
}

// FleetReport is what a fleet run measured.
type FleetReport struct {
	Nodes      int     `json:"nodes"`
	Services   int     `json:"services"`
	Assets     int     `json:"assets"`
	IntervalS  float64 `json:"interval_s"`
	ElapsedS   float64 `json:"elapsed_s"`
	Heartbeats uint64  `json:"heartbeats"`
	Errors     uint64  `json:"errors"`
	// Timeouts are the errors that were a heartbeat's write missing its
	// deadline (the agent's: the interval, at most 5s); the rest of
	// Errors were refused or failed writes. FirstError is the first
	// error's text.
	Timeouts       uint64  `json:"timeouts"`
	FirstError     string  `json:"first_error,omitempty"`
	HeartbeatBytes float64 `json:"heartbeat_bytes_mean"` // JSON value size
	// Write is the heartbeat's MULTI/EXEC round trip.
	Write *LatencySummary `json:"write"`
	// Visible is from a heartbeat's UpdatedAt to the build time of the
	// first snapshot of the observing watcher that shows it.
	Visible *LatencySummary `json:"visible,omitempty"`
	// Observer is the observing watcher's own account.
	Observer *ObserverReport `json:"observer,omitempty"`
	// Redis is what the Redis server(s) did meanwhile (INFO deltas).
	Redis *RedisUsage `json:"redis,omitempty"`
	// Processes are the watched processes (FleetConfig.Watch).
	Processes []ProcessReport `json:"processes,omitempty"`
}

// ObserverReport is the observing watcher's figures over the run.
type ObserverReport struct {
	EventsApplied uint64           `json:"events_applied"`
	EventsDropped uint64           `json:"events_dropped"`
	Resyncs       uint64           `json:"resyncs"`
	Build         state.BuildStats `json:"build"`
	// FinalHosts and FinalServices are what its last snapshot held.
	FinalHosts    int `json:"final_hosts"`
	FinalServices int `json:"final_services"`
}

// RedisUsage is the difference of INFO counters over a run, summed over
// every master.
type RedisUsage struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUPercent is CPUSeconds over the elapsed time (100 = one core).
	CPUPercent  float64 `json:"cpu_percent"`
	Commands    uint64  `json:"commands"`
	NetInBytes  uint64  `json:"net_in_bytes"`
	NetOutBytes uint64  `json:"net_out_bytes"`
	UsedMemory  uint64  `json:"used_memory_bytes"` // at the end
}

func (c *FleetConfig) defaults() error {
	if c.Nodes <= 0 || c.Services <= 0 || c.Assets <= 0 {
		return errors.New("fleet: nodes, services and assets must be at least 1")
	}
	if c.Services > state.MaxServicesPerNode {
		return fmt.Errorf("fleet: %d services per node exceed %d", c.Services, state.MaxServicesPerNode)
	}
	if c.Models <= 0 {
		c.Models = 50
	}
	if c.Interval <= 0 {
		c.Interval = nodeagent.DefaultInterval
	}
	if c.Duration <= 0 {
		c.Duration = 30 * time.Second
	}
	if c.Warmup <= 0 {
		c.Warmup = c.Interval + time.Second
	}
	if c.HostPrefix == "" {
		c.HostPrefix = "fleet-"
	}
	if c.Endpoint == "" {
		c.Endpoint = "http://127.0.0.1:9"
	}
	if c.Writers <= 0 {
		c.Writers = 32
	}
	return nil
}

// simNode is one simulated node agent.
type simNode struct {
	cfg    nodeagent.Config
	st     fleet.NodeState
	beats  state.Beats
	next   time.Time
	idx    int  // heap index
	joined bool // a heartbeat of it was written
}

// MaxJoinWait bounds how far the warm-up extends past FleetConfig.Warmup
// while the fleet is still joining; the run then measures anyway.
const MaxJoinWait = 30 * time.Second

type nodeHeap []*simNode

func (h nodeHeap) Len() int           { return len(h) }
func (h nodeHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h nodeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].idx = i; h[j].idx = j }
func (h *nodeHeap) Push(x any)        { n := x.(*simNode); n.idx = len(*h); *h = append(*h, n) }
func (h *nodeHeap) Pop() any {
	old := *h
	n := old[len(old)-1]
	*h = old[:len(old)-1]
	return n
}

// newSimNode builds node i's static state: what discovery would find on a
// host with cfg.Services upstreams of cfg.Assets models each.
func newSimNode(c *FleetConfig, i int) *simNode {
	id := c.HostPrefix + fmt.Sprintf("%05d", i)
	nc := nodeagent.Config{HostID: id, Interval: c.Interval, TTL: c.TTL}
	if nc.TTL == 0 {
		nc.TTL = nodeagent.DefaultTTL
		if nc.TTL <= nc.Interval {
			nc.TTL = 3 * nc.Interval
		}
	}
	now := time.Now()
	n := &simNode{cfg: nc}
	n.st.Host = fleet.Host{ID: id, Agent: nodeagent.Version, StartedAt: now, Labels: map[string]string{"zone": "zone-" + strconv.Itoa(i%4)},
		GPUs: []fleet.GPU{{Index: 0, Name: "NVIDIA GeForce RTX 4090", VRAMTotalBytes: 24 << 30}}}
	for j := 0; j < c.Services; j++ {
		name := "svc-" + strconv.Itoa(j)
		s := fleet.Service{ID: id + "/" + name, HostID: id, Name: name, Kind: fleet.KindChat, Protocol: fleet.ProtocolOllama,
			Endpoint: c.Endpoint, Healthy: true, MaxConcurrency: 4, APIs: []string{fleet.APIChat}}
		for k := 0; k < c.Assets; k++ {
			m := (i*c.Services*c.Assets + j*c.Assets + k) % c.Models
			s.Assets = append(s.Assets, fleet.Asset{Name: "model-" + strconv.Itoa(m) + ":8b", Family: "llama", ParameterSize: "8B",
				Quantization: "Q4_K_M", ContextLength: 32768, Loaded: k == 0, SizeVRAM: 5 << 30,
				Capabilities: []string{fleet.CapCompletion, fleet.CapTools}})
		}
		n.st.Services = append(n.st.Services, s)
	}
	return n
}

// buildNodes builds every simulated node, each due at a random point of
// the first interval. It checks ctx as it goes: a million nodes take a
// while and some GB, and an interrupt must stop that, not wait for it.
//
// # Errors
// ctx's error when ctx ends before every node is built.
func buildNodes(ctx context.Context, cfg *FleetConfig, r *rand.Rand) (nodeHeap, error) {
	nodes := make(nodeHeap, 0, min(cfg.Nodes, 1<<16))
	start := time.Now()
	for i := 0; i < cfg.Nodes; i++ {
		if i%1024 == 0 && ctx.Err() != nil {
			return nodes, fmt.Errorf("fleet: stopped after building %d of %d nodes: %w", i, cfg.Nodes, context.Cause(ctx))
		}
		n := newSimNode(cfg, i+1)
		n.next = start.Add(time.Duration(r.Float64() * float64(cfg.Interval)))
		heap.Push(&nodes, n)
	}
	return nodes, nil
}

// beat moves the node's metrics as a busy host's would between two beats.
func (n *simNode) beat(r *rand.Rand) {
	n.st.Host.UpdatedAt = time.Now()
	for j := range n.st.Services {
		m := &n.st.Services[j].Metrics
		m.QueueDepth = r.IntN(4)
		m.InFlight = r.IntN(5)
		m.LatencyMS = 2 + r.Float64()*40
		m.TokensPerSecond = 20 + r.Float64()*80
		m.VRAMUsedBytes = int64(r.IntN(20)) << 30
		m.VRAMTotalBytes = 24 << 30
		m.LoadedModelCount = 1
	}
}

// RunFleet heartbeats cfg.Nodes simulated node agents into st until
// cfg.Duration has passed or ctx ends: each node beats through the node
// agent's writer (nodeagent.WriteBeat: same key, TTL and change event),
// first at a random point of the first interval (agents do not start in
// step), then after nodeagent.NextBeat (the interval, jittered). At the
// end the nodes are removed (RemoveNode, as a stopping agent does) unless
// cfg.Keep.
//
// # Errors
// A bad configuration, or a first heartbeat that fails (Redis
// unreachable). Later write errors are counted, not returned.
func RunFleet(ctx context.Context, st *state.Store, cfg FleetConfig) (*FleetReport, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	start := time.Now()
	nodes, err := buildNodes(ctx, &cfg, r)
	if err != nil {
		return nil, err
	}
	// One heartbeat first, so a Redis that does not answer is an error.
	{
		n := nodes[0]
		n.beat(r)
		if err := nodeagent.WriteBeat(ctx, st, &n.st, n.cfg, &n.beats); err != nil {
			return nil, err
		}
	}
	rep := &FleetReport{Nodes: cfg.Nodes, Services: cfg.Services, Assets: cfg.Assets, IntervalS: cfg.Interval.Seconds()}
	var obs *fleetObserver
	if cfg.Observe != nil {
		obs = startObserver(ctx, cfg.Observe, cfg.HostPrefix)
	}
	pw := startWatch(cfg.Watch)
	defer pw.stop()
	// The run ends Duration after the warm-up, which ends at Warmup or,
	// while the fleet is still joining, up to MaxJoinWait later.
	rctx, cancel := context.WithTimeout(ctx, cfg.Warmup+MaxJoinWait+cfg.Duration)
	defer cancel()
	mctx, mcancel := context.WithCancel(rctx)
	defer mcancel()
	var joined atomic.Int64
	nodes[0].joined = true // the first heartbeat above
	joined.Store(1)
	joinedAll := func() bool {
		if joined.Load() < int64(cfg.Nodes) {
			return false
		}
		return obs == nil || obs.holds(cfg.HostPrefix, cfg.Nodes)
	}
	warmEnd := time.Now().Add(cfg.Warmup + MaxJoinWait)
	writeH := NewHistogram()
	var beats, errs, timeouts atomic.Uint64
	var firstErr atomic.Pointer[string]
	var measuring atomic.Bool
	var redis0 *RedisUsage
	var mstart time.Time
	warm := time.NewTimer(cfg.Warmup)
	defer warm.Stop()
	work := make(chan *simNode, cfg.Writers)
	done := make(chan *simNode, cfg.Writers)
	var wg sync.WaitGroup
	for w := 0; w < cfg.Writers; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			wr := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
			for n := range work {
				n.beat(wr)
				t0 := time.Now()
				err := nodeagent.WriteBeat(mctx, st, &n.st, n.cfg, &n.beats)
				took := time.Since(t0)
				if err == nil && !n.joined {
					n.joined = true
					joined.Add(1)
				}
				switch {
				case !measuring.Load():
				case err != nil:
					if mctx.Err() == nil {
						errs.Add(1)
						if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
							timeouts.Add(1)
						}
						msg := err.Error()
						firstErr.CompareAndSwap(nil, &msg)
					}
				default:
					writeH.Record(took)
					beats.Add(1)
				}
				n.next = t0.Add(nodeagent.NextBeat(n.cfg.Interval, took, wr.Float64()))
				done <- n
			}
		}(r.Uint64())
	}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	timer := time.NewTimer(0)
	defer timer.Stop()
	out := 0 // nodes handed to writers
loop:
	for {
		var wait time.Duration
		if len(nodes) > 0 {
			wait = time.Until(nodes[0].next)
		} else {
			wait = time.Hour
		}
		if wait <= 0 && out < cfg.Writers {
			n := heap.Pop(&nodes).(*simNode)
			out++
			work <- n
			continue
		}
		timer.Reset(max(wait, time.Millisecond))
		select {
		case <-mctx.Done():
			break loop
		case n := <-done:
			out--
			heap.Push(&nodes, n)
		case <-timer.C:
		case <-warm.C:
			if !joinedAll() && time.Now().Before(warmEnd) {
				warm.Reset(50 * time.Millisecond)
				continue
			}
			// The fleet has joined: measure from here.
			time.AfterFunc(cfg.Duration, mcancel)
			redis0 = readRedisUsage(ctx, st.Client())
			pw.reset()
			if obs != nil {
				obs.begin()
			}
			mstart = time.Now()
			measuring.Store(true)
		case <-tick.C:
			if cfg.Progress != nil {
				fmt.Fprintf(cfg.Progress, "fleet: %s, %d heartbeats, %d errors\n", time.Since(start).Round(time.Second), beats.Load(), errs.Load())
			}
		}
	}
	close(work)
	go func() { wg.Wait(); close(done) }()
	for n := range done {
		heap.Push(&nodes, n)
	}
	if mstart.IsZero() {
		return nil, ctx.Err() // stopped during the warm-up
	}
	rep.ElapsedS = time.Since(mstart).Seconds()
	rep.Processes = pw.results()
	rep.Heartbeats, rep.Errors, rep.Timeouts = beats.Load(), errs.Load(), timeouts.Load()
	if p := firstErr.Load(); p != nil {
		rep.FirstError = *p
	}
	rep.Write = writeH.Summary()
	rep.Redis = readRedisUsage(ctx, st.Client()).minus(redis0, rep.ElapsedS)
	if obs != nil {
		rep.Visible, rep.Observer = obs.stop()
	}
	rep.HeartbeatBytes = heartbeatBytes(&nodes)
	if !cfg.Keep {
		rmctx, rmcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer rmcancel()
		sem := make(chan struct{}, cfg.Writers)
		var rwg sync.WaitGroup
		for _, n := range nodes {
			sem <- struct{}{}
			rwg.Add(1)
			go func(id string) {
				defer func() { <-sem; rwg.Done() }()
				_ = st.RemoveNode(rmctx, id)
			}(n.st.Host.ID)
		}
		rwg.Wait()
	}
	return rep, nil
}

// heartbeatBytes is the mean size of a node's stored JSON.
func heartbeatBytes(nodes *nodeHeap) float64 {
	if len(*nodes) == 0 {
		return 0
	}
	var sum int
	k := min(len(*nodes), 20)
	for _, n := range (*nodes)[:k] {
		b, err := jsonSize(&n.st)
		if err == nil {
			sum += b
		}
	}
	return float64(sum) / float64(k)
}

// fleetObserver follows the fleet through a state.Watcher, as another edge
// does, and records each heartbeat's time to become visible.
type fleetObserver struct {
	w      *state.Watcher
	cancel context.CancelFunc
	done   chan struct{}
	hist   *Histogram
	on     atomic.Bool
	mu     sync.Mutex
	s0     observerCounts
	b0     state.BuildStats
}

// begin starts the measured part.
func (o *fleetObserver) begin() {
	o.mu.Lock()
	o.s0, o.b0 = counts(o.w), o.w.Stats().Build()
	o.mu.Unlock()
	o.on.Store(true)
}

type observerCounts struct{ applied, dropped, resyncs uint64 }

func counts(w *state.Watcher) observerCounts {
	s := w.Stats()
	return observerCounts{s.EventsApplied.Load(), s.EventsDropped.Load(), s.Resyncs.Load()}
}

func startObserver(ctx context.Context, st *state.Store, prefix string) *fleetObserver {
	w := state.NewWatcher(st, state.WatcherOptions{})
	octx, cancel := context.WithCancel(ctx)
	o := &fleetObserver{w: w, cancel: cancel, done: make(chan struct{}), hist: NewHistogram()}
	changes := w.Changes()
	go func() { _ = w.Run(octx) }()
	go func() {
		defer close(o.done)
		seen := map[string]time.Time{}
		var last map[string]*fleet.HostEntry
		var lastFig uint64
		for {
			select {
			case <-octx.Done():
				return
			case snap := <-changes:
				// A metrics event moves a host's figures in place (its
				// cell) and publishes a snapshot sharing the Hosts map.
				if sameMap(snap.Hosts, last) && snap.FiguresVersion == lastFig {
					continue
				}
				last, lastFig = snap.Hosts, snap.FiguresVersion
				for id, h := range snap.Hosts {
					if !strings.HasPrefix(id, prefix) {
						continue
					}
					u := h.UpdatedAt()
					if prev, ok := seen[id]; ok && !u.After(prev) {
						continue
					}
					if u.After(snap.BuiltAt) {
						// Stored after this snapshot was built: the next
						// one (every stored figure publishes one) counts it.
						continue
					}
					if _, ok := seen[id]; ok && o.on.Load() { // the first sighting may be a heartbeat written before the watcher started
						o.hist.Record(max(snap.BuiltAt.Sub(u), 0))
					}
					seen[id] = u
				}
			}
		}
	}()
	return o
}

func (o *fleetObserver) stop() (*LatencySummary, *ObserverReport) {
	s1 := counts(o.w)
	b1 := o.w.Stats().Build()
	snap := o.w.Current()
	o.mu.Lock()
	s0, b0 := o.s0, o.b0
	o.mu.Unlock()
	rep := &ObserverReport{EventsApplied: s1.applied - s0.applied, EventsDropped: s1.dropped - s0.dropped, Resyncs: s1.resyncs - s0.resyncs,
		Build: state.BuildStats{FullBuilds: b1.FullBuilds - b0.FullBuilds, Incremental: b1.Incremental - b0.Incremental, Figures: b1.Figures - b0.Figures,
			ViewsBuilt: b1.ViewsBuilt - b0.ViewsBuilt, ViewsReused: b1.ViewsReused - b0.ViewsReused,
			IndexRebuilds: b1.IndexRebuilds - b0.IndexRebuilds, DataVersion: b1.DataVersion - b0.DataVersion},
		FinalHosts: len(snap.Hosts), FinalServices: len(snap.Services)}
	o.cancel()
	<-o.done
	return o.hist.Summary(), rep
}

// readRedisUsage sums INFO cpu/stats/memory over every master (one server:
// that server).
func readRedisUsage(ctx context.Context, c redis.UniversalClient) *RedisUsage {
	u := &RedisUsage{}
	add := func(ctx context.Context, cl *redis.Client) error {
		info, err := cl.Info(ctx, "cpu", "stats", "memory").Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(info, "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if !ok {
				continue
			}
			f, _ := strconv.ParseFloat(v, 64)
			switch k {
			case "used_cpu_sys", "used_cpu_user":
				u.CPUSeconds += f
			case "total_commands_processed":
				u.Commands += uint64(f)
			case "total_net_input_bytes":
				u.NetInBytes += uint64(f)
			case "total_net_output_bytes":
				u.NetOutBytes += uint64(f)
			case "used_memory":
				u.UsedMemory += uint64(f)
			}
		}
		return nil
	}
	var err error
	switch cl := c.(type) {
	case *redis.ClusterClient:
		err = cl.ForEachMaster(ctx, add)
	case *redis.Client:
		err = add(ctx, cl)
	default:
		return nil
	}
	if err != nil {
		return nil
	}
	return u
}

func (u *RedisUsage) minus(o *RedisUsage, elapsed float64) *RedisUsage {
	if u == nil || o == nil {
		return nil
	}
	d := &RedisUsage{CPUSeconds: u.CPUSeconds - o.CPUSeconds, Commands: u.Commands - o.Commands,
		NetInBytes: u.NetInBytes - o.NetInBytes, NetOutBytes: u.NetOutBytes - o.NetOutBytes, UsedMemory: u.UsedMemory}
	if elapsed > 0 {
		d.CPUPercent = 100 * d.CPUSeconds / elapsed
	}
	return d
}

func jsonSize(st *fleet.NodeState) (int, error) {
	b, err := json.Marshal(st)
	return len(b), err
}

// sameMap reports whether two maps are the same map (snapshots share a
// map when no node changed).
func sameMap(a, b map[string]*fleet.HostEntry) bool {
	return b != nil && reflect.ValueOf(a).Pointer() == reflect.ValueOf(b).Pointer()
}

// isTimeout: a network deadline (go-redis returns the net error when a
// reply misses its read deadline rather than the context's error).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// holds: the observer's current snapshot has n hosts named with prefix.
func (o *fleetObserver) holds(prefix string, n int) bool {
	snap := o.w.Current()
	if snap == nil {
		return false
	}
	c := 0
	for id := range snap.Hosts {
		if strings.HasPrefix(id, prefix) {
			c++
		}
	}
	return c >= n
}
