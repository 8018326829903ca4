package edge

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/rawjson"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/routing"
)

// recRouter records the RequestFacts the edge hands the router.
type recRouter struct {
	simpleRouter
	mu    sync.Mutex
	facts []routing.RequestFacts
}

func (r *recRouter) Plan(ctx context.Context, snap *fleet.Snapshot, dec *policy.Decision, req *routing.RequestFacts) (routing.Plan, error) {
	r.mu.Lock()
	r.facts = append(r.facts, *req)
	r.mu.Unlock()
	return r.simpleRouter.Plan(ctx, snap, dec, req)
}

func (r *recRouter) last(t *testing.T) routing.RequestFacts {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.facts) == 0 {
		t.Fatal("router not called")
	}
	return r.facts[len(r.facts)-1]
}

// TestRequestTextReachesRouter: the router sees the start of the last user
// message (text parts joined), decoded, capped at routing.TextBytes, and the
// same model the upstream gets.
func TestRequestTextReachesRouter(t *testing.T) {
	rr := &recRouter{}
	s := newStack(t, func(_ *Config, d *Deps) { d.Router = rr })
	chat := s.url + "/v1/chat/completions"
	cases := []struct {
		name, body, text string
	}{
		{"string content", `{"model":"coder","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"first question"},{"role":"assistant","content":"answer"},{"role":"user","content":"Write \"python\" code, caf\u00e9"}]}`,
			`Write "python" code, café`},
		{"content parts", `{"model":"coder","messages":[{"role":"user","content":[{"type":"text","text":"compare"},{"type":"image_url","image_url":{"url":"data:,x"}},{"type":"text","text":"these two"}]}]}`,
			"compare these two"},
		{"no user message", `{"model":"coder","messages":[{"role":"system","content":"only system"}]}`, ""},
		{"long prompt is capped", `{"model":"coder","messages":[{"role":"user","content":"` + strings.Repeat("é", 200) + `"}]}`,
			strings.Repeat("é", routing.TextBytes/2)},
		{"escaped key names the model", `{"mod\u0065l":"coder","messages":[{"role":"user","content":"hi"}]}`, "hi"},
	}
	for _, c := range cases {
		r, b := do(t, "POST", chat, testKey, []byte(c.body), nil)
		if r.StatusCode != 200 {
			t.Fatalf("%s: %d %s", c.name, r.StatusCode, b)
		}
		f := rr.last(t)
		if f.Text != c.text {
			t.Errorf("%s: router saw text %q, want %q", c.name, f.Text, c.text)
		}
		if f.Model != "coder" {
			t.Errorf("%s: router saw model %q", c.name, f.Model)
		}
	}
	// The upstream got the resolved model under the escaped key.
	last := s.chat.LastRequest()
	var m map[string]any
	if err := json.Unmarshal(last.Body, &m); err != nil || m["model"] != "llama3.1:8b" {
		t.Fatalf("upstream body %s: model %v (%v)", last.Body, m["model"], err)
	}
}

// TestBodyValidation: one pass decides invalid JSON (invalid_json), valid
// JSON that is not an object, and nesting past the bound.
func TestBodyValidation(t *testing.T) {
	s := newStack(t)
	chat := s.url + "/v1/chat/completions"
	for _, c := range []struct{ body, code string }{
		{`{"model":"coder","n":01}`, "invalid_json"},
		{`{"model":"coder","s":"a` + "\x01" + `"}`, "invalid_json"},
		{`{"model":"coder","x":tru}`, "invalid_json"},
		{`{"model":"coder",}`, "invalid_json"},
		{`{"model":"coder"} {}`, "invalid_json"},
		{`["model","coder"]`, "invalid_request"},
		{`{"model":"coder","model":"llama3.1:8b"}`, "invalid_request"},
		{`{"model":"coder","mod\u0065l":"llama3.1:8b"}`, "invalid_request"},
		{`{"model":"coder","x":` + strings.Repeat("[", rawjson.MaxDepth+1) + strings.Repeat("]", rawjson.MaxDepth+1) + `}`, "invalid_request"},
	} {
		r, b := do(t, "POST", chat, testKey, []byte(c.body), nil)
		if r.StatusCode != 400 || !strings.Contains(b, `"code":"`+c.code+`"`) {
			t.Errorf("%.60s: %d %s, want 400 %s", c.body, r.StatusCode, b, c.code)
		}
	}
}
