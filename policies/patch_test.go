package policies_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
)

func decode(t testing.TB, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, b)
	}
	return v
}

func TestApplyPatch(t *testing.T) {
	f := false
	_ = f
	cases := []struct {
		name, body, dialect string
		patch               *policy.Patch
		want                string
	}{
		{
			name: "model only (fast path) keeps everything else byte for byte",
			body: `{ "stream" :true, "model" : "qwen3" ,"messages":[{"role":"user","content":"hi \"model\""}], "x":{"model":"inner"}}`,
			want: `{ "stream" :true, "model" : "qwen3:8b" ,"messages":[{"role":"user","content":"hi \"model\""}], "x":{"model":"inner"}}`,
		},
		{
			name: "model added when absent",
			body: `{}`,
			want: `{"model":"qwen3:8b"}`,
		},
		{
			name: "escaped key is the model key",
			body: `{"mod\u0065l":"a","b":1}`,
			want: `{"mod\u0065l":"qwen3:8b","b":1}`,
		},
		{
			name:  "defaults under, overrides over, deep",
			body:  `{"model":"m","temperature":0.7,"options":{"num_ctx":2048},"stop":["a"]}`,
			patch: &policy.Patch{Defaults: map[string]any{"temperature": 0.2, "top_p": 0.9, "options": map[string]any{"num_ctx": 8192, "seed": 1}}, Overrides: map[string]any{"options": map[string]any{"top_k": 40}, "stop": []any{"</s>"}}},
			want:  `{"model":"qwen3:8b","temperature":0.7,"top_p":0.9,"options":{"num_ctx":2048,"seed":1,"top_k":40},"stop":["</s>"]}`,
		},
		{
			name:  "replace existing system message",
			body:  `{"messages":[{"role":"user","content":"q"},{"role":"system","content":"old","name":"s"}]}`,
			patch: &policy.Patch{SystemPrompt: &fleet.SystemPrompt{Mode: "replace", Text: "new"}},
			want:  `{"model":"qwen3:8b","messages":[{"role":"user","content":"q"},{"role":"system","content":"new","name":"s"}]}`,
		},
		{
			name:  "replace inserts at the front",
			body:  `{"messages":[{"role":"user","content":"q"}]}`,
			patch: &policy.Patch{SystemPrompt: &fleet.SystemPrompt{Mode: "replace", Text: "new"}},
			want:  `{"model":"qwen3:8b","messages":[{"role":"system","content":"new"},{"role":"user","content":"q"}]}`,
		},
		{
			name:  "prepend with a blank line",
			body:  `{"messages":[{"role":"system","content":"old"},{"role":"user","content":"q"}]}`,
			patch: &policy.Patch{SystemPrompt: &fleet.SystemPrompt{Mode: "prepend", Text: "new"}},
			want:  `{"model":"qwen3:8b","messages":[{"role":"system","content":"new\n\nold"},{"role":"user","content":"q"}]}`,
		},
		{
			name:  "append to content parts",
			body:  `{"messages":[{"role":"system","content":[{"type":"text","text":"old"}]}]}`,
			patch: &policy.Patch{SystemPrompt: &fleet.SystemPrompt{Mode: "append", Text: "new"}},
			want:  `{"model":"qwen3:8b","messages":[{"role":"system","content":[{"type":"text","text":"old"},{"type":"text","text":"new"}]}]}`,
		},
		{
			name:  "append inserts when there is no system message",
			body:  `{"messages":[]}`,
			patch: &policy.Patch{SystemPrompt: &fleet.SystemPrompt{Mode: "append", Text: "new"}},
			want:  `{"model":"qwen3:8b","messages":[{"role":"system","content":"new"}]}`,
		},
		{
			name:  "no messages: prompt ignored (embeddings)",
			body:  `{"input":"x"}`,
			patch: &policy.Patch{SystemPrompt: &fleet.SystemPrompt{Mode: "append", Text: "new"}},
			want:  `{"model":"qwen3:8b","input":"x"}`,
		},
		{
			name:    "ollama generate: system field",
			body:    `{"prompt":"x","system":"old"}`,
			dialect: "ollama",
			patch:   &policy.Patch{SystemPrompt: &fleet.SystemPrompt{Mode: "prepend", Text: "new"}},
			want:    `{"model":"qwen3:8b","prompt":"x","system":"new\n\nold"}`,
		},
		{
			name:  "thinking off, openai dialect, merged into existing kwargs",
			body:  `{"chat_template_kwargs":{"x":1,"enable_thinking":true}}`,
			patch: &policy.Patch{DisableThinking: true},
			want:  `{"model":"qwen3:8b","chat_template_kwargs":{"x":1,"enable_thinking":false}}`,
		},
		{
			name:    "thinking off, ollama dialect",
			body:    `{"think":true,"n":12345678901234567890}`,
			dialect: "ollama",
			patch:   &policy.Patch{DisableThinking: true},
			want:    `{"model":"qwen3:8b","think":false,"n":12345678901234567890}`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			orig := c.body
			got, err := policies.ApplyPatch([]byte(c.body), c.patch, c.dialect, "qwen3:8b")
			if err != nil {
				t.Fatal(err)
			}
			if c.patch.Empty() {
				if string(got) != c.want {
					t.Fatalf("got  %s\nwant %s", got, c.want)
				}
			} else if g, w := decode(t, got), decode(t, []byte(c.want)); !reflect.DeepEqual(g, w) {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
			if c.body != orig {
				t.Fatal("body modified")
			}
		})
	}
}

