package policies_test

import (
	"testing"

	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policies/opa"
	"github.com/geniehive/geniehive/policies/policytest"
)

func TestGoEngineTable(t *testing.T) {
	policytest.Run(t, policies.NewGo())
}

func TestRegoEngineTable(t *testing.T) {
	e, err := opa.NewRego(policies.ShippedPolicy(), opa.RegoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	policytest.Run(t, e)
}
