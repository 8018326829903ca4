package routing

import (
	"errors"
	"fmt"
	"time"
)

// Strategy names.
const (
	StrategyScored      = "scored"
	StrategyRoundRobin  = "round_robin"
	StrategyLeastLoaded = "least_loaded"
)

// ValidStrategy reports whether s names a registered strategy ("" means
// the default).
func ValidStrategy(s string) bool { return s == "" || strategies[s] != nil }

// Weights multiply each scoring signal. A signal's contribution to a
// candidate's score is its weight times its normalised value; see Signal for
// what each one measures and its range. A zero weight turns a signal off.
type Weights struct {
	// TextOverlap: share of the asset's name/family/tag words found in the
	// request's model, the role's name and description and the prompt's
	// first Config.TextChars bytes. Range [0, 1]. Default 1.
	TextOverlap float64 `json:"text_overlap" yaml:"text_overlap"`
	// PreferredFamily: 1 for the role's first preferred family, falling
	// linearly for later ones, 0 when not preferred. Default 1.
	PreferredFamily float64 `json:"preferred_family" yaml:"preferred_family"`
	// CandidateOrder: 1 for the first target of its group, falling linearly
	// (the role's candidates are listed in order of preference). Default 0.5.
	CandidateOrder float64 `json:"candidate_order" yaml:"candidate_order"`
	// Loaded: 1 when the asset is resident (no load time). Default 1.5.
	Loaded float64 `json:"loaded" yaml:"loaded"`
	// Latency: 0.5 - l/(l+LatencyRefMS), so fast is positive, slow negative,
	// unknown 0. l is the edges' observed EWMA, else the node's figure.
	// Default 1.
	Latency float64 `json:"latency" yaml:"latency"`
	// Throughput: t/(t+ThroughputRef) - 0.5 (tokens/s; unknown 0). Default 0.5.
	Throughput float64 `json:"throughput" yaml:"throughput"`
	// QueueDepth: -q/(q+QueueRef) for the node-reported queue. Default 1.
	QueueDepth float64 `json:"queue_depth" yaml:"queue_depth"`
	// InFlight: -n/(n+InFlightRef), n = max(this edge's in-flight count,
	// the upstream's reported running requests). Default 1.
	InFlight float64 `json:"in_flight" yaml:"in_flight"`
	// VRAMHeadroom: free VRAM fraction - 0.5 (unknown 0). Default 0.25.
	VRAMHeadroom float64 `json:"vram_headroom" yaml:"vram_headroom"`
	// WorkloadOverlap: share of the role's workloads that have benchmark
	// results for the asset. Default 0.5.
	WorkloadOverlap float64 `json:"workload_overlap" yaml:"workload_overlap"`
	// BenchQuality: mean benchmark quality (0..1) over the role's workloads
	// (all workloads when the role names none) - 0.5; unknown 0. Default 2.
	BenchQuality float64 `json:"bench_quality" yaml:"bench_quality"`
}

// DefaultWeights are the weights used when Config.Weights is zero.
func DefaultWeights() Weights {
	return Weights{
		TextOverlap:     1,
		PreferredFamily: 1,
		CandidateOrder:  0.5,
		Loaded:          1.5,
		Latency:         1,
		Throughput:      0.5,
		QueueDepth:      1,
		InFlight:        1,
		VRAMHeadroom:    0.25,
		WorkloadOverlap: 0.5,
		BenchQuality:    2,
	}
}

