// Package edge is GenieHive's data plane: the stateless fasthttp server
// OpenAI clients talk to. It authenticates, reads the registry from the
// local snapshot (state.Watcher), asks the policy engine what to do
// (policy.Engine), asks the router where (routing.Planner), rewrites the body
// and proxies it with failover before the first byte, relaying SSE event by
// event. It serves /v1/models with GenieHive metadata, /metrics, the
// operator console (edge/console) at /ui/, and mounts the cluster API
// (edge/clusterapi) under /v1/cluster/.
//
// # Lifetime
//
// New builds a Server from a provisioned Config and its Deps; Run serves on
// a listener until its context ends, then stops accepting, drains in-flight
// requests and streams (bounded by Timeouts.Shutdown) and stops its
// background loops. A Server is safe for concurrent use. Hot reload of the
// policy happens behind Deps.Engine (a policies.Holder's AsEngine): the
// Server never swaps engines itself.
package edge

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/geniehive/geniehive/internal/tracing"
	"github.com/valyala/fasthttp"

	"github.com/geniehive/geniehive/edge/console"
	"github.com/geniehive/geniehive/edge/dialect"
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/routing"
	"github.com/geniehive/geniehive/state"
	"github.com/geniehive/geniehive/swap"
)

// ClusterHandler serves /v1/cluster/*. It is implemented by
// edge/clusterapi.API, which authorizes each route itself through
// Server.Authorize (reads need reader scope, changes operator scope).
// Handle reports whether it answered.
type ClusterHandler interface {
	Handle(ctx *fasthttp.RequestCtx) bool
}

// Deps are the parts a Server uses. Store is required; the rest default.
type Deps struct {
	Store *state.Store
	// Watcher provides snapshots. When nil, the Server creates one and runs it.
	Watcher *state.Watcher
	// Inflight counts requests cluster-wide. When nil, the Server creates one
	// (edge id = Config.ID) and runs it.
	Inflight *state.Inflight
	// Router picks services. When nil, a built-in router takes, per target,
	// every routable service in snapshot order.
	Router routing.Planner
	// Engine decides targets. When nil, policies.NewGo().
	Engine policy.Engine
	// Cluster serves /v1/cluster/*; nil answers 404 there.
	Cluster ClusterHandler
	Logger  *slog.Logger
	// TracerProvider, when set, traces every proxied request
	// (tracing.go; tracing.FromEnv builds one from OTEL_* variables).
	// It is GenieHive's recorder, not any trace.TracerProvider: the edge
	// records a request's spans as one tracing.Request. Nil: no tracing,
	// at no cost.
	TracerProvider *tracing.Provider
}

// Server is one edge replica.
type Server struct {
	cfg      Config
	store    *state.Store
	watcher  *state.Watcher
	ownWatch bool
	inflight *state.Inflight
	ownInfl  bool
	router   routing.Planner
	acct     routing.Accounter
	feedback routing.Feedback
	cluster  atomic.Pointer[clusterBox]
	log      *slog.Logger
	access   bool
	tr       atomic.Pointer[edgeTracer] // nil: no tracing (tracing.go)

	engine policy.Engine
	dataMu sync.Mutex // serialises SetData calls

	keys    *keyring
	met     *metrics
	stats   statsBatch
	clients upstreams
	models  modelsCache
	names   internTable // model names from requests

	srv          *fasthttp.Server
	started      atomic.Int64 // unix nanoseconds Run began (read by the cluster API's goroutines)
	open         atomic.Int64 // requests being served (incl. streams)
	unready      atomic.Bool  // stopping: /readyz answers 503 (requests still served)
	hadState     atomic.Bool  // a snapshot read from Redis was seen
	draining     atomic.Bool  // listener closing: new requests get 503 shutting_down
	authWarned   atomic.Bool
	policyErr    atomic.Pointer[string]
	dataErr      atomic.Pointer[string]                // the policy engine refused the latest data (degraded.go)
	dataVer      atomic.Uint64                         // Snapshot.DataVersion of the data the engine holds
	dataNow      func() time.Time                      // dataLoop's clock (tests); nil: time.Now
	services     atomic.Pointer[policies.ServiceIndex] // the services a request may name (policy.Input.Service), built with the data
	lastProblems atomic.Pointer[string]                // degraded.go: what logProblems logged last
	policyAt     atomic.Int64                          // unix nanoseconds the active engine was installed
	presenceKick chan struct{}
	// Model swapping (nil when swap.enabled is off): what requests use and
	// wait for, published for the controller; the waiters' wake-up.
	usage  *swap.Usage
	waiter *swap.Waiter
	// stopping is closed when the stop sequence begins (drain): long-lived
	// responses that are not requests in flight (the cluster event
	// streams) end on it, so the drain never waits for them.
	stopping    chan struct{}
	stopOnce    sync.Once
	addr        atomic.Value // string
	metricsAddr atomic.Value // string
}

