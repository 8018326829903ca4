// Package replica is the composition root of an edge: it builds one
// replica — Redis client, snapshot watcher, in-flight tracker, router,
// prober, policy holder with hot reload, the edge server and its cluster
// API — from one typed Config, runs it, and takes it down.
//
// # Lifecycle
//
//	cfg.Provision()  // defaults
//	cfg.Validate()
//	r, err := replica.New(ctx, cfg, replica.Options{...})
//	err = r.Run(ctx) // serves until ctx is done; returns when every goroutine it started has returned
//	r.Close()        // policy engines released, Redis client closed (when New opened it)
//
// Run starts every background goroutine (watcher, in-flight flusher,
// router health loop, prober, policy reload and directory watch, and the
// server's own data/stats/presence loops) under one group and awaits them
// all before it returns: by then the last in-flight removals and stats have
// been written and the presence record is gone. `geniehive edge`,
// `geniehive dev` and the tests all build edges here.
//
// A Replica is not reusable: Run once, then Close.
package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/geniehive/geniehive/internal/tracing"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/geniehive/geniehive/edge"
	"github.com/geniehive/geniehive/edge/clusterapi"
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policies/opa"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/routing"
	"github.com/geniehive/geniehive/state"
	"github.com/geniehive/geniehive/swap"
)

// Options are what a replica takes from its caller rather than its config.
type Options struct {
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Store, when set, is used instead of connecting to Config.Edge.Redis
	// (the caller keeps owning its client, and adds Server().RedisHook()
	// to it for the Redis metrics).
	Store *state.Store
	// Listener, when set, is served instead of listening on
	// Config.Edge.Listen.
	Listener net.Listener
	// Ready, when set, is called once with the address being served.
	Ready func(addr string)
	// TracerProvider, when set, traces every proxied request (see
	// edge.Deps.TracerProvider); nil: no tracing.
	TracerProvider *tracing.Provider
}

// Replica is one running edge.
type Replica struct {
	cfg     Config
	log     *slog.Logger
	client  redis.UniversalClient // owned: closed by Close
	store   *state.Store
	holder  *policies.Holder
	factory policy.Factory
	// refused is the version of the pushed bundle refused for its content
	// at start (startEngine), so reloadPushed does not refuse it again.
	refused  string
	watcher  *state.Watcher
	inflight *state.Inflight
	router   *routing.Router
	srv      *edge.Server
	api      *clusterapi.API
	ln       net.Listener
	ready    func(string)
	closeOne sync.Once
	// startErr is why the pushed bundle was refused at start (the last
	// good bundle, or no policy at all, serves instead); applied is the
	// pushed version the holder runs ("" when none).
	startErr error
	applied  string
	swapper  atomic.Pointer[swap.Controller]
}

// New builds a replica from a provisioned and validated cfg: it connects
// to Redis (unless Options.Store is given) and builds the first policy
// engine (the watched directory's bundle, else the bundle pushed into
// Redis, else the shipped policy).
//
// # Errors
// A Redis that does not answer, an unregistered engine, a policy.dir
// bundle that fails to build or pass its tests.
func New(ctx context.Context, cfg Config, o Options) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Replica{cfg: cfg, log: o.Logger, store: o.Store, ln: o.Listener, ready: o.Ready}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.store == nil {
		rc := cfg.Edge.Redis
		c, err := state.Connect(ctx, state.Options{URL: rc.URL, Prefix: rc.Prefix, Username: rc.Username, Password: rc.Password,
			TLSCert: rc.TLS.Cert, TLSKey: rc.TLS.Key, TLSCA: rc.TLS.CA})
		if err != nil {
			return nil, err
		}
		r.client = c
		r.store = state.New(c, rc.Prefix)
	}
	fail := func(err error) (*Replica, error) { _ = r.Close(); return nil, err }
	ectx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err := r.startEngine(ectx)
	cancel()
	if err != nil {
		return fail(err)
	}
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	if err := r.store.LoadScripts(sctx); err != nil {
		r.log.Warn("loading Redis scripts failed; they load on first use", "err", err)
	}
	scancel()
	r.watcher = state.NewWatcher(r.store, state.WatcherOptions{Logger: r.log, Restore: true})
	r.inflight = state.NewInflight(r.store, cfg.Edge.ID, cfg.Edge.InflightLease)
	if r.router, err = routing.New(cfg.Routing, r.store, r.inflight); err != nil {
		return fail(err)
	}
	r.srv, err = edge.New(cfg.Edge, edge.Deps{Store: r.store, Watcher: r.watcher, Inflight: r.inflight,
		Router: r.router, Engine: r.holder.AsEngine(), Logger: r.log, TracerProvider: o.TracerProvider})
	if err != nil {
		return fail(err)
	}
	r.api = r.clusterAPI()
	r.srv.SetCluster(r.api)
	if r.startErr != nil {
		r.srv.PolicyReloaded(r.startErr)
	}
	if r.client != nil {
		// Counted on this edge's /metrics. A caller-owned store (Options.
		// Store) may be shared by several replicas: its owner adds
		// Server().RedisHook() where it wants the counts.
		r.client.AddHook(r.srv.RedisHook())
	}
	return r, nil
}

