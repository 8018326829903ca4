package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/state"
)

func TestPolicyPushAndStatus(t *testing.T) {
	c, prefix := testredis.New(t)
	url := testredis.URL(t)
	st := state.New(c, prefix)
	ctx := context.Background()

	dir := t.TempDir()
	for p, s := range policies.ShippedFiles() {
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(p)), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := &policyFlags{redis: redisFlags{URL: url, Prefix: prefix}}
	var out bytes.Buffer
	if err := policyPush(ctx, &out, dir, f); err != nil {
		t.Fatal(err)
	}
	b, err := policies.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := st.GetPolicyBundle(ctx)
	if err != nil || pb == nil || pb.Version != b.Version || len(pb.Files) != len(b.Files) {
		t.Fatalf("stored bundle %+v, %v", pb, err)
	}

	// A failing test: refused, the stored bundle stays.
	if err := os.WriteFile(filepath.Join(dir, "x_test.rego"), []byte("package x_test\n\ntest_no if false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = policyPush(ctx, &out, dir, f)
	var tf *policy.TestFailedError
	if !errors.As(err, &tf) || !strings.Contains(out.String(), "FAIL: 1/") {
		t.Fatalf("push of a failing bundle: %v\n%s", err, out.String())
	}
	if pb2, _ := st.GetPolicyBundle(ctx); pb2 == nil || pb2.Version != b.Version {
		t.Fatal("stored bundle replaced by a failing one")
	}

	if err := st.PutEdge(ctx, fleet.EdgeInfo{ID: "edge-1", Addr: "10.0.0.1:8080", PolicyEngine: "rego", PolicyVersion: b.Version}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := st.PutEdge(ctx, fleet.EdgeInfo{ID: "edge-2", Addr: "10.0.0.2:8080", PolicyEngine: "go", PolicyVersion: "builtin-go-v1", PolicyError: "bundle refused"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := policyStatus(ctx, &out, f); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"pushed bundle: " + b.Version[:12], "edge-1", "yes", "edge-2", "no", "bundle refused"} {
		if !strings.Contains(s, want) {
			t.Errorf("status lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "last good bundle") {
		t.Errorf("status names a last good bundle before any edge recorded one:\n%s", s)
	}
	// Issue 16: the last good bundle (what a restarted edge loads when the
	// pushed one is refused) shows in policy status.
	if err := st.PutGoodBundle(ctx, pb, "digest0123456789abcdef"); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := policyStatus(ctx, &out, f); err != nil {
		t.Fatal(err)
	}
	if want := "last good bundle: " + b.Version[:12]; !strings.Contains(out.String(), want) {
		t.Errorf("status lacks %q:\n%s", want, out.String())
	}
}

func TestPolicyTestCommand(t *testing.T) {
	dir := t.TempDir()
	for p, s := range policies.ShippedFiles() {
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(p)), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := policyTest(context.Background(), &out, dir, true); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	n := 0
	for p, s := range policies.ShippedFiles() {
		if policy.IsTestFile(p) {
			n += strings.Count(s, "\ntest_")
		}
	}
	if want := fmt.Sprintf("PASS: %d/%d", n, n); n < 19 || !strings.Contains(out.String(), want) {
		t.Fatalf("want %s in output:\n%s", want, out.String())
	}
	// A policy without a decision fails the smoke evaluation.
	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, "p.rego"), []byte("package other\n\nx := 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := policyTest(context.Background(), &out, empty, false); err == nil {
		t.Fatal("a bundle without data.geniehive.decision passed")
	}
}