type clusterBox struct{ h ClusterHandler }

// SetCluster mounts the cluster API (call before Run; safe any time).
func (s *Server) SetCluster(h ClusterHandler) {
	if h == nil {
		s.cluster.Store(nil)
		return
	}
	s.cluster.Store(&clusterBox{h})
}

// Authorize checks the caller's key for scope need; when it returns false
// it has already answered 401 or 403 in OpenAI format. With auth off (no
// key configured or stored) it allows everything.
func (s *Server) Authorize(ctx *fasthttp.RequestCtx, need fleet.Scope) bool {
	_, ok := s.authorize(ctx, need)
	return ok
}

// New builds a Server. cfg must have been provisioned (Config.Provision).
//
// # Errors
// A missing Store, or bad configured keys.
func New(cfg Config, d Deps) (*Server, error) {
	if d.Store == nil {
		return nil, errors.New("edge: Deps.Store is required")
	}
	if cfg.Listen == "" || cfg.Failover.Attempts == 0 {
		if err := cfg.Provision(); err != nil {
			return nil, err
		}
	}
	kr, err := newKeyring(cfg.Keys)
	if err != nil {
		return nil, err
	}
	kr.required = cfg.AuthRequired
	s := &Server{cfg: cfg, store: d.Store, watcher: d.Watcher, inflight: d.Inflight, router: d.Router,
		log: d.Logger, keys: kr, met: newMetrics(), access: *cfg.AccessLog, presenceKick: make(chan struct{}, 1),
		stopping: make(chan struct{})}
	s.tr.Store(newEdgeTracer(d.TracerProvider))
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.watcher == nil {
		s.watcher = state.NewWatcher(d.Store, state.WatcherOptions{Logger: s.log})
		s.ownWatch = true
	}
	if s.inflight == nil {
		s.inflight = state.NewInflight(d.Store, cfg.ID, cfg.InflightLease)
		s.ownInfl = true
	}
	if s.router == nil {
		s.router = simpleRouter{}
	}
	if cfg.Swap.Enabled {
		s.usage, s.waiter = swap.NewUsage(), swap.NewWaiter()
	}
	s.acct, _ = s.router.(routing.Accounter)
	s.feedback, _ = s.router.(routing.Feedback)
	e := d.Engine
	if e == nil {
		e = policies.NewGo()
	}
	s.engine = e
	s.clients.cfg = &s.cfg
	s.SetCluster(d.Cluster)
	s.registerDegraded()
	s.met.reg.MustRegister(newSnapCollector(s))
	s.srv = &fasthttp.Server{
		Handler:            s.Handler,
		ErrorHandler:       s.errorHandler,
		Name:               "geniehive",
		ReadTimeout:        cfg.Timeouts.Read,
		WriteTimeout:       cfg.Timeouts.Write,
		IdleTimeout:        cfg.Timeouts.Idle,
		MaxRequestBodySize: cfg.maxBody(),
		// Bodies are read by the handlers (readBody), after the key and the
		// declared size were checked from the headers, into buffers that
		// grow as bytes arrive.
		StreamRequestBody:             true,
		DisablePreParseMultipartForm:  true,
		Concurrency:                   cfg.MaxConns,
		MaxConnsPerIP:                 cfg.maxConnsPerIP(),
		ReadBufferSize:                int(cfg.MaxHeaderBytes),
		DisableHeaderNamesNormalizing: false,
		NoDefaultServerHeader:         false,
		CloseOnShutdown:               true,
		ReduceMemoryUsage:             false,
		Logger:                        fasthttpLogger{s.log},
	}
	s.srv.HeaderReceived = s.headerReceived
	s.srv.ExpectHandler = s.expectContinue
	return s, nil
}

