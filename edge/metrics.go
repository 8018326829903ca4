package edge

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
	"github.com/valyala/fasthttp"
)

// metrics are the edge's Prometheus series. Label values are bounded: model
// is the resolved asset or role name ("unknown" for anything unresolved),
// never raw client input.
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec   // route, model, role, service, status
	latency   *prometheus.HistogramVec // service
	ttft      *prometheus.HistogramVec // service
	inflight  *prometheus.GaugeVec     // route
	failovers *prometheus.CounterVec   // service (the one that failed)
	upErrors  *prometheus.CounterVec   // service, reason
	aborted   prometheus.Counter
	// policy reloads by result (ok | refused); the active version is a
	// gauge set to 1 with the version as label.
	policyReloads *prometheus.CounterVec
	policyActive  *prometheus.GaugeVec
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	buckets := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "geniehive_requests_total", Help: "Requests answered, by route, resolved model, role, service and status.",
	}, []string{"route", "model", "role", "service", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "geniehive_upstream_latency_seconds", Help: "Upstream time from request sent to last byte relayed.", Buckets: buckets,
	}, []string{"service"})
	m.ttft = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "geniehive_upstream_ttft_seconds", Help: "Upstream time to first token (first SSE data event, or whole answer when not streaming).", Buckets: buckets,
	}, []string{"service"})
	m.inflight = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "geniehive_inflight_requests", Help: "Requests this edge is serving now.",
	}, []string{"route"})
	m.failovers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "geniehive_failovers_total", Help: "Attempts abandoned for the next candidate before the first byte, by failed service.",
	}, []string{"service"})
	m.upErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "geniehive_upstream_errors_total", Help: "Failed upstream attempts by service and reason.",
	}, []string{"service", "reason"})
	m.aborted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "geniehive_client_aborts_total", Help: "Streams cut short because the client went away.",
	})
	m.policyReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "geniehive_policy_reloads_total", Help: "Policy bundle reloads by result: ok, or refused (failed to compile or its tests; the running policy stayed).",
	}, []string{"result"})
	m.policyActive = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "geniehive_policy_info", Help: "The active policy engine and version (value 1).",
	}, []string{"engine", "version"})
	m.reg.MustRegister(m.requests, m.latency, m.ttft, m.inflight, m.failovers, m.upErrors, m.aborted, m.policyReloads, m.policyActive,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) serve(ctx *fasthttp.RequestCtx) {
	mfs, err := m.reg.Gather()
	if err != nil {
		writeError(ctx, classify(err))
		return
	}
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	ctx.SetContentType(string(format))
	enc := expfmt.NewEncoder(ctx, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return
		}
	}
}
