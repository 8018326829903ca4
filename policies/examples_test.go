package policies_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policies/opa"
	"github.com/geniehive/geniehive/policy"
)

// TestDenyExample runs the copyable denial example together with the
// shipped policy, as an operator's bundle would, on both the test runner
// and the Rego engine.
func TestDenyExample(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, policies.ShippedFiles())
	for _, f := range []string{"deny.rego", "deny_test.rego"} {
		b, err := os.ReadFile(filepath.Join("examples", "deny", f))
		if err != nil {
			t.Fatal(err)
		}
		writeFiles(t, dir, map[string]string{f: string(b)})
	}
	b, err := policies.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	e, rs, err := policies.Prepare(context.Background(), b, opa.RegoFactory, opa.TestBundle)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if len(rs) < 24 || policy.Failed(rs) != 0 {
		t.Fatalf("%d results, %d failed: %v", len(rs), policy.Failed(rs), rs)
	}
	var d policy.Decision
	in := &policy.Input{SchemaVersion: 1, Operation: "chat", Model: "x", ModelKey: "x", BodyBytes: 2 << 20}
	if err := e.Eval(context.Background(), in, &d); err != nil {
		t.Fatal(err)
	}
	if d.Deny == nil || d.Deny.Status != 413 || d.Deny.Code != "body_too_large" {
		t.Fatalf("deny %+v", d.Deny)
	}
}
