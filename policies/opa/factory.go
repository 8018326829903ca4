package opa

import (
	"context"
	"errors"

	"github.com/geniehive/geniehive/policy"
)

// RegoFactory builds an OPA Go SDK engine from the bundle's Rego.
func RegoFactory(_ context.Context, b *policy.Bundle) (policy.Engine, error) {
	if !b.HasRego() {
		return nil, errors.New("policies: bundle has no Rego policy")
	}
	return NewRego(b.Rego(), RegoOptions{Version: b.Version})
}
