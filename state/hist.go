package state

import (
	"math"
	"sync/atomic"
)

// HistBuckets are the upper bounds (seconds) of every Histogram: from
// 100 µs to 10 s, wide enough for an event's apply latency and a resync of
// 10,000 nodes.
var HistBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Histogram is a fixed-bucket histogram safe for concurrent use, without
// allocation; the edge exports it as a Prometheus histogram.
type Histogram struct {
	counts [17]atomic.Uint64 // len(HistBuckets)+1: the last is +Inf
	sum    atomic.Uint64     // float64 bits
	n      atomic.Uint64
}

// Observe records v (seconds).
func (h *Histogram) Observe(v float64) {
	i := 0
	for i < len(HistBuckets) && v > HistBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.n.Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// Read returns the observation count, their sum, and the cumulative count
// at each bound of HistBuckets.
func (h *Histogram) Read() (count uint64, sum float64, cumulative map[float64]uint64) {
	cumulative = make(map[float64]uint64, len(HistBuckets))
	var c uint64
	for i, b := range HistBuckets {
		c += h.counts[i].Load()
		cumulative[b] = c
	}
	return h.n.Load(), math.Float64frombits(h.sum.Load()), cumulative
}
