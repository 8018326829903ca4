package loadtest

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram is a log-linear (HDR-style) histogram of durations in
// nanoseconds. Values below 256 ns are counted exactly; above, each power
// of two is split into 128 equal sub-buckets, so a reported percentile is
// within 1/256 (0.4 %) of the true value. It covers the whole int64 range in
// 7,424 counters (58 KiB).
//
// Record is lock-free (atomic adds) and safe for concurrent use; reads
// (Percentile, Summary) may run concurrently with Record and see a
// consistent-enough view for progress lines. The zero value is not usable:
// call NewHistogram.
//
// A library (HdrHistogram-go) would do the same; this is 100 lines, has no
// dependency, and records without locks.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64
	min    atomic.Int64
	max    atomic.Int64
}

const (
	histSubBits   = 7
	histSub       = 1 << histSubBits // 128 sub-buckets per octave
	histLinear    = 2 * histSub      // values < 256 are exact
	histBuckets   = histLinear + (63-histSubBits)*histSub
	histMaxRelErr = 1.0 / (2 * histSub) // midpoint error bound
)

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	h := &Histogram{}
	h.min.Store(math.MaxInt64)
	return h
}

func histIndex(v int64) int {
	if v < histLinear {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	u := uint64(v)
	shift := bits.Len64(u) - (histSubBits + 1) // u>>shift is in [128, 255]
	return histLinear + (shift-1)*histSub + int(u>>uint(shift)) - histSub
}

// bucketRange returns the smallest and largest value counted by bucket i.
func bucketRange(i int) (lo, hi int64) {
	if i < histLinear {
		return int64(i), int64(i)
	}
	j := i - histLinear
	shift := uint(j/histSub + 1)
	m := uint64(j%histSub + histSub)
	return int64(m << shift), int64((m+1)<<shift - 1)
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) { h.RecordValue(int64(d)) }

// RecordValue adds one value (nanoseconds; negatives count as 0).
func (h *Histogram) RecordValue(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[histIndex(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(uint64(v))
	for {
		m := h.min.Load()
		if v >= m || h.min.CompareAndSwap(m, v) {
			break
		}
	}
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Merge adds every value of o into h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n.Load() == 0 {
		return
	}
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(o.n.Load())
	h.sum.Add(o.sum.Load())
	h.RecordMinMax(o.min.Load(), o.max.Load())
}

// RecordMinMax widens min and max without counting a value.
func (h *Histogram) RecordMinMax(lo, hi int64) {
	for {
		m := h.min.Load()
		if lo >= m || h.min.CompareAndSwap(m, lo) {
			break
		}
	}
	for {
		m := h.max.Load()
		if hi <= m || h.max.CompareAndSwap(m, hi) {
			break
		}
	}
}

// Percentile returns the value at quantile q (0..1) by nearest rank: the
// smallest recorded value v such that at least q of all values are ≤ v.
// Exact below 256 ns, within 0.4 % above; clamped to the recorded min and
// max. 0 when empty.
func (h *Histogram) Percentile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	if rank < 1 {
		rank = 1
	}
	if rank > n {
		rank = n
	}
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		if cum >= rank {
			lo, hi := bucketRange(i)
			v := lo + (hi-lo)/2
			if mn := h.min.Load(); v < mn {
				v = mn
			}
			if mx := h.max.Load(); v > mx {
				v = mx
			}
			return time.Duration(v)
		}
	}
	return time.Duration(h.max.Load())
}

// Summary returns the usual figures in microseconds.
func (h *Histogram) Summary() *LatencySummary {
	n := h.n.Load()
	if n == 0 {
		return nil
	}
	us := func(d time.Duration) float64 { return float64(d) / 1000 }
	return &LatencySummary{
		Count: n,
		Min:   us(time.Duration(h.min.Load())),
		Mean:  us(time.Duration(h.sum.Load() / n)),
		P50:   us(h.Percentile(0.50)),
		P90:   us(h.Percentile(0.90)),
		P99:   us(h.Percentile(0.99)),
		P999:  us(h.Percentile(0.999)),
		Max:   us(time.Duration(h.max.Load())),
	}
}

// LatencySummary is a histogram's figures, in microseconds.
type LatencySummary struct {
	Count uint64  `json:"count"`
	Min   float64 `json:"min_us"`
	Mean  float64 `json:"mean_us"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p999_us"`
	Max   float64 `json:"max_us"`
}
