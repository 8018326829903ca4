package opa_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/geniehive/geniehive/policies/opa"
	"github.com/geniehive/geniehive/policy"
)

// TestEvalErrorsAreTyped: an evaluation past its deadline is
// policy.ErrTimeout (retryable), a policy without a decision is
// policy.ErrOutput, a runtime error is policy.ErrEval.
func TestEvalErrorsAreTyped(t *testing.T) {
	// 10^8 iterations: no machine finishes them before a 100ms deadline,
	// and OPA checks for cancellation while it evaluates.
	slow, err := opa.NewRego(map[string]string{"p.rego": `package geniehive

decision := {"schema_version": 1, "targets": [], "n": count([1 | some i in numbers.range(1, 10000); some j in numbers.range(1, 10000)])}
`}, opa.RegoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	in := &policy.Input{SchemaVersion: policy.SchemaVersion, Operation: "chat", Model: "m", ModelKey: "m"}
	var d policy.Decision
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = slow.Eval(ctx, in, &d)
	if !errors.Is(err, policy.ErrTimeout) || !policy.Retryable(err) {
		t.Fatalf("expired deadline: %v, want policy.ErrTimeout", err)
	}

	none, err := opa.NewRego(map[string]string{"p.rego": "package other\n\nx := 1\n"}, opa.RegoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer none.Close()
	if err := none.Eval(context.Background(), in, &d); !errors.Is(err, policy.ErrOutput) {
		t.Fatalf("no decision: %v, want policy.ErrOutput", err)
	}

	bad, err := opa.NewRego(map[string]string{"p.rego": "package geniehive\n\ndecision := x if { x := 1 / input.max_tokens }\n"}, opa.RegoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	err = bad.Eval(context.Background(), in, &d)
	if err == nil || policy.Retryable(err) {
		t.Fatalf("runtime error: %v, want a non-retryable policy error", err)
	}
	var pe *policy.Error
	if !errors.As(err, &pe) {
		t.Fatalf("runtime error %v is not a *policy.Error", err)
	}
}
