package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/geniehive/geniehive/edge"
	"github.com/geniehive/geniehive/edge/clusterapi"
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/cli"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/routing"
	"github.com/geniehive/geniehive/state"
)

var edgeCmd = &cli.Command{
	Name:    "edge",
	Summary: "run an edge: the OpenAI-compatible gateway replica (stateless; state lives in Redis)",
	Usage: `edge [--config edge.yaml] [flags]

Serves the OpenAI API (/v1/chat/completions, /v1/embeddings,
/v1/audio/transcriptions, /v1/audio/speech, /v1/images/generations,
/v1/models), the cluster API (/v1/cluster/*), /metrics, /healthz and /readyz.
Run as many replicas as you like behind a load balancer; they share
everything through Redis. See edge/testdata/edge.example.yaml for every
setting (keys, timeouts, body caps, failover, routing, policy).

With no key configured and none stored in Redis, auth is OFF (a warning
is logged). SIGINT/SIGTERM drain in-flight requests and streams first.`,
}

func init() {
	edgeCmd.Run = runEdge
	cli.Register(edgeCmd)
}

// edgeFileConfig is the YAML file: the edge's own settings plus the routing
// and policy sections (decoded here into their packages' types).
type policySection struct {
	// Engine: wasm (Rego compiled to Wasm, default), rego (OPA Go SDK),
	// module (custom Wasm module) or go (plain-Go reference).
	Engine string `yaml:"engine"`
	// Dir is a bundle directory, watched and hot-reloaded; empty uses the
	// bundle pushed into Redis, else the shipped policy.
	Dir string `yaml:"dir"`
	// EvalTimeout bounds one Wasm evaluation (default 50ms).
	EvalTimeout time.Duration `yaml:"eval_timeout"`
}

func runEdge(args []string) error {
	var cfg edge.Config
	var configPath string
	fs := cli.NewFlagSet(edgeCmd)
	bindEdgeFlags(fs, &cfg, &configPath)
	var ov sectionOverrides
	ov.bind(fs)
	var pprofAddr string
	fs.StringVar(&pprofAddr, "pprof", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060; off by default; loopback only unless you mean it)")
	if err := cli.Parse(fs, args, &configPath, &cfg); err != nil {
		return err
	}
	if err := cfg.Provision(); err != nil {
		return fmt.Errorf("%w: %w", cli.ErrUsage, err)
	}
	log := newLogger(cfg.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if pprofAddr != "" {
		stopPprof, err := startPprof(pprofAddr, log)
		if err != nil {
			return fmt.Errorf("--pprof %s: %w", pprofAddr, err)
		}
		defer stopPprof()
	}
	c, err := state.Connect(ctx, state.Options{URL: cfg.Redis.URL, Username: cfg.Redis.Username, Password: cfg.Redis.Password})
	if err != nil {
		return fmt.Errorf("redis %s: %w", state.RedactURL(cfg.Redis.URL), err)
	}
	defer c.Close()
	store := state.New(c, cfg.Redis.Prefix)
	return serveEdge(ctx, cfg, ov, store, log, nil)
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

func bindEdgeFlags(fs *flag.FlagSet, cfg *edge.Config, configPath *string) {
	fs.StringVar(configPath, "config", "", "YAML config file (see edge/testdata/edge.example.yaml)")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "address to serve on")
	fs.StringVar(&cfg.ID, "id", "", "replica id in Redis (default hostname-pid)")
	fs.StringVar(&cfg.Redis.URL, "redis-url", "redis://127.0.0.1:6379/0", "Redis URL (redis://, rediss://, sentinel or cluster forms)")
	fs.StringVar(&cfg.Redis.Prefix, "prefix", "gh:", "prefix of every Redis key and channel")
	fs.StringVar(&cfg.Redis.Username, "redis-username", "", "Redis ACL user (overrides the URL's)")
	fs.StringVar(&cfg.Redis.Password, "redis-password", "", "Redis password (prefer the environment variable)")
	fs.IntVar(&cfg.Failover.Attempts, "failover-attempts", 3, "upstreams tried per request before the first byte")
	fs.DurationVar(&cfg.Timeouts.Request, "request-timeout", 10*time.Minute, "bound on a whole non-streaming upstream exchange")
	fs.DurationVar(&cfg.Timeouts.StreamIdle, "stream-idle-timeout", 5*time.Minute, "bound on upstream silence while streaming")
	fs.DurationVar(&cfg.Timeouts.Shutdown, "shutdown-timeout", 30*time.Second, "bound on draining in-flight requests at stop")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.Var(keyFlag{cfg}, "key", "a client key secret (repeatable; prefer keys in the config file or Redis)")
}

// keyFlag adds client keys from --key.
type keyFlag struct{ cfg *edge.Config }

func (k keyFlag) String() string { return "" }
func (k keyFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			k.cfg.Keys = append(k.cfg.Keys, edge.KeyConfig{ID: fmt.Sprintf("flag-%d", len(k.cfg.Keys)), Secret: s, Scope: fleet.ScopeOperator})
		}
	}
	return nil
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// serveEdge assembles an edge (watcher, in-flight, routing, policy, cluster
// API) over store and serves until ctx ends. ready, when set, is called with
// the listen address once serving.
// sectionOverrides are flags (and GENIEHIVE_* variables) for settings that
// live in the config file's routing: and policy: sections; set ones win.
type sectionOverrides struct {
	PolicyEngine, PolicyDir, Strategy string
	ProbeInterval                     time.Duration
}

