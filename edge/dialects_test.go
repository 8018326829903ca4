package edge

// End to end through the official SDKs — openai-go/v3 (Responses,
// Completions) and anthropic-sdk-go/v2 (Messages, count_tokens, models) —
// against an edge in front of a simulated upstream that serves the
// dialects natively (pass-through) or Chat Completions only (translation).

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	openai3 "github.com/openai/openai-go/v3"
	option3 "github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/loadtest/sim"
	"github.com/geniehive/geniehive/state"
)

const agentCatalog = `
roles:
  - name: agent
    operation: chat
    candidates: [llama3.1:8b]
    request_policy:
      system_prompt: {mode: prepend, text: "GenieHive policy prompt."}
  - name: quiet
    operation: chat
    candidates: [qwen3:8b]
    request_policy:
      thinking: false
`

var allAPIs = []string{fleet.APIChat, fleet.APIResponses, fleet.APIMessages, fleet.APICountTokens, fleet.APICompletions}

// agentStack is the shared stack with gpu1's chat service replaced by up,
// which the registry lists as speaking every API natively or none.
func agentStack(t *testing.T, native bool, b sim.Behavior) (*stack, *sim.Server) {
	t.Helper()
	s := newStack(t)
	sw := sim.Off
	if native {
		sw = sim.On
	}
	up := startSim(t, sim.Config{Flavor: sim.FlavorOpenAI, Responses: sw, Messages: sw, Behavior: b, Models: []sim.Model{
		{Name: "llama3.1:8b", Family: "llama", Loaded: true},
		{Name: "qwen3:8b", Family: "qwen3", Thinking: true, Loaded: true},
	}})
	chat := svc("gpu1", "chat", fleet.KindChat, up.URL(),
		fleet.Asset{Name: "llama3.1:8b", Family: "llama", Loaded: true},
		fleet.Asset{Name: "qwen3:8b", Family: "qwen3", Loaded: true, Thinking: true})
	if native {
		chat.APIs = allAPIs
	}
	heartbeat(t, s.store, "gpu1", chat)
	cat, err := state.ParseCatalog("agents", []byte(agentCatalog))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.store.PutCatalog(context.Background(), cat); err != nil {
		t.Fatal(err)
	}
	s.waitFor(func(sn *fleet.Snapshot) bool {
		_, ok := sn.Catalog.Role("agent")
		se := serviceByID(sn, "gpu1/chat")
		return ok && se != nil && se.Endpoint == up.URL() && len(se.APIs) == len(chat.APIs)
	})
	return s, up
}

func (s *stack) openai3() *openai3.Client {
	c := openai3.NewClient(option3.WithBaseURL(s.url+"/v1/"), option3.WithAPIKey(testKey), option3.WithMaxRetries(0))
	return &c
}

func (s *stack) anthropic(opts ...aoption.RequestOption) *anthropic.Client {
	o := append([]aoption.RequestOption{aoption.WithBaseURL(s.url), aoption.WithAPIKey(testKey), aoption.WithMaxRetries(0)}, opts...)
	c := anthropic.NewClient(o...)
	return &c
}

var weatherTool = map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}}

// wantPath checks that the upstream served the last request on path: the
// native route when passed through, Chat Completions when translated.
func wantPath(t *testing.T, up *sim.Server, path string) {
	t.Helper()
	if lr := up.LastRequest(); lr == nil || lr.Path != path {
		t.Fatalf("upstream path: got %+v, want %s", lr, path)
	}
}

func modes(t *testing.T, f func(t *testing.T, native bool, route string)) {
	for _, native := range []bool{false, true} {
		name := "translated"
		if native {
			name = "native"
		}
		t.Run(name, func(t *testing.T) { f(t, native, name) })
	}
}

