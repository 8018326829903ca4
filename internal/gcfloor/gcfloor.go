// Package gcfloor keeps a floor under the heap's headroom between garbage
// collections.
//
// Go's collector starts a cycle when the heap has grown by GOGC percent
// (100) of the live heap. An edge's live heap is mostly its fleet snapshot
// (~16-21 MB at 1,000 nodes), so it collects every ~20 MB allocated, and
// each cycle marks the whole snapshot: requests that run during a mark
// share the CPU with it, which is what stretched the 1,000-node edge's
// 32-client p99 past the 2-node edge's (docs/CAPACITY.md, issue 12). With
// a floor F, the headroom is max(GOGC% of live, F): a small heap grows by F
// before a collection, a large one by GOGC% as before. Collections become
// rarer by up to F/(live×GOGC%), for a memory cost of at most F.
//
// It works the way runtime/debug.SetGCPercent allows without a ballast:
// after every collection (a finalizer re-armed each cycle) it reads the
// live heap and the stacks and globals the collector scans
// (runtime/metrics) and sets the GC percent to max(GOGC, F×100/their sum),
// which makes the runtime's goal live + max(F, GOGC% of the sum). An operator's GOGC stays the base; GOGC=off
// turns the floor off, as does F = 0. GOMEMLIMIT still bounds the heap
// (the collector runs earlier near the limit, whatever the percent).
package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
)

// maxPercent bounds the percent set (a near-empty heap would otherwise ask
// for millions).
const maxPercent = 10000

// heapMinimum is the runtime's minimum heap goal at GOGC=100
// (runtime/mgcpacer.go defaultHeapMinimum); the runtime scales it by the
// percent, so the percent is also capped at F×100/heapMinimum: a near-empty
// heap (a process starting) would otherwise get a goal of up to 400 MB.
const heapMinimum = 4 << 20

var (
	mu      sync.Mutex
	floor   atomic.Uint64 // bytes; 0: off
	base    = 100         // the operator's GOGC
	armed   bool
	percent atomic.Int64 // the percent last set (0: never)
)

// Set keeps at least floorBytes of headroom between collections from now
// on (0 turns it off and restores the GOGC percent). It returns false, and
// does nothing, when GOGC=off (the operator turned the collector off).
func Set(floorBytes uint64) bool {
	mu.Lock()
	defer mu.Unlock()
	if v := os.Getenv("GOGC"); v != "" {
		if v == "off" {
			return false
		}
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			base = n
		}
	}
	floor.Store(floorBytes)
	if floorBytes == 0 {
		debug.SetGCPercent(base)
		percent.Store(int64(base))
		return true
	}
	adjust()
	if !armed {
		armed = true
		arm()
	}
	return true
}

// Percent returns the GC percent last set (0 before Set).
func Percent() int { return int(percent.Load()) }

// arm sets a finalizer on a fresh object: it runs after the next
// collection, adjusts the percent and re-arms itself.
func arm() {
	s := new([16]byte) // not tiny-allocated: a finalizer on a tiny object may never run
	runtime.SetFinalizer(s, func(*[16]byte) {
		if floor.Load() == 0 {
			mu.Lock()
			armed = false
			mu.Unlock()
			return
		}
		adjust()
		arm()
	})
}

// The runtime's goal is marked + (marked + stack scan + globals scan) ×
// percent/100 (runtime/mgcpacer.go, gcControllerState.commit): the
// percent that gives a headroom of F is F×100 over that sum, not over the
// live heap alone (an edge's globals and stacks are several times a small
// heap: counting only the heap set goals of 200-400 MB).
var sample = []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"}}

// adjust sets the percent for the heap, stacks and globals of the last
// collection.
func adjust() {
	f := floor.Load()
	if f == 0 {
		return
	}
	metrics.Read(sample)
	live := uint64(0)
	for _, s := range sample {
		if s.Value.Kind() == metrics.KindUint64 {
			live += s.Value.Uint64()
		}
	}
	p := int64(base)
	if live > 0 {
		if q := int64(f * 100 / live); q > p {
			p = q
		}
	} else {
		p = maxPercent
	}
	p = min(p, maxPercent, max(int64(base), int64(f*100/heapMinimum)))
	// Only a change of more than an eighth is worth the runtime's lock.
	if old := percent.Load(); old == 0 || p > old+old/8 || p < old-old/8 {
		debug.SetGCPercent(int(p))
		percent.Store(p)
	}
}
