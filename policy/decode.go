package policy

import (
	"encoding/json"
)

// DecodeDecision converts a policy's JSON-shaped result into out.
//
// # Errors
// ErrOutput for malformed policy output (wrong types, no targets array).
func DecodeDecision(v any, out *Decision) error {
	b, err := json.Marshal(v)
	if err != nil {
		return &Error{Code: CodeOutput, Err: err}
	}
	return UnmarshalDecision(b, out)
}

// UnmarshalDecision parses a Decision document into out (reset first).
func UnmarshalDecision(b []byte, out *Decision) error {
	*out = Decision{}
	if err := json.Unmarshal(b, out); err != nil {
		return &Error{Code: CodeOutput, Err: err}
	}
	return nil
}
