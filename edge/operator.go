package edge

import (
	"context"
	"net"

	"github.com/valyala/fasthttp"

	"github.com/geniehive/geniehive/fleet"
)

// clusterBodyLimit caps a request body on /v1/cluster/* (benchmark
// reports, routes/match); the cluster API may cap lower.
const clusterBodyLimit = 8 << 20

// serveCluster authenticates (every cluster route needs at least reader
// scope) before anything else — an unknown path answers 404 only to a
// caller with a key, so the API cannot be enumerated anonymously — then
// reads the body, bounded, and hands the request to the cluster API.
func (s *Server) serveCluster(ctx *fasthttp.RequestCtx) {
	if _, ok := s.authorize(ctx, fleet.ScopeReader); !ok {
		return
	}
	var bb bbuf // operator path: a plain allocation, nothing pooled
	body, err := readBody(ctx, clusterBodyLimit, &bb)
	if err != nil {
		writeError(ctx, Classify(err))
		return
	}
	ctx.Request.SetBodyRaw(body)
	if c := s.cluster.Load(); c != nil && c.h.Handle(ctx) {
		return
	}
	writeError(ctx, errNotFound)
}

// serveMetrics answers /metrics on the main listener: not at all when
// metrics.listen moved it to a listener of its own; with auth_required,
// only to a key of reader or operator scope (the series name services,
// models, roles and counts).
func (s *Server) serveMetrics(ctx *fasthttp.RequestCtx) {
	if s.cfg.Metrics.Listen != "" {
		writeError(ctx, errNotFound)
		return
	}
	if s.cfg.AuthRequired {
		if _, ok := s.authorize(ctx, fleet.ScopeReader); !ok {
			return
		}
	}
	s.met.serve(ctx)
}

// metricsHandler serves the separate metrics listener: /metrics and
// /healthz, open (it is meant for a private network).
func (s *Server) metricsHandler(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/metrics":
		s.met.serve(ctx)
	case "/healthz", "/livez":
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"status":"ok"}`)
	default:
		writeError(ctx, errNotFound)
	}
}

// runMetricsListener serves metrics.listen until ctx ends. It returns the
// listen error at once, nil otherwise; stopped is closed when it ended.
func (s *Server) runMetricsListener(ctx context.Context) (stopped chan struct{}, err error) {
	ln, err := net.Listen("tcp", s.cfg.Metrics.Listen)
	if err != nil {
		return nil, err
	}
	s.metricsAddr.Store(ln.Addr().String())
	srv := &fasthttp.Server{Handler: s.metricsHandler, Name: "geniehive", ReadTimeout: s.cfg.Timeouts.Read,
		WriteTimeout: s.cfg.Timeouts.Write, IdleTimeout: s.cfg.Timeouts.Idle, MaxRequestBodySize: 1 << 10,
		Concurrency: 256, Logger: fasthttpLogger{s.log}}
	stopped = make(chan struct{})
	go func() {
		defer close(stopped)
		go func() { <-ctx.Done(); _ = srv.Shutdown() }()
		if err := srv.Serve(ln); err != nil {
			s.log.Error("metrics listener failed", "err", err)
		}
	}()
	return stopped, nil
}

// MetricsAddr is the address of the separate metrics listener ("" when
// there is none, or before Run).
func (s *Server) MetricsAddr() string { v, _ := s.metricsAddr.Load().(string); return v }
