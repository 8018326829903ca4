package policy

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestErrorCodes(t *testing.T) {
	wrapped := fmt.Errorf("engine x: %w", &Error{Code: CodeTimeout, Err: context.DeadlineExceeded})
	if !errors.Is(wrapped, ErrTimeout) || errors.Is(wrapped, ErrBusy) {
		t.Fatal("errors.Is does not match by code")
	}
	if !errors.Is(wrapped, context.DeadlineExceeded) {
		t.Fatal("the cause is not reachable through Unwrap")
	}
	if !Retryable(wrapped) || !Retryable(errors.Join(ErrBusy, errors.New("x"))) || Retryable(ErrOutput) || Retryable(ErrClosed) {
		t.Fatal("Retryable disagrees with the codes")
	}
	if err := Wrap(CodeEval, ErrOutput); !errors.Is(err, ErrOutput) || errors.Is(err, ErrEval) {
		t.Fatalf("Wrap re-coded a typed error: %v", err)
	}
	if Wrap(CodeEval, nil) != nil {
		t.Fatal("Wrap(nil) is not nil")
	}
	var pe *Error
	if err := Wrap(CodeMemory, errors.New("oom")); !errors.As(err, &pe) || pe.Code != CodeMemory || err.Error() != "policy: memory_limit: oom" {
		t.Fatalf("Wrap: %v", err)
	}
}

// A preparation's budget replaces the per-request timeout only when ctx
// marks it and has a deadline; a request's earlier deadline always wins.
func TestEvalBudget(t *testing.T) {
	const d = 50 * time.Millisecond
	if got := EvalBudget(context.Background(), d); got != d {
		t.Errorf("no deadline: %v, want %v", got, d)
	}
	short, c1 := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer c1()
	if got := EvalBudget(short, d); got > 10*time.Millisecond {
		t.Errorf("earlier caller deadline: %v, want <= 10ms", got)
	}
	long, c2 := context.WithTimeout(context.Background(), time.Hour)
	defer c2()
	if got := EvalBudget(long, d); got != d {
		t.Errorf("request with a later deadline: %v, want %v", got, d)
	}
	if got := EvalBudget(WithPrepareBudget(long), d); got < 59*time.Minute {
		t.Errorf("preparation: %v, want the hour of its budget", got)
	}
	if got := EvalBudget(WithPrepareBudget(context.Background()), d); got != d {
		t.Errorf("preparation without a deadline: %v, want %v", got, d)
	}
}