func TestApplyPatchDoesNotModifyPatch(t *testing.T) {
	p := &policy.Patch{
		Defaults:     map[string]any{"options": map[string]any{"a": 1}, "messages": []any{map[string]any{"role": "system", "content": "d"}}},
		Overrides:    map[string]any{"options": map[string]any{"b": 2}},
		SystemPrompt: &fleet.SystemPrompt{Mode: "prepend", Text: "p"},
	}
	before := string(mustMarshal(t, p))
	for _, body := range []string{`{}`, `{"options":{"c":3}}`, `{"messages":[{"role":"system","content":"x"}]}`} {
		if _, err := policies.ApplyPatch([]byte(body), p, "openai", "m"); err != nil {
			t.Fatal(err)
		}
	}
	if after := string(mustMarshal(t, p)); after != before {
		t.Fatalf("patch modified:\n%s\n%s", before, after)
	}
}

func mustMarshal(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestApplyPatchErrors(t *testing.T) {
	for _, body := range []string{``, `[]`, `"x"`, `{"a":1`, `{"a":1} {}`, `{"a":1x}`, `null`} {
		for _, p := range []*policy.Patch{nil, {DisableThinking: true}} {
			if _, err := policies.ApplyPatch([]byte(body), p, "openai", "m"); err == nil {
				t.Errorf("body %q patch %v: no error", body, p != nil)
			}
		}
	}
	if _, err := policies.ApplyPatch([]byte(`{}`), nil, "grpc", "m"); err == nil || !strings.Contains(err.Error(), "dialect") {
		t.Errorf("unknown dialect accepted: %v", err)
	}
}

// fuzzPatches are the patches the fuzzer picks from.
var fuzzPatches = []*policy.Patch{
	nil,
	{DisableThinking: true},
	{Defaults: map[string]any{"temperature": 0.2, "options": map[string]any{"num_ctx": 8192}}},
	{Overrides: map[string]any{"stream": false, "options": map[string]any{"top_k": 1}}},
	{SystemPrompt: &fleet.SystemPrompt{Mode: "prepend", Text: "P"}},
	{SystemPrompt: &fleet.SystemPrompt{Mode: "append", Text: "A"}},
	{SystemPrompt: &fleet.SystemPrompt{Mode: "replace", Text: "R"}, DisableThinking: true},
}

// FuzzApplyPatch checks, for any body: no panic; a valid JSON object body
// gives a valid JSON object whose model is the upstream model; the fast
// path (empty patch) agrees with a full decode/re-encode; invalid bodies are
// refused.
func FuzzApplyPatch(f *testing.F) {
	f.Add([]byte(`{"model":"qwen3","messages":[{"role":"user","content":"hi"}]}`), "qwen3:8b", uint8(0), false)
	f.Add([]byte(`{"messages":[{"role":"system","content":[{"type":"text","text":"s"}]}],"options":{"a":[1,2]}}`), "m\u2028\"", uint8(4), true)
	f.Add([]byte(`{"model":1,"model":"x","prompt":"p","system":null}`), "", uint8(5), true)
	f.Fuzz(func(t *testing.T, body []byte, model string, pi uint8, ollama bool) {
		p := fuzzPatches[int(pi)%len(fuzzPatches)]
		dialect := policies.DialectOpenAI
		if ollama {
			dialect = policies.DialectOllama
		}
		out, err := policies.ApplyPatch(body, p, dialect, model)
		var in map[string]any
		valid := json.Valid(body) && json.Unmarshal(body, &in) == nil && in != nil
		if !valid {
			if err == nil {
				t.Fatalf("invalid body accepted: %q -> %q", body, out)
			}
			return
		}
		if err != nil {
			t.Fatalf("valid body refused: %q: %v", body, err)
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil || got == nil {
			t.Fatalf("output not a JSON object: %q -> %q: %v", body, out, err)
		}
		if model != "" {
			var want string
			_ = json.Unmarshal(mustMarshal(t, model), &want)
			if got["model"] != want {
				t.Fatalf("model %q, want %q: %q", got["model"], want, out)
			}
		}
		if p.Empty() {
			// Differential: the fast path must equal a full decode with the
			// model set.
			if model != "" {
				in["model"] = got["model"]
			}
			if !reflect.DeepEqual(in, got) {
				t.Fatalf("fast path differs:\nin  %q\nout %q", body, out)
			}
			return
		}
		if p.DisableThinking {
			if ollama {
				if got["think"] != false {
					t.Fatalf("think not false: %q", out)
				}
			} else if kw, _ := got["chat_template_kwargs"].(map[string]any); kw["enable_thinking"] != false {
				t.Fatalf("enable_thinking not false: %q", out)
			}
		}
		if p.SystemPrompt != nil {
			if msgs, ok := in["messages"].([]any); ok {
				gm, _ := got["messages"].([]any)
				if len(gm) < len(msgs) || len(gm) > len(msgs)+1 {
					t.Fatalf("messages %d -> %d", len(msgs), len(gm))
				}
			}
		}
		for k, v := range p.Overrides {
			if _, isObj := v.(map[string]any); !isObj && !reflect.DeepEqual(got[k], v) {
				t.Fatalf("override %s not applied: %q", k, out)
			}
		}
	})
}
