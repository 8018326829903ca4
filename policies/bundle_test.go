package policies_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policies/opa"
	"github.com/geniehive/geniehive/policy"
)

// TestShippedRegoTests runs the shipped policy's Rego unit tests, so that a
// failing Rego test fails go test.
func TestShippedRegoTests(t *testing.T) {
	b := policy.NewBundle(policies.ShippedFiles())
	rs, err := opa.TestBundle(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) < 15 {
		t.Fatalf("only %d Rego tests ran", len(rs))
	}
	for _, r := range rs {
		if !r.Pass {
			t.Errorf("%s:%d %s", r.File, r.Row, r)
		}
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, s := range files {
		fp := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(fp), 0o755); err != nil {
			t.Fatal(err)
		}
		// Atomically (a temp file renamed over the target), as operators
		// are told to: WatchDir polls every few milliseconds in the tests
		// and must never see a half-written file (issue 18).
		tmp := filepath.Join(filepath.Dir(fp), "."+filepath.Base(fp)+".tmp")
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, fp); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTestBundleReportsFailures(t *testing.T) {
	b := policy.NewBundle(map[string]string{
		"p.rego":      "package p\n\nx := 1\n",
		"p_test.rego": "package p_test\n\ntest_ok if data.p.x == 1\n\ntest_bad if data.p.x == 2\n",
	})
	rs, err := opa.TestBundle(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || policy.Failed(rs) != 1 {
		t.Fatalf("want 1 of 2 failing, got %v", rs)
	}
	if rs[1].Name != "test_bad" || rs[1].Pass || !strings.Contains(rs[1].String(), "FAIL") {
		t.Fatalf("unexpected %+v", rs[1])
	}
}

func TestTestBundleCompileError(t *testing.T) {
	b := policy.NewBundle(map[string]string{"p.rego": "package p\n\nx := \n"})
	if _, err := opa.TestBundle(context.Background(), b); err == nil || !strings.Contains(err.Error(), "p.rego") {
		t.Fatalf("want a parse error naming p.rego, got %v", err)
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"a.rego":         "package a\n",
		"sub/b.rego":     "package b\n",
		"data.json":      `{"x": 1}`,
		"README.md":      "ignored",
		".hidden/c.rego": "package c\n",
	})
	b, err := policies.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Files) != 3 || b.Files["sub/b.rego"] == "" || b.Files["data.json"] == "" {
		t.Fatalf("files: %v", b.Files)
	}
	v1 := b.Version
	writeFiles(t, dir, map[string]string{"a.rego": "package a\n\ny := 2\n"})
	b2, err := policies.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b2.Version == v1 || len(v1) != 64 {
		t.Fatalf("version did not change: %s %s", v1, b2.Version)
	}

	writeFiles(t, dir, map[string]string{"data.json": `[1]`})
	if _, err := policies.LoadDir(dir); err == nil {
		t.Fatal("bad data.json accepted")
	}
	if _, err := policies.LoadDir(t.TempDir()); err == nil {
		t.Fatal("empty dir accepted")
	}
}
