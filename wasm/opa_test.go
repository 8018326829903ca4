package wasm

import (
	"encoding/json"
	"testing"

	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/state"
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
	r, err := policies.NewRego(files, policies.RegoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []policies.Engine{w, r} {
		for _, roles := range [][]string{{"b", "a"}, {"c"}} {
			d := &policies.Data{SchemaVersion: 1, Roles: map[string]state.Role{}}
			for _, n := range roles {
				d.Roles[n] = state.Role{Name: n}
			}
			if err := e.SetData(bg, d); err != nil {
				t.Fatal(err)
			}
			var got policies.Decision
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
