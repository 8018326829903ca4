package policy

import "context"

// Factory builds an engine for a bundle. policies.NewGo wraps the
// Go engine, policies/opa.RegoFactory builds OPA's evaluator, and package
// wasm builds the Wasm ones.
type Factory func(ctx context.Context, b *Bundle) (Engine, error)

// Tester runs a bundle's Rego tests (like `opa test`); failing tests are
// results, not errors. policies/opa.TestBundle is the implementation.
type Tester func(ctx context.Context, b *Bundle) ([]TestResult, error)
