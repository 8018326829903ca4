// Package archtest checks the import rules of docs/ARCHITECTURE.md (and
// /work/shared/ARCHITECTURE.md's "Composition"): the domain (fleet) and the
// policy contract (policy) import only the standard library (policy: plus
// fleet); routing links no OPA; the node agent links nothing of the edge;
// only policies/opa and wasm import OPA.
package archtest

import (
	"go/build"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/geniehive/geniehive"

// imports maps every package of the module (import path) to its non-test
// imports.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if n := d.Name(); p != root && (strings.HasPrefix(n, ".") || n == "testdata") {
			return filepath.SkipDir
		}
		pkg, err := build.ImportDir(p, 0)
		if err != nil {
			return nil // no buildable Go files here
		}
		rel, _ := filepath.Rel(root, p)
		path := module
		if rel != "." {
			path += "/" + filepath.ToSlash(rel)
		}
		out[path] = pkg.Imports
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 10 {
		t.Fatalf("found only %d packages under %s", len(out), root)
	}
	return out
}

// deps returns the transitive imports of pkg (module packages followed,
// external ones listed but not followed).
func deps(all map[string][]string, pkg string) []string {
	seen := map[string]bool{}
	var walk func(string)
	walk = func(p string) {
		for _, i := range all[p] {
			if seen[i] {
				continue
			}
			seen[i] = true
			if strings.HasPrefix(i, module+"/") {
				walk(i)
			}
		}
	}
	walk(pkg)
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func std(p string) bool { return !strings.Contains(strings.SplitN(p, "/", 2)[0], ".") }

func isOPA(p string) bool { return strings.HasPrefix(p, "github.com/open-policy-agent/") }

func TestDomainAndContractAreStdlibOnly(t *testing.T) {
	all := imports(t)
	allowed := map[string]map[string]bool{
		module + "/fleet":  {},
		module + "/policy": {module + "/fleet": true},
	}
	for pkg, ok := range allowed {
		if _, found := all[pkg]; !found {
			t.Fatalf("package %s not found", pkg)
		}
		for _, d := range deps(all, pkg) {
			if !std(d) && !ok[d] {
				t.Errorf("%s depends on %s; it may import only the standard library%s", pkg, d, map[bool]string{true: "", false: " and fleet"}[len(ok) == 0])
			}
		}
	}
}

func TestOnlyOPAAdaptersImportOPA(t *testing.T) {
	all := imports(t)
	adapters := map[string]bool{module + "/policies/opa": true, module + "/wasm": true}
	for pkg, imps := range all {
		for _, i := range imps {
			if isOPA(i) && !adapters[pkg] {
				t.Errorf("%s imports %s; only policies/opa and wasm may import OPA", pkg, i)
			}
		}
	}
	for _, pkg := range []string{"routing", "policies", "edge", "state", "nodeagent"} {
		for _, d := range deps(all, module+"/"+pkg) {
			if isOPA(d) {
				t.Errorf("%s links OPA through %s", pkg, d)
			}
		}
	}
}

func TestNodeAgentLinksNoEdge(t *testing.T) {
	all := imports(t)
	for _, d := range deps(all, module+"/nodeagent") {
		if d == module+"/edge" || strings.HasPrefix(d, module+"/edge/") {
			t.Errorf("nodeagent depends on %s", d)
		}
	}
}
