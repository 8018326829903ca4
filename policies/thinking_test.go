package policies

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/geniehive/geniehive/policy"
)

// TestApplyRewriteThinking: each dialect gets its own switch, and the
// switches the upstream would otherwise read (or another server's) go.
func TestApplyRewriteThinking(t *testing.T) {
	cases := []struct {
		name  string
		body  string
		r     Rewrite
		patch *policy.Patch
		want  string
	}{
		{"ollama oai off replaces think", `{"model":"m","think":false}`, Rewrite{Dialect: DialectOllamaOpenAI, Thinking: -1}, nil,
			`{"model":"m","reasoning_effort":"none"}`},
		{"ollama oai off: reasoning object too", `{"model":"m","reasoning":{"effort":"high","summary":"auto"}}`, Rewrite{Dialect: DialectOllamaOpenAI, Thinking: -1}, nil,
			`{"model":"m","reasoning":{"effort":"none","summary":"auto"},"reasoning_effort":"none"}`},
		{"ollama oai off from the patch", `{"model":"m"}`, Rewrite{Dialect: DialectOllamaOpenAI, Thinking: -1}, &policy.Patch{DisableThinking: true},
			`{"model":"m","reasoning_effort":"none"}`},
		{"ollama oai on drops a level (400 but for gpt-oss)", `{"model":"m","reasoning_effort":"medium","reasoning":{"effort":"high"}}`, Rewrite{Dialect: DialectOllamaOpenAI, Thinking: 1}, nil,
			`{"model":"m"}`},
		{"ollama oai on keeps a level for gpt-oss", `{"model":"m","reasoning_effort":"medium"}`, Rewrite{Dialect: DialectOllamaOpenAI, Thinking: 1, EffortLevels: true}, nil,
			`{"model":"m","reasoning_effort":"medium"}`},
		{"openai off", `{"model":"m","think":false,"reasoning_effort":"none"}`, Rewrite{Dialect: DialectOpenAI, Thinking: -1}, nil,
			`{"chat_template_kwargs":{"enable_thinking":false},"model":"m"}`},
		{"openai on keeps other kwargs", `{"model":"m","chat_template_kwargs":{"x":1},"think":true}`, Rewrite{Dialect: DialectOpenAI, Thinking: 1}, nil,
			`{"chat_template_kwargs":{"enable_thinking":true,"x":1},"model":"m"}`},
		{"ollama native", `{"model":"m","reasoning_effort":"none"}`, Rewrite{Dialect: DialectOllama, Thinking: -1}, nil,
			`{"model":"m","reasoning_effort":"none","think":false}`},
		{"as is", `{"model":"m","think":false}`, Rewrite{Dialect: DialectOllamaOpenAI, Model: "n"}, nil,
			`{"model":"n","think":false}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := ApplyRewrite([]byte(c.body), c.patch, c.r)
			if err != nil {
				t.Fatal(err)
			}
			var got, want any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			_ = json.Unmarshal([]byte(c.want), &want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %s\nwant %s", out, c.want)
			}
		})
	}
}
