package state

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/redis/go-redis/v9"
)

// WatcherOptions configures a Watcher.
type WatcherOptions struct {
	// Resync is the period of the full rebuild that covers lost messages
	// and expired keys. Default 5s. A resync that takes long stretches it:
	// the next one waits at least ResyncSpacing times as long as the last
	// took (a 10,000-node fleet's resync takes seconds, and holds events
	// back meanwhile; events carry the changes, the resync is a safety
	// net). Entries past their deadline are never routed either way.
	Resync time.Duration
	// Logger receives refresh failures. Default slog.Default().
	Logger *slog.Logger
	// Restore makes the watcher write operator state (catalog, keys,
	// policy bundle) it still holds back into Redis when Redis has lost its
	// data (Store.Seeded is false), instead of adopting the empty state.
	// Edges set it, so a Redis restart without persistence neither drops
	// the roles nor turns authentication off.
	Restore bool
}

// WatcherStats are the watcher's counters and histograms (all safe to read
// from any goroutine): the edge exports them on /metrics.
type WatcherStats struct {
	// EventsApplied counts change events applied; EventsDropped those the
	// watcher had no room for (the next resync covers them).
	EventsApplied, EventsDropped atomic.Uint64
	// MetricsApplied counts metrics events applied without reading Redis
	// (metricsevent.go); MetricsStale those for a shape the watcher did
	// not hold, which read the node instead; MetricsRefused those refused
	// (malformed, oversized, a figure out of bounds): they changed nothing.
	MetricsApplied, MetricsStale, MetricsRefused atomic.Uint64
	// Resyncs counts full refreshes from Redis (periodic, on
	// (re)subscription and on allowlist events); ResyncErrors the failed ones.
	Resyncs, ResyncErrors atomic.Uint64
	// ApplyLatency is the time from an event's arrival to the snapshot
	// that shows it; ResyncDuration a full refresh's time.
	ApplyLatency, ResyncDuration Histogram

	FullBuilds, Incremental, Figures, ViewsBuilt, ViewsReused, IndexRebuilds, DataVersion atomic.Uint64
}

// Build returns the snapshot-building counters.
func (s *WatcherStats) Build() BuildStats {
	return BuildStats{FullBuilds: s.FullBuilds.Load(), Incremental: s.Incremental.Load(), Figures: s.Figures.Load(), ViewsBuilt: s.ViewsBuilt.Load(),
		ViewsReused: s.ViewsReused.Load(), IndexRebuilds: s.IndexRebuilds.Load(), DataVersion: s.DataVersion.Load()}
}

// Watcher keeps an immutable Snapshot of the shared state fresh: it applies
// change events from pub/sub within milliseconds and rebuilds everything
// every Resync. Current is safe from any goroutine and never blocks.
type Watcher struct {
	s   *Store
	o   WatcherOptions
	cur atomic.Pointer[fleet.Snapshot]
	ver atomic.Uint64

	// refresh serialises Refresh and event application, so a slow full
	// rebuild can never publish an older view over a newer event.
	refresh sync.Mutex
	mu      sync.Mutex // guards the model below and subs
	model   model
	subs    []chan *fleet.Snapshot
	gate    *nodeGate // node validation and refusals (nodevalidate.go)

	// views, dataVer and dataCat are the incremental builder's state
	// (snapbuild.go), guarded by mu.
	views   map[string]*nodeView
	dataVer uint64
	dataCat string
	figVer  uint64 // counts figures stored in cells (fleet.Snapshot.FiguresVersion)
	stats   WatcherStats
}

// event is a change event's channel suffix and when it arrived;
// metrics is the payload of a node's metrics event (metricsevent.go),
// "" for every other event.
type event struct {
	name    string
	at      time.Time
	metrics string
}

// model is the mutable state snapshots are built from.
type model struct {
	nodes     map[string]NodeRecord
	catalog   *fleet.Catalog
	catErr    string // the stored catalog does not decode: catalog is the last good one
	keys      []fleet.APIKey
	keysErr   string // the keyring is (partly) unreadable: auth denies everyone
	authOn    bool   // gh:auth:enabled was seen
	policy    *fleet.PolicyBundle
	cooldowns map[string]time.Time
	assetCool map[string]map[string]time.Time // service -> asset -> until
	probes    map[string]fleet.ProbeResult
	stats     map[string]fleet.ServiceStats
	bench     []fleet.BenchSummary
	redisOK   bool
}

