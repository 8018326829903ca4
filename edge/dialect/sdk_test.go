package dialect

// End to end through the official SDKs: openai-go/v3 (Responses) and
// anthropic-sdk-go/v2 (Messages) talk to a translator (harness_test.go) in
// front of a simulated chat-only upstream, streamed and not, with a
// function-tool round trip and a thinking model.

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/geniehive/geniehive/loadtest/sim"
)

var weather = map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}}

func openaiClient(url string) openai.Client {
	return openai.NewClient(option.WithBaseURL(url+"/v1/"), option.WithAPIKey("k"), option.WithMaxRetries(0))
}

func anthropicClient(url string) anthropic.Client {
	return anthropic.NewClient(aoption.WithBaseURL(url), aoption.WithAPIKey("k"), aoption.WithMaxRetries(0))
}

// upstreams: the generic flavor answers reasoning in reasoning_content,
// Ollama's OpenAI layer in reasoning.
var upstreamFlavors = []struct {
	flavor sim.Flavor
	opts   ChatOptions
}{
	{sim.FlavorOpenAI, ChatOptions{}},
	{sim.FlavorOllama, ChatOptions{ReasoningKey: "reasoning", ThinkingOff: EffortNone}},
}

// One scenario per upstream flavor, in the order an agent's session runs
// (plain, streamed, a tool round trip), hence the length.
func TestResponsesSDK(t *testing.T) {
	for _, u := range upstreamFlavors {
		t.Run(string(u.flavor), func(t *testing.T) {
			up := chatOnly(t, u.flavor, sim.Behavior{Chunks: 5, ReasoningChunks: 3, ToolCalls: true},
				sim.Model{Name: "qwen3:8b", Thinking: true, Loaded: true})
			srv := newTranslator(t, APIResponses, up.URL(), u.opts)
			c := openaiClient(srv.URL)
			ctx := context.Background()

			// Non-streaming, with reasoning.
			res, err := c.Responses.New(ctx, responses.ResponseNewParams{Model: "qwen3:8b",
				Instructions: openai.String("Be brief."),
				Input:        responses.ResponseNewParamsInputUnion{OfString: openai.String("hello")}})
			if err != nil {
				t.Fatal(err)
			}
			if res.OutputText() != sim.Text(5) || res.Status != "completed" || len(res.Output) != 2 ||
				res.Output[0].Type != "reasoning" || res.Output[0].Summary[0].Text != sim.Reasoning(3) {
				t.Fatalf("response %s", res.RawJSON())
			}
			if res.Usage.OutputTokens != 8 || res.Usage.InputTokens == 0 || res.Usage.TotalTokens != res.Usage.InputTokens+8 {
				t.Fatalf("usage %+v", res.Usage)
			}

			// Streaming: the SDK's decoder reads every event in order.
			st := c.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "qwen3:8b",
				Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hello")}})
			var text, reasoning strings.Builder
			var types []string
			seq := int64(-1)
			var final responses.Response
			for st.Next() {
				ev := st.Current()
				if ev.SequenceNumber != seq+1 {
					t.Fatalf("sequence %d after %d", ev.SequenceNumber, seq)
				}
				seq = ev.SequenceNumber
				types = append(types, ev.Type)
				switch ev.Type {
				case "response.output_text.delta":
					text.WriteString(ev.Delta)
				case "response.reasoning_summary_text.delta":
					reasoning.WriteString(ev.Delta)
				case "response.completed":
					final = ev.Response
				}
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
			if text.String() != sim.Text(5) || reasoning.String() != sim.Reasoning(3) || final.OutputText() != sim.Text(5) || final.Usage.OutputTokens != 8 {
				t.Fatalf("stream: text %q reasoning %q final %s", text.String(), reasoning.String(), final.RawJSON())
			}
			want := []string{"response.created", "response.in_progress",
				"response.output_item.added", "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta"}
			if strings.Join(types[:5], ",") != strings.Join(want, ",") || types[len(types)-1] != "response.completed" {
				t.Fatalf("events %v", types)
			}

			// Function tool round trip: call, function_call_output, answer.
			tools := []responses.ToolUnionParam{responses.ToolParamOfFunction("get_weather", weather, false)}
			res, err = c.Responses.New(ctx, responses.ResponseNewParams{Model: "qwen3:8b", Tools: tools,
				Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("weather in Paris?")}})
			if err != nil {
				t.Fatal(err)
			}
			var call responses.ResponseFunctionToolCall
			for _, it := range res.Output {
				if it.Type == "function_call" {
					call = it.AsFunctionCall()
				}
			}
			if call.Name != "get_weather" || call.CallID == "" || !json.Valid([]byte(call.Arguments)) || !strings.Contains(call.Arguments, "city") {
				t.Fatalf("no call: %s", res.RawJSON())
			}
			out := responses.ResponseInputItemParamOfFunctionCallOutput(`{"temp":21}`)
			out.OfFunctionCallOutput.CallID = openai.String(call.CallID)
			in := responses.ResponseInputParam{
				responses.ResponseInputItemParamOfMessage("weather in Paris?", responses.EasyInputMessageRoleUser),
				responses.ResponseInputItemParamOfFunctionCall(call.Arguments, call.CallID, call.Name),
				out,
			}
			res, err = c.Responses.New(ctx, responses.ResponseNewParams{Model: "qwen3:8b", Tools: tools,
				Input: responses.ResponseNewParamsInputUnion{OfInputItemList: in}})
			if err != nil {
				t.Fatal(err)
			}
			if res.OutputText() != sim.Text(5) {
				t.Fatalf("answer after the tool: %s", res.RawJSON())
			}
			var sent struct {
				Messages []map[string]any `json:"messages"`
			}
			_ = json.Unmarshal(lastSent(t, srv), &sent)
			roles := []string{}
			for _, m := range sent.Messages {
				roles = append(roles, m["role"].(string))
			}
			if strings.Join(roles, ",") != "user,assistant,tool" || sent.Messages[2]["tool_call_id"] != call.CallID {
				t.Fatalf("upstream messages %v", sent.Messages)
			}

			// Streaming tool call.
			st = c.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "qwen3:8b", Tools: tools,
				Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("weather in Paris?")}})
			var args string
			for st.Next() {
				ev := st.Current()
				if ev.Type == "response.function_call_arguments.done" {
					args = ev.Arguments
				}
				if ev.Type == "response.completed" {
					final = ev.Response
				}
			}
			if st.Err() != nil || !strings.Contains(args, "city") || final.Output[len(final.Output)-1].Type != "function_call" {
				t.Fatalf("streamed call: %v %q %s", st.Err(), args, final.RawJSON())
			}
		})
	}
}

