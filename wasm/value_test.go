package wasm

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/tetratelabs/wazero/api"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policies/policytest"
	"github.com/geniehive/geniehive/policy"
)

// TestValueLayoutChecks: the OPA runtime this module builds against has
// the value layout value.go reads. If this fails after an OPA upgrade, the
// engine still works (through opa_json_dump) but slower: update value.go
// to the new layout (OPA's wasm/src/value.h).
func TestValueLayoutChecks(t *testing.T) {
	e, err := NewOPA(bg, policies.ShippedPolicy(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if !e.direct {
		in, _ := e.h.checkout(bg)
		defer e.h.checkin(in)
		t.Fatalf("results are not read from memory: %v", verifyValueLayout(bg, in.mod, e.eps))
	}
}

// TestSharedTableThroughJSON: the fallback path (the guest serialises
// results to JSON) makes the same decisions.
func TestSharedTableThroughJSON(t *testing.T) {
	e, err := newOPA(bg, policies.ShippedPolicy(), config{noDirect: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.direct {
		t.Fatal("noDirect ignored")
	}
	policytest.Run(t, e)
}

// guestValue parses doc (Rego value syntax, a superset of JSON) in a live
// instance and returns a reader over its memory and the value's address.
func guestValue(t testing.TB, m api.Module, doc []byte) (*valueReader, uint32) {
	t.Helper()
	p, err := call1(bg, m, "opa_malloc", uint64(len(doc)))
	if err != nil {
		t.Fatal(err)
	}
	m.Memory().Write(p, doc)
	addr, err := call1(bg, m, "opa_value_parse", uint64(p), uint64(len(doc)))
	if err != nil {
		t.Fatal(err)
	}
	view, _ := m.Memory().Read(0, m.Memory().Size())
	return &valueReader{mem: view}, addr
}

func decisionDocs() [][]byte {
	var docs [][]byte
	for _, c := range policytest.Cases() {
		b, _ := json.Marshal(c.Want)
		docs = append(docs, b)
	}
	return append(docs,
		[]byte(`{"schema_version":1,"targets":null,"deny":null,"headers":{"x":"\u00e9\ud83d\ude00"},"extra":[1,{"a":null}],"tried":["a\"b"]}`),
		[]byte(` { "targets" : [ { "kind":"asset","group":2,"patch":{"overrides":{"a":[1,2.5e3,true,null,"s"]},"system_prompt":null} } ] } `),
		[]byte(`{"schema_version":1.0,"targets":[null,{"group":3e0,"strategy":null,"patch":{"defaults":{"n":-0.5,"big":12345678901234567890}}}],"deny":{"status":403,"extra":{}}}`),
	)
}

// TestValueDecisionMatchesJSON: decoding a decision from guest memory gives
// what parsing its JSON gives.
func TestValueDecisionMatchesJSON(t *testing.T) {
	e := newTestOPA(t, Options{})
	in, err := e.h.checkout(bg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.h.checkin(in)
	for _, doc := range decisionDocs() {
		var want, got policy.Decision
		if err := parseDecision(doc, &want); err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		r, addr := guestValue(t, in.mod, doc)
		if err := r.decision(addr, &got); err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		wb, _ := json.Marshal(&want)
		gb, _ := json.Marshal(&got)
		if string(wb) != string(gb) {
			t.Errorf("decode differs:\n got %s\nwant %s", gb, wb)
		}
	}
	for _, bad := range []string{`{"schema_version":"x"}`, `[]`, `{"targets":{}}`, `{"tried":[1]}`, `{"strip_reasoning":"yes"}`, `{"targets":[{"group":1.5}]}`} {
		var d policy.Decision
		r, addr := guestValue(t, in.mod, []byte(bad))
		if err := r.decision(addr, &d); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
	// Rego sets decode as arrays (opa_json_dump writes them so).
	var d policy.Decision
	r, addr := guestValue(t, in.mod, []byte(`{"targets":[{"patch":{"defaults":{"stop":{"x"}}}}]}`))
	if err := r.decision(addr, &d); err != nil || !reflect.DeepEqual(d.Targets[0].Patch.Defaults["stop"], []any{"x"}) {
		t.Fatalf("set: %v %+v", err, d.Targets)
	}
	// A non-string key in a free-form object needs the JSON path.
	r, addr = guestValue(t, in.mod, []byte(`{"targets":[{"patch":{"defaults":{1:"x"}}}]}`))
	if err := r.decision(addr, &d); err != errNeedJSON {
		t.Fatalf("non-string key: %v", err)
	}
}

// TestValueNonStringKeyFallsBack: such a decision still evaluates (the
// guest's JSON writer stringifies the key).
func TestValueNonStringKeyFallsBack(t *testing.T) {
	files := map[string]string{"p.rego": `package geniehive

decision := {"schema_version": 1, "targets": [{"kind": "asset", "name": "m", "operation": "chat", "group": 0, "patch": {"defaults": {1: "x", "a": {"b": 2}}}}]}
`}
	e, err := NewOPA(bg, files, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var d policy.Decision
	if err := e.Eval(bg, testInput("m"), &d); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"1": "x", "a": map[string]any{"b": 2.0}}
	if len(d.Targets) != 1 || !reflect.DeepEqual(d.Targets[0].Patch.Defaults, want) {
		t.Fatalf("got %+v", d.Targets)
	}
}

// TestValuePatchesFollowData: patches decoded once per data version are
// shared between evaluations and replaced when the data changes.
func TestValuePatchesFollowData(t *testing.T) {
	e, err := NewOPA(bg, policies.ShippedPolicy(), Options{PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	data := func(temp float64) *policy.Data {
		snap := policytest.Fleet()
		for i := range snap.Catalog.Roles {
			if r := &snap.Catalog.Roles[i]; r.Name == "coder" {
				r.RequestPolicy = &fleet.RequestPolicy{Defaults: map[string]any{"temperature": temp}}
			}
		}
		return policies.BuildData(snap)
	}
	in := &policy.Input{SchemaVersion: 1, Operation: fleet.KindChat, Model: "coder", ModelKey: "coder"}
	eval := func(temp float64, d *policy.Decision) {
		t.Helper()
		if err := e.Eval(bg, in, d); err != nil {
			t.Fatal(err)
		}
		if got := d.Targets[0].Patch.Defaults["temperature"]; got != temp {
			t.Fatalf("temperature %v, want %v", got, temp)
		}
	}
	var d1, d2, d3 policy.Decision
	if err := e.SetData(bg, data(0.1)); err != nil {
		t.Fatal(err)
	}
	eval(0.1, &d1)
	eval(0.1, &d2)
	if err := e.SetData(bg, data(0.7)); err != nil {
		t.Fatal(err)
	}
	eval(0.7, &d3)
	if d1.Targets[0].Patch != d2.Targets[0].Patch {
		t.Error("patch decoded again for the same data version")
	}
	if d1.Targets[0].Patch == d3.Targets[0].Patch {
		t.Error("patch cached across data versions")
	}
}

// FuzzValueReader: whatever the memory and address, decoding returns
// (an error or a decision) without panicking.
func FuzzValueReader(f *testing.F) {
	f.Add([]byte{6, 0, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0}, uint32(0))
	f.Add([]byte{7, 0, 0, 0, 8, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0}, uint32(0))
	f.Fuzz(func(t *testing.T, mem []byte, addr uint32) {
		r := valueReader{mem: mem, cache: &valueCache{}}
		r.cache.reset(uint32(len(mem) / 2))
		var d policy.Decision
		_ = r.resultSet(addr, &d)
		r.steps = 0
		_ = r.decision(addr, &d)
	})
}

// FuzzValueDecision: for any document the guest parses, decoding the value
// from memory gives what parsing the guest's own JSON serialisation of it
// gives (the fallback path).
func FuzzValueDecision(f *testing.F) {
	for _, d := range decisionDocs() {
		f.Add(d)
	}
	e, err := NewOPA(bg, policies.ShippedPolicy(), Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer e.Close()
	in, err := e.h.checkout(bg)
	if err != nil {
		f.Fatal(err)
	}
	defer e.h.checkin(in)
	base := in.evalHeap
	f.Fuzz(func(t *testing.T, doc []byte) {
		if _, err := call1(bg, in.mod, "opa_heap_ptr_set", uint64(base)); err != nil {
			t.Fatal(err)
		}
		p, err := call1(bg, in.mod, "opa_malloc", uint64(len(doc)))
		if err != nil {
			t.Skip("too large for the guest heap")
		}
		in.mod.Memory().Write(p, doc)
		addr, err := call1(bg, in.mod, "opa_json_parse", uint64(p), uint64(len(doc)))
		if err != nil || addr == 0 {
			return // not JSON
		}
		js, err := dumpJSON(bg, in.mod, addr)
		if err != nil {
			t.Fatal(err)
		}
		var want, got policy.Decision
		werr := parseDecision(js, &want)
		view, _ := in.mod.Memory().Read(0, in.mod.Memory().Size())
		r := valueReader{mem: view}
		gerr := r.decision(addr, &got)
		if gerr == errNeedJSON {
			return
		}
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("%q: JSON path error %v, value path error %v", js, werr, gerr)
		}
		wb, _ := json.Marshal(&want)
		gb, _ := json.Marshal(&got)
		if werr == nil && string(wb) != string(gb) {
			t.Fatalf("%q: decode differs:\n got %s\nwant %s", js, gb, wb)
		}
	})
}
