package routing

import (
	"strings"

	"github.com/geniehive/geniehive/fleet"
)

// Signal indexes a scoring signal in Signals.
type Signal int

// The scoring signals, in the order they are reported. See Weights for what
// each measures.
const (
	SigTextOverlap Signal = iota
	SigPreferredFamily
	SigCandidateOrder
	SigLoaded
	SigLatency
	SigThroughput
	SigQueueDepth
	SigInFlight
	SigVRAMHeadroom
	SigWorkloadOverlap
	SigBenchQuality
	NumSignals
)

var signalNames = [NumSignals]string{
	"text_overlap", "preferred_family", "candidate_order", "loaded", "latency", "throughput",
	"queue_depth", "in_flight", "vram_headroom", "workload_overlap", "bench_quality",
}

// String is the signal's name as reported by routes/match.
func (s Signal) String() string {
	if s < 0 || s >= NumSignals {
		return "unknown"
	}
	return signalNames[s]
}

// Signals holds each signal's contribution (weight × normalised value) to a
// candidate's score; the score is their sum.
type Signals [NumSignals]float64

// Sum is the score.
func (s *Signals) Sum() float64 {
	t := 0.0
	for _, v := range s {
		t += v
	}
	return t
}

// scoreInput is everything one candidate's score depends on.
type scoreInput struct {
	svc      *fleet.ServiceEntry
	asset    *fleet.Asset // nil for a service target without assets
	role     *fleet.Role  // nil for a direct target
	pos, n   int          // target position within its group, group size
	inflight int64        // best local estimate
	host     *fleet.HostEntry
	bench    []fleet.BenchSummary
	text     *requestText
	hasText  bool
}

// score fills sig for one candidate. No allocation.
func (r *Router) score(in *scoreInput, sig *Signals) {
	w := r.cfg.Weights
	c := &r.cfg
	*sig = Signals{}
	a := in.asset
	if a != nil && in.hasText && w.TextOverlap != 0 {
		sig[SigTextOverlap] = w.TextOverlap * overlap(in.text, a.Name, a.Family, a.Tags)
	}
	if a != nil && in.role != nil && a.Family != "" && w.PreferredFamily != 0 {
		pf := in.role.PreferredFamilies
		for i, f := range pf {
			if strings.EqualFold(f, a.Family) {
				sig[SigPreferredFamily] = w.PreferredFamily * (1 - float64(i)/float64(len(pf)))
				break
			}
		}
	}
	if in.n > 1 {
		sig[SigCandidateOrder] = w.CandidateOrder * (1 - float64(in.pos)/float64(in.n))
	} else {
		sig[SigCandidateOrder] = w.CandidateOrder
	}
	if a != nil && a.Ready() { // a model still loading cannot answer yet
		sig[SigLoaded] = w.Loaded
	}
	m := in.svc.Metrics()
	st := &in.svc.Stats
	lat := st.LatencyMS
	if lat <= 0 || st.Requests == 0 {
		lat = m.LatencyMS
	}
	if lat <= 0 && in.svc.Probe != nil {
		lat = in.svc.Probe.LatencyMS
	}
	if lat > 0 {
		sig[SigLatency] = w.Latency * (0.5 - lat/(lat+c.LatencyRefMS))
	}
	tps := st.TokensPerSec
	if tps <= 0 {
		tps = m.TokensPerSecond
	}
	if tps <= 0 && a != nil {
		for i := range in.bench {
			if in.bench[i].TokensPerSec > tps {
				tps = in.bench[i].TokensPerSec
			}
		}
	}
	if tps > 0 {
		sig[SigThroughput] = w.Throughput * (tps/(tps+c.ThroughputRef) - 0.5)
	}
	if q := float64(m.QueueDepth); q > 0 {
		sig[SigQueueDepth] = -w.QueueDepth * q / (q + c.QueueRef)
	}
	if n := float64(in.inflight); n > 0 {
		sig[SigInFlight] = -w.InFlight * n / (n + c.InFlightRef)
	}
	used, total := m.VRAMUsedBytes, m.VRAMTotalBytes
	if total <= 0 && in.host != nil {
		for _, g := range in.host.GPUs() {
			used += g.VRAMUsedBytes
			total += g.VRAMTotalBytes
		}
	}
	if total > 0 {
		free := float64(total-used) / float64(total)
		if free < 0 {
			free = 0
		}
		sig[SigVRAMHeadroom] = w.VRAMHeadroom * (free - 0.5)
	}
	if len(in.bench) > 0 {
		var q float64
		var nq int
		var covered int
		if in.role != nil && len(in.role.Workloads) > 0 {
			for _, wl := range in.role.Workloads {
				for i := range in.bench {
					if strings.EqualFold(in.bench[i].Workload, wl) && in.bench[i].Samples > 0 {
						covered++
						q += in.bench[i].Quality
						nq++
						break
					}
				}
			}
			sig[SigWorkloadOverlap] = w.WorkloadOverlap * float64(covered) / float64(len(in.role.Workloads))
		} else {
			for i := range in.bench {
				if in.bench[i].Samples > 0 {
					q += in.bench[i].Quality
					nq++
				}
			}
		}
		if nq > 0 {
			sig[SigBenchQuality] = w.BenchQuality * (q/float64(nq) - 0.5)
		}
	}
}
