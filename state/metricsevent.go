package state

import (
	"encoding/json"
	"hash/fnv"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/geniehive/geniehive/fleet"
)

// Metrics-only change events (issue 12). Most heartbeats change nothing
// but a node's load figures, yet a plain "up" event makes every edge GET
// the node's whole state (~6 KB at 5 services) and decode it: at 1,000
// nodes that GET was a third of an edge's churn CPU. So a writer that
// remembers its last publish (Beats) still SETs the whole state each beat
// (TTL, resyncs and an edge that missed events stay correct), but when
// only the volatile fields changed since its last whole publish it
// publishes the new figures themselves instead of "up":
//
//	m1 <shape> <sum> <updated_ns> <n> {<name> <loaded> <vram_used> <vram_total> <queue> <in_flight> <latency_ms> <tok_s>}×n <g> {<vram_used> <util>}×g
//
// one space between tokens, integers in decimal, floats as
// strconv.FormatFloat(f, 'g', -1, 64) (they round-trip exactly). The
// volatile fields (VolatileFields) are a service's Metrics, the host's
// UpdatedAt and each GPU's VRAMUsedBytes and UtilPercent; everything else
// is the state's shape, hashed into NodeState.Shape (StateShape), which
// every whole state carries. <sum> is the FNV-1a 64 of the exact bytes
// SET in the same beat, so the next resync recognises them without
// decoding (Store.readNodes). A whole "up" goes out at least every
// FullEvery beats and on any change of shape; old payloads ("up",
// "down", anything else) mean "read the node", as before, so fleets of
// mixed versions work both ways (an older edge reads the node on every
// event whatever its payload).
//
// An edge applies the event to the state it holds without reading Redis,
// only when that state's Shape is the event's and its services are the
// event's, in order; otherwise (it holds another shape, or none) it reads
// the node as for "up". Nodes are untrusted: the event is attributed to
// the host its channel names (a node's ACL lets it publish on its own
// channel only), never to anything in the payload; every figure is
// checked as the whole state's are (checkNodeState: no negative figure;
// floats finite, as JSON cannot say otherwise); an event over
// MaxMetricsEventBytes or malformed in any way is refused and counted
// (WatcherStats.MetricsRefused) and changes nothing. An event can only
// replace figures of services and GPUs the edge already holds: it never
// adds or removes a service or an asset.
//
// A metrics event renews the node's deadline by the held state's ttl_s
// (capped at MaxNodeTTL), the TTL the node SETs its key with; a node that
// SET its key without a TTL is refused at the next resync, which reads
// the key's PTTL, as ever.

// MaxMetricsEventBytes bounds a metrics event; a writer whose figures do
// not fit publishes "up" instead.
const MaxMetricsEventBytes = 4 << 10

// FullEvery: a writer publishes a whole "up" at least every FullEvery
// beats (a minute at the default 5 s interval), whatever changed.
const FullEvery = 12

// metricsTag starts a metrics event.
const metricsTag = "m1 "

// VolatileFields names what a metrics event carries (documentation and
// tests): every other field of a NodeState is its shape.
var VolatileFields = []string{"host.updated_at", "host.gpus[].vram_used_bytes", "host.gpus[].util_percent",
	"services[].metrics.loaded_model_count", "services[].metrics.vram_used_bytes", "services[].metrics.vram_total_bytes",
	"services[].metrics.queue_depth", "services[].metrics.in_flight", "services[].metrics.latency_ms",
	"services[].metrics.tokens_per_second"}

// StateShape hashes everything in st but its volatile fields and Shape
// itself: 16 hex digits, FNV-1a 64 of the JSON of st with those fields
// zeroed (deterministic across processes and versions that agree on the
// JSON).
func StateShape(st *fleet.NodeState) string {
	c := *st
	c.Shape = ""
	c.Host.UpdatedAt = time.Time{}
	if len(st.Host.GPUs) > 0 {
		c.Host.GPUs = make([]fleet.GPU, len(st.Host.GPUs))
		for i, g := range st.Host.GPUs {
			g.VRAMUsedBytes, g.UtilPercent = 0, 0
			c.Host.GPUs[i] = g
		}
	}
	c.Services = make([]fleet.Service, len(st.Services))
	for i := range st.Services {
		c.Services[i] = st.Services[i]
		c.Services[i].Metrics = fleet.Metrics{}
	}
	b, _ := json.Marshal(&c)
	return strconv.FormatUint(fnvSum(b), 16)
}

// fnvSum is FNV-1a 64 of b.
func fnvSum[T string | []byte](b T) uint64 {
	h := fnv.New64a()
	h.Write([]byte(b))
	return h.Sum64()
}

// appendMetricsEvent encodes st's volatile figures as a metrics event for
// the stored bytes' sum; false when it would exceed MaxMetricsEventBytes.
func appendMetricsEvent(b []byte, st *fleet.NodeState, sum uint64) ([]byte, bool) {
	b = append(b, metricsTag...)
	b = append(b, st.Shape...)
	b = append(b, ' ')
	b = strconv.AppendUint(b, sum, 16)
	b = append(b, ' ')
	b = strconv.AppendInt(b, st.Host.UpdatedAt.UnixNano(), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(len(st.Services)), 10)
	for i := range st.Services {
		s := &st.Services[i]
		m := &s.Metrics
		b = append(b, ' ')
		b = append(b, s.Name...)
		for _, v := range [...]int64{int64(m.LoadedModelCount), m.VRAMUsedBytes, m.VRAMTotalBytes, int64(m.QueueDepth), int64(m.InFlight)} {
			b = append(b, ' ')
			b = strconv.AppendInt(b, v, 10)
		}
		for _, f := range [...]float64{m.LatencyMS, m.TokensPerSecond} {
			b = append(b, ' ')
			b = strconv.AppendFloat(b, f, 'g', -1, 64)
		}
	}
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(len(st.Host.GPUs)), 10)
	for _, g := range st.Host.GPUs {
		b = append(b, ' ')
		b = strconv.AppendInt(b, g.VRAMUsedBytes, 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(g.UtilPercent), 10)
	}
	return b, len(b) <= MaxMetricsEventBytes
}

