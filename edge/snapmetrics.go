package edge

import (
	"time"

	"github.com/geniehive/geniehive/state"
	"github.com/prometheus/client_golang/prometheus"
)

// snapCollector exports the watcher's figures on /metrics at scrape time:
// the snapshot's age, events applied and dropped, the latency from an
// event's arrival to the snapshot that shows it, resyncs and their
// duration, and how snapshots were built (state/snapbuild.go). Nothing of
// it runs on the request path.
type snapCollector struct {
	s *Server

	age, events, dropped, metricsEv, resyncs, resyncErrs, applyLat, resyncDur, builds, views, dataVer *prometheus.Desc
}

func newSnapCollector(s *Server) *snapCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &snapCollector{s: s,
		age:        d("geniehive_snapshot_age_seconds", "Time since the edge's current snapshot of the shared state was built."),
		events:     d("geniehive_state_events_applied_total", "Change events (pub/sub) applied to the snapshot."),
		dropped:    d("geniehive_state_events_dropped_total", "Change events dropped for want of room (the next resync covers them)."),
		metricsEv:  d("geniehive_state_metrics_events_total", "Nodes' metrics-only change events, by result: applied (without reading Redis), stale (a shape this edge did not hold: the node was read) or refused (malformed or out of bounds: ignored).", "result"),
		resyncs:    d("geniehive_state_resyncs_total", "Full refreshes of the snapshot from Redis."),
		resyncErrs: d("geniehive_state_resync_errors_total", "Full refreshes that failed (the previous snapshot stayed)."),
		applyLat:   d("geniehive_state_event_apply_seconds", "Time from a change event's arrival to the snapshot that shows it."),
		resyncDur:  d("geniehive_state_resync_seconds", "Duration of a full refresh of the snapshot from Redis."),
		builds:     d("geniehive_snapshot_builds_total", "Snapshots built, by kind: full (every node checked), incremental (only changed nodes rebuilt), figures (only figures moved, in place: nothing rebuilt), index (fleet indexes rebuilt whole).", "kind"),
		views:      d("geniehive_snapshot_node_views_total", "Node views (a node's host and service entries) built or reused by full builds.", "result"),
		dataVer:    d("geniehive_snapshot_data_version", "Version of what the policy data document is built from (catalog and fleet shape)."),
	}
}

func (c *snapCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.age, c.events, c.dropped, c.metricsEv, c.resyncs, c.resyncErrs, c.applyLat, c.resyncDur, c.builds, c.views, c.dataVer} {
		ch <- d
	}
}

func (c *snapCollector) Collect(ch chan<- prometheus.Metric) {
	w := c.s.watcher
	st := w.Stats()
	b := st.Build()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, time.Since(w.Current().BuiltAt).Seconds())
	counter(c.events, st.EventsApplied.Load())
	counter(c.dropped, st.EventsDropped.Load())
	counter(c.metricsEv, st.MetricsApplied.Load(), "applied")
	counter(c.metricsEv, st.MetricsStale.Load(), "stale")
	counter(c.metricsEv, st.MetricsRefused.Load(), "refused")
	counter(c.resyncs, st.Resyncs.Load())
	counter(c.resyncErrs, st.ResyncErrors.Load())
	hist := func(d *prometheus.Desc, h *state.Histogram) {
		n, sum, cum := h.Read()
		ch <- prometheus.MustNewConstHistogram(d, n, sum, cum)
	}
	hist(c.applyLat, &st.ApplyLatency)
	hist(c.resyncDur, &st.ResyncDuration)
	counter(c.builds, b.FullBuilds, "full")
	counter(c.builds, b.Incremental, "incremental")
	counter(c.builds, b.Figures, "figures")
	counter(c.builds, b.IndexRebuilds, "index")
	counter(c.views, b.ViewsBuilt, "built")
	counter(c.views, b.ViewsReused, "reused")
	ch <- prometheus.MustNewConstMetric(c.dataVer, prometheus.GaugeValue, float64(b.DataVersion))
}