// PolicyReloaded records the outcome of a policy reload: err nil means the
// engine now active was just swapped in; otherwise the bundle was refused
// and the running engine stays. The error shows in the presence record
// (geniehive policy status, /v1/cluster/policy), /v1/cluster/health and the
// geniehive_policy_reloads_total metric; presence is refreshed at once.
func (s *Server) PolicyReloaded(err error) {
	if err != nil {
		msg := err.Error()
		s.policyErr.Store(&msg)
		s.met.policyReloads.WithLabelValues("refused").Inc()
	} else {
		s.policyErr.Store(nil)
		s.policyAt.Store(time.Now().UnixNano())
		s.met.policyReloads.WithLabelValues("ok").Inc()
		e := s.Engine()
		s.met.policyActive.Reset()
		s.met.policyActive.WithLabelValues(e.Name(), e.Version()).Set(1)
	}
	select {
	case s.presenceKick <- struct{}{}:
	default:
	}
}

// PolicyLoadedAt is when the active policy engine was installed (the
// edge's start, or the last successful reload).
func (s *Server) PolicyLoadedAt() time.Time {
	if ns := s.policyAt.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return s.startedAt()
}

// startedAt is when Run began (zero before).
func (s *Server) startedAt() time.Time {
	if ns := s.started.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// PolicyError is the last refused reload's error ("" when the last reload
// succeeded or none failed).
func (s *Server) PolicyError() string {
	if p := s.policyErr.Load(); p != nil {
		return *p
	}
	return ""
}

// Engine returns the current policy engine.
func (s *Server) Engine() policy.Engine { return s.engine }

// Watcher returns the snapshot source.
func (s *Server) Watcher() *state.Watcher { return s.watcher }

// Inflight returns the in-flight tracker.
func (s *Server) Inflight() *state.Inflight { return s.inflight }

// Stopping is closed when the edge begins to stop (the moment /readyz
// turns 503). Long-lived answers that are not requests in flight, such as
// the cluster event streams, end on it so the drain never waits for them.
func (s *Server) Stopping() <-chan struct{} { return s.stopping }

// Open reports how many requests the edge is serving (streams included).
func (s *Server) Open() int64 { return s.open.Load() }

// Addr is the address Run listens on ("" before Run).
func (s *Server) Addr() string { v, _ := s.addr.Load().(string); return v }

// Run serves on ln (or on Config.Listen when ln is nil) until ctx is done,
// then shuts down gracefully: /readyz turns 503 at once, the edge keeps
// serving for Timeouts.ShutdownDelay, then stops accepting, waits for
// in-flight requests and streams to end (at most Timeouts.Shutdown), stops
// and awaits its background loops (the stats loop flushes a last time) and
// removes its presence record. Run returns only when all of that is done.
//
// # Errors
// Listen errors and a first snapshot refresh failure are returned; Redis
// errors later are logged and retried (the edge keeps serving from its
// last snapshot).
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.Listen); err != nil {
			return err
		}
	}
	s.addr.Store(ln.Addr().String())
	s.started.Store(time.Now().UnixNano())
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	stopped := false
	defer func() {
		if !stopped {
			stopBG()
			wg.Wait()
		}
	}()
	if s.ownWatch {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.watcher.Refresh(rctx)
		cancel()
		if err != nil {
			s.log.Warn("first snapshot refresh failed; serving an empty registry until Redis answers", "err", err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.watcher.Run(bg) }()
	}
	if s.ownInfl {
		wg.Add(1)
		go func() { defer wg.Done(); s.inflight.Run(bg) }()
	}
	changes := s.watcher.Changes() // before the first push: a snapshot in between is not missed
	first := s.watcher.Current()
	s.pushData(bg, first)
	wg.Add(3)
	go func() { defer wg.Done(); s.dataLoop(bg, changes, first.DataVersion) }()
	go func() { defer wg.Done(); s.statsLoop(bg) }()
	go func() { defer wg.Done(); s.presenceLoop(bg) }()
	if s.usage != nil {
		wake := s.watcher.Changes()
		wg.Add(2)
		go func() { defer wg.Done(); s.waiter.Run(bg, wake) }()
		go func() {
			defer wg.Done()
			swap.Publish(bg, s.store, s.cfg.ID, s.usage, s.cfg.Swap.Interval, func(err error) { s.log.Warn("swap usage not published", "err", err) })
		}()
	}

	if s.keys.noKeyEver(s.watcher.Current()) {
		if s.cfg.AuthRequired {
			ln.Close()
			return errors.New("auth_required is set but no key is configured or stored in Redis (add keys: to the edge config, or geniehive keys add)")
		}
		s.log.Warn("AUTH IS OFF: no keys configured and none in Redis; anyone who can reach " + ln.Addr().String() + " may use every model. Add keys (edge config keys: or geniehive keys add) to turn it on.")
		s.authWarned.Store(true)
	}
	s.log.Info("edge listening", "addr", ln.Addr().String(), "id", s.cfg.ID, "engine", s.Engine().Name(), "policy_version", s.Engine().Version())

	if s.cfg.Metrics.Listen != "" {
		stopped, err := s.runMetricsListener(bg)
		if err != nil {
			ln.Close()
			return err
		}
		wg.Add(1)
		go func() { defer wg.Done(); <-stopped }()
	}
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	err := s.drain()
	s.clients.closeIdle()
	stopped = true
	// Stop the background loops before removing the presence record (a
	// presence write racing the removal would resurrect it): the stats
	// loop flushes once more on its way out.
	stopBG()
	wg.Wait()
	rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = s.store.RemoveEdge(rctx, s.cfg.ID)
	rcancel()
	return err
}

