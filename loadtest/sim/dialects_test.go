package sim

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go"
	"github.com/openai/openai-go/responses"
)

// Each server serves /v1/responses and /v1/messages natively or not, by
// version and by switch; "not" is the server's own 404 for an unknown route.
func TestDialectSwitches(t *testing.T) {
	cases := []struct {
		flavor                        Flavor
		version                       string
		resp, msgs                    Switch
		wantResp, wantMsgs, wantCount bool
		notFound                      string
	}{
		{FlavorOllama, "0.13.0", Auto, Auto, false, false, false, "404 page not found"},
		{FlavorOllama, "0.13.3", Auto, Auto, true, false, false, "404 page not found"},
		{FlavorOllama, "0.14.0", Auto, Auto, true, true, false, "404 page not found"},
		{FlavorOllama, "0.17.4", Off, Off, false, false, false, "404 page not found"},
		{FlavorVLLM, "", Auto, Auto, true, true, true, `{"detail":"Not Found"}`},
		{FlavorVLLM, "", Off, Auto, false, true, true, `{"detail":"Not Found"}`},
		{FlavorLlamaCPP, "", Auto, Off, true, false, false, `{"error":{"code":404,"message":"File Not Found","type":"not_found_error"}}`},
		{FlavorOpenAI, "", Auto, Auto, false, false, false, `{"error":{"message":"Invalid URL (POST /v1/responses)","type":"invalid_request_error","param":null,"code":null}}`},
		{FlavorOpenAI, "", On, On, true, true, true, ""},
	}
	for _, c := range cases {
		t.Run(string(c.flavor)+"-"+c.version+"-"+string(c.resp)+string(c.msgs), func(t *testing.T) {
			s := start(t, Config{Flavor: c.flavor, Version: c.version, Responses: c.resp, Messages: c.msgs, Models: []Model{{Name: "m"}}})
			check := func(path, body string, want bool) {
				status, _, got := post(t, s, path, body)
				if want && status != 200 {
					t.Fatalf("%s: %d %s", path, status, got)
				}
				if !want {
					if status != 404 {
						t.Fatalf("%s served (%d)", path, status)
					}
					if path == "/v1/responses" && got != c.notFound {
						t.Fatalf("%s: 404 body %q, want %q", path, got, c.notFound)
					}
				}
			}
			check("/v1/responses", `{"model":"m","input":"hi"}`, c.wantResp)
			check("/v1/messages", `{"model":"m","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`, c.wantMsgs)
			check("/v1/messages/count_tokens", `{"model":"m","messages":[{"role":"user","content":"hello there"}]}`, c.wantCount)
		})
	}
}

