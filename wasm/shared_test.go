package wasm

import (
	"testing"

	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policies/policytest"
)

// TestSharedTable runs the shipped policy, compiled to Wasm, through the
// decision table every engine must pass.
func TestSharedTable(t *testing.T) {
	e, err := NewOPA(bg, policies.ShippedPolicy(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.Name() != "wasm" {
		t.Fatal(e.Name())
	}
	policytest.Run(t, e)
}
