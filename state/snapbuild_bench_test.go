package state

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
)

// benchFleet writes nodes nodes of 5 services x 4 assets (drawn from 50
// models, as loadtest fleet does) and returns the store.
func benchFleet(b *testing.B, nodes int) *Store {
	url := os.Getenv("GENIEHIVE_TEST_REDIS")
	if url == "" {
		b.Skip("GENIEHIVE_TEST_REDIS not set (a benchmark, not a test: make bench-fleet sets it)")
	}
	c, err := NewClient(Options{URL: url})
	if err != nil {
		b.Fatal(err)
	}
	prefix := fmt.Sprintf("ghbench%d:", time.Now().UnixNano())
	s := New(c, prefix)
	ctx := context.Background()
	b.Cleanup(func() {
		for i := 0; i < nodes; i++ {
			_ = s.RemoveNode(ctx, fmt.Sprintf("bn-%05d", i))
		}
		c.Close()
	})
	for i := 0; i < nodes; i++ {
		if err := s.WriteHeartbeat(ctx, benchNode(i, 0), time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

func benchNode(i, queue int) *fleet.NodeState {
	id := fmt.Sprintf("bn-%05d", i)
	st := &fleet.NodeState{Host: fleet.Host{ID: id, UpdatedAt: time.Now()}}
	for j := 0; j < 5; j++ {
		name := "svc-" + strconv.Itoa(j)
		sv := fleet.Service{ID: id + "/" + name, HostID: id, Name: name, Kind: fleet.KindChat, Protocol: fleet.ProtocolOllama,
			Endpoint: "http://127.0.0.1:9", Healthy: true, MaxConcurrency: 4}
		sv.Metrics.QueueDepth = queue
		for k := 0; k < 4; k++ {
			sv.Assets = append(sv.Assets, fleet.Asset{Name: "model-" + strconv.Itoa((i*20+j*4+k)%50) + ":8b", Family: "llama",
				ParameterSize: "8B", Quantization: "Q4_K_M", ContextLength: 32768, Loaded: k == 0, SizeVRAM: 5 << 30})
		}
		st.Services = append(st.Services, sv)
	}
	return st
}

// simNode is node i as `geniehive loadtest fleet` writes it (5 services
// x 4 assets of 50 models, a zone label, a GPU, APIs and capabilities).
func simNode(i int) *fleet.NodeState {
	id := fmt.Sprintf("bn-%05d", i)
	st := &fleet.NodeState{Host: fleet.Host{ID: id, Agent: "bench", StartedAt: time.Now(), UpdatedAt: time.Now(),
		Labels: map[string]string{"zone": "zone-" + strconv.Itoa(i%4)}, GPUs: []fleet.GPU{{Index: 0, Name: "NVIDIA GeForce RTX 4090", VRAMTotalBytes: 24 << 30}}}}
	for j := 0; j < 5; j++ {
		name := "svc-" + strconv.Itoa(j)
		sv := fleet.Service{ID: id + "/" + name, HostID: id, Name: name, Kind: fleet.KindChat, Protocol: fleet.ProtocolOllama,
			Endpoint: "http://127.0.0.1:9", Healthy: true, MaxConcurrency: 4, APIs: []string{fleet.APIChat}}
		for k := 0; k < 4; k++ {
			sv.Assets = append(sv.Assets, fleet.Asset{Name: "model-" + strconv.Itoa((i*20+j*4+k)%50) + ":8b", Family: "llama", ParameterSize: "8B",
				Quantization: "Q4_K_M", ContextLength: 32768, Loaded: k == 0, SizeVRAM: 5 << 30, Capabilities: []string{fleet.CapCompletion, fleet.CapTools}})
		}
		st.Services = append(st.Services, sv)
	}
	return st
}

var benchSizes = []int{1000, 10000}

// BenchmarkResync: a full refresh of the fleet from Redis. cold: a new
// watcher (every node decoded and built); warm: the same watcher again,
// nothing changed (nodes recognised by their stored bytes, views and
// indexes kept).
func BenchmarkResync(b *testing.B) {
	for _, n := range benchSizes {
		b.Run("nodes="+strconv.Itoa(n), func(b *testing.B) {
			s := benchFleet(b, n)
			ctx := context.Background()
			b.Run("cold", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					w := NewWatcher(s, WatcherOptions{Resync: time.Hour, Logger: quiet})
					if err := w.Refresh(ctx); err != nil {
						b.Fatal(err)
					}
					if len(w.Current().Hosts) != n {
						b.Fatalf("%d hosts", len(w.Current().Hosts))
					}
				}
			})
			b.Run("warm", func(b *testing.B) {
				w := NewWatcher(s, WatcherOptions{Resync: time.Hour, Logger: quiet})
				if err := w.Refresh(ctx); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := w.Refresh(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkApplyNodeEvent: one node's heartbeat applied to a watcher that
// holds the whole fleet: the node read from Redis (one round trip) and the
// snapshot patched. patch is the in-memory part alone (no Redis).
func BenchmarkApplyNodeEvent(b *testing.B) {
	for _, n := range benchSizes {
		b.Run("nodes="+strconv.Itoa(n), func(b *testing.B) {
			s := benchFleet(b, n)
			ctx := context.Background()
			w := NewWatcher(s, WatcherOptions{Resync: time.Hour, Logger: quiet})
			if err := w.Refresh(ctx); err != nil {
				b.Fatal(err)
			}
			b.Run("event", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					w.apply(ctx, map[string]bool{EventNode + fmt.Sprintf("bn-%05d", i%n): true})
				}
			})
			b.Run("metrics", func(b *testing.B) {
				// A metrics event (metricsevent.go): no read, the held
				// state patched with the event's figures.
				evs := metricsEvents(w, n, n)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					id := fmt.Sprintf("bn-%05d", i%n)
					w.applyEvents(ctx, map[string]bool{}, map[string]string{EventNode + id: evs[id]})
				}
				if w.stats.MetricsApplied.Load() == 0 || w.stats.MetricsRefused.Load()+w.stats.MetricsStale.Load() != 0 {
					b.Fatalf("metrics events: %d applied, %d refused, %d stale", w.stats.MetricsApplied.Load(), w.stats.MetricsRefused.Load(), w.stats.MetricsStale.Load())
				}
			})
			b.Run("patch", func(b *testing.B) {
				id := fmt.Sprintf("bn-%05d", 7)
				rec := w.model.nodes[id]
				for i := 0; i < b.N; i++ {
					rec.State.Services[0].Metrics.QueueDepth = i
					w.mu.Lock()
					nm := w.model.nodes
					nm[id] = rec
					w.publishLocked(map[string]bool{id: true})
					w.mu.Unlock()
				}
			})
			b.Run("full-rebuild", func(b *testing.B) {
				// What every event cost before: all views and indexes built.
				for i := 0; i < b.N; i++ {
					w.mu.Lock()
					w.views = nil
					w.publishLocked(nil)
					w.mu.Unlock()
				}
			})
		})
	}
}

// metricsEvents returns a metrics event for each of the first k of n
// nodes the watcher holds (figures moved, shape as held), by host id.
func metricsEvents(w *Watcher, n, k int) map[string]string {
	out := make(map[string]string, k)
	for i := 0; i < k; i++ {
		id := fmt.Sprintf("bn-%05d", i*(n/k))
		w.mu.Lock()
		st := w.model.nodes[id].State
		w.mu.Unlock()
		st.Services = append([]fleet.Service(nil), st.Services...)
		for j := range st.Services {
			st.Services[j].Metrics = fleet.Metrics{QueueDepth: 1 + j, InFlight: 2, LatencyMS: 12.5, TokensPerSecond: 80.25, VRAMUsedBytes: 5 << 30, VRAMTotalBytes: 24 << 30, LoadedModelCount: 1}
		}
		st.Host.UpdatedAt = time.Now()
		ev, _ := appendMetricsEvent(nil, &st, uint64(i))
		out[id] = string(ev)
	}
	return out
}

// quiet keeps the watcher's warnings (no allowlist) out of benchmark lines.
var quiet = slog.New(slog.DiscardHandler)

// BenchmarkApplyBatch: 2,000 node events (one second of a 10,000-node
// fleet's heartbeats) applied as one batch: "up" events (each node read
// and decoded) and metrics events.
func BenchmarkApplyBatch(b *testing.B) {
	s := benchFleet(b, 10000)
	ctx := context.Background()
	w := NewWatcher(s, WatcherOptions{Resync: time.Hour, Logger: quiet})
	if err := w.Refresh(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("event", func(b *testing.B) {
		batch := map[string]bool{}
		for i := 0; i < 2000; i++ {
			batch[EventNode+fmt.Sprintf("bn-%05d", i*5)] = true
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			w.apply(ctx, batch)
		}
	})
	b.Run("metrics", func(b *testing.B) {
		// The same second as metrics events: no read, no decode.
		evs := map[string]string{}
		for id, ev := range metricsEvents(w, 10000, 2000) {
			evs[EventNode+id] = ev
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			w.applyEvents(ctx, map[string]bool{}, evs)
		}
		if w.stats.MetricsApplied.Load() == 0 || w.stats.MetricsRefused.Load()+w.stats.MetricsStale.Load() != 0 {
			b.Fatalf("metrics events: %d applied, %d refused, %d stale", w.stats.MetricsApplied.Load(), w.stats.MetricsRefused.Load(), w.stats.MetricsStale.Load())
		}
	})
}

// heapNow returns, after a full GC, the scannable heap (bytes the GC
// marks through), the live heap, the live objects and the bytes allocated
// so far (runtime/metrics).
func heapNow() (scan, live, objects, allocs uint64) {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}, {Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/objects:objects"}, {Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64(), s[3].Value.Uint64()
}

// BenchmarkFleetHeap: what a watcher holding a 1,000-node fleet (5
// services x 4 assets) retains for the garbage collector to mark, per
// node, after every node sent one metrics event (the steady state: 11 of
// a node's 12 heartbeats are metrics events), and what one interval of
// churn (each node's heartbeat once: every 12th an "up" event, read and
// rebuilt, the others metrics events, in batches of 10) allocates per
// heartbeat. The edge's GC cost follows scan-B/node: its mark walks
// every pointer-bearing word the snapshot, the views and the model hold.
func BenchmarkFleetHeap(b *testing.B) {
	const n = 1000
	s := benchFleet(b, 0)
	ctx := context.Background()
	b.Cleanup(func() {
		for i := 0; i < n; i++ {
			_ = s.RemoveNode(ctx, fmt.Sprintf("bn-%05d", i))
		}
	})
	for i := 0; i < n; i++ {
		if err := s.WriteHeartbeat(ctx, simNode(i), time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	evs := map[string]string{}
	var scan, live, objs, churn float64
	for i := 0; i < b.N; i++ {
		runtime.GC()
		scan0, live0, objs0, _ := heapNow()
		w := NewWatcher(s, WatcherOptions{Resync: time.Hour, Logger: quiet})
		if err := w.Refresh(ctx); err != nil {
			b.Fatal(err)
		}
		if len(evs) == 0 {
			for id, ev := range metricsEvents(w, n, n) {
				evs[EventNode+id] = ev
			}
		}
		w.applyEvents(ctx, map[string]bool{}, evs)
		scan1, live1, objs1, alloc1 := heapNow()
		if p := os.Getenv("FLEETHEAP_PROFILE"); p != "" && i == 0 {
			f, err := os.Create(p)
			if err != nil {
				b.Fatal(err)
			}
			_ = pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
		for j := 0; j < n; j += 10 {
			batch, ms := map[string]bool{}, map[string]string{}
			for k := j; k < j+10; k++ {
				ev := EventNode + fmt.Sprintf("bn-%05d", k)
				if k%12 == 11 {
					batch[ev] = true
				} else {
					ms[ev] = evs[ev]
				}
			}
			w.applyEvents(ctx, batch, ms)
		}
		_, _, _, alloc2 := heapNow()
		if len(w.Current().Services) != 5*n || w.stats.MetricsRefused.Load()+w.stats.MetricsStale.Load() != 0 {
			b.Fatalf("%d services, %d metrics events refused or stale", len(w.Current().Services), w.stats.MetricsRefused.Load()+w.stats.MetricsStale.Load())
		}
		runtime.KeepAlive(w)
		scan += float64(scan1) - float64(scan0)
		live += float64(live1) - float64(live0)
		objs += float64(objs1) - float64(objs0)
		churn += float64(alloc2 - alloc1)
	}
	d := float64(b.N) * n
	b.ReportMetric(scan/d, "scan-B/node")
	b.ReportMetric(live/d, "live-B/node")
	b.ReportMetric(objs/d, "objects/node")
	b.ReportMetric(churn/d, "churn-B/beat")
}
