package wasm

import (
	"encoding/json"
	"testing"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policies/opa"
	"github.com/geniehive/geniehive/policy"
)

func newTestOPA(t testing.TB, o Options) *OPAEngine {
	t.Helper()
	e, err := NewOPA(bg, testPolicy(t), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if err := e.SetData(bg, testData()); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestOPABasic(t *testing.T) {
	e := newTestOPA(t, Options{})
	for _, m := range []string{"dev", "llama3.1:8b", "nope", "qwen3:8b"} {
		var d policiesDecision
		if err := e.Eval(bg, testInput(m), &d); err != nil {
			t.Fatal(m, err)
		}
		b, _ := json.Marshal(d)
		t.Logf("%s: %s", m, b)
	}
}

func TestOPAHostBuiltin(t *testing.T) {
	e := newTestOPA(t, Options{})
	in := testInput("dev")
	in.MaxTokens = 5000
	var d policiesDecision
	if err := e.Eval(bg, in, &d); err != nil {
		t.Fatal(err)
	}
	if d.Deny == nil || d.Deny.Reason != "max_tokens 5000 above limit" || d.Deny.Status != 400 {
		t.Fatalf("deny = %+v", d.Deny)
	}
	t.Logf("host builtins: %v", e.names)
}

// TestDerivedPerDataVersion: a policy's derived rule is evaluated with the
// data of each version and handed to the decision as data.derived, on the
// wasm engine and on the Rego engine.
func TestDerivedPerDataVersion(t *testing.T) {
	files := map[string]string{"p.rego": `package geniehive

derived := {"roles": concat(",", sort([k | some k, _ in data.roles]))}

decision := {"schema_version": 1, "targets": [], "tried": [data.derived.roles]}
`}
	w, err := NewOPA(bg, files, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.derivedEP < 0 {
		t.Fatal("derived entrypoint not compiled")
	}
	r, err := opa.NewRego(files, opa.RegoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []policy.Engine{w, r} {
		for _, roles := range [][]string{{"b", "a"}, {"c"}} {
			d := &policy.Data{SchemaVersion: 1, Roles: map[string]fleet.Role{}}
			for _, n := range roles {
				d.Roles[n] = fleet.Role{Name: n}
			}
			if err := e.SetData(bg, d); err != nil {
				t.Fatal(err)
			}
			var got policy.Decision
			if err := e.Eval(bg, testInput("x"), &got); err != nil {
				t.Fatal(e.Name(), err)
			}
			want := map[int]string{1: "c", 2: "a,b"}[len(roles)]
			if len(got.Tried) != 1 || got.Tried[0] != want {
				t.Fatalf("%s: tried %q, want [%q]", e.Name(), got.Tried, want)
			}
		}
	}
}

// TestDerivedErrorKeepsData: a data version the derived rule fails on is
// refused and the current one keeps serving, on both engines.
func TestDerivedErrorKeepsData(t *testing.T) {
	files := map[string]string{"p.rego": `package geniehive

# Two roles make the rule conflict: a runtime error.
derived := {"n": 1} if count(data.roles) > 0

derived := {"n": 2} if count(data.roles) > 1

decision := {"schema_version": 1, "targets": [], "tried": [concat("", ["roles: ", format_int(count(data.roles), 10)])]}
`}
	w, err := NewOPA(bg, files, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := opa.NewRego(files, opa.RegoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	roles := func(names ...string) *policy.Data {
		d := &policy.Data{SchemaVersion: 1, Roles: map[string]fleet.Role{}}
		for _, n := range names {
			d.Roles[n] = fleet.Role{Name: n}
		}
		return d
	}
	for _, e := range []policy.Engine{w, r} {
		if err := e.SetData(bg, roles("a")); err != nil {
			t.Fatal(e.Name(), err)
		}
		if err := e.SetData(bg, roles("a", "b")); err == nil {
			t.Fatalf("%s: data the derived rule fails on was accepted", e.Name())
		}
		var d policy.Decision
		if err := e.Eval(bg, testInput("x"), &d); err != nil {
			t.Fatal(e.Name(), err)
		}
		if len(d.Tried) != 1 || d.Tried[0] != "roles: 1" {
			t.Fatalf("%s: tried %q, want the previous data", e.Name(), d.Tried)
		}
	}
}

// TestSetDataVersions: data that serialises like the current version is
// not a new version; a new version reaches idle instances in the
// background, before any request needs them.
func TestSetDataVersions(t *testing.T) {
	e, err := NewOPA(bg, policies.ShippedPolicy(), Options{PoolSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// Create all three instances.
	var ins []*instance
	for i := 0; i < 3; i++ {
		in, err := e.h.checkout(bg)
		if err != nil {
			t.Fatal(err)
		}
		ins = append(ins, in)
	}
	for _, in := range ins {
		e.h.checkin(in)
	}
	e.h.refreshing.Wait()
	before := e.h.refreshes.Load()
	if err := e.SetData(bg, testData()); err != nil {
		t.Fatal(err)
	}
	v := e.h.data.Load().ver
	if err := e.SetData(bg, testData()); err != nil {
		t.Fatal(err)
	}
	if e.h.data.Load().ver != v {
		t.Fatal("unchanged data made a new version")
	}
	e.h.refreshing.Wait()
	for _, in := range ins {
		if in.dataVer != v && !in.dead {
			t.Fatalf("idle instance at data version %d, current %d", in.dataVer, v)
		}
	}
	// One instance loaded it while deriving (prepareData), the other two
	// in the background.
	if n := e.h.refreshes.Load() - before; n != 2 {
		t.Fatalf("%d background loads, want 2", n)
	}
}