// drain is the stop sequence: /readyz answers 503 at once (so the load
// balancer takes this replica out) while the edge keeps serving for
// Timeouts.ShutdownDelay; then the listener closes and in-flight requests
// and streams get Timeouts.Shutdown to finish.
func (s *Server) drain() error {
	s.unready.Store(true)
	s.stopOnce.Do(func() { close(s.stopping) })
	if d := s.cfg.Timeouts.ShutdownDelay; d > 0 {
		s.log.Info("edge stopping: /readyz answers 503; still serving for the shutdown delay", "delay", d)
		time.Sleep(d)
	}
	s.draining.Store(true)
	s.log.Info("edge shutting down: draining in-flight requests", "open", s.open.Load(), "timeout", s.cfg.Timeouts.Shutdown)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeouts.Shutdown)
	defer cancel()
	err := s.srv.ShutdownWithContext(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("shutdown deadline passed with requests still open", "open", s.open.Load())
		return nil
	}
	return err
}

// serveReady answers /readyz, the load balancer's health check: 503 from
// the moment the edge is told to stop (with Connection: close), and before
// it ever read the shared state; 200 otherwise. A Redis outage after that
// keeps it ready: the edge serves from its snapshot (the body says
// "redis":"down"), and taking every replica out of the pool at once would
// turn a Redis restart into an outage.
func (s *Server) serveReady(ctx *fasthttp.RequestCtx) {
	snap := s.watcher.Current()
	if snap.RedisOK {
		s.hadState.Store(true)
	}
	ctx.SetContentType("application/json")
	switch {
	case s.unready.Load():
		ctx.SetConnectionClose()
		ctx.SetStatusCode(503)
		ctx.SetBodyString(`{"status":"stopping"}`)
	case !s.hadState.Load():
		ctx.SetStatusCode(503)
		ctx.SetBodyString(`{"status":"not ready","redis":"down"}`)
	case s.Engine().Name() == policies.UnavailableName:
		ctx.SetStatusCode(503)
		ctx.SetBody(readyBody("not ready: no usable policy", false, s.problems(snap)))
	default:
		ctx.SetBody(readyBody("ready", !snap.RedisOK, s.problems(snap)))
	}
}