// IsMetricsEvent reports whether a node event's payload is a metrics event.
func IsMetricsEvent(payload string) bool { return strings.HasPrefix(payload, metricsTag) }

// metricsVerdict is what applyMetricsEvent made of an event.
type metricsVerdict int

const (
	metricsApplied metricsVerdict = iota
	metricsStale                  // the edge holds another shape, or none: read the node
	metricsRefused                // malformed or out of bounds: ignored, counted
)

// tokens walks a metrics event's space-separated tokens.
type tokens struct {
	s   string
	bad bool
}

func (t *tokens) next() string {
	if t.bad || t.s == "" {
		t.bad = true
		return ""
	}
	i := strings.IndexByte(t.s, ' ')
	var tok string
	if i < 0 {
		tok, t.s = t.s, ""
	} else {
		tok, t.s = t.s[:i], t.s[i+1:]
		if t.s == "" { // a trailing space
			t.bad = true
		}
	}
	if tok == "" {
		t.bad = true
	}
	return tok
}

// count reads a non-negative integer of at most bits bits.
func (t *tokens) count(bits int) int64 {
	tok := t.next()
	if t.bad {
		return 0
	}
	// ParseInt accepts a leading '+'; JSON (the whole state) does not.
	if tok[0] == '+' {
		t.bad = true
		return 0
	}
	v, err := strconv.ParseInt(tok, 10, bits)
	if err != nil || v < 0 {
		t.bad = true
		return 0
	}
	return v
}

// figure reads a finite non-negative float.
func (t *tokens) figure() float64 {
	tok := t.next()
	if t.bad {
		return 0
	}
	for i := 0; i < len(tok); i++ {
		// Only what JSON numbers hold: no "Inf", "NaN", "0x1p3", "_".
		if c := tok[i]; !(c >= '0' && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '-' || c == '+') {
			t.bad = true
			return 0
		}
	}
	f, err := strconv.ParseFloat(tok, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		t.bad = true
		return 0
	}
	return f
}

// applyMetricsEvent applies a metrics event of a host (the one its
// channel names) to held, the record the edge holds for that host (had: whether it holds
// one). It returns the new record (held is not modified: the returned
// one shares only its immutable parts) when the event applies.
func applyMetricsEvent(payload string, held NodeRecord, had bool, now time.Time) (NodeRecord, metricsVerdict, string) {
	if len(payload) > MaxMetricsEventBytes {
		return held, metricsRefused, "metrics event of " + strconv.Itoa(len(payload)) + " bytes exceeds " + strconv.Itoa(MaxMetricsEventBytes)
	}
	body, ok := strings.CutPrefix(payload, metricsTag)
	if !ok {
		return held, metricsRefused, "not a metrics event"
	}
	t := tokens{s: body}
	shape := t.next()
	sumTok := t.next()
	if t.bad || len(shape) > 32 || len(sumTok) > 16 {
		return held, metricsRefused, "malformed metrics event header"
	}
	sum, err := strconv.ParseUint(sumTok, 16, 64)
	if err != nil || sumTok[0] == '+' {
		return held, metricsRefused, "malformed metrics event sum"
	}
	if !had || held.State.Shape == "" || held.State.Shape != shape || held.State.TTLSeconds <= 0 {
		return held, metricsStale, ""
	}
	updated := t.count(64)
	n := t.count(32)
	if t.bad || n != int64(len(held.State.Services)) {
		return held, metricsRefused, "metrics event does not list the node's services"
	}
	st := held.State
	fig := &fleet.Figures{Metrics: make([]fleet.Metrics, len(st.Services))}
	for i := range st.Services {
		s := &st.Services[i]
		if name := t.next(); t.bad || name != s.Name {
			return held, metricsRefused, "metrics event names a service the node's state does not hold at its place"
		}
		fig.Metrics[i] = fleet.Metrics{LoadedModelCount: int(t.count(32)), VRAMUsedBytes: t.count(64), VRAMTotalBytes: t.count(64),
			QueueDepth: int(t.count(32)), InFlight: int(t.count(32)), LatencyMS: t.figure(), TokensPerSecond: t.figure()}
		if t.bad {
			return held, metricsRefused, "service " + s.ID + ": a metrics figure is not a non-negative number of its type"
		}
	}
	g := t.count(32)
	if t.bad || g != int64(len(held.State.Host.GPUs)) {
		return held, metricsRefused, "metrics event does not list the node's GPUs"
	}
	if g > 0 {
		fig.GPUs = make([]fleet.GPU, g)
		copy(fig.GPUs, held.State.Host.GPUs)
		for i := range fig.GPUs {
			fig.GPUs[i].VRAMUsedBytes = t.count(64)
			fig.GPUs[i].UtilPercent = int(t.count(32))
		}
		if t.bad {
			return held, metricsRefused, "a GPU figure is not a non-negative integer"
		}
	}
	if t.s != "" {
		return held, metricsRefused, "trailing data in metrics event"
	}
	fig.UpdatedAt = time.Unix(0, updated).UTC()
	// The services and the state are shared with held (immutable): only
	// the figures are new (NodeRecord.fig).
	rec := NodeRecord{State: st, Deadline: now.Add(min(time.Duration(st.TTLSeconds)*time.Second, MaxNodeTTL)), nodeSum: sum | 1, fig: fig}
	return rec, metricsApplied, ""
}
