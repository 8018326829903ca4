package sim

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func post(t testing.TB, s *Server, path, body string) (int, http.Header, string) {
	t.Helper()
	return request(t, s, http.MethodPost, path, body)
}

func request(t testing.TB, s *Server, method, path, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func thinkingModels() []Model {
	return []Model{{Name: "qwen3:8b", Family: "qwen3", Thinking: true}, {Name: "llama3.2:3b"}}
}

// TestThinkingSwitches: every way a client can ask for thinking to be off,
// per server and endpoint, does exactly what the real server does with it:
// turns it off, is ignored (the model still thinks), or is refused.
func TestThinkingSwitches(t *testing.T) {
	const (
		off     = "off"     // content only
		on      = "on"      // reasoning in the expected field
		inline  = "inline"  // reasoning inside the content, between <think> tags
		hidden  = "hidden"  // no reasoning in the answer, yet the tokens were spent
		refused = "refused" // 400
	)
	msg := `"messages":[{"role":"user","content":"hi"}]`
	cases := []struct {
		name    string
		flavor  Flavor
		version string
		path    string
		body    string
		want    string
		field   string // where the reasoning is, for "on"
	}{
		// Ollama's OpenAI layer reads reasoning_effort / reasoning.effort
		// only (openai/openai.go FromChatRequest).
		{"ollama oai think false ignored", FlavorOllama, "", "/v1/chat/completions", `{"model":"qwen3:8b",` + msg + `,"think":false}`, on, "reasoning"},
		{"ollama oai template kwargs ignored", FlavorOllama, "", "/v1/chat/completions", `{"model":"qwen3:8b",` + msg + `,"chat_template_kwargs":{"enable_thinking":false}}`, on, "reasoning"},
		{"ollama oai effort none", FlavorOllama, "", "/v1/chat/completions", `{"model":"qwen3:8b",` + msg + `,"reasoning_effort":"none"}`, off, ""},
		{"ollama oai reasoning object none", FlavorOllama, "", "/v1/chat/completions", `{"model":"qwen3:8b",` + msg + `,"reasoning":{"effort":"none"}}`, off, ""},
		{"ollama oai reasoning object wins", FlavorOllama, "", "/v1/chat/completions", `{"model":"qwen3:8b",` + msg + `,"reasoning":{},"reasoning_effort":"none"}`, on, "reasoning"},
		{"ollama oai effort low refused", FlavorOllama, "", "/v1/chat/completions", `{"model":"qwen3:8b",` + msg + `,"reasoning_effort":"low"}`, refused, ""},
		{"ollama oai effort none before 0.12.4 refused", FlavorOllama, "0.12.3", "/v1/chat/completions", `{"model":"qwen3:8b",` + msg + `,"reasoning_effort":"none"}`, refused, ""},
		{"ollama native think false", FlavorOllama, "", "/api/chat", `{"model":"qwen3:8b",` + msg + `,"stream":false,"think":false}`, off, ""},
		{"ollama native think omitted", FlavorOllama, "", "/api/chat", `{"model":"qwen3:8b",` + msg + `,"stream":false}`, on, "thinking"},
		{"ollama native think omitted before 0.12.4", FlavorOllama, "0.12.3", "/api/chat", `{"model":"qwen3:8b",` + msg + `,"stream":false}`, inline, ""},
		{"ollama native before 0.9 ignores think", FlavorOllama, "0.8.0", "/api/chat", `{"model":"qwen3:8b",` + msg + `,"stream":false,"think":false}`, inline, ""},
		{"ollama native think true, no thinking", FlavorOllama, "", "/api/chat", `{"model":"llama3.2:3b",` + msg + `,"stream":false,"think":true}`, refused, ""},
		{"ollama responses effort none ignored", FlavorOllama, "", "/v1/responses", `{"model":"qwen3:8b","input":"hi","reasoning":{"effort":"none"}}`, on, "output.reasoning"},
		{"ollama messages disabled ignored", FlavorOllama, "", "/v1/messages", `{"model":"qwen3:8b","max_tokens":64,` + msg + `,"thinking":{"type":"disabled"}}`, on, "content.thinking"},
		{"ollama completions drops thinking", FlavorOllama, "", "/v1/completions", `{"model":"qwen3:8b","prompt":"hi"}`, hidden, ""},
		{"ollama no_think", FlavorOllama, "", "/v1/chat/completions", `{"model":"qwen3:8b","messages":[{"role":"user","content":"hi /no_think"}]}`, off, ""},
		// vLLM: chat_template_kwargs reach the Qwen3 template; the
		// reasoning field follows the release.
		{"vllm think false ignored", FlavorVLLM, "", "/v1/chat/completions", `{"model":"qwen3:8b",` + msg + `,"think":false}`, on, "reasoning"},
		{"vllm template kwargs", FlavorVLLM, "", "/v1/chat/completions", `{"model":"qwen3:8b",` + msg + `,"chat_template_kwargs":{"enable_thinking":false}}`, off, ""},
		{"vllm include_reasoning false", FlavorVLLM, "", "/v1/chat/completions", `{"model":"qwen3:8b",` + msg + `,"include_reasoning":false}`, hidden, ""},
		{"vllm 0.10 reasoning_content", FlavorVLLM, "0.10.0", "/v1/chat/completions", `{"model":"qwen3:8b",` + msg + `}`, on, "reasoning_content"},
		{"vllm 0.12 both fields", FlavorVLLM, "0.12.0", "/v1/chat/completions", `{"model":"qwen3:8b",` + msg + `}`, on, "reasoning+reasoning_content"},
		// llama.cpp: template kwargs, reasoning_effort none, reasoning_format none.
		{"llamacpp think false ignored", FlavorLlamaCPP, "", "/v1/chat/completions", `{"model":"qwen3:8b",` + msg + `,"think":false}`, on, "reasoning_content"},
		{"llamacpp template kwargs", FlavorLlamaCPP, "", "/v1/chat/completions", `{"model":"qwen3:8b",` + msg + `,"chat_template_kwargs":{"enable_thinking":false}}`, off, ""},
		{"llamacpp effort none", FlavorLlamaCPP, "", "/v1/chat/completions", `{"model":"qwen3:8b",` + msg + `,"reasoning_effort":"none"}`, off, ""},
		{"llamacpp reasoning_format none", FlavorLlamaCPP, "", "/v1/chat/completions", `{"model":"qwen3:8b",` + msg + `,"reasoning_format":"none"}`, inline, ""},
		// A generic OpenAI-compatible server.
		{"openai think false ignored", FlavorOpenAI, "", "/v1/chat/completions", `{"model":"qwen3:8b",` + msg + `,"think":false}`, on, "reasoning_content"},
		{"openai template kwargs", FlavorOpenAI, "", "/v1/chat/completions", `{"model":"qwen3:8b",` + msg + `,"chat_template_kwargs":{"enable_thinking":false}}`, off, ""},
		{"openai system no_think", FlavorOpenAI, "", "/v1/chat/completions", `{"model":"qwen3:8b","messages":[{"role":"system","content":"/no_think"},{"role":"user","content":"hi"}]}`, off, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			models := thinkingModels()
			if c.flavor == FlavorLlamaCPP {
				models = models[:1] // single-model llama-server
			}
			s := start(t, Config{Flavor: c.flavor, Version: c.version, Models: models, Behavior: Behavior{Chunks: 4, ReasoningChunks: 3}})
			status, _, body := post(t, s, c.path, c.body)
			if c.want == refused {
				if status != 400 {
					t.Fatalf("want 400, got %d %s", status, body)
				}
				return
			}
			if status != 200 {
				t.Fatalf("%d %s", status, body)
			}
			content, fields, tokens := answerParts(t, c.path, body)
			switch c.want {
			case off:
				if content != Text(4) || len(fields) != 0 || tokens != 4 {
					t.Fatalf("thinking not off: content %q reasoning %v tokens %d", content, fields, tokens)
				}
			case on:
				if content != Text(4) || strings.Join(keys(fields), "+") != c.field || tokens != 7 {
					t.Fatalf("want reasoning in %s: content %q reasoning %v tokens %d", c.field, content, fields, tokens)
				}
				for _, r := range fields {
					if r != Reasoning(3) {
						t.Fatalf("reasoning %q", r)
					}
				}
			case inline:
				if content != InlineReasoning(3)+Text(4) || len(fields) != 0 {
					t.Fatalf("want inline reasoning: content %q reasoning %v", content, fields)
				}
			case hidden:
				if content != Text(4) || len(fields) != 0 || tokens != 7 {
					t.Fatalf("want hidden reasoning: content %q reasoning %v tokens %d", content, fields, tokens)
				}
			}
		})
	}
}