// pushData rebuilds the policy data document from snap and installs it;
// it reports whether the engine took it.
func (s *Server) pushData(ctx context.Context, snap *fleet.Snapshot) bool {
	s.met.dataBuilds.Inc()
	d := policies.BuildData(snap)
	ix := policies.BuildServiceIndex(snap)
	s.services.Store(&ix) // Go's own: in force whether or not the engine takes d
	s.dataMu.Lock()
	defer s.dataMu.Unlock()
	if err := s.Engine().SetData(ctx, d); err != nil {
		// Reported (logged when it first appears, /readyz, health,
		// geniehive_degraded{reason="policy_data_refused"}): degraded.go.
		msg := "policy engine refused the data of snapshot " + strconv.FormatUint(snap.Version, 10) + "; deciding on the previous data: " + err.Error()
		s.dataErr.Store(&msg)
		return false
	}
	s.dataErr.Store(nil)
	s.dataVer.Store(snap.DataVersion)
	return true
}

// PolicyDataVersion is the Snapshot.DataVersion whose policy data the
// engine decides on. The data follows the snapshot asynchronously (dataLoop):
// for a moment after a node registers a model, the snapshot lists it while
// the policy does not yet; a caller that must see both waits for this to
// reach the snapshot's DataVersion.
func (s *Server) PolicyDataVersion() uint64 { return s.dataVer.Load() }

// Retry cadence of a refused policy data push (dataLoop): the first retry
// of unchanged inputs comes dataRetryMin after the refusal, each further
// one twice as late, up to dataRetryMax; new inputs (a new DataVersion)
// are tried at once, but never sooner than dataRetryMin after the last
// attempt. A refusal is not transient as a rule (the data does not fit the
// guest, the policy rejects it): rebuilding it for every snapshot only
// burnt a core at 10,000 nodes (docs/CAPACITY.md).
const (
	dataRetryMin = time.Second
	dataRetryMax = 30 * time.Second
)

// dataLoop follows the snapshots: it rebuilds the policy data document
// only when its inputs changed (Snapshot.DataVersion: the catalog or the
// fleet's services and assets), never for heartbeats that only move
// metrics. After the engine refused a document, it retries on the
// dataRetryMin/dataRetryMax schedule with the latest snapshot, while the
// refusal stays reported (degraded.go) until a push succeeds. pushed is
// the DataVersion installed before the loop started.
func (s *Server) dataLoop(ctx context.Context, changes <-chan *fleet.Snapshot, pushed uint64) {
	now := s.dataNow
	if now == nil {
		now = time.Now
	}
	ok := s.dataErr.Load() == nil
	var wait time.Duration     // while !ok: the delay before unchanged inputs are retried
	var last time.Time         // the last attempt
	var latest *fleet.Snapshot // the newest snapshot seen, retried by the timer
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	refused := func() {
		wait = min(max(2*wait, dataRetryMin), dataRetryMax)
		retry.Reset(wait)
	}
	attempt := func(snap *fleet.Snapshot) {
		ok = s.pushData(ctx, snap)
		pushed = snap.DataVersion
		last = now()
		if ok {
			wait = 0
			retry.Stop()
			return
		}
		refused()
	}
	if !ok {
		last = now()
		refused()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-retry.C:
			snap := latest
			if snap == nil { // refused before the loop started, no snapshot since
				snap = s.watcher.Current()
			}
			if !ok && snap != nil {
				if d := last.Add(wait).Sub(now()); d > 0 {
					retry.Reset(d) // the loop's clock says not yet (a test's clock)
				} else {
					attempt(snap)
				}
			}
		case snap := <-changes:
			latest = snap
			switch {
			case ok && snap.DataVersion != pushed:
				attempt(snap)
			case !ok && snap.DataVersion != pushed && now().Sub(last) >= dataRetryMin:
				attempt(snap)
			case !ok && now().Sub(last) >= wait:
				attempt(snap) // the retry is due on the loop's clock
			}
			s.logProblems(snap)
			if s.authWarned.Load() && s.keys.authEnabled(snap) {
				s.authWarned.Store(false)
				s.log.Warn("auth is now ON: keys appeared in Redis")
			}
		}
	}
}

