package policy

import (
	"context"
	"errors"
	"time"
)

// Code is the stable identifier of an engine failure. Codes never change
// meaning; the edge maps each to an HTTP status in one place.
type Code string

// Engine failure codes.
const (
	// CodeTimeout: the evaluation ran past its time budget (the engine's
	// own limit or the caller's deadline) and was cut off. Retryable.
	CodeTimeout Code = "eval_timeout"
	// CodeBusy: every pooled instance stayed busy until ctx was done; the
	// evaluation never started. Retryable.
	CodeBusy Code = "pool_busy"
	// CodeClosed: the engine was closed.
	CodeClosed Code = "engine_closed"
	// CodeOutput: the policy's output is not a valid decision document
	// (wrong types, undefined, more than one result, wrong schema).
	CodeOutput Code = "invalid_output"
	// CodeMemory: the evaluation needed more memory than its cap.
	CodeMemory Code = "memory_limit"
	// CodeEval: any other evaluation failure (a runtime error in the
	// policy, a guest trap or abort).
	CodeEval Code = "eval_error"
)

// Error is an engine failure with a stable Code. errors.Is(err, ErrX)
// matches any *Error with ErrX's code, so engines may wrap detail in Err
// and still be recognised.
type Error struct {
	Code Code
	// Err is the underlying cause, if any.
	Err error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return "policy: " + string(e.Code)
	}
	return "policy: " + string(e.Code) + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinels for errors.Is, one per code.
// DefaultEvalTimeout is the default bound on one policy evaluation, for
// every engine but the plain-Go one. An evaluation takes tens of
// microseconds, so the bound exists only to cut off a runaway guest; it is
// wall-clock time, and a process that is descheduled while it evaluates
// spends that time too. Under a container CPU limit the kernel's CFS quota
// throttles a process for the rest of its 100ms period, and a busy 2-core
// host stalled a 30-microsecond evaluation past the former 50ms default
// (a 503 policy_unavailable in the chaos suite). 250ms outlasts a whole
// throttled period with margin, and a runaway guest still costs at most a
// quarter of a second of one instance.
const DefaultEvalTimeout = 250 * time.Millisecond

var (
	ErrTimeout = &Error{Code: CodeTimeout}
	ErrBusy    = &Error{Code: CodeBusy}
	ErrClosed  = &Error{Code: CodeClosed}
	ErrOutput  = &Error{Code: CodeOutput}
	ErrMemory  = &Error{Code: CodeMemory}
	ErrEval    = &Error{Code: CodeEval}
)

// Wrap returns err as an *Error with code (nil stays nil; an err that
// already is an *Error keeps its own code).
func Wrap(code Code, err error) error {
	if err == nil {
		return nil
	}
	var pe *Error
	if errors.As(err, &pe) {
		return err
	}
	return &Error{Code: code, Err: err}
}

// Retryable reports whether err is a transient engine failure a client may
// retry (a timeout or a busy pool): the edge answers 503 with Retry-After.
func Retryable(err error) bool {
	return errors.Is(err, ErrTimeout) || errors.Is(err, ErrBusy)
}

type prepareKey struct{}

// WithPrepareBudget marks ctx as carrying a preparation, not a request: an
// engine evaluating under it (the smoke test of a new bundle, off the
// request path) is bounded by ctx's deadline instead of its per-request
// evaluation timeout, so a loaded machine does not fail a valid bundle.
// Without a deadline on ctx the per-request timeout applies.
func WithPrepareBudget(ctx context.Context) context.Context {
	return context.WithValue(ctx, prepareKey{}, true)
}

// EvalBudget is the time bound of one evaluation: d (the engine's
// per-request timeout) or ctx's remaining time when that is shorter, or
// ctx's remaining time when ctx carries WithPrepareBudget.
func EvalBudget(ctx context.Context, d time.Duration) time.Duration {
	dl, ok := ctx.Deadline()
	if !ok {
		return d
	}
	r := time.Until(dl)
	if r < d || ctx.Value(prepareKey{}) != nil {
		return r
	}
	return d
}
