package edge

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
	"github.com/valyala/fasthttp"
)

// metrics are the edge's Prometheus series. Label values are bounded: model
// is the resolved asset or role name ("unknown" for anything unresolved),
// never raw client input.
type metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec   // endpoint, model, role, service, status
	latency     *prometheus.HistogramVec // service
	ttft        *prometheus.HistogramVec // service
	inflightVec *prometheus.GaugeVec     // endpoint
	failovers   *prometheus.CounterVec   // service (the one that failed)
	upErrors    *prometheus.CounterVec   // service, reason
	aborted     prometheus.Counter
	// policy reloads by result (ok | refused); the active version is a
	// gauge set to 1 with the version as label.
	policyReloads *prometheus.CounterVec
	policyActive  *prometheus.GaugeVec
	// policy evaluation latency by engine.
	policyEval  *prometheus.HistogramVec
	policyEvalC handleCache[string, prometheus.Observer]
	redis       *redisHook
	// Model swapping: requests that waited for a load and how long (by
	// result: loaded, timeout); commands by op and result, load times,
	// refused actions, and the demand per asset (controller edge only).
	swapWaits       prometheus.Counter
	swapWaitSeconds *prometheus.HistogramVec
	swaps           *prometheus.CounterVec
	swapSeconds     *prometheus.HistogramVec
	swapRefused     *prometheus.CounterVec
	swapDemand      *prometheus.GaugeVec
	// dataBuilds counts rebuilds of the policy data document.
	dataBuilds prometheus.Counter

	// Handles resolved once per label set: WithLabelValues hashes every
	// label and takes the vector's lock on each call, which the request
	// path need not pay again for a series it has used before.
	reqC     handleCache[reqLabels, prometheus.Counter]
	latC     handleCache[string, prometheus.Observer]
	ttftC    handleCache[string, prometheus.Observer]
	inflight map[string]prometheus.Gauge // by endpoint, built at start
}

// reqLabels are the labels of geniehive_requests_total.
type reqLabels struct {
	endpoint, model, role, service string
	status                         int
}

// handleCacheMax bounds a handle cache; past it, lookups fall through to
// the vector (label sets are bounded by the registry, but a fleet with very
// many models should not make every insert copy a huge map).
const handleCacheMax = 4096

// cowMap is a copy-on-write map: lock-free reads of an immutable map, and
// inserts that publish a new copy (for small, read-mostly tables on the
// request path). Safe for concurrent use; the zero value is ready.
type cowMap[K comparable, V any] struct {
	m  atomic.Pointer[map[K]V]
	mu sync.Mutex
}

// load returns the map published last (nil before the first insert); the
// caller only reads it.
func (c *cowMap[K, V]) load() map[K]V {
	if m := c.m.Load(); m != nil {
		return *m
	}
	return nil
}

// add publishes a copy of the map with k set to v, unless the map already
// holds max entries (the caller then just uses v unshared).
func (c *cowMap[K, V]) add(k K, v V, max int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.load()
	if len(old) >= max {
		return
	}
	m := make(map[K]V, len(old)+1)
	for k2, v2 := range old {
		m[k2] = v2
	}
	m[k] = v
	c.m.Store(&m)
}

// handleCache maps label values to a metric handle; a miss builds the
// handle through the vector (mk) and publishes it.
type handleCache[K comparable, V any] struct{ cowMap[K, V] }

func (c *handleCache[K, V]) get(k K, mk func(K) V) V {
	if v, ok := c.load()[k]; ok {
		return v
	}
	v := mk(k)
	c.add(k, v, handleCacheMax)
	return v
}

// request returns the requests counter for a label set.
func (m *metrics) request(k reqLabels) prometheus.Counter {
	return m.reqC.get(k, func(k reqLabels) prometheus.Counter {
		return m.requests.WithLabelValues(k.endpoint, k.model, k.role, k.service, strconv.Itoa(k.status))
	})
}

// upLatency returns the upstream latency histogram of a service.
func (m *metrics) upLatency(service string) prometheus.Observer {
	return m.latC.get(service, func(s string) prometheus.Observer { return m.latency.WithLabelValues(s) })
}