func (s *Server) presenceLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.PresenceInterval)
	defer t.Stop()
	for {
		e := s.Engine()
		snap := s.watcher.Current()
		info := fleet.EdgeInfo{ID: s.cfg.ID, Addr: s.Addr(), StartedAt: s.startedAt(), Version: BuildVersion(),
			PolicyVersion: e.Version(), PolicyEngine: e.Name(), PolicyError: s.PolicyError(),
			SnapshotVersion: snap.Version, SnapshotBuiltAt: snap.BuiltAt}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := s.store.PutEdge(pctx, info, 3*s.cfg.PresenceInterval); err != nil && ctx.Err() == nil {
			s.log.Debug("presence write failed", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.presenceKick:
		}
	}
}

// errorHandler answers requests fasthttp could not parse, in OpenAI format:
// Classify's mapping, except that a timeout here is the client's (408: the
// request did not arrive in time) and anything else is a malformed request.
func (s *Server) errorHandler(ctx *fasthttp.RequestCtx, err error) {
	e := Classify(err)
	switch {
	case e == errTooLarge || e == errHeadersTooLarge:
	case isTimeout(err):
		e = &APIError{Status: 408, Type: "invalid_request_error", Code: "request_timeout", Message: "request not received in time"}
	default:
		e = badRequest("malformed_request", "", "malformed HTTP request")
	}
	writeError(ctx, e)
}

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	if f.l.Enabled(context.Background(), slog.LevelDebug) {
		f.l.Debug("fasthttp", "msg", format, "args", args)
	}
}