func (r *Replica) clusterAPI() *clusterapi.API {
	srv, id, started := r.srv, r.cfg.Edge.ID, time.Now()
	return clusterapi.New(clusterapi.Deps{
		Store:     r.store,
		Snapshot:  r.watcher.Current,
		Router:    r.router,
		Authorize: srv.Authorize,
		Resolve: func(ctx context.Context, _ *fleet.Snapshot, in *policy.Input, out *policy.Decision) error {
			return srv.Engine().Eval(ctx, in, out)
		},
		Health: func() clusterapi.EdgeHealth {
			return clusterapi.EdgeHealth{ID: id, Addr: srv.Addr(), StartedAt: started, InFlight: srv.Open(), Degraded: srv.Problems()}
		},
		Policy: func() clusterapi.PolicyStatus {
			e := srv.Engine()
			return clusterapi.PolicyStatus{Engine: e.Name(), Version: e.Version(), Error: srv.PolicyError(), LoadedAt: srv.PolicyLoadedAt()}
		},
		Changes:         r.watcher.Changes(),
		Stopping:        srv.Stopping(),
		MaxEventStreams: r.cfg.Edge.MaxEventStreams,
		Logger:          r.log,
		Swap:            &r.cfg.Edge.Swap,
	})
}

// Server is the replica's edge server (for tests and the dev command).
func (r *Replica) Server() *edge.Server { return r.srv }

// Swapper is the replica's swap controller (nil until Run starts it, or
// when swap.enabled is off).
func (r *Replica) Swapper() *swap.Controller { return r.swapper.Load() }

// Store is the replica's shared-state store.
func (r *Replica) Store() *state.Store { return r.store }