// lastSent is the chat body the translator behind srv sent last.
func lastSent(t *testing.T, srv interface{ Close() }) []byte {
	t.Helper()
	for s, tr := range translators {
		if s == srv {
			return tr.lastBody()
		}
	}
	t.Fatal("unknown translator")
	return nil
}

// Like TestResponsesSDK: one agent session per flavor.
func TestMessagesSDK(t *testing.T) {
	for _, u := range upstreamFlavors {
		t.Run(string(u.flavor), func(t *testing.T) {
			up := chatOnly(t, u.flavor, sim.Behavior{Chunks: 5, ReasoningChunks: 3, ToolCalls: true},
				sim.Model{Name: "qwen3:8b", Thinking: true, Loaded: true})
			srv := newTranslator(t, APIMessages, up.URL(), u.opts)
			c := anthropicClient(srv.URL)
			ctx := context.Background()
			hello := []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))}

			// Non-streaming with a thinking block.
			msg, err := c.Messages.New(ctx, anthropic.MessageNewParams{Model: "qwen3:8b", MaxTokens: 200,
				System:   []anthropic.TextBlockParam{{Text: "Be brief."}},
				Thinking: anthropic.ThinkingConfigParamOfEnabled(1024), Messages: hello})
			if err != nil {
				t.Fatal(err)
			}
			if len(msg.Content) != 2 || msg.Content[0].Type != "thinking" || msg.Content[0].Thinking != sim.Reasoning(3) ||
				msg.Content[1].Text != sim.Text(5) || msg.StopReason != "end_turn" || msg.Usage.OutputTokens != 8 || msg.Usage.InputTokens == 0 {
				t.Fatalf("message %s", msg.RawJSON())
			}

			// Streaming, accumulated by the SDK.
			st := c.Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: "qwen3:8b", MaxTokens: 200, Messages: hello})
			var acc anthropic.Message
			var types []string
			for st.Next() {
				ev := st.Current()
				types = append(types, ev.Type)
				if err := acc.Accumulate(ev); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
			if len(acc.Content) != 2 || acc.Content[0].Thinking != sim.Reasoning(3) || acc.Content[1].Text != sim.Text(5) ||
				acc.StopReason != "end_turn" || acc.Usage.OutputTokens != 8 {
				t.Fatalf("accumulated %+v", acc)
			}
			if types[0] != "message_start" || types[1] != "content_block_start" || types[len(types)-1] != "message_stop" {
				t.Fatalf("events %v", types)
			}

			// A tool_use round trip, streamed.
			tools := []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{Name: "get_weather",
				InputSchema: anthropic.ToolInputSchemaParam{Properties: weather["properties"], Required: []string{"city"}}}}}
			ask := []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("weather in Paris?"))}
			st = c.Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: "qwen3:8b", MaxTokens: 200, Tools: tools, Messages: ask})
			acc = anthropic.Message{}
			for st.Next() {
				if err := acc.Accumulate(st.Current()); err != nil {
					t.Fatal(err)
				}
			}
			if st.Err() != nil || acc.StopReason != "tool_use" {
				t.Fatalf("tool stream: %v %s", st.Err(), acc.RawJSON())
			}
			use := acc.Content[len(acc.Content)-1]
			var input map[string]any
			if use.Type != "tool_use" || use.Name != "get_weather" || json.Unmarshal(use.Input, &input) != nil || input["city"] == nil {
				t.Fatalf("tool_use %s", acc.RawJSON())
			}
			next := append(ask, acc.ToParam(), anthropic.NewUserMessage(anthropic.NewToolResultBlock(use.ID, "21 degrees", false)))
			msg, err = c.Messages.New(ctx, anthropic.MessageNewParams{Model: "qwen3:8b", MaxTokens: 200, Tools: tools, Messages: next})
			if err != nil {
				t.Fatal(err)
			}
			if msg.StopReason != "end_turn" || msg.Content[len(msg.Content)-1].Text != sim.Text(5) {
				t.Fatalf("after tool_result: %s", msg.RawJSON())
			}

			// count_tokens: the documented estimate.
			n, err := c.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{Model: "qwen3:8b", Messages: hello})
			if err != nil || n.InputTokens <= 0 {
				t.Fatalf("count_tokens %v %v", n, err)
			}
		})
	}
}

