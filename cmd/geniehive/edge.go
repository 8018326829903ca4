package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/geniehive/geniehive/edge"
	"github.com/geniehive/geniehive/edge/replica"
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/cli"
	"github.com/geniehive/geniehive/internal/gcfloor"
	"github.com/geniehive/geniehive/internal/tracing"
)

var edgeCmd = &cli.Command{
	Name:    "edge",
	Summary: "run an edge: the OpenAI-compatible gateway replica (stateless; state lives in Redis)",
	Usage: `edge [--config edge.yaml] [flags]

Serves the OpenAI API (/v1/chat/completions, /v1/embeddings,
/v1/audio/transcriptions, /v1/audio/speech, /v1/images/generations,
/v1/models), the cluster API (/v1/cluster/*), the operator console (/ui/),
/metrics, /healthz and /readyz.
Run as many replicas as you like behind a load balancer; they share
everything through Redis. See edge/testdata/edge.example.yaml for every
setting (keys, timeouts, body caps, failover, routing, policy).

Settings come, in increasing precedence, from the YAML file (--config),
GENIEHIVE_* environment variables and flags; a flag that is set wins even
when it is zero (--probe-interval 0 turns probing off).

With no key configured and none stored in Redis, auth is OFF (a warning
is logged). On SIGINT/SIGTERM /readyz answers 503 at once, the edge keeps
serving for --shutdown-delay (default 5s) so the load balancer takes it
out, then stops accepting and drains in-flight requests and streams.

OpenTelemetry traces are off unless OTEL_TRACES_EXPORTER=otlp; then every
proxied request is traced and exported over OTLP as the standard variables
say (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
or grpc, OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME, ...; see the README).`,
}

func init() {
	edgeCmd.Run = runEdge
	cli.Register(edgeCmd)
}

// edgeSettings are the edge's flags: one flag per setting, each bound to
// its key in the config file; GENIEHIVE_<FLAG> sets it from the
// environment.
var edgeSettings = []cli.Setting{
	{Flag: "listen", Key: "listen", Help: "address to serve on (default 127.0.0.1:8080)"},
	{Flag: "id", Key: "id", Help: "replica id in Redis (default hostname-pid)"},
	{Flag: "redis-url", Key: "redis.url", Help: "Redis URL: redis://, rediss://, sentinel or cluster forms (default redis://127.0.0.1:6379/0)"},
	{Flag: "prefix", Key: "redis.prefix", Help: "prefix of every Redis key and channel (default gh:)"},
	{Flag: "redis-username", Key: "redis.username", Help: "Redis ACL user (overrides the URL's)"},
	{Flag: "redis-password", Key: "redis.password", Help: "Redis password (prefer the environment variable)"},
	{Flag: "auth-required", Key: "auth_required", Bool: true, Help: "refuse to start without any key instead of running with auth off"},
	{Flag: "failover-attempts", Key: "failover.attempts", Help: "upstreams tried per request before the first byte (default 3)"},
	{Flag: "request-timeout", Key: "timeouts.request", Help: "bound on a whole non-streaming upstream exchange (default 10m)"},
	{Flag: "stream-idle-timeout", Key: "timeouts.stream_idle", Help: "bound on upstream silence while streaming (default 5m)"},
	{Flag: "shutdown-timeout", Key: "timeouts.shutdown", Help: "bound on draining in-flight requests at stop (default 30s)"},
	{Flag: "shutdown-delay", Key: "timeouts.shutdown_delay", Help: "at stop, keep serving this long after /readyz turned 503 so the load balancer takes the replica out first (default 5s; 0 stops at once)"},
	{Flag: "log-level", Key: "log_level", Help: "debug, info, warn or error (default info)"},
	{Flag: "strategy", Key: "routing.default_strategy", Help: "routing.default_strategy: scored (default), round_robin or least_loaded"},
	{Flag: "probe-interval", Key: "routing.probe_interval", Help: "routing.probe_interval: active health probing period (0 = off, the default)"},
	{Flag: "swap", Key: "swap.enabled", Bool: true, Help: "swap.enabled: load and unload models by demand (one edge at a time runs the controller; requests wait for loads); off by default"},
	{Flag: "swap-wait", Key: "swap.wait", Help: "swap.wait: how long a request waits for its model to be loaded before going to a host that loads it on demand, or failing with a retryable 503 model_loading while a load is still under way (default 30s)"},
	{Flag: "policy-engine", Key: "policy.engine", Help: "policy.engine: wasm (default), rego, module or go"},
	{Flag: "policy-dir", Key: "policy.dir", Help: "policy.dir: bundle directory, watched and hot-reloaded"},
	{Flag: "policy-eval-timeout", Key: "policy.eval_timeout", Help: "policy.eval_timeout: bound on one policy evaluation, every engine but go (default 250ms)"},
	{Flag: "policy-prepare-timeout", Key: "policy.prepare_timeout", Help: "policy.prepare_timeout: budget to test, compile and smoke-test a new bundle, off the request path (default 30s)"},
	{Flag: "policy-max-memory-mib", Key: "policy.max_memory_mib", Help: "policy.max_memory_mib: cap on each Wasm policy instance's memory, which holds the policy data (default 16 for wasm, 64 for module; raise it for fleets of thousands of distinct assets)"},
	{Flag: "policy-retry-interval", Key: "policy.retry_interval", Help: "policy.retry_interval: first retry after a transient reload failure, doubling up to 30s (default 1s)"},
	{Flag: "gc-headroom-mib", Key: "gc_headroom_mib", Help: "gc_headroom_mib: least heap growth in MiB between garbage collections, so a small heap is not collected (and the fleet snapshot marked) every few MB allocated; memory grows by up to this much (default 64; 0 = GOGC's pace; GOGC=off disables it)"},
	{Flag: "key", List: true, Help: "a CLIENT-scope key secret (repeatable, or comma-separated); added to the file's keys: (prefer keys in the file, as sha256, or in Redis)"},
	{Flag: "pprof", Help: "serve net/http/pprof on this address (e.g. 127.0.0.1:6060; off by default; loopback only unless you mean it)"},
}

