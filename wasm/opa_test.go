package wasm

import (
	"encoding/json"
	"testing"
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
