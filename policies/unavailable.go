package policies

import (
	"context"
	"errors"

	"github.com/geniehive/geniehive/policy"
)

// UnavailableName is the Name of the engine an edge runs when it has no
// policy it may serve: the bundle stored in Redis is broken and no last
// good bundle is known. Serving the shipped policy instead would silently
// drop the operator's rules (their denials above all), so the edge refuses
// to serve — every evaluation is 503 policy_unavailable and /readyz is 503
// — until a bundle that loads is pushed.
const UnavailableName = "unavailable"

// Unavailable returns an engine that refuses every evaluation with a
// retryable policy.ErrBusy (503 policy_unavailable) carrying reason.
func Unavailable(reason string) policy.Engine { return unavailable{errors.New(reason)} }

type unavailable struct{ err error }

func (unavailable) Name() string                                { return UnavailableName }
func (unavailable) Version() string                             { return "" }
func (unavailable) SetData(context.Context, *policy.Data) error { return nil }
func (unavailable) Close() error                                { return nil }
func (u unavailable) Eval(context.Context, *policy.Input, *policy.Decision) error {
	return &policy.Error{Code: policy.CodeBusy, Err: u.err}
}
