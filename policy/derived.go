package policy

import (
	"strings"
)

// DerivedRule is the name of the optional data-only rule a policy may
// define next to its decision rule (data.geniehive.derived for the shipped
// policy). The rego and wasm engines evaluate it once per data version,
// with the data document and no input, and put its value into the data
// document under DerivedKey, so that per-request rules read the result
// (data.derived) instead of recomputing it: OPA evaluates every rule again
// on every request and caches nothing across evaluations.
const DerivedRule = "derived"

// DerivedKey is the data document key engines put the derived rule's
// value under. policies.Data has no field of that name.
const DerivedKey = "derived"

// DerivedPath returns the slash path of the derived rule next to a decision
// entrypoint ("geniehive/decision" -> "geniehive/derived").
func DerivedPath(entrypoint string) string {
	entrypoint = strings.Trim(entrypoint, "/")
	if i := strings.LastIndexByte(entrypoint, '/'); i >= 0 {
		return entrypoint[:i+1] + DerivedRule
	}
	return DerivedRule
}