// NewWatcher returns a Watcher whose Current is an empty snapshot until the
// first refresh.
func NewWatcher(s *Store, o WatcherOptions) *Watcher {
	if o.Resync <= 0 {
		o.Resync = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	w := &Watcher{s: s, o: o, gate: newNodeGate(o.Logger)}
	w.model.nodes = map[string]NodeRecord{}
	w.model.catalog = &fleet.Catalog{}
	w.publishLocked(nil)
	return w
}

// Stats returns the watcher's counters and histograms.
func (w *Watcher) Stats() *WatcherStats { return &w.stats }

// Current returns the latest snapshot. It never returns nil.
func (w *Watcher) Current() *fleet.Snapshot { return w.cur.Load() }

// Changes returns a channel that receives each new snapshot (buffer 1: a
// slow reader sees the latest, not every one).
func (w *Watcher) Changes() <-chan *fleet.Snapshot {
	ch := make(chan *fleet.Snapshot, 1)
	w.mu.Lock()
	w.subs = append(w.subs, ch)
	w.mu.Unlock()
	return ch
}

// Refresh rebuilds the snapshot from Redis now.
//
// # Errors
// Redis errors; the previous snapshot stays, marked RedisOK=false.
func (w *Watcher) Refresh(ctx context.Context) error {
	w.refresh.Lock()
	defer w.refresh.Unlock()
	start := time.Now()
	w.stats.Resyncs.Add(1)
	err := w.refreshLocked(ctx)
	if err != nil {
		w.stats.ResyncErrors.Add(1)
	}
	w.stats.ResyncDuration.Observe(since(start))
	return err
}

func (w *Watcher) refreshLocked(ctx context.Context) error {
	w.mu.Lock()
	known := w.model.nodes
	w.mu.Unlock()
	nodes, gone, refused, err := w.s.readNodes(ctx, known)
	if err != nil {
		w.markDown()
		return err
	}
	cat, catErr, err := w.readCatalog(ctx)
	if err != nil {
		w.markDown()
		return err
	}
	kr, err := w.s.ReadKeyring(ctx)
	keysErr := ""
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			w.markDown()
			return err
		}
		keysErr = err.Error()
	}
	keys := kr.Keys
	pol, err := w.s.GetPolicyBundle(ctx)
	if err != nil {
		w.o.Logger.Warn("policy bundle unreadable", "err", err)
	}
	stats, _ := w.s.Stats(ctx)
	bench, _ := w.s.BenchSummaries(ctx)
	probes, _ := w.s.Probes(ctx)
	now := time.Now()
	w.gate.refreshAllowlist(ctx, w.s)
	nm := w.gate.admitAll(nodes, refused, now)
	w.mu.Lock()
	prev := w.model
	w.mu.Unlock()
	// A node missing from Redis but still within its deadline stays: Redis
	// may have restarted or been flushed, and its agent re-registers within
	// one heartbeat. A node that left gracefully left a tombstone (and was
	// removed by its "down" event already); one that died expires at its
	// own deadline.
	for id, n := range prev.nodes {
		if cur, ok := nm[id]; ok {
			if holdDeadline(&n, &cur) {
				nm[id] = cur
			}
		} else if !gone[id] && now.Before(n.Deadline) && !w.gate.isRefused(id) {
			nm[id] = n
		}
	}
	authOn := kr.AuthOn || prev.authOn || len(keys) > 0
	if w.o.Restore && (len(prev.catalog.Roles) > 0 || len(prev.keys) > 0 || prev.authOn || prev.policy != nil) {
		seeded, err := w.s.Seeded(ctx)
		if err == nil && !seeded {
			if len(cat.Roles) == 0 {
				cat = prev.catalog
			}
			if len(keys) == 0 {
				keys = prev.keys
			}
			if pol == nil {
				pol = prev.policy
			}
			if err := w.s.Reseed(ctx, cat, keys, authOn, pol); err != nil {
				w.o.Logger.Warn("restoring operator state into Redis failed", "err", err)
			} else {
				w.o.Logger.Warn("Redis had lost its data: restored the role catalog, keys and policy bundle this edge held")
			}
		}
	}
	ids := serviceIDs(nm)
	cool, err := w.s.Cooldowns(ctx, ids)
	if err != nil {
		w.markDown()
		return err
	}
	assetCool, _ := w.s.AssetCooldowns(ctx, ids)
	w.mu.Lock()
	w.model = model{nodes: nm, catalog: cat, catErr: catErr, keys: keys, keysErr: keysErr, authOn: authOn, policy: pol, cooldowns: cool, assetCool: assetCool,
		probes: probes, stats: stats, bench: bench, redisOK: true}
	w.publishLocked(nil)
	w.mu.Unlock()
	return nil
}

