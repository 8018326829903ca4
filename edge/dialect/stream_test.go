package dialect

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// sseEvent is one parsed client event.
type sseEvent struct {
	name string
	data map[string]any
}

// parseSSE splits a client stream into events, failing on anything that is
// not "event:"/"data:" lines with JSON data and a blank line after each.
func parseSSE(t testing.TB, b []byte) []sseEvent {
	t.Helper()
	var out []sseEvent
	var cur sseEvent
	var data []byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<22)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data == nil {
				t.Fatalf("empty event in %q", b)
			}
			if string(data) != "[DONE]" {
				if err := json.Unmarshal(data, &cur.data); err != nil {
					t.Fatalf("event data is not JSON: %v: %s", err, data)
				}
			} else {
				cur.name = "[DONE]"
			}
			out = append(out, cur)
			cur, data = sseEvent{}, nil
		case strings.HasPrefix(line, "event: "):
			cur.name = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[6:]...)
		default:
			t.Fatalf("bad SSE line %q", line)
		}
	}
	if data != nil || cur.name != "" {
		t.Fatalf("unterminated event in %q", b)
	}
	return out
}

func names(evs []sseEvent) string {
	var s []string
	for _, e := range evs {
		n := e.name
		if d, ok := e.data["delta"].(map[string]any); ok && n == "content_block_delta" {
			n += "/" + d["type"].(string)
		}
		s = append(s, n)
	}
	return strings.Join(s, " ")
}

func run(t testing.TB, api API, req string, chunks ...string) []byte {
	t.Helper()
	r := &Request{}
	if err := r.Parse(api, []byte(req)); err != nil {
		t.Fatal(err)
	}
	s := r.Stream()
	var out []byte
	for _, c := range chunks {
		out, _ = s.Feed(out, []byte(c))
	}
	return s.Finish(out)
}

func ch(delta string) string { return `{"choices":[{"index":0,"delta":` + delta + `}]}` }

const usageChunk = `{"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}}`

// Tool calls in pieces across chunks (OpenAI, vLLM, llama.cpp), two calls,
// reasoning then text then tools.
var piecesChunks = []string{
	ch(`{"role":"assistant","content":""}`),
	ch(`{"reasoning_content":"Let me"}`),
	ch(`{"reasoning_content":" think"}`),
	ch(`{"content":"Sure."}`),
	ch(`{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"read","arguments":""}}]}`),
	ch(`{"tool_calls":[{"index":0,"function":{"arguments":"{\"pa"}}]}`),
	ch(`{"tool_calls":[{"index":0,"function":{"arguments":"th\":\"a\"}"}}]}`),
	ch(`{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"ls","arguments":"{}"}}]}`),
	`{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`,
	usageChunk,
	`[DONE]`,
}

func TestMessagesStream(t *testing.T) {
	out := run(t, APIMessages, `{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"x"}],"stream":true}`, piecesChunks...)
	evs := parseSSE(t, out)
	want := "message_start ping content_block_start content_block_delta/thinking_delta content_block_delta/thinking_delta content_block_stop " +
		"content_block_start content_block_delta/text_delta content_block_stop " +
		"content_block_start content_block_delta/input_json_delta content_block_delta/input_json_delta content_block_stop " +
		"content_block_start content_block_delta/input_json_delta content_block_stop message_delta message_stop"
	if got := names(evs); got != want {
		t.Fatalf("events\n got %s\nwant %s", got, want)
	}
	var args string
	for _, e := range evs {
		if e.name == "content_block_delta" && e.data["index"].(float64) == 2 {
			args += e.data["delta"].(map[string]any)["partial_json"].(string)
		}
		if e.name == "content_block_start" && e.data["index"].(float64) == 3 {
			cb := e.data["content_block"].(map[string]any)
			if cb["id"] != "call_b" || cb["name"] != "ls" {
				t.Fatalf("second call %v", cb)
			}
		}
	}
	if args != `{"path":"a"}` {
		t.Fatalf("assembled args %q", args)
	}
	md := evs[len(evs)-2].data
	if md["delta"].(map[string]any)["stop_reason"] != "tool_use" {
		t.Fatalf("message_delta %v", md)
	}
	u := md["usage"].(map[string]any)
	if u["input_tokens"] != 7.0 || u["cache_read_input_tokens"] != 4.0 || u["output_tokens"] != 7.0 {
		t.Fatalf("usage %v", u)
	}
}

