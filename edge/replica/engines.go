package replica

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policies/opa"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/wasm"
)

// Policy engines registered by this package (policy.engine).
const (
	EngineWasm   = "wasm"   // shipped/pushed Rego compiled to Wasm, run by wazero (default)
	EngineRego   = "rego"   // OPA's Go evaluator, for builtins Wasm lacks and for debugging
	EngineModule = "module" // a custom Wasm module (module.wasm in the bundle)
	EngineGo     = "go"     // the plain-Go reference; ignores bundles
)

// EngineFactory returns the policy.Factory that builds an engine from a
// bundle under cfg. A nil Factory means the engine takes no bundle (go):
// it is built once with Fixed and never reloaded.
type EngineFactory func(cfg PolicyConfig) (f policy.Factory, fixed func() policy.Engine, err error)

var (
	enginesMu sync.RWMutex
	engines   = map[string]EngineFactory{}
)

// RegisterEngine makes an engine available as policy.engine: name. It is
// meant for init functions; a duplicate name panics.
func RegisterEngine(name string, f EngineFactory) {
	enginesMu.Lock()
	defer enginesMu.Unlock()
	if _, dup := engines[name]; dup {
		panic("replica: policy engine " + name + " registered twice")
	}
	engines[name] = f
}

func lookupEngine(name string) (EngineFactory, bool) {
	enginesMu.RLock()
	defer enginesMu.RUnlock()
	f, ok := engines[name]
	return f, ok
}

// EngineNames lists the registered engines, sorted.
func EngineNames() []string {
	enginesMu.RLock()
	defer enginesMu.RUnlock()
	out := make([]string, 0, len(engines))
	for n := range engines {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func init() {
	RegisterEngine(EngineWasm, func(c PolicyConfig) (policy.Factory, func() policy.Engine, error) {
		return func(ctx context.Context, b *policy.Bundle) (policy.Engine, error) {
			return wasm.NewOPA(ctx, b.Rego(), wasm.Options{EvalTimeout: c.EvalTimeout, Version: b.Version, MaxMemoryPages: c.memoryPages()})
		}, nil, nil
	})
	RegisterEngine(EngineRego, func(c PolicyConfig) (policy.Factory, func() policy.Engine, error) {
		return opa.NewRegoFactory(opa.RegoOptions{EvalTimeout: c.EvalTimeout}), nil, nil
	})
	RegisterEngine(EngineModule, func(c PolicyConfig) (policy.Factory, func() policy.Engine, error) {
		return func(ctx context.Context, b *policy.Bundle) (policy.Engine, error) {
			bin, ok := b.Files[policy.BundleModuleFile]
			if !ok {
				return nil, fmt.Errorf("policy.engine module: the bundle has no %s", policy.BundleModuleFile)
			}
			return wasm.NewModule(ctx, []byte(bin), wasm.Options{EvalTimeout: c.EvalTimeout, Version: b.Version, MaxMemoryPages: c.memoryPages()})
		}, nil, nil
	})
	RegisterEngine(EngineGo, func(PolicyConfig) (policy.Factory, func() policy.Engine, error) {
		return nil, policies.NewGo, nil
	})
}

// memoryPages is policy.max_memory_mib in 64 KiB Wasm pages (0: the
// engine's default).
func (c PolicyConfig) memoryPages() uint32 {
	return uint32(max(c.MaxMemoryMiB, 0)) * 16
}
