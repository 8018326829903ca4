package fleet

import (
	"errors"
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
	e := &ServiceEntry{Service: Service{Healthy: true}, Deadline: now.Add(time.Second)}
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