// Errors reach the SDKs in their own formats: an Anthropic error object
// the SDK decodes, and OpenAI's.
func TestSDKErrors(t *testing.T) {
	up := chatOnly(t, sim.FlavorOpenAI, sim.Behavior{}, sim.Model{Name: "m"})
	ctx := context.Background()
	a := anthropicClient(newTranslator(t, APIMessages, up.URL(), ChatOptions{}).URL)
	_, err := a.Messages.New(ctx, anthropic.MessageNewParams{Model: "m", MaxTokens: 10,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
		Tools:    []anthropic.ToolUnionParam{{OfWebSearchTool20250305: &anthropic.WebSearchTool20250305Param{}}}})
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != 400 || !strings.Contains(ae.Error(), "web_search_20250305") || !strings.Contains(ae.RawJSON(), `"invalid_request_error"`) {
		t.Fatalf("anthropic error: %v", err)
	}
	o := openaiClient(newTranslator(t, APIResponses, up.URL(), ChatOptions{}).URL)
	_, err = o.Responses.New(ctx, responses.ResponseNewParams{Model: "m", PreviousResponseID: openai.String("resp_1"),
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")}})
	var oe *openai.Error
	if !errors.As(err, &oe) || oe.StatusCode != 400 || oe.Code != CodeStateful || !strings.Contains(oe.Message, "stateful Responses are not supported") {
		t.Fatalf("openai error: %v", err)
	}
}

// A stream the upstream cuts ends with the dialect's error event, which
// the SDKs surface as an error.
func TestSDKMidStreamCut(t *testing.T) {
	up := chatOnly(t, sim.FlavorOpenAI, sim.Behavior{Chunks: 8, FailAfterChunks: 3}, sim.Model{Name: "m"})
	ctx := context.Background()
	a := anthropicClient(newTranslator(t, APIMessages, up.URL(), ChatOptions{}).URL)
	st := a.Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: "m", MaxTokens: 100,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}})
	var text strings.Builder
	for st.Next() {
		if ev := st.Current(); ev.Type == "content_block_delta" {
			text.WriteString(ev.Delta.Text)
		}
	}
	if st.Err() == nil || !strings.Contains(st.Err().Error(), "upstream stream broke") || text.String() != sim.Text(3) {
		t.Fatalf("anthropic cut: err %v text %q", st.Err(), text.String())
	}
	o := openaiClient(newTranslator(t, APIResponses, up.URL(), ChatOptions{}).URL)
	rs := o.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "m",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")}})
	var last responses.ResponseStreamEventUnion
	for rs.Next() {
		last = rs.Current()
	}
	if rs.Err() != nil || last.Type != "response.failed" || last.Response.Status != "failed" || !strings.Contains(last.Response.Error.Message, "upstream stream broke") {
		t.Fatalf("responses cut: %v %s", rs.Err(), last.RawJSON())
	}
}