// readCatalog reads the role catalog. A stored catalog that does not
// decode is not an outage: the last good catalog stays (this process's, or
// for a fresh process the copy PutCatalog keeps in gh:catalog:good) and
// catErr says why, so the edge reports itself degraded and keeps serving
// the fleet as it was, instead of freezing its whole snapshot.
//
// # Errors
// Redis errors only.
func (w *Watcher) readCatalog(ctx context.Context) (cat *fleet.Catalog, catErr string, err error) {
	cat, err = w.s.GetCatalog(ctx)
	if err == nil || !errors.Is(err, ErrCorrupt) {
		return cat, "", err
	}
	catErr = err.Error()
	w.mu.Lock()
	cat = w.model.catalog
	w.mu.Unlock()
	if cat == nil || (len(cat.Roles) == 0 && len(cat.AssetPolicies) == 0) {
		if good, gerr := w.s.GoodCatalog(ctx); gerr == nil && good != nil {
			cat = good
		}
	}
	if cat == nil {
		cat = &fleet.Catalog{}
	}
	return cat, catErr, nil
}

func serviceIDs(nodes map[string]NodeRecord) []string {
	var ids []string
	for _, n := range nodes {
		for _, s := range n.State.Services {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

func (w *Watcher) markDown() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.model.redisOK {
		w.model.redisOK = false
		w.publishLocked(map[string]bool{})
	}
}

// Run subscribes to change events and resyncs periodically until ctx is
// done. It survives Redis outages (retrying) and returns ctx.Err().
func (w *Watcher) Run(ctx context.Context) error {
	if err := w.Refresh(ctx); err != nil {
		w.o.Logger.Warn("state refresh failed", "err", err)
	}
	// Room for 20 s of a 1,000-node fleet's heartbeats (200/s): a burst (the
	// fleet joining, a slow policy data rebuild) is applied late, not dropped.
	events := make(chan event, 4096)
	go w.subscribe(ctx, events)
	tick := time.NewTimer(w.o.Resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			start := time.Now()
			err := w.Refresh(ctx)
			if err != nil && ctx.Err() == nil {
				w.o.Logger.Warn("state resync failed", "err", err)
			}
			tick.Reset(resyncWait(w.o.Resync, time.Since(start), err == nil))
		case ev := <-events:
			// Gather whatever else arrived in the same instant. A node's
			// metrics event is kept apart (the latest of each node): it is
			// applied without a read unless another event of that node
			// came in the same batch (read, as its state is newer).
			batch := map[string]bool{}
			var metrics map[string]string
			add := func(ev event) {
				if ev.metrics == "" {
					batch[ev.name] = true
					return
				}
				if metrics == nil {
					metrics = map[string]string{}
				}
				metrics[ev.name] = ev.metrics
			}
			add(ev)
			first := ev.at
		drain:
			for {
				select {
				case ev := <-events:
					add(ev)
				default:
					break drain
				}
			}
			w.applyEvents(ctx, batch, metrics)
			w.stats.EventsApplied.Add(uint64(len(batch) + len(metrics)))
			w.stats.ApplyLatency.Observe(since(first))
		}
	}
}

// ResyncSpacing: a resync waits at least this many times the last one's
// duration after it, so resyncs take at most 1/ResyncSpacing of the
// watcher's time whatever the fleet's size.
const ResyncSpacing = 20

// ResyncMaxSpacing caps that stretch: the resync is what catches up an
// event the subscription missed (a Redis failover, a full queue), so an edge
// is never stale for longer than this because its last resync was slow.
const ResyncMaxSpacing = 12

// resyncWait is the time to the next resync. Only a successful resync
// stretches it: a failed one (often slow for the same reason it failed: a
// master failing over, dial timeouts) is retried after the base period,
// not after twenty times its timeouts.
func resyncWait(period, took time.Duration, ok bool) time.Duration {
	if !ok {
		return period
	}
	return max(period, min(ResyncSpacing*took, ResyncMaxSpacing*period))
}

// subscribe relays event suffixes to out; "*" means "refresh everything"
// (sent after every (re)subscription, since messages may have been missed).
//
// A subscription whose server died without closing the connection (a
// SIGKILLed or partitioned host sends no RST) would block forever: after
// subIdle without a message the watcher PINGs on it, and a second silent
// subIdle ends it, so it subscribes again (on a live node) within
// 2*subIdle.
func (w *Watcher) subscribe(ctx context.Context, out chan<- event) {
	chPrefix := w.s.Channel("")
	for ctx.Err() == nil {
		ps := w.s.psubscribe(ctx, chPrefix+"*")
		pinged := false
		for {
			msg, err := ps.ReceiveTimeout(ctx, subIdle)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil && !pinged {
					pinged = ps.Ping(ctx) == nil
					if pinged {
						continue
					}
				}
				break
			}
			pinged = false
			switch m := msg.(type) {
			case *redis.Subscription:
				if m.Kind == "psubscribe" {
					select {
					case out <- event{name: "*", at: time.Now()}:
					default:
					}
				}
			case *redis.Message:
				ev := event{name: strings.TrimPrefix(m.Channel, chPrefix), at: time.Now()}
				if IsMetricsEvent(m.Payload) && strings.HasPrefix(ev.name, EventNode) {
					if len(m.Payload) > MaxMetricsEventBytes {
						// Refused here, before it takes room in the queue.
						w.stats.MetricsRefused.Add(1)
						continue
					}
					ev.metrics = m.Payload
				}
				select {
				case out <- ev:
				default: // full: the resync catches up
					w.stats.EventsDropped.Add(1)
				}
			}
		}
		ps.Close()
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// subIdle is how long a subscription may stay silent before the watcher
// checks it with a PING.
const subIdle = 2 * time.Second

// psubscribe subscribes to pattern. On a Cluster, plain PUBLISH reaches
// every node over the cluster bus, so any node will do: the subscription
// goes to a random master or replica, spreading the edges' subscriptions
// (and the work of delivering every event to every edge) over the
// cluster instead of piling them on the master of the pattern's slot,
// which is where go-redis would put them all.
func (s *Store) psubscribe(ctx context.Context, pattern string) *redis.PubSub {
	cc, ok := s.c.(*redis.ClusterClient)
	if !ok {
		return s.c.PSubscribe(ctx, pattern)
	}
	var mu sync.Mutex
	var nodes []*redis.Client
	_ = cc.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error {
		mu.Lock()
		nodes = append(nodes, n)
		mu.Unlock()
		return nil
	})
	if len(nodes) == 0 {
		return cc.PSubscribe(ctx, pattern)
	}
	return nodes[rand.IntN(len(nodes))].PSubscribe(ctx, pattern)
}

// apply refreshes what a batch of events touched.
func (w *Watcher) apply(ctx context.Context, batch map[string]bool) {
	w.applyEvents(ctx, batch, nil)
}

// applyEvents refreshes what a batch of events touched; metrics holds
// the nodes' metrics events (node event name -> payload).
func (w *Watcher) applyEvents(ctx context.Context, batch map[string]bool, metrics map[string]string) {
	if batch["*"] || batch[EventAllow] {
		if err := w.Refresh(ctx); err != nil && ctx.Err() == nil {
			w.o.Logger.Warn("state refresh failed", "err", err)
		}
		return
	}
	w.refresh.Lock()
	defer w.refresh.Unlock()
	type nodeUpd struct {
		rec   NodeRecord
		found bool
	}
	nodes := map[string]nodeUpd{}
	var cat *fleet.Catalog
	var catErr string
	var gotCat bool
	var kr Keyring
	var keysErr string
	var pol *fleet.PolicyBundle
	var bench []fleet.BenchSummary
	var health, gotKeys, gotPol, gotBench bool
	var cool map[string]time.Time
	var assetCool map[string]map[string]time.Time
	var gotAssetCool bool
	var probes map[string]fleet.ProbeResult
	// The batch's nodes are read in one pipeline (one round trip, per
	// shard on a Cluster): a burst of thousands of heartbeats must not cost
	// thousands of sequential round trips.
	var nodeIDs []string
	for ev := range batch {
		if id, ok := strings.CutPrefix(ev, EventNode); ok {
			nodeIDs = append(nodeIDs, id)
		}
	}
	patched := w.patchMetrics(batch, metrics, &nodeIDs)
	if len(nodeIDs) > 0 {
		reads := w.s.readNodeBatch(ctx, nodeIDs)
		now := time.Now()
		for i, id := range nodeIDs {
			r := &reads[i]
			found, err := r.found, r.err
			if ok, handled := w.gate.admitOne(id, &r.rec, found, err, now); handled {
				found, err = ok, nil
			}
			if err != nil {
				w.o.Logger.Warn("node refresh failed", "node", id, "err", err)
				continue
			}
			nodes[id] = nodeUpd{r.rec, found}
		}
	}
	for ev := range batch {
		switch {
		case ev == EventCatalog:
			if c, ce, err := w.readCatalog(ctx); err == nil {
				cat, catErr, gotCat = c, ce, true
			}
		case ev == EventKeys:
			k, err := w.s.ReadKeyring(ctx)
			if err == nil || errors.Is(err, ErrCorrupt) {
				kr, gotKeys = k, true
				if err != nil {
					keysErr = err.Error()
				}
			}
		case ev == EventPolicy:
			if p, err := w.s.GetPolicyBundle(ctx); err == nil {
				pol, gotPol = p, true
			}
		case ev == EventBench:
			if b, err := w.s.BenchSummaries(ctx); err == nil {
				bench, gotBench = b, true
			}
		case ev == EventHealth:
			health = true
		}
	}
	if health {
		// Cooldowns and probes of every service may have changed: a
		// full build (node views whose figures did not change are kept).
		w.mu.Lock()
		nm := w.model.nodes
		w.mu.Unlock()
		ids := serviceIDs(nm)
		if c, err := w.s.Cooldowns(ctx, ids); err == nil {
			cool = c
		}
		if c, err := w.s.AssetCooldowns(ctx, ids); err == nil {
			assetCool, gotAssetCool = c, true
		}
		if p, err := w.s.Probes(ctx); err == nil {
			probes = p
		}
	}
	// A node event reads the cooldowns of the services new to this
	// watcher only: those of known services come with health events (every
	// cooldown set or cleared publishes one) and resyncs. A heartbeat thus
	// costs each edge one round trip (GET and PTTL of the node's key).
	var nodeCool map[string]time.Time
	var nodeAssetCool map[string]map[string]time.Time
	var ids []string
	if !health && len(nodes) > 0 {
		w.mu.Lock()
		for id, u := range nodes {
			if !u.found {
				continue
			}
			known := map[string]bool{}
			for _, s := range w.model.nodes[id].State.Services {
				known[s.ID] = true
			}
			for _, s := range u.rec.State.Services {
				if !known[s.ID] {
					ids = append(ids, s.ID)
				}
			}
		}
		w.mu.Unlock()
		if len(ids) > 0 {
			nodeCool, _ = w.s.Cooldowns(ctx, ids)
			nodeAssetCool, _ = w.s.AssetCooldowns(ctx, ids)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.model
	// A patched record with the figure shape of its node's view only
	// moves figures: stored in the view's cell, it builds nothing
	// (snapbuild.go). Any other goes through the node's view as a read
	// record does. (It lists the held state's services, so the new
	// services' cooldowns read above never concern it.)
	figured := 0
	for id, rec := range patched {
		if v := w.views[id]; v != nil && m.nodes != nil && sameFigureShape(v, &rec) {
			storeFigures(&m, v, id, rec)
			figured++
			continue
		}
		nodes[id] = nodeUpd{rec, true}
	}
	// So does a whole state read for an event whose fields other than
	// the volatile ones are those of the node's view (an agent's "up"
	// every FullEvery beats, or after a missed metrics event): the view's
	// state is kept with the read record's figures.
	for id, u := range nodes {
		v := w.views[id]
		if !u.found || v == nil || m.nodes == nil || !sameShape(&v.rec.State, &u.rec.State) {
			continue
		}
		storeFigures(&m, v, id, sameShapeRecord(&v.rec, &u.rec))
		figured++
		delete(nodes, id)
	}
	if figured > 0 {
		w.figVer++
	}
	if figured > 0 && len(nodes) == 0 && !gotCat && !gotKeys && !gotPol && !gotBench && cool == nil && !gotAssetCool && probes == nil && !health {
		m.redisOK = true
		w.model = m
		w.publishFiguresLocked()
		return
	}
	var changed map[string]bool
	if len(nodes) > 0 {
		changed = make(map[string]bool, len(nodes))
		// The model is the watcher's own (snapshots never share it, and
		// Refresh, the only other writer, is serialised with apply by
		// w.refresh): update it in place instead of copying the fleet.
		nm := m.nodes
		if nm == nil {
			nm = map[string]NodeRecord{}
		}
		for id, u := range nodes {
			prev, had := nm[id]
			if u.found {
				if had {
					holdDeadline(&prev, &u.rec)
				}
				// An event that brings nothing new (delivered twice, or
				// late: a Cluster forwards messages between shards
				// asynchronously) leaves the node's view as it was.
				if had && sameRecord(&prev, &u.rec) && u.rec.Deadline.Sub(prev.Deadline) <= time.Second {
					continue
				}
				nm[id] = u.rec
				changed[id] = true
			} else if had {
				delete(nm, id)
				changed[id] = true
			}
		}
		m.nodes = nm
		if nodeCool != nil || nodeAssetCool != nil {
			if cool == nil {
				cool = maps.Clone(m.cooldowns)
				if cool == nil {
					cool = map[string]time.Time{}
				}
				for _, id := range ids {
					delete(cool, id)
				}
				for k, v := range nodeCool {
					cool[k] = v
				}
			}
			if !gotAssetCool {
				assetCool = maps.Clone(m.assetCool)
				if assetCool == nil {
					assetCool = map[string]map[string]time.Time{}
				}
				for _, id := range ids {
					delete(assetCool, id)
				}
				for k, v := range nodeAssetCool {
					assetCool[k] = v
				}
				gotAssetCool = true
			}
		}
	} else {
		changed = map[string]bool{}
	}
	if gotCat {
		m.catalog, m.catErr = cat, catErr
	}
	if gotKeys {
		m.keys, m.keysErr = kr.Keys, keysErr
		m.authOn = m.authOn || kr.AuthOn || len(kr.Keys) > 0
	}
	if gotPol {
		m.policy = pol
	}
	if gotBench {
		m.bench = bench
	}
	if cool != nil {
		m.cooldowns = cool
	}
	if gotAssetCool {
		m.assetCool = assetCool
	}
	if probes != nil {
		m.probes = probes
	}
	if health {
		changed = nil // every view re-checked against the new figures
	}
	m.redisOK = true
	w.model = m
	w.publishLocked(changed)
}

// publishLocked builds a snapshot from the model and swaps it in. changed
// names the nodes whose records changed since the last snapshot; nil
// re-checks every node (snapbuild.go).
func (w *Watcher) publishLocked(changed map[string]bool) {
	m := &w.model
	prev := w.cur.Load()
	if prev == nil {
		changed = nil
	}
	snap := &fleet.Snapshot{
		Version:      w.ver.Add(1),
		BuiltAt:      time.Now(),
		RedisOK:      m.redisOK,
		Catalog:      m.catalog,
		Keys:         make(map[[32]byte]*fleet.APIKey, len(m.keys)),
		Bench:        map[string][]fleet.BenchSummary{},
		Policy:       m.policy,
		KeysError:    m.keysErr,
		CatalogError: m.catErr,
		AuthOn:       m.authOn,
	}
	if snap.Catalog == nil {
		snap.Catalog = &fleet.Catalog{}
	}
	w.gate.fill(snap)
	snap.CatalogVersion = snap.Catalog.Version
	w.fillFleet(snap, prev, changed)
	snap.FiguresVersion = w.figVer
	fillKeys(snap, m.keys)
	fillBench(snap, m.bench)
	w.cur.Store(snap)
	w.notifyLocked(snap)
}

// notifyLocked hands snap to every Changes subscriber, replacing one it
// has not taken yet.
func (w *Watcher) notifyLocked(snap *fleet.Snapshot) {
	for _, ch := range w.subs {
		select {
		case <-ch:
		default:
		}
		ch <- snap
	}
}

// publishFiguresLocked publishes a snapshot for figures stored in cells
// alone: the previous snapshot's containers, entries, catalog, keys and
// bench, shared; a new Version, BuiltAt and FiguresVersion, so the
// snapshot's subscribers see the figures move.
func (w *Watcher) publishFiguresLocked() {
	prev := w.cur.Load()
	if prev == nil {
		w.publishLocked(nil)
		return
	}
	snap := *prev
	snap.Version = w.ver.Add(1)
	snap.BuiltAt = time.Now()
	snap.RedisOK = w.model.redisOK
	snap.FiguresVersion = w.figVer
	snap.Refused = nil // fill appends: never to the previous snapshot's
	w.gate.fill(&snap)
	w.stats.Figures.Add(1)
	w.cur.Store(&snap)
	w.notifyLocked(&snap)
}

// patchMetrics applies the batch's metrics events (node event name ->
// payload) to the nodes the watcher holds, returning the patched records
// by host; an event whose node has another event in the batch, or whose
// shape the watcher does not hold, adds the node to *read instead. A
// refused event changes nothing and is counted.
func (w *Watcher) patchMetrics(batch map[string]bool, metrics map[string]string, read *[]string) map[string]NodeRecord {
	if len(metrics) == 0 {
		return nil
	}
	var out map[string]NodeRecord
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for name, payload := range metrics {
		if batch[name] {
			continue // read with the batch's other event of that node
		}
		host, ok := strings.CutPrefix(name, EventNode)
		if !ok || !ValidHostID(host) {
			w.stats.MetricsRefused.Add(1)
			continue
		}
		held, had := w.model.nodes[host]
		rec, verdict, why := applyMetricsEvent(payload, held, had, now)
		switch verdict {
		case metricsApplied:
			if out == nil {
				out = make(map[string]NodeRecord, len(metrics))
			}
			out[host] = rec
			w.stats.MetricsApplied.Add(1)
		case metricsStale:
			*read = append(*read, host)
			w.stats.MetricsStale.Add(1)
		default:
			w.stats.MetricsRefused.Add(1)
			w.gate.logRefusedEvent(host, why, now)
		}
	}
	return out
}

// holdDeadline keeps a node's deadline from moving back between two of its
// records, and reports whether it changed next. The deadline is an
// estimate: a metrics event sets it from the time the event arrived
// (state/metricsevent.go), a read from the key's PTTL (nodevalidate.go),
// and the first runs late by the event's delivery, so a read that follows
// a metrics event would otherwise put the deadline back by that much (a
// Cluster delivers events late, and a burst of beats can be read after the
// event of an earlier one). While the node keeps its TTL its key's real
// expiry only moves forward (every write sets it to now + TTL), so the
// later of the two estimates is kept; a node that changed its TTL gets the
// new record's deadline, earlier or not.
func holdDeadline(prev, next *NodeRecord) bool {
	if prev.State.TTLSeconds == next.State.TTLSeconds && next.Deadline.Before(prev.Deadline) {
		next.Deadline = prev.Deadline
		return true
	}
	return false
}