func TestResponsesThroughEdge(t *testing.T) {
	modes(t, func(t *testing.T, native bool, _ string) {
		s, up := agentStack(t, native, sim.Behavior{Chunks: 5, ToolCalls: true, ChunkInterval: time.Millisecond})
		c := s.openai3()
		ctx := context.Background()
		path := "/v1/chat/completions"
		if native {
			path = "/v1/responses"
		}

		// Non-streaming, through a role whose policy prepends a system prompt.
		res, err := c.Responses.New(ctx, responses.ResponseNewParams{Model: "agent",
			Instructions: openai3.String("Be brief."),
			Input:        responses.ResponseNewParamsInputUnion{OfString: openai3.String("hello")}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != "completed" || res.OutputText() == "" || res.Usage.OutputTokens == 0 {
			t.Fatalf("answer: %+v", res)
		}
		wantPath(t, up, path)
		if b := string(up.LastRequest().Body); !strings.Contains(b, "GenieHive policy prompt.") || !strings.Contains(b, "Be brief.") {
			t.Errorf("system prompt policy not applied: %s", b)
		}

		// Streaming.
		st := c.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "llama3.1:8b",
			Input: responses.ResponseNewParamsInputUnion{OfString: openai3.String("hello")}})
		var text strings.Builder
		completed := false
		for st.Next() {
			ev := st.Current()
			switch ev.Type {
			case "response.output_text.delta":
				text.WriteString(ev.Delta)
			case "response.completed":
				completed = true
			}
		}
		if err := st.Err(); err != nil || !completed || text.Len() == 0 {
			t.Fatalf("stream: err %v completed %v text %q", err, completed, text.String())
		}
		wantPath(t, up, path)

		// A function-tool round trip.
		tools := []responses.ToolUnionParam{responses.ToolParamOfFunction("get_weather", weatherTool, false)}
		input := responses.ResponseInputParam{responses.ResponseInputItemParamOfMessage("weather in Paris?", responses.EasyInputMessageRoleUser)}
		res, err = c.Responses.New(ctx, responses.ResponseNewParams{Model: "llama3.1:8b", Tools: tools,
			Input: responses.ResponseNewParamsInputUnion{OfInputItemList: input}})
		if err != nil {
			t.Fatal(err)
		}
		var call responses.ResponseFunctionToolCall
		for _, it := range res.Output {
			if it.Type == "function_call" {
				call = it.AsFunctionCall()
			}
		}
		if call.Name != "get_weather" || call.CallID == "" || !json.Valid([]byte(call.Arguments)) {
			t.Fatalf("no function call: %s", res.RawJSON())
		}
		out := responses.ResponseInputItemParamOfFunctionCallOutput(`{"temp":21}`)
		out.OfFunctionCallOutput.CallID = openai3.String(call.CallID)
		input = append(input, responses.ResponseInputItemParamOfFunctionCall(call.Arguments, call.CallID, call.Name), out)
		res, err = c.Responses.New(ctx, responses.ResponseNewParams{Model: "llama3.1:8b", Tools: tools,
			Input: responses.ResponseNewParamsInputUnion{OfInputItemList: input}})
		if err != nil || res.OutputText() == "" {
			t.Fatalf("after the tool result: %v %+v", err, res)
		}

		// Stateful Responses are refused, whatever the upstream.
		_, err = c.Responses.New(ctx, responses.ResponseNewParams{Model: "llama3.1:8b", PreviousResponseID: openai3.String("resp_1"),
			Input: responses.ResponseNewParamsInputUnion{OfString: openai3.String("again")}})
		var ae *openai3.Error
		if !errors.As(err, &ae) || ae.StatusCode != 400 || !strings.Contains(ae.Message, "stateful Responses are not supported") {
			t.Fatalf("previous_response_id: %v", err)
		}
	})
}

