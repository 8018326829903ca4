package opa

import (
	"strings"

	"github.com/geniehive/geniehive/policy"
	"github.com/open-policy-agent/opa/ast"
)

// DefinesRule reports whether the Rego modules (path -> source; test files
// and unparsable modules are ignored) define a rule at the slash path p
// (e.g. "geniehive/derived").
func DefinesRule(files map[string]string, p string) bool {
	want := "data." + strings.ReplaceAll(strings.Trim(p, "/"), "/", ".")
	for name, src := range files {
		if !policy.IsRegoFile(name) || policy.IsTestFile(name) {
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
