package wasm

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policies/policytest"
	"github.com/geniehive/geniehive/policy"
)

func TestAppendInputMatchesEncodingJSON(t *testing.T) {
	yes := true
	ins := []*policy.Input{
		testInput("dev"),
		{SchemaVersion: 1, Operation: fleet.KindEmbeddings, Model: "q\"u\\o\te\n\x01<>&é\xff", Thinking: &yes,
			Key:     policy.Key{ID: "k", Scope: fleet.ScopeOperator, Roles: []string{"a", "b"}},
			Headers: map[string]string{"x-a": "1"}, Body: json.RawMessage(`{"model":"x"}`)},
	}
	for _, c := range policytest.Cases() {
		ins = append(ins, c.Input)
	}
	for _, in := range ins {
		got := appendInput(nil, in)
		var a, b any
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("%s: %v", got, err)
		}
		want, _ := json.Marshal(in)
		json.Unmarshal(want, &b)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("appendInput:\n got %s\nwant %s", got, want)
		}
	}
}

func TestParseDecisionMatchesEncodingJSON(t *testing.T) {
	var docs [][]byte
	for _, c := range policytest.Cases() {
		b, _ := json.Marshal(c.Want)
		docs = append(docs, b)
	}
	docs = append(docs,
		[]byte(`{"schema_version":1,"targets":null,"deny":null,"headers":{"x":"\u00e9\ud83d\ude00"},"extra":[1,{"a":null}],"tried":["a\"b"]}`),
		[]byte(` { "targets" : [ { "kind":"asset","group":2,"patch":{"overrides":{"a":[1,2.5e3,true,null,"s"]},"system_prompt":null} } ] } `),
	)
	for _, doc := range docs {
		var want, got policy.Decision
		if err := json.Unmarshal(doc, &want); err != nil {
			t.Fatal(err)
		}
		if err := parseDecision(doc, &got); err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		if d := policytest.Compare(&want, &got); len(d) > 0 {
			t.Errorf("%s: %v", doc, d)
		}
		wb, _ := json.Marshal(&want)
		gb, _ := json.Marshal(&got)
		if string(wb) != string(gb) {
			t.Errorf("parse differs:\n got %s\nwant %s", gb, wb)
		}
	}
	for _, bad := range []string{``, `{`, `{"targets":[}`, `{"schema_version":"x"}`, `[]`, `{"a":1}x`, `{"tried":["\x01"]}`} {
		var d policy.Decision
		if err := parseDecision([]byte(bad), &d); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	var d policy.Decision
	if err := parseOPAResult([]byte(`[]`), &d); err == nil {
		t.Error("undefined decision accepted")
	}
}

func FuzzParseDecision(f *testing.F) {
	for _, c := range policytest.Cases() {
		b, _ := json.Marshal(c.Want)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var want, got policy.Decision
		gerr := parseDecision(b, &got)
		if !bytes.Equal(bytes.ToLower(b), b) {
			// encoding/json matches keys case-insensitively; the hand
			// parser (like Rego) does not. Only check it does not panic.
			return
		}
		werr := json.Unmarshal(b, &want)
		if werr == nil && gerr != nil {
			t.Fatalf("encoding/json accepts, hand parser refuses %q: %v", b, gerr)
		}
		if werr == nil && gerr == nil {
			if d := policytest.Compare(&want, &got); len(d) > 0 {
				t.Fatalf("%q: %v", b, d)
			}
		}
	})
}