func TestResponsesStream(t *testing.T) {
	out := run(t, APIResponses, `{"model":"m","input":"x","stream":true}`, piecesChunks...)
	evs := parseSSE(t, out)
	want := "response.created response.in_progress " +
		"response.output_item.added response.reasoning_summary_part.added response.reasoning_summary_text.delta response.reasoning_summary_text.delta " +
		"response.reasoning_summary_text.done response.reasoning_summary_part.done response.output_item.done " +
		"response.output_item.added response.content_part.added response.output_text.delta response.output_text.done response.content_part.done response.output_item.done " +
		"response.output_item.added response.function_call_arguments.delta response.function_call_arguments.delta response.function_call_arguments.done response.output_item.done " +
		"response.output_item.added response.function_call_arguments.delta response.function_call_arguments.done response.output_item.done " +
		"response.completed"
	if got := names(evs); got != want {
		t.Fatalf("events\n got %s\nwant %s", got, want)
	}
	for i, e := range evs {
		if e.data["sequence_number"] != float64(i) || e.data["type"] != e.name {
			t.Fatalf("event %d: %v", i, e.data)
		}
	}
	final := evs[len(evs)-1].data["response"].(map[string]any)
	output := final["output"].([]any)
	if final["status"] != "completed" || len(output) != 4 {
		t.Fatalf("final %v", final)
	}
	fc := output[2].(map[string]any)
	if fc["type"] != "function_call" || fc["call_id"] != "call_a" || fc["arguments"] != `{"path":"a"}` || fc["name"] != "read" {
		t.Fatalf("call item %v", fc)
	}
	u := final["usage"].(map[string]any)
	if u["input_tokens"] != 11.0 || u["output_tokens"] != 7.0 || u["total_tokens"] != 18.0 ||
		u["input_tokens_details"].(map[string]any)["cached_tokens"] != 4.0 || u["output_tokens_details"].(map[string]any)["reasoning_tokens"] != 2.0 {
		t.Fatalf("usage %v", u)
	}
}

func TestCompletionsStream(t *testing.T) {
	out := run(t, APICompletions, `{"model":"m","prompt":"x","stream":true,"stream_options":{"include_usage":true}}`,
		ch(`{"reasoning_content":"hidden"}`), ch(`{"content":"Hel"}`), ch(`{"content":"lo"}`),
		`{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}`, usageChunk)
	evs := parseSSE(t, out)
	if names(evs) != "    [DONE]" || len(evs) != 5 {
		t.Fatalf("events %q", names(evs))
	}
	text := ""
	for _, e := range evs[:3] {
		c := e.data["choices"].([]any)[0].(map[string]any)
		text += c["text"].(string)
		if e.data["object"] != "text_completion" {
			t.Fatalf("chunk %v", e.data)
		}
	}
	if text != "Hello" || evs[2].data["choices"].([]any)[0].(map[string]any)["finish_reason"] != "length" ||
		evs[3].data["usage"].(map[string]any)["total_tokens"] != 18.0 {
		t.Fatalf("completion chunks %v", evs)
	}
}

