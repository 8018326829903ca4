package policytest

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/geniehive/geniehive/policy"
)

// Run evaluates every case of Cases with e (calling SetData whenever the
// case's Data differs from the previous one) and fails t on any difference,
// one subtest per case.
func Run(t *testing.T, e policy.Engine) {
	t.Helper()
	var cur *policy.Data
	for _, c := range Cases() {
		t.Run(c.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if c.Data != cur {
				if err := e.SetData(ctx, c.Data); err != nil {
					t.Fatalf("SetData: %v", err)
				}
				cur = c.Data
			}
			var got policy.Decision
			if err := e.Eval(ctx, c.Input, &got); err != nil {
				t.Fatalf("Eval: %v", err)
			}
			if diffs := Compare(c.Want, &got); len(diffs) > 0 {
				t.Errorf("engine %s, model %q: decision differs (want / got):\n  %s\ngot: %s",
					e.Name(), c.Input.Model, strings.Join(diffs, "\n  "), MustJSON(&got))
			}
		})
	}
}

// MustJSON renders v as JSON for messages.
func MustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	return string(b)
}

// canon renders a value as canonical JSON (maps sorted, numbers as JSON
// numbers), so that int 1 and float64 1 compare equal.
func canon(v any) string {
	if v == nil || (reflect.ValueOf(v).Kind() == reflect.Pointer && reflect.ValueOf(v).IsNil()) {
		return "null"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		return string(b)
	}
	b, _ = json.Marshal(x)
	return string(b)
}

// Compare returns the differences between two decisions, field by field
// (nil and empty slices and maps are equal).
func Compare(want, got *policy.Decision) []string {
	var d []string
	add := func(field string, w, g any) { d = append(d, fmt.Sprintf("%s: %v / %v", field, w, g)) }
	if want.SchemaVersion != got.SchemaVersion {
		add("schema_version", want.SchemaVersion, got.SchemaVersion)
	}
	if len(want.Targets) != len(got.Targets) {
		add("len(targets)", len(want.Targets), len(got.Targets))
	}
	for i := 0; i < len(want.Targets) && i < len(got.Targets); i++ {
		w, g := want.Targets[i], got.Targets[i]
		p := fmt.Sprintf("targets[%d]", i)
		if w.Kind != g.Kind {
			add(p+".kind", w.Kind, g.Kind)
		}
		if w.Name != g.Name {
			add(p+".name", w.Name, g.Name)
		}
		if w.Operation != g.Operation {
			add(p+".operation", w.Operation, g.Operation)
		}
		if w.Role != g.Role {
			add(p+".role", w.Role, g.Role)
		}
		if w.Group != g.Group {
			add(p+".group", w.Group, g.Group)
		}
		if w.Strategy != g.Strategy {
			add(p+".strategy", w.Strategy, g.Strategy)
		}
		if a, b := canon(w.Patch), canon(g.Patch); a != b {
			add(p+".patch", a, b)
		}
	}
	if want.StripReasoning != got.StripReasoning {
		add("strip_reasoning", want.StripReasoning, got.StripReasoning)
	}
	if len(want.Headers) != 0 || len(got.Headers) != 0 {
		if a, b := canon(want.Headers), canon(got.Headers); a != b {
			add("headers", a, b)
		}
	}
	if a, b := canon(want.Deny), canon(got.Deny); a != b {
		add("deny", a, b)
	}
	if len(want.Tried) != len(got.Tried) {
		add("len(tried)", len(want.Tried), len(got.Tried))
	}
	for i := 0; i < len(want.Tried) || i < len(got.Tried); i++ {
		var w, g string
		if i < len(want.Tried) {
			w = want.Tried[i]
		}
		if i < len(got.Tried) {
			g = got.Tried[i]
		}
		if w != g {
			add(fmt.Sprintf("tried[%d]", i), fmt.Sprintf("%q", w), fmt.Sprintf("%q", g))
		}
	}
	return d
}
