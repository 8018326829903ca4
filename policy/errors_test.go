package policy

import (
	"context"
	"errors"
	"fmt"
	"testing"
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