// The ends and edge cases of the state machine, by dialect.
func TestStreamCases(t *testing.T) {
	msgs := `{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"x"}],"stop_sequences":["END"]}`
	resp := `{"model":"m","input":"x","tools":[{"type":"custom","name":"apply_patch"}]}`
	cases := []struct {
		name, req string
		api       API
		chunks    []string
		check     func(t *testing.T, evs []sseEvent)
	}{
		{"length is max_tokens", msgs, APIMessages, []string{ch(`{"content":"a"}`), `{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}`},
			func(t *testing.T, evs []sseEvent) {
				if sr := evs[len(evs)-2].data["delta"].(map[string]any)["stop_reason"]; sr != "max_tokens" {
					t.Fatal(sr)
				}
			}},
		{"vLLM names the stop sequence", msgs, APIMessages, []string{ch(`{"content":"a"}`), `{"choices":[{"index":0,"delta":{},"finish_reason":"stop","stop_reason":"END"}]}`},
			func(t *testing.T, evs []sseEvent) {
				d := evs[len(evs)-2].data["delta"].(map[string]any)
				if d["stop_reason"] != "stop_sequence" || d["stop_sequence"] != "END" {
					t.Fatal(d)
				}
			}},
		{"Ollama: calls numbered from 0 in each chunk, finish stop", msgs, APIMessages, []string{
			ch(`{"role":"assistant","content":"","tool_calls":[{"id":"call_1","index":0,"type":"function","function":{"name":"a","arguments":"{}"}}]}`),
			ch(`{"role":"assistant","content":"","tool_calls":[{"id":"call_2","index":0,"type":"function","function":{"name":"b","arguments":"{\"x\":1}"}}]}`),
			`{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop"}]}`},
			func(t *testing.T, evs []sseEvent) {
				var ids []string
				for _, e := range evs {
					if e.name == "content_block_start" {
						ids = append(ids, e.data["content_block"].(map[string]any)["id"].(string))
					}
				}
				if strings.Join(ids, ",") != "call_1,call_2" || evs[len(evs)-2].data["delta"].(map[string]any)["stop_reason"] != "tool_use" {
					t.Fatal(names(evs), ids)
				}
			}},
		{"a call whose name comes late, and one without id", msgs, APIMessages, []string{
			ch(`{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\""}}]}`),
			ch(`{"tool_calls":[{"index":0,"function":{"name":"f","arguments":":1}"}}]}`)},
			func(t *testing.T, evs []sseEvent) {
				cb := evs[2].data["content_block"].(map[string]any)
				d := evs[3].data["delta"].(map[string]any)
				if cb["name"] != "f" || !strings.HasPrefix(cb["id"].(string), "toolu_") || d["partial_json"] != `{"a":1}` {
					t.Fatal(names(evs), cb, d)
				}
			}},
		{"text after a call opens a new block", msgs, APIMessages, []string{
			ch(`{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{}"}}]}`), ch(`{"content":"after"}`)},
			func(t *testing.T, evs []sseEvent) {
				if names(evs) != "message_start ping content_block_start content_block_delta/input_json_delta content_block_stop content_block_start content_block_delta/text_delta content_block_stop message_delta message_stop" {
					t.Fatal(names(evs))
				}
			}},
		{"an upstream error event mid-stream", msgs, APIMessages, []string{ch(`{"content":"a"}`), `{"error":{"message":"out of memory","code":500}}`, ch(`{"content":"ignored"}`)},
			func(t *testing.T, evs []sseEvent) {
				last := evs[len(evs)-1]
				if last.name != "error" || last.data["error"].(map[string]any)["type"] != "api_error" ||
					!strings.Contains(last.data["error"].(map[string]any)["message"].(string), "out of memory") {
					t.Fatal(names(evs), last.data)
				}
			}},
		{"no usage from the upstream", resp, APIResponses, []string{ch(`{"content":"a"}`)},
			func(t *testing.T, evs []sseEvent) {
				if evs[len(evs)-1].data["response"].(map[string]any)["usage"] != nil {
					t.Fatal(evs[len(evs)-1].data)
				}
			}},
		{"length is incomplete", resp, APIResponses, []string{ch(`{"content":"a"}`), `{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}`},
			func(t *testing.T, evs []sseEvent) {
				last := evs[len(evs)-1]
				r := last.data["response"].(map[string]any)
				if last.name != "response.incomplete" || r["status"] != "incomplete" || r["incomplete_details"].(map[string]any)["reason"] != "max_output_tokens" {
					t.Fatal(last.data)
				}
			}},
		{"a custom tool call goes back as custom_tool_call", resp, APIResponses, []string{
			ch(`{"tool_calls":[{"index":0,"id":"c","function":{"name":"apply_patch","arguments":"{\"input\":\"*** Begin"}}]}`),
			ch(`{"tool_calls":[{"index":0,"function":{"arguments":" Patch\"}"}}]}`)},
			func(t *testing.T, evs []sseEvent) {
				if !strings.Contains(names(evs), "response.output_item.added response.custom_tool_call_input.delta response.custom_tool_call_input.done response.output_item.done") {
					t.Fatal(names(evs))
				}
				it := evs[len(evs)-1].data["response"].(map[string]any)["output"].([]any)[0].(map[string]any)
				if it["type"] != "custom_tool_call" || it["input"] != "*** Begin Patch" || it["call_id"] != "c" {
					t.Fatal(it)
				}
			}},
		{"vLLM sends reasoning and reasoning_content alike", resp, APIResponses, []string{ch(`{"reasoning":"r","reasoning_content":"r"}`), ch(`{"content":"a"}`)},
			func(t *testing.T, evs []sseEvent) {
				r := evs[len(evs)-1].data["response"].(map[string]any)["output"].([]any)[0].(map[string]any)
				if r["summary"].([]any)[0].(map[string]any)["text"] != "r" {
					t.Fatal(r)
				}
			}},
		{"a chunk that is not JSON fails the stream", resp, APIResponses, []string{ch(`{"content":"a"}`), `{"choices":[`},
			func(t *testing.T, evs []sseEvent) {
				last := evs[len(evs)-1]
				if last.name != "response.failed" || last.data["response"].(map[string]any)["error"].(map[string]any)["code"] != "server_error" {
					t.Fatal(names(evs))
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.check(t, parseSSE(t, run(t, c.api, c.req, c.chunks...)))
		})
	}
}

func TestFailEvents(t *testing.T) {
	for _, c := range []struct {
		api  API
		req  string
		want string
	}{
		{APIMessages, `{"model":"m","max_tokens":1,"messages":[]}`, `"type":"overloaded_error","message":"busy"`},
		{APIResponses, `{"model":"m","input":"x"}`, `"status":"failed"`},
		{APICompletions, `{"model":"m","prompt":"x"}`, `data: {"error":{"message":"busy","type":"server_error"`},
	} {
		r := &Request{}
		_ = r.Parse(c.api, []byte(c.req))
		s := r.Stream()
		out, _ := s.Feed(nil, []byte(ch(`{"content":"a"}`)))
		out = s.Fail(out, ErrorInfo{Status: 503, Type: "server_error", Message: "busy"})
		if !s.Done() || !bytes.Contains(out, []byte(c.want)) {
			t.Fatalf("%s", out)
		}
		parseSSE(t, out)
		if more := s.Finish(nil); len(more) != 0 {
			t.Fatalf("events after Fail: %s", more)
		}
	}
}
