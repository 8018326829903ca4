package opa

import (
	"context"
	"errors"

	"github.com/geniehive/geniehive/policy"
)

// RegoFactory builds an OPA Go SDK engine from the bundle's Rego, with
// RegoOptions' defaults (250ms and 64 MiB per evaluation).
func RegoFactory(ctx context.Context, b *policy.Bundle) (policy.Engine, error) {
	return NewRegoFactory(RegoOptions{})(ctx, b)
}

// NewRegoFactory returns a Factory building OPA Go SDK engines with o
// (o.Version is replaced by each bundle's).
func NewRegoFactory(o RegoOptions) policy.Factory {
	return func(_ context.Context, b *policy.Bundle) (policy.Engine, error) {
		if !b.HasRego() {
			return nil, errors.New("policies: bundle has no Rego policy")
		}
		o := o
		o.Version = b.Version
		return NewRego(b.Rego(), o)
	}
}