// Config configures a Router. The zero value is usable: Provision fills in
// every default documented below.
type Config struct {
	// DefaultStrategy applies when a target carries none. Default "scored".
	DefaultStrategy string `json:"default_strategy" yaml:"default_strategy"`
	// Weights of the scored strategy (and of the order of every candidate
	// after the pick). Zero value = DefaultWeights().
	Weights *Weights `json:"weights,omitempty" yaml:"weights,omitempty"`
	// TextChars is how many bytes of prompt text the text signal reads.
	// Default 256. The text is never logged or stored.
	TextChars int `json:"text_chars" yaml:"text_chars"`
	// LatencyRefMS is the latency that scores 0 on the latency signal.
	// Default 1000.
	LatencyRefMS float64 `json:"latency_ref_ms" yaml:"latency_ref_ms"`
	// ThroughputRef is the tokens/s that scores 0 on the throughput signal.
	// Default 40.
	ThroughputRef float64 `json:"throughput_ref" yaml:"throughput_ref"`
	// QueueRef and InFlightRef are the loads that cost half the weight.
	// Default 4 each.
	QueueRef    float64 `json:"queue_ref" yaml:"queue_ref"`
	InFlightRef float64 `json:"in_flight_ref" yaml:"in_flight_ref"`

	// FailureThreshold consecutive upstream failures (cluster-wide) put a
	// service in cooldown. Default 3.
	FailureThreshold int `json:"failure_threshold" yaml:"failure_threshold"`
	// Cooldown is how long a failing service is held out. Default 30s.
	Cooldown time.Duration `json:"cooldown" yaml:"cooldown"`
	// RetryAfter is the Retry-After the edge sends when every candidate is
	// saturated. Default 1s.
	RetryAfter time.Duration `json:"retry_after" yaml:"retry_after"`

	// ProbeInterval is the active-probe period; 0 turns probing off.
	ProbeInterval time.Duration `json:"probe_interval" yaml:"probe_interval"`
	// ProbeIntervalS is ProbeInterval in whole seconds (the documented
	// `routing.probe_interval_s` setting); used when ProbeInterval is 0.
	ProbeIntervalS int `json:"probe_interval_s" yaml:"probe_interval_s"`
	// ProbeLease is how long the probing replica holds its lease without
	// renewing it. Default 3 × ProbeInterval, at least 3s.
	ProbeLease time.Duration `json:"probe_lease" yaml:"probe_lease"`
	// ProbeTimeout bounds one probe. Default 2s.
	ProbeTimeout time.Duration `json:"probe_timeout" yaml:"probe_timeout"`

	// BenchKeep is how many samples are kept per (asset, workload).
	// Default 500.
	BenchKeep int `json:"bench_keep" yaml:"bench_keep"`
}

// Provision returns c with defaults filled in, or an error naming the first
// invalid field.
//
// # Errors
// An unknown DefaultStrategy, or a negative number or duration.
func (c Config) Provision() (Config, error) {
	if c.DefaultStrategy == "" {
		c.DefaultStrategy = StrategyScored
	}
	if !ValidStrategy(c.DefaultStrategy) {
		return c, fmt.Errorf("routing.default_strategy %q: want one of %v", c.DefaultStrategy, StrategyNames())
	}
	if c.Weights == nil {
		w := DefaultWeights()
		c.Weights = &w
	} else {
		w := *c.Weights // copy: the caller's value stays theirs
		c.Weights = &w
	}
	if c.TextChars < 0 || c.LatencyRefMS < 0 || c.ThroughputRef < 0 || c.QueueRef < 0 || c.InFlightRef < 0 ||
		c.FailureThreshold < 0 || c.Cooldown < 0 || c.RetryAfter < 0 || c.ProbeInterval < 0 || c.ProbeLease < 0 ||
		c.ProbeTimeout < 0 || c.BenchKeep < 0 {
		return c, errors.New("routing: negative value in config")
	}
	def := func(p *float64, v float64) {
		if *p == 0 {
			*p = v
		}
	}
	if c.TextChars == 0 {
		c.TextChars = 256
	}
	def(&c.LatencyRefMS, 1000)
	def(&c.ThroughputRef, 40)
	def(&c.QueueRef, 4)
	def(&c.InFlightRef, 4)
	if c.FailureThreshold == 0 {
		c.FailureThreshold = 3
	}
	if c.Cooldown == 0 {
		c.Cooldown = 30 * time.Second
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = time.Second
	}
	if c.ProbeIntervalS < 0 {
		return c, errors.New("routing.probe_interval_s: negative")
	}
	if c.ProbeInterval == 0 && c.ProbeIntervalS > 0 {
		c.ProbeInterval = time.Duration(c.ProbeIntervalS) * time.Second
	}
	if c.ProbeLease == 0 {
		c.ProbeLease = 3 * c.ProbeInterval
		if c.ProbeLease < 3*time.Second {
			c.ProbeLease = 3 * time.Second
		}
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = 2 * time.Second
	}
	if c.BenchKeep == 0 {
		c.BenchKeep = 500
	}
	return c, nil
}