// Run serves until ctx is done, then drains (see edge.Server.Run: /readyz
// turns 503, the edge keeps serving for timeouts.shutdown_delay, then
// stops accepting and waits for open requests) and returns once every
// goroutine it started has returned and the final in-flight and stats
// writes are done. A ctx cancellation is a clean stop (nil).
//
// # Errors
// A listen error; a failure of the server loop.
func (r *Replica) Run(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := r.watcher.Refresh(rctx); err != nil {
		r.log.Warn("first snapshot refresh failed; retrying in the background", "err", err)
	}
	cancel()
	// Background loops outlive ctx until the server has drained: the
	// in-flight flusher must still run while the last requests end.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	g, gctx := errgroup.WithContext(bg)
	g.Go(func() error { return ignoreCanceled(r.watcher.Run(gctx)) })
	g.Go(func() error { r.inflight.Run(gctx); return nil })
	g.Go(func() error { r.router.Run(gctx, r.log); return nil })
	g.Go(func() error { r.api.RunEvents(gctx); return nil })
	if rc := r.cfg.Routing; rc.ProbeInterval > 0 {
		p := routing.NewProber(r.store, r.watcher.Current, routing.ProberOptions{ID: r.cfg.Edge.ID, Interval: rc.ProbeInterval, Lease: rc.ProbeLease, Timeout: rc.ProbeTimeout, Logger: r.log})
		g.Go(func() error {
			p.Run(gctx)
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = p.Release(rctx)
			return nil
		})
	}
	if r.cfg.Edge.Swap.Enabled {
		sc := swap.New(r.store, r.watcher.Current, r.holder.EvalSwap, swap.Options{ID: r.cfg.Edge.ID, Settings: r.cfg.Edge.Swap, Logger: r.log, Observe: r.srv.SwapObserver()})
		r.swapper.Store(sc)
		g.Go(func() error {
			sc.Run(gctx)
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = sc.Release(rctx)
			return nil
		})
	}
	if r.factory != nil {
		if dir := r.cfg.Policy.Dir; dir != "" {
			g.Go(func() error {
				return ignoreCanceled(policies.WatchDir(gctx, dir, r.holder, policies.WatchOptions{
					Factory:        r.factory,
					Test:           opa.TestBundle,
					PrepareTimeout: r.prepareTimeout(),
					OnSwap:         func(*policy.Bundle, policy.Engine) { r.srv.PolicyReloaded(nil) },
					OnError:        func(err error) { r.srv.PolicyReloaded(err) },
					Logger:         r.log,
				}))
			})
		}
		g.Go(func() error { r.reloadPushed(gctx); return nil })
	}
	if r.ready != nil {
		g.Go(func() error {
			for r.srv.Addr() == "" {
				select {
				case <-gctx.Done():
					return nil
				case <-time.After(5 * time.Millisecond):
				}
			}
			r.ready(r.srv.Addr())
			return nil
		})
	}
	err := r.srv.Run(ctx, r.ln)
	stopBG()
	if gerr := g.Wait(); err == nil {
		err = gerr
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
	r.router.Drain(dctx)
	dcancel()
	return ignoreCanceled(err)
}

// Close releases the policy engines and, when New connected it, the Redis
// client. Call it after Run returned (or instead of Run). Idempotent.
func (r *Replica) Close() error {
	var errs []error
	r.closeOne.Do(func() {
		if r.holder != nil {
			errs = append(errs, r.holder.Close())
		}
		if r.client != nil {
			errs = append(errs, r.client.Close())
		}
	})
	return errors.Join(errs...)
}

// recordGood keeps pb as the last good bundle (best effort: a failure
// only means a restart may find an older one).
func (r *Replica) recordGood(ctx context.Context, pb *fleet.PolicyBundle, digest string) {
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.store.PutGoodBundle(gctx, pb, digest); err != nil {
		r.log.Warn("recording the last good policy bundle failed", "err", err)
	}
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// startEngine builds the first engine: the watched directory's bundle when
// policy.dir is set, else the bundle pushed into Redis, else the shipped
// policy. A bundle that fails to build is fatal at start only when it was
// named explicitly (policy.dir). A broken pushed bundle never hands the
// edge to the shipped policy (that would drop the operator's denials): the
// last good bundle (gh:policy:good, checked against its digest) serves,
// else the edge refuses to serve (policies.Unavailable: 503s, /readyz 503)
// until a bundle that loads is pushed; either way the refusal shows as
// the policy error and the degraded reason policy_refused.
func (r *Replica) startEngine(ctx context.Context) error {
	p := r.cfg.Policy
	ef, _ := lookupEngine(p.Engine)
	f, fixed, err := ef(p)
	if err != nil {
		return err
	}
	if f == nil {
		r.holder = policies.NewHolder(fixed())
		return nil
	}
	r.factory = f
	if p.Dir != "" {
		b, err := policies.LoadDir(p.Dir)
		if err != nil {
			return err
		}
		e, _, err := policies.Prepare(ctx, b, f, opa.TestBundle)
		if err != nil {
			return fmt.Errorf("policy.dir %s: %w", p.Dir, err)
		}
		r.holder = policies.NewHolder(e)
		return nil
	}
	pb, err := r.store.GetPolicyBundle(ctx)
	if err != nil || pb != nil {
		// A pushed bundle exists (or Redis could not say): never fall back
		// to the shipped policy, which would drop the operator's denials.
		transient := err != nil
		if err == nil {
			b := policy.NewBundle(pb.Files)
			pctx, cancel := context.WithTimeout(ctx, r.prepareTimeout())
			e, _, perr := policies.Prepare(pctx, b, f, opa.TestBundle)
			cancel()
			if perr == nil {
				r.holder, r.applied = policies.NewHolder(e), pb.Version
				r.recordGood(ctx, pb, e.Version())
				return nil
			}
			transient = policies.Transient(perr)
			if !transient {
				r.refused = b.Version
			}
			err = fmt.Errorf("pushed policy bundle %s not loaded: %w", pb.Version, perr)
		}
		if transient {
			// Not the bundle's fault: reloadPushed retries it; no refusal.
			r.log.Warn("pushed policy bundle not loaded at start (transient failure); retrying", "err", err)
		} else {
			r.startErr = err
		}
		if good, digest, gerr := r.store.GoodBundle(ctx); gerr == nil && good != nil {
			b := policy.NewBundle(good.Files)
			if b.Version == digest {
				if e, _, perr := policies.Prepare(ctx, b, f, opa.TestBundle); perr == nil {
					r.holder = policies.NewHolder(e)
					r.log.Error("pushed policy bundle not loaded at start; serving the last good bundle", "err", err, "last_good", good.Version)
					return nil
				}
			}
		}
		r.log.Error("pushed policy bundle not loaded at start and no last good bundle loads: REFUSING TO SERVE (503) until a bundle that loads is active", "err", err)
		r.holder = policies.NewHolder(policies.Unavailable(err.Error()))
		return nil
	}
	e, err := f(ctx, policy.NewBundle(policies.ShippedPolicy()))
	if err != nil {
		return fmt.Errorf("shipped policy: %w", err)
	}
	r.holder = policies.NewHolder(e)
	return nil
}

// reloadPushed keeps the engine current with the bundles pushed into Redis
// (every replica sees the same snapshot event) until ctx ends. Each
// candidate bundle is tested and built off the request path, within
// policy.prepare_timeout. A bundle refused for its content (it does not
// compile, its tests fail, its decision has the wrong schema) leaves the
// running engine in place and is reported through the server's
// PolicyReloaded; a transient failure (policies.Transient: the attempt
// timed out or was cancelled, the pool was busy) is logged and retried
// with backoff (policy.retry_interval doubling up to 30s; an attempt that
// ran out of time gets twice the budget next time, up to 8 times
// policy.prepare_timeout), never reported as a refusal, so replicas converge on the pushed bundle however busy
// they were when it arrived.
func (r *Replica) reloadPushed(ctx context.Context) {
	changes := r.watcher.Changes()
	done := r.refused // the last bundle version whose outcome is final
	var wait time.Duration
	budget := r.prepareTimeout()
	retry := time.NewTimer(0) // look at the current snapshot once at start
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changes:
		case <-retry.C:
		}
		pb := r.watcher.Current().Policy
		if pb == nil {
			continue
		}
		b := policy.NewBundle(pb.Files)
		if b.Version == r.holder.Engine().Version() {
			retry.Stop()
			wait = 0
			if r.srv.PolicyError() != "" {
				r.srv.PolicyReloaded(nil) // the bundle that runs is the stored one again
			}
			continue
		}
		if b.Version == done {
			retry.Stop()
			wait = 0
			continue
		}
		err := r.prepareAndSwap(ctx, b, budget)
		switch {
		case err == nil:
			done, wait, budget = b.Version, 0, r.prepareTimeout()
			retry.Stop()
			r.log.Info("policy bundle active", "version", pb.Version, "engine", r.holder.Engine().Name())
			r.recordGood(ctx, pb, b.Version)
			r.srv.PolicyReloaded(nil)
		case ctx.Err() != nil:
			return
		case policies.Transient(err):
			if errors.Is(err, context.DeadlineExceeded) && budget < 8*r.prepareTimeout() {
				// The attempt ran out of its budget: a machine this
				// loaded gets twice as long next time.
				budget *= 2
			}
			wait = r.nextRetry(wait)
			retry.Stop()
			retry.Reset(wait)
			r.log.Warn("pushed policy bundle not loaded yet (transient failure); retrying", "version", pb.Version, "retry_in", wait, "budget", budget, "err", err)
		default:
			done, wait, budget = b.Version, 0, r.prepareTimeout()
			retry.Stop()
			r.log.Error("pushed policy bundle refused; keeping the running policy", "version", pb.Version, "err", err)
			r.srv.PolicyReloaded(err)
		}
	}
}

// prepareAndSwap tests, builds and smoke-tests b within budget and makes
// it the active engine.
func (r *Replica) prepareAndSwap(ctx context.Context, b *policy.Bundle, budget time.Duration) error {
	pctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	e, _, err := policies.Prepare(pctx, b, r.factory, opa.TestBundle)
	if err != nil {
		return err
	}
	if err := r.holder.Swap(pctx, e); err != nil {
		_ = e.Close()
		return err
	}
	return nil
}

func (r *Replica) prepareTimeout() time.Duration {
	if d := r.cfg.Policy.PrepareTimeout; d > 0 {
		return d
	}
	return policies.DefaultPrepareTimeout
}

// nextRetry is the wait after a transient failure: policy.retry_interval,
// doubled per failure up to 30s, with up to 25% jitter so replicas that
// failed together do not retry in lockstep.
func (r *Replica) nextRetry(prev time.Duration) time.Duration {
	const max = 30 * time.Second
	d := r.cfg.Policy.RetryInterval
	if d <= 0 {
		d = time.Second
	}
	if prev > 0 {
		d = min(2*prev, max)
	}
	return d + rand.N(d/4+1)
}