func (o *sectionOverrides) bind(fs *flag.FlagSet) {
	fs.StringVar(&o.PolicyEngine, "policy-engine", "", "policy.engine: wasm (default), rego, module or go")
	fs.StringVar(&o.PolicyDir, "policy-dir", "", "policy.dir: bundle directory, watched and hot-reloaded")
	fs.StringVar(&o.Strategy, "strategy", "", "routing.default_strategy: scored (default), round_robin or least_loaded")
	fs.DurationVar(&o.ProbeInterval, "probe-interval", 0, "routing.probe_interval: active health probing period (0 = off)")
}

func serveEdge(ctx context.Context, cfg edge.Config, ov sectionOverrides, store *state.Store, log *slog.Logger, ready func(addr string)) error {
	var rcfg routing.Config
	if cfg.Routing.Kind != 0 {
		if err := cfg.Routing.Decode(&rcfg); err != nil {
			return fmt.Errorf("%w: routing section: %w", cli.ErrUsage, err)
		}
	}
	if ov.Strategy != "" {
		rcfg.DefaultStrategy = ov.Strategy
	}
	if ov.ProbeInterval > 0 {
		rcfg.ProbeInterval = ov.ProbeInterval
	}
	rcfg, err := rcfg.Provision()
	if err != nil {
		return fmt.Errorf("%w: routing section: %w", cli.ErrUsage, err)
	}
	var pcfg policySection
	if cfg.Policy.Kind != 0 {
		if err := cfg.Policy.Decode(&pcfg); err != nil {
			return fmt.Errorf("%w: policy section: %w", cli.ErrUsage, err)
		}
	}
	if ov.PolicyEngine != "" {
		pcfg.Engine = ov.PolicyEngine
	}
	if ov.PolicyDir != "" {
		pcfg.Dir = ov.PolicyDir
	}
	ectx, ecancel := context.WithTimeout(ctx, 2*time.Minute)
	holder, factory, err := startEngine(ectx, pcfg, store, log)
	ecancel()
	if err != nil {
		return err
	}
	engine := holder.AsEngine()
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	if err := store.LoadScripts(sctx); err != nil {
		log.Warn("loading Redis scripts failed; they load on first use", "err", err)
	}
	scancel()
	watcher := state.NewWatcher(store, state.WatcherOptions{Logger: log, Restore: true})
	inflight := state.NewInflight(store, cfg.ID, cfg.InflightLease)
	router, err := routing.New(rcfg, store, inflight)
	if err != nil {
		return err
	}
	srv, err := edge.New(cfg, edge.Deps{Store: store, Watcher: watcher, Inflight: inflight, Router: router, Engine: engine, Logger: log})
	if err != nil {
		return err
	}
	started := time.Now()
	srv.SetCluster(clusterapi.New(clusterapi.Deps{
		Store:     store,
		Snapshot:  watcher.Current,
		Router:    router,
		Authorize: srv.Authorize,
		Resolve: func(ctx context.Context, _ *fleet.Snapshot, in *policy.Input, out *policy.Decision) error {
			return srv.Engine().Eval(ctx, in, out)
		},
		Health: func() clusterapi.EdgeHealth {
			return clusterapi.EdgeHealth{ID: cfg.ID, Addr: srv.Addr(), StartedAt: started, InFlight: srv.Open()}
		},
		Policy: func() clusterapi.PolicyStatus {
			e := srv.Engine()
			return clusterapi.PolicyStatus{Engine: e.Name(), Version: e.Version(), Error: srv.PolicyError(), LoadedAt: srv.PolicyLoadedAt()}
		},
		Logger: log,
	}))

	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := watcher.Refresh(rctx); err != nil {
		log.Warn("first snapshot refresh failed; retrying in the background", "err", err)
	}
	cancel()
	go func() { _ = watcher.Run(bg) }()
	go inflight.Run(bg)
	go router.Run(bg, log)
	go reloadPolicies(bg, srv, watcher, holder, factory, pcfg, log)
	if rcfg.ProbeInterval > 0 {
		p := routing.NewProber(store, watcher.Current, routing.ProberOptions{ID: cfg.ID, Interval: rcfg.ProbeInterval, Lease: rcfg.ProbeLease, Timeout: rcfg.ProbeTimeout})
		go p.Run(bg)
	}
	if ready != nil {
		go func() {
			for srv.Addr() == "" && ctx.Err() == nil {
				time.Sleep(5 * time.Millisecond)
			}
			ready(srv.Addr())
		}()
	}
	err = srv.Run(ctx, nil)
	dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
	router.Drain(dctx)
	dcancel()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