func TestMessagesThroughEdge(t *testing.T) {
	modes(t, func(t *testing.T, native bool, _ string) {
		s, up := agentStack(t, native, sim.Behavior{Chunks: 5, ReasoningChunks: 3, ToolCalls: true, ChunkInterval: time.Millisecond})
		c := s.anthropic() // x-api-key, as Claude Code sends it
		ctx := context.Background()
		path := "/v1/chat/completions"
		if native {
			path = "/v1/messages"
		}

		msg, err := c.Messages.New(ctx, anthropic.MessageNewParams{Model: "agent", MaxTokens: 64,
			System:   []anthropic.TextBlockParam{{Text: "Be brief."}},
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))}})
		if err != nil {
			t.Fatal(err)
		}
		if msg.StopReason != anthropic.StopReasonEndTurn || len(msg.Content) == 0 || msg.Content[len(msg.Content)-1].Text == "" {
			t.Fatalf("answer: %+v", msg)
		}
		wantPath(t, up, path)
		if b := string(up.LastRequest().Body); !strings.Contains(b, "GenieHive policy prompt.") || !strings.Contains(b, "Be brief.") {
			t.Errorf("system prompt policy not applied: %s", b)
		}

		// Streaming with tool use, accumulated by the SDK.
		tools := []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{Name: "get_weather",
			InputSchema: anthropic.ToolInputSchemaParam{Properties: weatherTool["properties"], Required: []string{"city"}}}}}
		st := c.Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: "llama3.1:8b", MaxTokens: 64, Tools: tools,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("weather in Paris?"))}})
		var acc anthropic.Message
		for st.Next() {
			if err := acc.Accumulate(st.Current()); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		wantPath(t, up, path)
		var use *anthropic.ContentBlockUnion
		for i := range acc.Content {
			if acc.Content[i].Type == "tool_use" {
				use = &acc.Content[i]
			}
		}
		if acc.StopReason != anthropic.StopReasonToolUse || use == nil || use.Name != "get_weather" || !strings.Contains(string(use.Input), "city") {
			t.Fatalf("streamed tool use: %+v", acc)
		}

		// The tool result goes back; the answer is text.
		msg, err = c.Messages.New(ctx, anthropic.MessageNewParams{Model: "llama3.1:8b", MaxTokens: 64, Tools: tools,
			Messages: []anthropic.MessageParam{
				anthropic.NewUserMessage(anthropic.NewTextBlock("weather in Paris?")),
				acc.ToParam(),
				anthropic.NewUserMessage(anthropic.NewToolResultBlock(use.ID, `{"temp":21}`, false)),
			}})
		if err != nil || msg.StopReason != anthropic.StopReasonEndTurn {
			t.Fatalf("after the tool result: %v %+v", err, msg)
		}

		// count_tokens: the upstream's own where it has the route, else
		// the estimate; never an error.
		n0 := up.Requests("/v1/messages/count_tokens")
		ct, err := c.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{Model: "llama3.1:8b",
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("how many tokens is this?"))}})
		if err != nil || ct.InputTokens <= 0 {
			t.Fatalf("count_tokens: %v %+v", err, ct)
		}
		if got := up.Requests("/v1/messages/count_tokens") - n0; (got == 1) != native {
			t.Errorf("count_tokens upstream calls: %d (native %v)", got, native)
		}
		ct, err = c.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{Model: "no-such-model",
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}})
		if err == nil {
			t.Errorf("count_tokens of an unknown model answered %+v", ct)
		}

		// Thinking turned off by the role's policy: translated even where
		// the upstream speaks Messages (native paths ignore the switch).
		msg, err = c.Messages.New(ctx, anthropic.MessageNewParams{Model: "quiet", MaxTokens: 64,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))}})
		if err != nil {
			t.Fatal(err)
		}
		wantPath(t, up, "/v1/chat/completions")
		for _, b := range msg.Content {
			if b.Type == "thinking" {
				t.Errorf("thinking block although the policy turned thinking off: %+v", msg.Content)
			}
		}
	})
}

func TestCompletionsThroughEdge(t *testing.T) {
	modes(t, func(t *testing.T, native bool, _ string) {
		s, up := agentStack(t, native, sim.Behavior{Chunks: 4, ChunkInterval: time.Millisecond})
		c := s.openai3()
		ctx := context.Background()
		path := "/v1/chat/completions"
		if native {
			path = "/v1/completions"
		}
		res, err := c.Completions.New(ctx, openai3.CompletionNewParams{Model: "llama3.1:8b", MaxTokens: openai3.Int(16),
			Prompt: openai3.CompletionNewParamsPromptUnion{OfString: openai3.String("Once upon a time")}})
		if err != nil || len(res.Choices) != 1 || res.Choices[0].Text == "" {
			t.Fatalf("completion: %v %+v", err, res)
		}
		wantPath(t, up, path)
		st := c.Completions.NewStreaming(ctx, openai3.CompletionNewParams{Model: "llama3.1:8b",
			Prompt: openai3.CompletionNewParamsPromptUnion{OfString: openai3.String("Once upon a time")}})
		var text strings.Builder
		for st.Next() {
			if ch := st.Current(); len(ch.Choices) > 0 {
				text.WriteString(ch.Choices[0].Text)
			}
		}
		if err := st.Err(); err != nil || text.Len() == 0 {
			t.Fatalf("stream: %v %q", err, text.String())
		}
		wantPath(t, up, path)
	})
}

