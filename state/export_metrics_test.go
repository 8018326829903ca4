package state

import (
	"time"

	"github.com/geniehive/geniehive/fleet"
)

// Internals the external tests of metrics events use.

// MetricsTag starts a metrics event.
const MetricsTag = metricsTag

// AppendMetricsEvent encodes st's metrics event for stored bytes of sum.
func AppendMetricsEvent(st *fleet.NodeState, sum uint64) string {
	b, _ := appendMetricsEvent(nil, st, sum)
	return string(b)
}

// FNVSum is the sum a metrics event names for stored bytes.
func FNVSum[T string | []byte](b T) uint64 { return fnvSum(b) }

// ApplyMetricsEventForTest applies payload to the record the watcher
// holds for host, without keeping the result: "" when it applies, else
// why not.
func (w *Watcher) ApplyMetricsEventForTest(host, payload string) string {
	w.mu.Lock()
	held, had := w.model.nodes[host]
	w.mu.Unlock()
	_, v, why := applyMetricsEvent(payload, held, had, time.Now())
	switch v {
	case metricsApplied:
		return ""
	case metricsStale:
		return "stale"
	}
	return why
}