// upTTFT returns the TTFT histogram of a service.
func (m *metrics) upTTFT(service string) prometheus.Observer {
	return m.ttftC.get(service, func(s string) prometheus.Observer { return m.ttft.WithLabelValues(s) })
}

// evalLatency returns the policy evaluation histogram of an engine.
func (m *metrics) evalLatency(engine string) prometheus.Observer {
	return m.policyEvalC.get(engine, func(e string) prometheus.Observer { return m.policyEval.WithLabelValues(e) })
}

// inflightOf returns the in-flight gauge of an endpoint.
func (m *metrics) inflightOf(endpoint string) prometheus.Gauge {
	if g, ok := m.inflight[endpoint]; ok {
		return g
	}
	return m.inflightVec.WithLabelValues(endpoint)
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	buckets := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "geniehive_requests_total", Help: "Requests answered, by endpoint, resolved model, role, service and status.",
	}, []string{"endpoint", "model", "role", "service", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "geniehive_upstream_latency_seconds", Help: "Upstream time from request sent to last byte relayed.", Buckets: buckets,
	}, []string{"service"})
	m.ttft = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "geniehive_upstream_ttft_seconds", Help: "Upstream time to first token (first SSE data event, or whole answer when not streaming).", Buckets: buckets,
	}, []string{"service"})
	m.inflightVec = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "geniehive_inflight_requests", Help: "Requests this edge is serving now.",
	}, []string{"endpoint"})
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
	m.inflight = map[string]prometheus.Gauge{}
	for _, rt := range []string{endpointChat, endpointEmbeddings, endpointTranscription, endpointSpeech, endpointImages,
		endpointResponses, endpointMessages, endpointCountTokens, endpointCompletions} {
		m.inflight[rt] = m.inflightVec.WithLabelValues(rt)
	}
	m.policyEval = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "geniehive_policy_eval_seconds", Help: "Policy evaluation time per request, by engine (errors included).",
		Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
	}, []string{"engine"})
	m.redis = newRedisHook(m.reg)
	m.dataBuilds = prometheus.NewCounter(prometheus.CounterOpts{Name: "geniehive_policy_data_builds_total",
		Help: "Rebuilds of the policy data document (on a catalog or fleet-shape change, not on metric-only heartbeats)."})
	m.reg.MustRegister(m.dataBuilds)
	m.reg.MustRegister(m.policyEval)
	loadBuckets := []float64{.1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60, 120}
	m.swapWaits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "geniehive_swap_waits_total", Help: "Requests that waited for their model to be loaded (no live service had it loaded).",
	})
	m.swapWaitSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "geniehive_swap_wait_seconds", Help: "Time requests waited for a load, by result: loaded, timeout (swap.wait passed), loading (swap.wait passed while the model was still loading: a 503 model_loading), or stopping (the edge began to drain).", Buckets: loadBuckets,
	}, []string{"result"})
	m.swaps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "geniehive_swaps_total", Help: "Swap commands the controller on this edge saw end, by op (load, unload) and result (done, failed, expired).",
	}, []string{"op", "result"})
	m.swapSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "geniehive_swap_seconds", Help: "Time from sending a swap command to its result, by op (the load time histogram for op=load).", Buckets: loadBuckets,
	}, []string{"op"})
	m.swapRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "geniehive_swap_refused_total", Help: "Swap policy actions the hard limits refused, by op.",
	}, []string{"op"})
	m.swapDemand = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "geniehive_swap_demand", Help: "Requests waiting fleet-wide for each model to be loaded, as the controller saw them in its last round.",
	}, []string{"model"})
	m.reg.MustRegister(m.swapWaits, m.swapWaitSeconds, m.swaps, m.swapSeconds, m.swapRefused, m.swapDemand)
	m.reg.MustRegister(m.requests, m.latency, m.ttft, m.inflightVec, m.failovers, m.upErrors, m.aborted, m.policyReloads, m.policyActive,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) serve(ctx *fasthttp.RequestCtx) {
	mfs, err := m.reg.Gather()
	if err != nil {
		WriteError(ctx, err)
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
