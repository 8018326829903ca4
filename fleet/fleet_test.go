package fleet

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestScopeOrder(t *testing.T) {
	cases := []struct {
		have, need Scope
		ok         bool
	}{
		{ScopeClient, ScopeClient, true},
		{ScopeClient, ScopeReader, false},
		{ScopeReader, ScopeClient, true},
		{ScopeOperator, ScopeReader, true},
		{"admin", ScopeClient, false},
	}
	for _, c := range cases {
		if got := c.have.Allows(c.need); got != c.ok {
			t.Errorf("%q.Allows(%q) = %v, want %v", c.have, c.need, got, c.ok)
		}
	}
	if Scope("").Valid() || !ScopeOperator.Valid() {
		t.Error("Valid disagrees with the three scopes")
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{"node-a": true, "a/b.c_d": true, "": false, "x{y}": false, "a:b": false, "a b": false} {
		if ValidID(id) != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, !want, want)
		}
	}
}

func TestCatalogValidate(t *testing.T) {
	ok := &Catalog{Roles: []Role{{Name: "coder", Aliases: []string{"code"}, Candidates: []string{"m"}, RequestPolicy: &RequestPolicy{SystemPrompt: &SystemPrompt{Text: "x"}}}}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if ok.Roles[0].Operation != KindChat || ok.Roles[0].RequestPolicy.SystemPrompt.Mode != PromptPrepend {
		t.Fatalf("defaults not applied: %+v", ok.Roles[0])
	}
	if r, found := ok.Role("CODE"); !found || r.Name != "coder" {
		t.Fatal("alias lookup is not case-insensitive")
	}
	bad := []*Catalog{
		{Roles: []Role{{Name: "x"}}},
		{Roles: []Role{{Name: "a", Candidates: []string{"m"}}, {Name: "A", Candidates: []string{"m"}}}},
		{Roles: []Role{{Name: "a", Candidates: []string{"m"}, FallbackRoles: []string{"nope"}}}},
		{Roles: []Role{{Name: "a", Candidates: []string{"m"}, Operation: "dance"}}},
		{Roles: []Role{{Name: "a", Candidates: []string{"m"}, Strategy: "random"}}},
		{AssetPolicies: map[string]*RequestPolicy{"m": {MaxTokens: -1}}},
	}
	for i, c := range bad {
		err := c.Validate()
		var ce *CatalogError
		if !errors.As(err, &ce) || !errors.Is(err, ErrInvalid) || ce.Field == "" {
			t.Errorf("case %d: want a located CatalogError, got %v", i, err)
		}
	}
}

func TestServiceEntryRoutable(t *testing.T) {
	now := time.Unix(1000, 0)
	e := &ServiceEntry{Service: &Service{Healthy: true}, Deadline: now.Add(time.Second)}
	if !e.Routable(now) {
		t.Fatal("live healthy entry not routable")
	}
	if e.Routable(now.Add(time.Second)) {
		t.Fatal("entry past its deadline is routable")
	}
	e.Probe = &ProbeResult{Healthy: false}
	if e.Routable(now) {
		t.Fatal("failed probe does not override the node's verdict")
	}
	e.Probe = nil
	e.CooldownUntil = now.Add(time.Minute)
	if e.Routable(now) {
		t.Fatal("entry in cooldown is routable")
	}
}

// A module.wasm pushed as a JSON string lost every byte >= 0x80 (issue 16,
// item 5): files that are not UTF-8 round-trip through base64, text files
// and bundles stored before the marker read as they did.
func TestPolicyBundleBinarySafe(t *testing.T) {
	bin := "\x00asm\x01\x00\x00\x00\x80\xff\xfe" + string([]byte{0xC3}) // not UTF-8
	b := PolicyBundle{Version: "v", Files: map[string]string{"module.wasm": bin, "p.rego": "package x # é"}, PushedAt: time.Unix(1, 0).UTC()}
	raw, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"encodings":{"module.wasm":"base64"}`) || !strings.Contains(string(raw), `"p.rego":"package x # é"`) {
		t.Fatalf("stored form: %s", raw)
	}
	var got PolicyBundle
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.Files["module.wasm"] != bin || got.Files["p.rego"] != b.Files["p.rego"] || got.Version != "v" || !got.PushedAt.Equal(b.PushedAt) {
		t.Fatalf("round trip: %+v", got)
	}
	var old PolicyBundle
	if err := json.Unmarshal([]byte(`{"version":"v1","files":{"a.rego":"package a"},"pushed_at":"2026-01-01T00:00:00Z"}`), &old); err != nil || old.Files["a.rego"] != "package a" {
		t.Fatalf("bundle stored before encodings: %+v %v", old, err)
	}
	for _, bad := range []string{
		`{"version":"v","files":{"m":"x"},"encodings":{"m":"rot13"}}`,
		`{"version":"v","files":{},"encodings":{"m":"base64"}}`,
		`{"version":"v","files":{"m":"!!"},"encodings":{"m":"base64"}}`,
	} {
		if err := json.Unmarshal([]byte(bad), &old); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", bad, err)
		}
	}
}
