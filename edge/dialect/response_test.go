package dialect

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/openai/openai-go/v3/responses"
)

func answer(t *testing.T, api API, req, chat string) []byte {
	t.Helper()
	r := &Request{}
	if err := r.Parse(api, []byte(req)); err != nil {
		t.Fatal(err)
	}
	out, err := r.AppendResponse(nil, []byte(chat))
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(out) {
		t.Fatalf("not JSON: %s", out)
	}
	return out
}

const (
	chatWithCalls = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"up","choices":[{"index":0,"message":{"role":"assistant","content":"Checking.","reasoning_content":"I should look","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get","arguments":"{\"city\":\"Paris\"}"}},{"id":"call_2","type":"function","function":{"name":"now","arguments":""}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":20,"completion_tokens":9,"total_tokens":29}}`
	chatLength    = `{"choices":[{"index":0,"message":{"role":"assistant","content":"cut"},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}`
	// Ollama: reasoning under "reasoning", arguments as a string.
	chatOllama = `{"id":"chatcmpl-7","object":"chat.completion","created":1,"model":"qwen3","system_fingerprint":"fp_ollama","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","reasoning":"hmm"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}`
)

func TestResponsesAnswer(t *testing.T) {
	var res responses.Response
	out := answer(t, APIResponses, `{"model":"client-name","input":"x","instructions":"sys","max_output_tokens":99,"temperature":0.5}`, chatWithCalls)
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	if res.Object != "response" || res.Model != "client-name" || res.Status != "completed" || len(res.Output) != 4 ||
		!strings.HasPrefix(res.ID, "resp_") || res.CreatedAt == 0 || res.Instructions.OfString != "sys" || res.MaxOutputTokens != 99 || res.Temperature != 0.5 {
		t.Fatalf("%s", out)
	}
	rs, msg, c1, c2 := res.Output[0].AsReasoning(), res.Output[1].AsMessage(), res.Output[2].AsFunctionCall(), res.Output[3].AsFunctionCall()
	if rs.Summary[0].Text != "I should look" || msg.Content[0].Text != "Checking." || msg.Role != "assistant" ||
		c1.CallID != "call_1" || c1.Name != "get" || c1.Arguments != `{"city":"Paris"}` || c2.Arguments != "{}" {
		t.Fatalf("items %s", out)
	}
	if res.Usage.InputTokens != 20 || res.Usage.OutputTokens != 9 || res.Usage.TotalTokens != 29 {
		t.Fatalf("usage %s", out)
	}
	out = answer(t, APIResponses, `{"model":"m","input":"x"}`, chatLength)
	res = responses.Response{}
	_ = json.Unmarshal(out, &res)
	if res.Status != "incomplete" || res.IncompleteDetails.Reason != "max_output_tokens" || res.OutputText() != "cut" {
		t.Fatalf("%s", out)
	}
}

func TestMessagesAnswer(t *testing.T) {
	var m anthropic.Message
	out := answer(t, APIMessages, `{"model":"claude-x","max_tokens":9,"messages":[{"role":"user","content":"x"}]}`, chatWithCalls)
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if m.Type != "message" || m.Role != "assistant" || m.Model != "claude-x" || !strings.HasPrefix(m.ID, "msg_") || m.StopReason != "tool_use" || len(m.Content) != 4 {
		t.Fatalf("%s", out)
	}
	if m.Content[0].Type != "thinking" || m.Content[0].Thinking != "I should look" || m.Content[1].Text != "Checking." ||
		m.Content[2].Type != "tool_use" || m.Content[2].ID != "call_1" || string(m.Content[2].Input) != `{"city":"Paris"}` || string(m.Content[3].Input) != `{}` {
		t.Fatalf("blocks %s", out)
	}
	if m.Usage.InputTokens != 20 || m.Usage.OutputTokens != 9 {
		t.Fatalf("usage %s", out)
	}
	for _, c := range []struct{ chat, stop, seq string }{
		{chatLength, "max_tokens", ""},
		{chatOllama, "end_turn", ""},
		{`{"choices":[{"index":0,"message":{"role":"assistant","content":"a"},"finish_reason":"stop","stop_reason":"STOP"}]}`, "stop_sequence", "STOP"},
		{`{"choices":[{"index":0,"message":{"role":"assistant","content":"a"},"finish_reason":"stop","stop_reason":"other"}]}`, "end_turn", ""},
		{`{"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"not json"}}]},"finish_reason":"tool_calls"}]}`, "tool_use", ""},
	} {
		m = anthropic.Message{}
		out = answer(t, APIMessages, `{"model":"m","max_tokens":9,"messages":[],"stop_sequences":["STOP"]}`, c.chat)
		if err := json.Unmarshal(out, &m); err != nil || string(m.StopReason) != c.stop || m.StopSequence != c.seq {
			t.Fatalf("%s → %s", c.chat, out)
		}
	}
	if !strings.Contains(string(out), `"input":{}`) {
		t.Fatalf("broken arguments must become {}: %s", out)
	}
	out = answer(t, APIMessages, `{"model":"m","max_tokens":9,"messages":[]}`, chatOllama)
	if !strings.Contains(string(out), `"content":[{"type":"thinking","thinking":"hmm","signature":""},{"type":"text","text":"Hi"}]`) {
		t.Fatalf("%s", out)
	}
}

func TestCompletionsAnswer(t *testing.T) {
	out := answer(t, APICompletions, `{"model":"m","prompt":"x"}`, chatOllama)
	var c struct {
		Object  string `json:"object"`
		Model   string `json:"model"`
		Choices []struct {
			Text         string `json:"text"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage struct{ PromptTokens, TotalTokens int } `json:"usage"`
	}
	if err := json.Unmarshal(out, &c); err != nil || c.Object != "text_completion" || c.Choices[0].Text != "Hi" || c.Choices[0].FinishReason != "stop" {
		t.Fatalf("%s", out)
	}
}

func TestAnswerErrors(t *testing.T) {
	r := &Request{}
	_ = r.Parse(APIMessages, []byte(`{"model":"m","max_tokens":1,"messages":[]}`))
	for _, b := range []string{`nope`, `[]`, `{"error":{"message":"model not loaded"}}`} {
		out, err := r.AppendResponse([]byte("keep"), []byte(b))
		if err == nil || string(out) != "keep" || err.(*Error).Status != 502 {
			t.Fatalf("%s: %v %s", b, err, out)
		}
	}
}

func TestAppendError(t *testing.T) {
	cases := []struct {
		api    API
		status int
		want   int
		body   string
	}{
		{APIMessages, 400, 400, `{"type":"error","error":{"type":"invalid_request_error","message":"m"},"request_id":"req_1"}`},
		{APIMessages, 401, 401, `{"type":"error","error":{"type":"authentication_error","message":"m"},"request_id":"req_1"}`},
		{APIMessages, 403, 403, `{"type":"error","error":{"type":"permission_error","message":"m"},"request_id":"req_1"}`},
		{APIMessages, 404, 404, `{"type":"error","error":{"type":"not_found_error","message":"m"},"request_id":"req_1"}`},
		{APIMessages, 405, 405, `{"type":"error","error":{"type":"invalid_request_error","message":"m"},"request_id":"req_1"}`},
		{APIMessages, 413, 413, `{"type":"error","error":{"type":"request_too_large","message":"m"},"request_id":"req_1"}`},
		{APIMessages, 429, 429, `{"type":"error","error":{"type":"rate_limit_error","message":"m"},"request_id":"req_1"}`},
		{APIMessages, 500, 500, `{"type":"error","error":{"type":"api_error","message":"m"},"request_id":"req_1"}`},
		{APIMessages, 502, 502, `{"type":"error","error":{"type":"api_error","message":"m"},"request_id":"req_1"}`},
		{APIMessages, 503, 529, `{"type":"error","error":{"type":"overloaded_error","message":"m"},"request_id":"req_1"}`},
		{APIMessages, 504, 504, `{"type":"error","error":{"type":"timeout_error","message":"m"},"request_id":"req_1"}`},
		{APICountTokens, 503, 529, `{"type":"error","error":{"type":"overloaded_error","message":"m"},"request_id":"req_1"}`},
		{APIResponses, 503, 503, `{"error":{"message":"m","type":"server_error","param":"model","code":"c"}}`},
		{APIChat, 429, 429, `{"error":{"message":"m","type":"server_error","param":"model","code":"c"}}`},
	}
	for _, c := range cases {
		st, b := AppendError(nil, c.api, ErrorInfo{Status: c.status, Type: "server_error", Code: "c", Param: "model", Message: "m", RequestID: "req_1"})
		if st != c.want || string(b) != c.body {
			t.Fatalf("%v %d: %d %s", c.api, c.status, st, b)
		}
		if c.api.Anthropic() {
			var e anthropic.ErrorResponse
			if err := json.Unmarshal(b, &e); err != nil || string(e.Error.Type) == "" || e.Error.Message != "m" {
				t.Fatalf("the SDK cannot read %s: %v", b, err)
			}
		}
	}
	if APIResponses.String() != "responses" || APIMessages.String() != "messages" || APICompletions.String() != "completions" || APIChat.String() != "chat" {
		t.Fatal("API names")
	}
}

func TestAnthropicModels(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	out := AppendAnthropicModels(nil, []Model{{ID: "qwen3:8b", Created: ts, MaxInputTokens: 32768}, {ID: "coder", DisplayName: "Coder role", Created: ts}})
	var page struct {
		Data    []anthropic.ModelInfo `json:"data"`
		HasMore bool                  `json:"has_more"`
		FirstID string                `json:"first_id"`
		LastID  string                `json:"last_id"`
	}
	if err := json.Unmarshal(out, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 2 || page.Data[0].ID != "qwen3:8b" || page.Data[0].DisplayName != "qwen3:8b" || !page.Data[0].CreatedAt.Equal(ts) ||
		page.Data[0].Type != "model" || page.Data[0].MaxInputTokens != 32768 || page.Data[1].DisplayName != "Coder role" ||
		page.HasMore || page.FirstID != "qwen3:8b" || page.LastID != "coder" {
		t.Fatalf("%s", out)
	}
	if got := string(AppendAnthropicModels(nil, nil)); got != `{"data":[],"has_more":false,"first_id":null,"last_id":null}` {
		t.Fatal(got)
	}
}