// The official OpenAI client reads every server's Responses answers,
// streamed and not.
func TestResponsesClient(t *testing.T) {
	for _, fl := range []Flavor{FlavorOllama, FlavorVLLM, FlavorLlamaCPP, FlavorOpenAI} {
		t.Run(string(fl), func(t *testing.T) {
			s := start(t, Config{Flavor: fl, Responses: On, Models: []Model{{Name: "qwen3:8b", Thinking: true}}, Behavior: Behavior{Chunks: 5, ReasoningChunks: 2}})
			c := client(s)
			ctx := context.Background()
			res, err := c.Responses.New(ctx, responses.ResponseNewParams{Model: "qwen3:8b",
				Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hello")}})
			if err != nil {
				t.Fatal(err)
			}
			if res.OutputText() != Text(5) || res.Status != "completed" || res.Usage.OutputTokens != 7 || len(res.Output) != 2 || res.Output[0].Type != "reasoning" {
				t.Fatalf("response %s", res.RawJSON())
			}
			st := c.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "qwen3:8b",
				Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hello")}})
			var text, reasoning strings.Builder
			var types []string
			seq := int64(-1)
			for st.Next() {
				ev := st.Current()
				if ev.SequenceNumber != seq+1 {
					t.Fatalf("sequence %d after %d", ev.SequenceNumber, seq)
				}
				seq = ev.SequenceNumber
				types = appendCollapsed(types, ev.Type)
				switch ev.Type {
				case "response.output_text.delta":
					text.WriteString(ev.Delta.OfString)
				case "response.reasoning_summary_text.delta":
					reasoning.WriteString(ev.Delta.OfString)
				}
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
			want := "response.created response.in_progress response.output_item.added response.reasoning_summary_text.delta " +
				"response.reasoning_summary_text.done response.output_item.done response.output_item.added response.content_part.added " +
				"response.output_text.delta response.output_text.done response.content_part.done response.output_item.done response.completed"
			if strings.Join(types, " ") != want || text.String() != Text(5) || reasoning.String() != Reasoning(2) {
				t.Fatalf("events %v text %q reasoning %q", types, text.String(), reasoning.String())
			}
		})
	}
}

type sseEvent struct {
	name string
	data map[string]any
}

func readSSE(t *testing.T, body string) []sseEvent {
	t.Helper()
	var out []sseEvent
	for _, ev := range strings.Split(strings.TrimSpace(body), "\n\n") {
		var e sseEvent
		for _, l := range strings.Split(ev, "\n") {
			if v, ok := strings.CutPrefix(l, "event: "); ok {
				e.name = v
			} else if v, ok := strings.CutPrefix(l, "data: "); ok && v != "[DONE]" {
				if err := json.Unmarshal([]byte(v), &e.data); err != nil {
					t.Fatalf("%v: %s", err, v)
				}
			}
		}
		out = append(out, e)
	}
	return out
}

// Anthropic streaming: the thinking block, then the text block, in
// Ollama's event order (anthropic/anthropic.go StreamConverter).
func TestMessagesStream(t *testing.T) {
	s := start(t, Config{Flavor: FlavorOllama, Models: []Model{{Name: "qwen3:8b", Thinking: true}}, Behavior: Behavior{Chunks: 3, ReasoningChunks: 2}})
	status, h, body := post(t, s, "/v1/messages", `{"model":"qwen3:8b","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if status != 200 || h.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %v", status, h)
	}
	var steps []string
	var text, thinking strings.Builder
	for _, e := range readSSE(t, body) {
		if e.data["type"] != e.name {
			t.Fatalf("event %q carries type %v", e.name, e.data["type"])
		}
		step := e.name
		if idx, ok := e.data["index"].(float64); ok {
			step += "#" + string(rune('0'+int(idx)))
		}
		if d, ok := e.data["delta"].(map[string]any); ok {
			text.WriteString(str(d["text"]))
			thinking.WriteString(str(d["thinking"]))
			if r, ok := d["stop_reason"].(string); ok {
				step += ":" + r
			}
		}
		steps = appendCollapsed(steps, step)
	}
	want := "message_start content_block_start#0 content_block_delta#0 content_block_stop#0 content_block_start#1 content_block_delta#1 content_block_stop#1 message_delta:end_turn message_stop"
	if strings.Join(steps, " ") != want || text.String() != Text(3) || thinking.String() != Reasoning(2) {
		t.Fatalf("steps %v\ntext %q thinking %q", steps, text.String(), thinking.String())
	}
}

func str(v any) string { s, _ := v.(string); return s }

// With Behavior.ToolCalls, a model with tools calls the first tool in every
// dialect, and answers in text once the conversation ends with the result.
func TestToolCalls(t *testing.T) {
	tool := `"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city","days"]}}}]`
	flatTool := `"tools":[{"type":"function","name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}]`
	anthTool := `"tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}]`
	msg := `"messages":[{"role":"user","content":"weather?"}]`
	for _, c := range []struct {
		name   string
		flavor Flavor
		path   string
		body   string
		want   []string
	}{
		{"ollama oai", FlavorOllama, "/v1/chat/completions", `{"model":"m",` + msg + `,` + tool + `}`,
			[]string{`"finish_reason":"tool_calls"`, `"name":"get_weather","arguments":"{\"city\":\"sim\",\"days\":1}"`}},
		{"ollama oai stream", FlavorOllama, "/v1/chat/completions", `{"model":"m","stream":true,` + msg + `,` + tool + `}`,
			[]string{`"tool_calls":[{`, `"finish_reason":"tool_calls"`, "data: [DONE]"}},
		{"ollama native", FlavorOllama, "/api/chat", `{"model":"m","stream":false,` + msg + `,` + tool + `}`,
			[]string{`"tool_calls":[{"id":`, `"arguments":{"city":"sim","days":1}`, `"done_reason":"stop"`}},
		{"vllm", FlavorVLLM, "/v1/chat/completions", `{"model":"m",` + msg + `,` + tool + `}`,
			[]string{`"content":null`, `"finish_reason":"tool_calls"`}},
		{"responses", FlavorOllama, "/v1/responses", `{"model":"m","input":"weather?",` + flatTool + `}`,
			[]string{`"type":"function_call"`, `"name":"get_weather"`, `"arguments":"{\"city\":\"sim\"}"`}},
		{"messages", FlavorOllama, "/v1/messages", `{"model":"m","max_tokens":64,` + msg + `,` + anthTool + `}`,
			[]string{`"type":"tool_use"`, `"input":{"city":"sim"}`, `"stop_reason":"tool_use"`}},
		{"after the result", FlavorOllama, "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"weather?"},{"role":"tool","content":"sunny"}],` + tool + `}`,
			[]string{`"finish_reason":"stop"`, Text(2)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := start(t, Config{Flavor: c.flavor, Models: []Model{{Name: "m"}}, Behavior: Behavior{Chunks: 2, ToolCalls: true}})
			status, _, body := post(t, s, c.path, c.body)
			if status != 200 {
				t.Fatalf("%d %s", status, body)
			}
			for _, w := range c.want {
				if !strings.Contains(body, w) {
					t.Fatalf("answer lacks %s:\n%s", w, body)
				}
			}
		})
	}
}

// Behaviours that changed between Ollama releases follow Config.Version.
func TestOllamaVersionGates(t *testing.T) {
	models := []Model{{Name: "chat"}, {Name: "emb", Kind: KindEmbeddings}}
	get := func(s *Server, path string) string {
		_, _, body := request(t, s, http.MethodGet, path, "")
		return body
	}
	old := start(t, Config{Flavor: FlavorOllama, Version: "0.6.0", Models: models})
	if _, _, body := post(t, old, "/api/show", `{"model":"chat"}`); strings.Contains(body, "capabilities") {
		t.Fatalf("0.6.0 reports capabilities: %s", body)
	}
	if _, _, body := post(t, old, "/api/embed", `{"model":"chat","input":"x"}`); !strings.Contains(body, `"embeddings":[[`) {
		t.Fatalf("0.6.0 chat model embed: %s", body)
	}
	post(t, old, "/api/chat", `{"model":"chat","messages":[{"role":"user","content":"x"}],"stream":false}`)
	if body := get(old, "/api/ps"); strings.Contains(body, "context_length") || !strings.Contains(body, `"name":"chat:latest"`) {
		t.Fatalf("0.6.0 ps: %s", body)
	}
	v0124 := start(t, Config{Flavor: FlavorOllama, Version: "0.12.4", Models: models})
	if status, _, body := post(t, v0124, "/api/chat", `{"model":"chat","messages":[{"role":"user","content":"x"}],"stream":false,"think":false}`); status != 400 || !strings.Contains(body, "registry.ollama.ai/library/chat:latest does not support thinking") {
		t.Fatalf("0.12.4 think false on a model without thinking: %d %s", status, body)
	}
	v030 := start(t, Config{Flavor: FlavorOllama, Version: "0.30.0", Models: models})
	if status, _, body := post(t, v030, "/api/embed", `{"model":"chat","input":"x"}`); status != 501 || body != "{\"error\":\"This server does not support embeddings. Start it with `--embeddings`\"}" {
		t.Fatalf("0.30.0 chat model embed: %d %s", status, body)
	}
	if body := get(v030, "/api/version"); body != `{"version":"0.30.0"}` {
		t.Fatal(body)
	}
}

// Ollama lists names with their tag and accepts them without; answers echo
// the name as the client gave it.
func TestOllamaNames(t *testing.T) {
	s := start(t, Config{Flavor: FlavorOllama, Models: []Model{{Name: "nomic-embed-text", Kind: KindEmbeddings}, {Name: "qwen3:8b"}}})
	resp, err := http.Get(s.URL() + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	var list modelList
	_ = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list.Data) != 2 || list.Data[0].ID != "qwen3:8b" || list.Data[1].ID != "nomic-embed-text:latest" {
		t.Fatalf("models %+v", list.Data)
	}
	for _, name := range []string{"nomic-embed-text", "nomic-embed-text:latest", "NOMIC-embed-text"} {
		status, _, body := post(t, s, "/api/embed", `{"model":"`+name+`","input":"x"}`)
		if status != 200 || !strings.HasPrefix(body, `{"model":"`+name+`"`) {
			t.Fatalf("%s: %d %s", name, status, body)
		}
	}
	status, _, body := post(t, s, "/api/chat", `{"model":"nomic-embed-text","messages":[{"role":"user","content":"x"}]}`)
	if status != 400 || body != `{"error":"\"nomic-embed-text\" does not support chat"}` {
		t.Fatalf("chat on an embedding model: %d %s", status, body)
	}
}