// Handler is the edge's fasthttp request handler.
func (s *Server) Handler(ctx *fasthttp.RequestCtx) {
	path := ctx.Path()
	switch {
	case len(path) > 4 && string(path[:4]) == "/v1/":
		s.serveV1(ctx, path[3:])
	case string(path) == "/metrics":
		s.serveMetrics(ctx)
	case string(path) == "/healthz" || string(path) == "/livez":
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"status":"ok"}`)
	case string(path) == "/readyz":
		s.serveReady(ctx)
	case *s.cfg.Console && (string(path) == "/ui" || len(path) >= 4 && string(path[:4]) == "/ui/"):
		console.Serve(ctx)
	default:
		writeError(ctx, errNotFound)
	}
}

// Endpoint labels (the "endpoint" label of metrics and access logs): which
// OpenAI API a request used. ("Route" means a routing decision elsewhere.)
const (
	endpointChat          = "chat"
	endpointEmbeddings    = "embeddings"
	endpointTranscription = "transcription"
	endpointSpeech        = "speech"
	endpointImages        = "images"
	endpointModels        = "models"
	endpointCluster       = "cluster"
)

// inferenceRoutes are the POST routes that proxy to an upstream of a kind.
var inferenceRoutes = [...]struct {
	path, full, endpoint string
	kind                 fleet.Kind
	api                  dialect.API // the agent-facing APIs: dialects.go
}{
	{"/chat/completions", "/v1/chat/completions", endpointChat, fleet.KindChat, dialect.APIChat},
	{"/embeddings", "/v1/embeddings", endpointEmbeddings, fleet.KindEmbeddings, dialect.APIChat},
	{"/audio/transcriptions", "/v1/audio/transcriptions", endpointTranscription, fleet.KindTranscription, dialect.APIChat},
	{"/audio/speech", "/v1/audio/speech", endpointSpeech, fleet.KindSpeech, dialect.APIChat},
	{"/images/generations", "/v1/images/generations", endpointImages, fleet.KindImages, dialect.APIChat},
	{"/responses", "/v1/responses", endpointResponses, fleet.KindChat, dialect.APIResponses},
	{"/messages", "/v1/messages", endpointMessages, fleet.KindChat, dialect.APIMessages},
	{"/messages/count_tokens", "/v1/messages/count_tokens", endpointCountTokens, fleet.KindChat, dialect.APICountTokens},
	{"/completions", "/v1/completions", endpointCompletions, fleet.KindChat, dialect.APICompletions},
}

func (s *Server) serveV1(ctx *fasthttp.RequestCtx, p []byte) {
	for i := range inferenceRoutes {
		r := &inferenceRoutes[i]
		if string(p) != r.path {
			continue
		}
		if !ctx.IsPost() {
			writeError(ctx, errMethod)
			return
		}
		s.serveInference(ctx, r.kind, r.api, r.endpoint, r.full)
		return
	}
	switch string(p) {
	case "/models":
		if !ctx.IsGet() && !ctx.IsHead() {
			writeError(ctx, errMethod)
			return
		}
		if _, ok := s.authorize(ctx, fleet.ScopeClient); !ok {
			return
		}
		if len(ctx.Request.Header.Peek("anthropic-version")) > 0 {
			s.serveAnthropicModels(ctx)
			return
		}
		s.serveModels(ctx, "")
	default:
		switch {
		case strings.HasPrefix(string(p), "/models/"):
			if !ctx.IsGet() && !ctx.IsHead() {
				writeError(ctx, errMethod)
				return
			}
			if _, ok := s.authorize(ctx, fleet.ScopeClient); !ok {
				return
			}
			s.serveModels(ctx, string(p[len("/models/"):]))
		case strings.HasPrefix(string(p), "/cluster/") || string(p) == "/cluster":
			s.serveCluster(ctx)
		default:
			writeError(ctx, unsupportedEndpoint(ctx))
		}
	}
}

// unsupportedEndpoint is the 404 for a path under /v1 the edge does not
// serve (the OpenAI API has more endpoints than a gateway to self-hosted
// models proxies).
func unsupportedEndpoint(ctx *fasthttp.RequestCtx) *APIError {
	return &APIError{Status: 404, Type: "invalid_request_error", Code: "unknown_endpoint",
		Message: "endpoint not supported: " + string(ctx.Method()) + " " + string(ctx.Path()) + " (docs/API.md lists what GenieHive serves)"}
}

// authorize checks the caller's key for scope need; it answers 401/403
// itself and returns ok=false then. With auth off it returns (nil, true).
//
// A request with two Authorization (or two X-Api-Key) headers is answered
// 400 whether auth is on or not: which one counts would be a guess.
func (s *Server) authorize(ctx *fasthttp.RequestCtx, need fleet.Scope) (*fleet.APIKey, bool) {
	if duplicateKeyHeader(&ctx.Request.Header) {
		writeError(ctx, errDuplicateKeyHeader)
		return nil, false
	}
	snap := s.watcher.Current()
	if !s.keys.authEnabled(snap) {
		return nil, true
	}
	k := s.keys.lookup(presentedKey(&ctx.Request.Header), snap)
	if k == nil {
		writeError(ctx, errUnauthorized)
		return nil, false
	}
	if !k.Scope.Allows(need) {
		writeError(ctx, errForbiddenScope)
		return nil, false
	}
	return k, true
}