func keys(m map[string]string) []string {
	var out []string
	for _, k := range []string{"reasoning", "reasoning_content", "thinking", "output.reasoning", "content.thinking"} {
		if _, ok := m[k]; ok {
			out = append(out, k)
		}
	}
	return out
}

// answerParts reads content, reasoning fields and output token count from
// a non-streamed answer of any dialect.
func answerParts(t *testing.T, path, body string) (content string, reasoning map[string]string, tokens int) {
	t.Helper()
	reasoning = map[string]string{}
	var v map[string]any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	num := func(m any, k string) int {
		f, _ := m.(map[string]any)[k].(float64)
		return int(f)
	}
	str := func(m map[string]any, k string) {
		if s, ok := m[k].(string); ok {
			reasoning[k] = s
		}
	}
	switch path {
	case "/v1/chat/completions":
		msg := v["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)
		content, _ = msg["content"].(string)
		str(msg, "reasoning")
		str(msg, "reasoning_content")
		tokens = num(v["usage"], "completion_tokens")
	case "/v1/completions":
		content = v["choices"].([]any)[0].(map[string]any)["text"].(string)
		tokens = num(v["usage"], "completion_tokens")
	case "/api/chat":
		msg := v["message"].(map[string]any)
		content, _ = msg["content"].(string)
		str(msg, "thinking")
		tokens = int(v["eval_count"].(float64))
	case "/v1/responses":
		for _, it := range v["output"].([]any) {
			item := it.(map[string]any)
			switch item["type"] {
			case "reasoning":
				reasoning["output.reasoning"] = item["summary"].([]any)[0].(map[string]any)["text"].(string)
			case "message":
				content = item["content"].([]any)[0].(map[string]any)["text"].(string)
			}
		}
		tokens = num(v["usage"], "output_tokens")
	case "/v1/messages":
		for _, bl := range v["content"].([]any) {
			blk := bl.(map[string]any)
			switch blk["type"] {
			case "thinking":
				reasoning["content.thinking"] = blk["thinking"].(string)
			case "text":
				content = blk["text"].(string)
			}
		}
		tokens = num(v["usage"], "output_tokens")
	}
	return content, reasoning, tokens
}