// Failures keep each dialect's own format: auth and routing errors on
// the Messages routes are Anthropic errors, a cut stream ends with the
// dialect's error event, and a dead first candidate fails over.
func TestDialectErrorsThroughEdge(t *testing.T) {
	modes(t, func(t *testing.T, native bool, _ string) {
		s, up := agentStack(t, native, sim.Behavior{Chunks: 8, ChunkInterval: time.Millisecond})
		ctx := context.Background()
		params := anthropic.MessageNewParams{Model: "llama3.1:8b", MaxTokens: 64,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))}}

		// Bad key, raw: the Anthropic shape and type.
		req, _ := http.NewRequest("POST", s.url+"/v1/messages", strings.NewReader(`{}`))
		req.Header.Set("x-api-key", "wrong")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var ae struct {
			Type  string `json:"type"`
			Error struct{ Type, Message string }
		}
		if resp.StatusCode != 401 || json.Unmarshal(b, &ae) != nil || ae.Type != "error" || ae.Error.Type != "authentication_error" {
			t.Fatalf("bad key: %d %s", resp.StatusCode, b)
		}
		// Bearer is accepted too (ANTHROPIC_AUTH_TOKEN).
		bc := anthropic.NewClient(aoption.WithBaseURL(s.url), aoption.WithAuthToken(testKey), aoption.WithMaxRetries(0))
		if _, err := bc.Messages.New(ctx, params); err != nil {
			t.Fatalf("bearer: %v", err)
		}
		// An unknown model: not_found_error through the SDK.
		p2 := params
		p2.Model = "no-such-model"
		_, err = s.anthropic().Messages.New(ctx, p2)
		var aerr *anthropic.Error
		if !errors.As(err, &aerr) || aerr.StatusCode != 404 || !strings.Contains(aerr.RawJSON(), "not_found_error") {
			t.Fatalf("unknown model: %v", err)
		}

		// A stream cut mid-answer ends with the dialect's error event.
		up.Update(func(b *sim.Behavior) { b.FailAfterChunks = 2 })
		st := s.anthropic().Messages.NewStreaming(ctx, params)
		for st.Next() {
		}
		if err := st.Err(); err == nil {
			t.Error("Messages: a cut stream ended without an error")
		}
		rs := s.openai3().Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "llama3.1:8b",
			Input: responses.ResponseNewParamsInputUnion{OfString: openai3.String("hello")}})
		failed := false
		for rs.Next() {
			if ty := rs.Current().Type; ty == "response.failed" || ty == "error" {
				failed = true
			}
		}
		if !failed && rs.Err() == nil {
			t.Error("Responses: a cut stream ended without a failure event")
		}
		up.Update(func(b *sim.Behavior) { b.FailAfterChunks = 0 })
	})
}

// GET /v1/models with anthropic-version answers Anthropic's list.
func TestAnthropicModelList(t *testing.T) {
	s, _ := agentStack(t, false, sim.Behavior{})
	page, err := s.anthropic().Models.List(context.Background(), anthropic.ModelListParams{})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, m := range page.Data {
		ids[m.ID] = true
		if m.Type != "model" {
			t.Errorf("entry %+v", m)
		}
	}
	if !ids["llama3.1:8b"] || !ids["agent"] || ids["nomic-embed-text"] {
		t.Errorf("ids %v", ids)
	}
	// Without the header: OpenAI's list.
	lst, err := s.openai3().Models.List(context.Background())
	if err != nil || len(lst.Data) == 0 || lst.Data[0].Object != "model" {
		t.Fatalf("openai list: %v %+v", err, lst)
	}
}

func serviceByID(sn *fleet.Snapshot, id string) *fleet.ServiceEntry {
	for _, se := range sn.Services {
		if se.ID == id {
			return se
		}
	}
	return nil
}

// A dead first candidate fails over before the first byte, in each
// dialect, streamed, natively and translated.
func TestDialectFailoverThroughEdge(t *testing.T) {
	modes(t, func(t *testing.T, native bool, _ string) {
		s, up := agentStack(t, native, sim.Behavior{Chunks: 3, ChunkInterval: time.Millisecond})
		dead := startSim(t, sim.Config{Behavior: sim.Behavior{FailBeforeFirstByte: true}, Models: []sim.Model{{Name: "llama3.1:8b", Loaded: true}}})
		a := svc("gpu1", "a-dead", fleet.KindChat, dead.URL(), fleet.Asset{Name: "llama3.1:8b", Loaded: true})
		b := svc("gpu1", "chat", fleet.KindChat, up.URL(), fleet.Asset{Name: "llama3.1:8b", Loaded: true})
		if native {
			a.APIs, b.APIs = allAPIs, allAPIs
		}
		heartbeat(t, s.store, "gpu1", a, b)
		s.waitFor(func(sn *fleet.Snapshot) bool { return sn.ByID["gpu1/a-dead"] != nil })
		ctx := context.Background()
		st := s.anthropic().Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: "llama3.1:8b", MaxTokens: 32,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))}})
		var acc anthropic.Message
		for st.Next() {
			_ = acc.Accumulate(st.Current())
		}
		if err := st.Err(); err != nil || acc.StopReason != anthropic.StopReasonEndTurn {
			t.Fatalf("messages after failover: %v %+v", err, acc)
		}
		rs := s.openai3().Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "llama3.1:8b",
			Input: responses.ResponseNewParamsInputUnion{OfString: openai3.String("hello")}})
		completed := false
		for rs.Next() {
			completed = completed || rs.Current().Type == "response.completed"
		}
		if rs.Err() != nil || !completed {
			t.Fatalf("responses after failover: %v", rs.Err())
		}
		if dead.Stats().ConnsDropped < 2 {
			t.Errorf("dead upstream not tried first: %+v", dead.Stats())
		}
		_, m := do(t, "GET", s.url+"/metrics", "", nil, nil)
		if !contains(m, `geniehive_failovers_total{service="gpu1/a-dead"} 2`) {
			t.Errorf("failover metric:\n%s", grep(m, "failover"))
		}
	})
}
