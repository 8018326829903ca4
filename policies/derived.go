package policies

import (
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
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

// DefinesRule reports whether the Rego modules (path -> source; test files
// and unparsable modules are ignored) define a rule at the slash path p
// (e.g. "geniehive/derived").
func DefinesRule(files map[string]string, p string) bool {
	want := "data." + strings.ReplaceAll(strings.Trim(p, "/"), "/", ".")
	for name, src := range files {
		if !isRegoFile(name) || IsTestFile(name) {
			continue
		}
		m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			continue
		}
		for _, r := range m.Rules {
			if len(r.Head.Args) == 0 && r.Ref().String() == want {
				return true
			}
		}
	}
	return false
}