// loadEdgeConfig layers defaults, the config file, the environment and
// the flags into a provisioned replica.Config. Keys from --key are added
// to the file's (never replacing them) with client scope.
func loadEdgeConfig(args []string) (replica.Config, *cli.Layers, error) {
	var cfg replica.Config
	fs := cli.NewFlagSet(edgeCmd)
	layers, err := cli.Load(fs, args, edgeSettings, replica.Defaults(), true, &cfg)
	if err != nil {
		return cfg, nil, err
	}
	if err := cli.NoArgs("edge", layers.Args); err != nil {
		return cfg, nil, err
	}
	for _, s := range layers.Extra["key"] {
		cfg.Edge.Keys = append(cfg.Edge.Keys, edge.KeyConfig{ID: fmt.Sprintf("flag-%d", len(cfg.Edge.Keys)), Secret: s, Scope: fleet.ScopeClient})
	}
	if err := cfg.Provision(); err != nil {
		return cfg, nil, fmt.Errorf("%w: %w", cli.ErrUsage, err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, nil, fmt.Errorf("%w: %w", cli.ErrUsage, err)
	}
	return cfg, layers, nil
}

func runEdge(args []string) error {
	cfg, layers, err := loadEdgeConfig(args)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Edge.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.GCHeadroomMiB > 0 && !gcfloor.Set(uint64(cfg.GCHeadroomMiB)<<20) {
		log.Info("GOGC=off: gc_headroom_mib has nothing to do")
	}
	if p := layers.Extra["pprof"]; len(p) > 0 {
		addr := p[len(p)-1]
		stopPprof, err := startPprof(addr, log)
		if err != nil {
			return fmt.Errorf("--pprof %s: %w", addr, err)
		}
		defer stopPprof()
	}
	// OpenTelemetry traces: off unless OTEL_TRACES_EXPORTER=otlp
	// (internal/tracing reads the OTEL_* variables).
	tp, stopTracing, err := tracing.FromEnv(ctx, "geniehive-edge")
	if err != nil {
		return fmt.Errorf("%w: %w", cli.ErrUsage, err)
	}
	if stopTracing != nil {
		log.Info("tracing on: OTLP export per the OTEL_* environment")
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := stopTracing(sctx); err != nil {
				log.Warn("flushing traces", "err", err)
			}
		}()
	}
	r, err := replica.New(ctx, cfg, replica.Options{Logger: log, TracerProvider: tp})
	if err != nil {
		return err
	}
	defer r.Close()
	return r.Run(ctx)
}

// startPprof serves the runtime profiles (net/http/pprof) on addr, apart
// from the edge's own listener, for profiling a live edge:
//
//	go tool pprof http://127.0.0.1:6060/debug/pprof/profile?seconds=10
func startPprof(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	log.Warn("pprof listener on; it exposes runtime internals, keep it on loopback", "addr", ln.Addr().String())
	return func() { _ = hs.Close() }, nil
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
