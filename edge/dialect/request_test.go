package dialect

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// jsonEq reports whether a and b hold the same JSON value.
func jsonEq(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func chatFor(t *testing.T, api API, body string, o *ChatOptions) ([]byte, *Request) {
	t.Helper()
	r := &Request{}
	if err := r.Parse(api, []byte(body)); err != nil {
		t.Fatalf("parse: %v", err)
	}
	b, err := r.AppendChat(nil, o)
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	return b, r
}

func TestResponsesToChat(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"string input, instructions, sampling", `{"model":"m","input":"hi","instructions":"sys","max_output_tokens":50,"temperature":0.2,"top_p":0.9,"store":false,"metadata":{"a":"b"},"include":["reasoning.encrypted_content"],"prompt_cache_key":"k"}`,
			`{"model":"m","messages":[{"role":"system","content":"sys"},{"role":"user","content":"hi"}],"max_tokens":50,"temperature":0.2,"top_p":0.9}`},
		{"stream asks for usage", `{"model":"m","input":"hi","stream":true}`,
			`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`},
		{"items: developer, parts, image", `{"model":"m","input":[{"type":"message","role":"developer","content":"rules"},{"role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_text","text":"b"}]},{"role":"user","content":[{"type":"input_text","text":"see"},{"type":"input_image","image_url":"data:image/png;base64,AAA","detail":"low"}]}]}`,
			`{"model":"m","messages":[{"role":"system","content":"rules"},{"role":"user","content":"a\n\nb"},{"role":"user","content":[{"type":"text","text":"see"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAA","detail":"low"}}]}]}`},
		{"reasoning, text and calls merge into one assistant message", `{"model":"m","input":[{"role":"user","content":"q"},{"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"think"}],"encrypted_content":"x"},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"let me look"}]},{"type":"function_call","call_id":"c1","name":"f","arguments":"{\"a\":1}"},{"type":"function_call","call_id":"c2","name":"g","arguments":""},{"type":"function_call_output","call_id":"c1","output":"one"},{"type":"function_call_output","call_id":"c2","output":[{"type":"input_text","text":"two"},{"type":"input_image","image_url":"http://x/i.png"}]},{"role":"user","content":"next"}]}`,
			`{"model":"m","messages":[{"role":"user","content":"q"},{"role":"assistant","content":"let me look","reasoning_content":"think","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}},{"id":"c2","type":"function","function":{"name":"g","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"one"},{"role":"tool","tool_call_id":"c2","content":"two"},{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://x/i.png"}}]},{"role":"user","content":"next"}]}`},
		{"tools, tool_choice, parallel, json_schema", `{"model":"m","input":"hi","tools":[{"type":"function","name":"f","description":"d","parameters":{"type":"object","properties":{}},"strict":true},{"type":"function","name":"g","parameters":null}],"tool_choice":{"type":"function","name":"f"},"parallel_tool_calls":false,"text":{"format":{"type":"json_schema","name":"out","schema":{"type":"object"},"strict":true}}}`,
			`{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object","properties":{}},"strict":true}},{"type":"function","function":{"name":"g","parameters":{"type":"object","properties":{}}}}],"tool_choice":{"type":"function","function":{"name":"f"}},"parallel_tool_calls":false,"response_format":{"type":"json_schema","json_schema":{"name":"out","schema":{"type":"object"},"strict":true}}}`},
		{"custom tool as a one-string function", `{"model":"m","input":[{"type":"custom_tool_call","call_id":"c","name":"apply_patch","input":"*** Begin"},{"type":"custom_tool_call_output","call_id":"c","output":"done"}],"tools":[{"type":"custom","name":"apply_patch","description":"patch","format":{"type":"grammar"}}],"tool_choice":"required"}`,
			`{"model":"m","messages":[{"role":"assistant","content":"","tool_calls":[{"id":"c","type":"function","function":{"name":"apply_patch","arguments":"{\"input\":\"*** Begin\"}"}}]},{"role":"tool","tool_call_id":"c","content":"done"}],"tools":[{"type":"function","function":{"name":"apply_patch","description":"patch","parameters":` + customParams + `}}],"tool_choice":"required"}`},
		{"effort none turns thinking off", `{"model":"m","input":"hi","reasoning":{"effort":"none"}}`,
			`{"model":"m","messages":[{"role":"user","content":"hi"}],"reasoning_effort":"none","chat_template_kwargs":{"enable_thinking":false}}`},
		{"effort levels are not forwarded by default", `{"model":"m","input":"hi","reasoning":{"effort":"high","summary":"auto"}}`,
			`{"model":"m","messages":[{"role":"user","content":"hi"}]}`},
		{"json_object", `{"model":"m","input":"hi","text":{"format":{"type":"json_object"},"verbosity":"low"}}`,
			`{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, _ := chatFor(t, APIResponses, c.in, nil)
			jsonEq(t, b, c.want)
		})
	}
}

func TestChatOptions(t *testing.T) {
	in := `{"model":"m","input":[{"type":"reasoning","summary":[{"type":"summary_text","text":"r"}]},{"type":"function_call","call_id":"c","name":"f","arguments":"{}"}],"reasoning":{"effort":"minimal"}}`
	b, _ := chatFor(t, APIResponses, in, &ChatOptions{Model: "up:1", ReasoningKey: "reasoning", ForwardEffort: true})
	jsonEq(t, b, `{"model":"up:1","messages":[{"role":"assistant","content":"","reasoning":"r","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}],"reasoning_effort":"low"}`)
	b, _ = chatFor(t, APIResponses, in, &ChatOptions{ReasoningKey: "-", DisableThinking: true, ThinkingOff: TemplateKwargs})
	jsonEq(t, b, `{"model":"m","messages":[{"role":"assistant","content":"","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}],"chat_template_kwargs":{"enable_thinking":false}}`)
	b, _ = chatFor(t, APIMessages, `{"model":"m","max_tokens":5,"top_k":40,"messages":[{"role":"user","content":"x"}]}`, &ChatOptions{TopK: true})
	jsonEq(t, b, `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":5,"top_k":40}`)
}

func TestMessagesToChat(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"system blocks, sampling, stop sequences", `{"model":"m","max_tokens":100,"system":[{"type":"text","text":"a","cache_control":{"type":"ephemeral"}},{"type":"text","text":"b"}],"messages":[{"role":"user","content":"hi"}],"temperature":1,"top_p":0.5,"top_k":10,"stop_sequences":["END","\n\nHuman:"],"metadata":{"user_id":"u"}}`,
			`{"model":"m","messages":[{"role":"system","content":"a\n\nb"},{"role":"user","content":"hi"}],"max_tokens":100,"temperature":1,"top_p":0.5,"stop":["END","\n\nHuman:"]}`},
		{"tool round trip, thinking, images", `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text","text":"look"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBO"}}]},{"role":"assistant","content":[{"type":"thinking","thinking":"hmm","signature":"sig"},{"type":"redacted_thinking","data":"x"},{"type":"text","text":"calling"},{"type":"tool_use","id":"toolu_1","name":"read","input":{"path":"a.go"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"package a"},{"type":"image","source":{"type":"url","url":"http://x/s.png"}}]},{"type":"text","text":"<system-reminder>r</system-reminder>"},{"type":"text","text":"go on","cache_control":{"type":"ephemeral"}}]}]}`,
			`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBO"}}]},{"role":"assistant","content":"calling","reasoning_content":"hmm","tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"read","arguments":"{\"path\":\"a.go\"}"}}]},{"role":"tool","tool_call_id":"toolu_1","content":"package a"},{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://x/s.png"}}]},{"role":"user","content":"<system-reminder>r</system-reminder>\n\ngo on"}],"max_tokens":10}`},
		{"tools and tool_choice any without parallel", `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"Bash","description":"run","input_schema":{"type":"object","properties":{"command":{"type":"string"}},"required":["command"]},"cache_control":{"type":"ephemeral"}}],"tool_choice":{"type":"any","disable_parallel_tool_use":true}}`,
			`{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"Bash","description":"run","parameters":{"type":"object","properties":{"command":{"type":"string"}},"required":["command"]}}}],"tool_choice":"required","parallel_tool_calls":false,"max_tokens":10}`},
		{"tool_choice tool", `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"a","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool","name":"a"}}`,
			`{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"a","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"a"}},"max_tokens":10}`},
		{"thinking disabled", `{"model":"m","max_tokens":10,"thinking":{"type":"disabled"},"messages":[{"role":"user","content":"x"}]}`,
			`{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":10,"reasoning_effort":"none","chat_template_kwargs":{"enable_thinking":false}}`},
		{"text document", `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"text","media_type":"text/plain","data":"doc"}}]}]}`,
			`{"model":"m","messages":[{"role":"user","content":"doc"}],"max_tokens":10}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, _ := chatFor(t, APIMessages, c.in, nil)
			jsonEq(t, b, c.want)
		})
	}
}

func TestCompletionsToChat(t *testing.T) {
	b, _ := chatFor(t, APICompletions, `{"model":"m","prompt":["Once upon"],"max_tokens":16,"stop":"\n","temperature":0,"seed":3,"stream":true,"stream_options":{"include_usage":true},"logit_bias":{"50256":-100},"user":"u"}`, nil)
	jsonEq(t, b, `{"model":"m","messages":[{"role":"user","content":"Once upon"}],"max_tokens":16,"temperature":0,"seed":3,"stop":"\n","logit_bias":{"50256":-100},"user":"u","stream":true,"stream_options":{"include_usage":true}}`)
}

func TestFacts(t *testing.T) {
	cases := []struct {
		api  API
		in   string
		want Facts
	}{
		{APIResponses, `{"model":"qwen3","input":[{"role":"user","content":"first"},{"role":"assistant","content":"x"},{"role":"user","content":[{"type":"input_text","text":"last"}]}],"stream":true,"max_output_tokens":77,"reasoning":{"effort":"none"},"instructions":"i","tools":[{"type":"function","name":"f"}]}`,
			Facts{API: APIResponses, Model: "qwen3", Stream: true, MaxTokens: 77, Thinking: -1, Effort: "none", System: SystemString, Tools: 1, Text: "last"}},
		{APIMessages, `{"model":"claude","max_tokens":900,"system":[{"type":"text","text":"s"}],"thinking":{"type":"enabled","budget_tokens":512},"messages":[{"role":"user","content":"hey"}]}`,
			Facts{API: APIMessages, Model: "claude", MaxTokens: 900, Thinking: 1, ThinkingBudget: 512, System: SystemBlocks, Text: "hey"}},
		{APIMessages, `{"model":"c","max_tokens":1,"system":"s","thinking":{"type":"adaptive"},"messages":[]}`,
			Facts{API: APIMessages, Model: "c", MaxTokens: 1, Thinking: 1, System: SystemString}},
		{APICountTokens, `{"model":"c","messages":[{"role":"user","content":"x"}]}`,
			Facts{API: APICountTokens, Model: "c", Text: "x"}},
		{APICompletions, `{"model":"c","prompt":"p","max_tokens":3}`, Facts{API: APICompletions, Model: "c", MaxTokens: 3, Text: "p"}},
		// Members are read as Go's encoding/json reads them (any case, the
		// Kelvin sign as k, the long s as s), so a Go upstream reads the same.
		{APIMessages, `{"MODEL":"x","MAX_TOKENS":5,"ſtream":true,"messages":[]}`, Facts{API: APIMessages, Model: "x", MaxTokens: 5, Stream: true}},
		{APIResponses, `{"model":"x","input":"i","reasoning":{"EFFORT":"none"}}`, Facts{API: APIResponses, Model: "x", Thinking: -1, Effort: "none", Text: "i"}},
	}
	for _, c := range cases {
		r := &Request{}
		if err := r.Parse(c.api, []byte(c.in)); err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if *r.Facts() != c.want {
			t.Fatalf("%s:\n got %+v\nwant %+v", c.in, *r.Facts(), c.want)
		}
	}
}

func TestRefusals(t *testing.T) {
	cases := []struct {
		api        API
		in         string
		code, text string
	}{
		{APIResponses, `not json`, CodeInvalidJSON, "not valid JSON"},
		{APIResponses, `[1]`, CodeInvalidJSON, "must be a JSON object"},
		{APIResponses, strings.Repeat("[", 300) + strings.Repeat("]", 300), CodeInvalidJSON, "nests too deeply"},
		{APIResponses, `{"input":"x"}`, CodeMissing, "model"},
		{APIResponses, `{"model":3,"input":"x"}`, CodeInvalidRequest, "model must be a string"},
		{APIResponses, `{"model":"a","Model":"b","input":"x"}`, CodeDuplicate, "more than one model"},
		{APIResponses, `{"model":"a","input":"x","reasoning":{"effort":"none","Effort":"high"}}`, CodeDuplicate, "reasoning.effort"},
		{APIResponses, `{"model":"m","input":"x","previous_response_id":"resp_1"}`, CodeStateful, "stateful Responses are not supported"},
		{APIResponses, `{"model":"m","input":"x","store":true}`, CodeStateful, "stateful Responses are not supported"},
		{APIResponses, `{"model":"m","input":"x","conversation":"conv_1"}`, CodeStateful, "stores no conversations"},
		{APIResponses, `{"model":"m","input":"x","background":true}`, CodeStateful, "background"},
		{APIResponses, `{"model":"m","input":[{"type":"item_reference","id":"msg_1"}]}`, CodeStateful, "item_reference"},
		{APIResponses, `{"model":"m","input":"x","tools":[{"type":"web_search"}]}`, CodeUnsupportedTool, `tool type "web_search" is not supported`},
		{APIResponses, `{"model":"m","input":"x","tools":[{"type":"local_shell"}]}`, CodeUnsupportedTool, "local_shell"},
		{APIResponses, `{"model":"m","input":"x","tool_choice":{"type":"file_search"}}`, CodeUnsupportedTool, "tool_choice"},
		{APIResponses, `{"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_id":"f"}]}]}`, CodeUnsupported, "input_file"},
		{APIResponses, `{"model":"m","input":[{"role":"user","content":[{"type":"input_image","file_id":"f"}]}]}`, CodeUnsupported, "image_url"},
		{APIResponses, `{"model":"m","input":[{"type":"web_search_call"}]}`, CodeUnsupported, "web_search_call"},
		{APIResponses, `{"model":"m","input":"x","reasoning":{"effort":"max"}}`, CodeInvalidRequest, "reasoning.effort"},
		{APIResponses, `{"model":"m"}`, CodeMissing, "input"},
		{APIResponses, `{"model":"m","input":"x","stream":"yes"}`, CodeInvalidRequest, "stream must be a boolean"},
		{APIMessages, `{"model":"m","messages":[]}`, CodeMissing, "max_tokens"},
		{APIMessages, `{"model":"m","max_tokens":5}`, CodeMissing, "messages"},
		{APIMessages, `{"model":"m","max_tokens":5,"messages":[],"tools":[{"type":"web_search_20250305","name":"web_search"}]}`, CodeUnsupportedTool, "web_search_20250305"},
		{APIMessages, `{"model":"m","max_tokens":5,"messages":[],"tools":[{"type":"bash_20250124","name":"bash"}]}`, CodeUnsupportedTool, "bash_20250124"},
		{APIMessages, `{"model":"m","max_tokens":5,"messages":[],"mcp_servers":[{"url":"x"}]}`, CodeUnsupportedTool, "MCP"},
		{APIMessages, `{"model":"m","max_tokens":5,"messages":[],"thinking":{"type":"sometimes"}}`, CodeInvalidRequest, "thinking.type"},
		{APIMessages, `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"base64","data":"x"}}]}]}`, CodeUnsupported, "document"},
		{APIMessages, `{"model":"m","max_tokens":5,"messages":[{"role":"assistant","content":[{"type":"server_tool_use","id":"x"}]}]}`, CodeUnsupported, "server_tool_use"},
		{APIMessages, `{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"x"}]}`, CodeInvalidRequest, "role"},
		{APICompletions, `{"model":"m","prompt":["a","b"]}`, CodeUnsupported, "array of one string"},
		{APICompletions, `{"model":"m","prompt":[1,2]}`, CodeUnsupported, "token arrays"},
		{APICompletions, `{"model":"m","prompt":"a","n":2}`, CodeUnsupported, "n > 1"},
		{APICompletions, `{"model":"m","prompt":"a","echo":true}`, CodeUnsupported, "echo"},
		{APICompletions, `{"model":"m","prompt":"a","suffix":"z"}`, CodeUnsupported, "suffix"},
	}
	for _, c := range cases {
		r := &Request{}
		err := r.Parse(c.api, []byte(c.in))
		if err == nil {
			_, err = r.AppendChat(nil, nil)
		}
		var e *Error
		if !errors.As(err, &e) || e.Code != c.code || e.Status != 400 || !strings.Contains(e.Message, c.text) {
			t.Fatalf("%s: got %v (%+v), want %s containing %q", c.in, err, e, c.code, c.text)
		}
		if !errors.Is(err, &Error{Code: c.code}) {
			t.Fatalf("errors.Is by code fails for %v", err)
		}
	}
}

func TestAppendPatched(t *testing.T) {
	p := func(s string) *string { return &s }
	cases := []struct {
		api   API
		in    string
		patch Patch
		want  string
	}{
		{APIResponses, `{"model":"a","input":"x","instructions":"old"}`, Patch{Model: "b", Prompt: p("new"), Mode: PromptPrepend}, `{"model":"b","input":"x","instructions":"new\n\nold"}`},
		{APIResponses, `{"instructions":"old","input":"x","model":"a"}`, Patch{Model: "b", Prompt: p("new"), Mode: PromptAppend}, `{"instructions":"old\n\nnew","input":"x","model":"b"}`},
		{APIResponses, `{"model":"a","input":"x"}`, Patch{Prompt: p("new")}, `{"instructions":"new","model":"a","input":"x"}`},
		{APIResponses, `{"model":"a","input":"x","instructions":null}`, Patch{Prompt: p("new"), Mode: PromptAppend}, `{"model":"a","input":"x","instructions":"new"}`},
		{APIMessages, `{"model":"a","max_tokens":1,"messages":[],"system":[{"type":"text","text":"old"}]}`, Patch{Prompt: p("new"), Mode: PromptPrepend}, `{"model":"a","max_tokens":1,"messages":[],"system":[{"type":"text","text":"new"},{"type":"text","text":"old"}]}`},
		{APIMessages, `{"model":"a","max_tokens":1,"messages":[],"system":[ ]}`, Patch{Prompt: p("new"), Mode: PromptAppend}, `{"model":"a","max_tokens":1,"messages":[],"system":[{"type":"text","text":"new"}]}`},
		{APIMessages, `{"model":"a","max_tokens":1,"messages":[],"system":"old"}`, Patch{Model: "z", Prompt: p("new"), Mode: PromptReplace}, `{"model":"z","max_tokens":1,"messages":[],"system":"new"}`},
		{APIMessages, `{"max_tokens":1,"messages":[],"MODEL":"a"}`, Patch{Model: "z"}, `{"max_tokens":1,"messages":[],"MODEL":"z"}`},
	}
	for _, c := range cases {
		r := &Request{}
		if err := r.Parse(c.api, []byte(c.in)); err != nil {
			t.Fatal(err)
		}
		got := r.AppendPatched(nil, []byte(c.in), c.patch)
		if string(got) != c.want {
			t.Fatalf("%s:\n got %s\nwant %s", c.in, got, c.want)
		}
	}
}
