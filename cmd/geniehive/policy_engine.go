package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/geniehive/geniehive/edge"
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/cli"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policies/opa"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/state"
	"github.com/geniehive/geniehive/wasm"
)

// Policy engines an edge can run (policy.engine).
const (
	engineWasm   = "wasm"   // shipped/pushed Rego compiled to Wasm, run by wazero (default)
	engineRego   = "rego"   // OPA's Go evaluator, for builtins Wasm lacks and for debugging
	engineModule = "module" // a custom Wasm module (module.wasm in the bundle)
	engineGo     = "go"     // the plain-Go reference; ignores bundles
)

// policyFactory returns the Factory that builds engine name from a bundle.
func policyFactory(name string, timeout time.Duration) (policy.Factory, error) {
	opts := wasm.Options{EvalTimeout: timeout}
	switch name {
	case "", engineWasm:
		return func(ctx context.Context, b *policy.Bundle) (policy.Engine, error) {
			o := opts
			o.Version = b.Version
			return wasm.NewOPA(ctx, b.Rego(), o)
		}, nil
	case engineRego:
		return opa.RegoFactory, nil
	case engineModule:
		return func(ctx context.Context, b *policy.Bundle) (policy.Engine, error) {
			bin, ok := b.Files["module.wasm"]
			if !ok {
				return nil, fmt.Errorf("policy.engine module: the bundle has no module.wasm")
			}
			o := opts
			o.Version = b.Version
			return wasm.NewModule(ctx, []byte(bin), o)
		}, nil
	case engineGo:
		return nil, nil
	}
	return nil, fmt.Errorf("%w: policy.engine %q: want wasm, rego, module or go", cli.ErrUsage, name)
}

// startEngine builds the first engine: the watched directory's bundle when
// policy.dir is set, else the bundle pushed into Redis, else the shipped
// policy. A bundle that fails to build is fatal at start only when it was
// named explicitly (policy.dir); a broken pushed bundle is logged and the
// shipped policy serves.
func startEngine(ctx context.Context, p policySection, store *state.Store, log *slog.Logger) (*policies.Holder, policy.Factory, error) {
	f, err := policyFactory(p.Engine, p.EvalTimeout)
	if err != nil {
		return nil, nil, err
	}
	if f == nil { // go
		return policies.NewHolder(policies.NewGo()), nil, nil
	}
	if p.Dir != "" {
		b, err := policies.LoadDir(p.Dir)
		if err != nil {
			return nil, nil, err
		}
		e, _, err := policies.Prepare(ctx, b, f, opa.TestBundle)
		if err != nil {
			return nil, nil, fmt.Errorf("policy.dir %s: %w", p.Dir, err)
		}
		return policies.NewHolder(e), f, nil
	}
	if pb, err := store.GetPolicyBundle(ctx); err == nil && pb != nil {
		e, _, err := policies.Prepare(ctx, policy.NewBundle(pb.Files), f, opa.TestBundle)
		if err == nil {
			return policies.NewHolder(e), f, nil
		}
		log.Error("pushed policy bundle refused at start; serving the shipped policy", "version", pb.Version, "err", err)
	}
	e, err := f(ctx, policy.NewBundle(policies.ShippedPolicy()))
	if err != nil {
		return nil, nil, fmt.Errorf("shipped policy: %w", err)
	}
	return policies.NewHolder(e), f, nil
}

// reloadPolicies keeps the edge's engine current until ctx ends: from the
// watched directory (when set) and from bundles pushed into Redis (every
// replica sees the same snapshot event). Each candidate bundle is tested and
// built in the background; a refused one leaves the running engine in place
// and is reported through srv.PolicyReloaded.
func reloadPolicies(ctx context.Context, srv *edge.Server, w *state.Watcher, h *policies.Holder, f policy.Factory, p policySection, log *slog.Logger) {
	if f == nil {
		return
	}
	if p.Dir != "" {
		go func() {
			_ = policies.WatchDir(ctx, p.Dir, h, policies.WatchOptions{
				Factory: f,
				Test:    opa.TestBundle,
				OnSwap:  func(*policy.Bundle, policy.Engine) { srv.PolicyReloaded(nil) },
				OnError: func(err error) { srv.PolicyReloaded(err) },
				Logger:  log,
			})
		}()
	}
	changes := w.Changes()
	applied := ""
	if pb := w.Current().Policy; pb != nil {
		applied = pb.Version
	}
	for {
		var snap *fleet.Snapshot
		select {
		case <-ctx.Done():
			return
		case snap = <-changes:
		}
		pb := snap.Policy
		if pb == nil || pb.Version == applied {
			continue
		}
		applied = pb.Version
		b := policy.NewBundle(pb.Files)
		if b.Version == h.Engine().Version() {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		e, _, err := policies.Prepare(pctx, b, f, opa.TestBundle)
		if err == nil {
			err = h.Swap(pctx, e)
		}
		cancel()
		if err != nil {
			log.Error("pushed policy bundle refused; keeping the running policy", "version", pb.Version, "err", err)
		} else {
			log.Info("policy bundle active", "version", b.Version, "engine", e.Name())
		}
		srv.PolicyReloaded(err)
	}
}
