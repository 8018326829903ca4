package dialect

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// Agent-sized bodies: Codex CLI (long instructions, function tools, a
// conversation of messages, reasoning and calls) and Claude Code (system
// blocks with cache_control, many tools with schemas, tool_use and
// tool_result turns, thinking).

func codexBody(stream bool) []byte {
	tools := []any{}
	for i := 0; i < 6; i++ {
		tools = append(tools, map[string]any{"type": "function", "name": "tool" + strconv.Itoa(i), "description": strings.Repeat("Runs a command. ", 20), "strict": false,
			"parameters": map[string]any{"type": "object", "properties": map[string]any{"command": map[string]any{"type": "array", "items": map[string]any{"type": "string"}}, "workdir": map[string]any{"type": "string"}}, "required": []string{"command"}}})
	}
	input := []any{map[string]any{"type": "message", "role": "user", "content": []any{map[string]any{"type": "input_text", "text": "<environment_context>cwd /src</environment_context>"}}}}
	for i := 0; i < 5; i++ {
		input = append(input,
			map[string]any{"type": "message", "role": "user", "content": []any{map[string]any{"type": "input_text", "text": "Fix the failing test in pkg " + strconv.Itoa(i)}}},
			map[string]any{"type": "reasoning", "summary": []any{map[string]any{"type": "summary_text", "text": "I need to read the file first."}}, "encrypted_content": nil},
			map[string]any{"type": "function_call", "call_id": "call_" + strconv.Itoa(i), "name": "tool0", "arguments": `{"command":["cat","a.go"]}`},
			map[string]any{"type": "function_call_output", "call_id": "call_" + strconv.Itoa(i), "output": strings.Repeat("package a\n\nfunc A() int { return 1 }\n", 30)},
			map[string]any{"type": "message", "role": "assistant", "content": []any{map[string]any{"type": "output_text", "text": "Done: the test passes now."}}})
	}
	b, _ := json.Marshal(map[string]any{"model": "qwen3-coder", "instructions": strings.Repeat("You are a coding agent running in the Codex CLI. ", 160),
		"input": input, "tools": tools, "tool_choice": "auto", "parallel_tool_calls": false, "reasoning": map[string]any{"effort": "medium", "summary": "auto"},
		"store": false, "stream": stream, "include": []string{"reasoning.encrypted_content"}, "prompt_cache_key": "abc"})
	return b
}

func claudeCodeBody(stream bool) []byte {
	tools := []any{}
	for i := 0; i < 16; i++ {
		tools = append(tools, map[string]any{"name": "Tool" + strconv.Itoa(i), "description": strings.Repeat("Reads a file from the local filesystem. ", 12),
			"input_schema": map[string]any{"type": "object", "$schema": "http://json-schema.org/draft-07/schema#", "additionalProperties": false,
				"properties": map[string]any{"file_path": map[string]any{"type": "string", "description": "The absolute path"}, "offset": map[string]any{"type": "number"}, "limit": map[string]any{"type": "number"}},
				"required":   []string{"file_path"}}})
	}
	msgs := []any{map[string]any{"role": "user", "content": []any{
		map[string]any{"type": "text", "text": "<system-reminder>context</system-reminder>"},
		map[string]any{"type": "text", "text": "Fix the bug", "cache_control": map[string]any{"type": "ephemeral"}}}}}
	for i := 0; i < 5; i++ {
		id := "toolu_" + strconv.Itoa(i)
		msgs = append(msgs,
			map[string]any{"role": "assistant", "content": []any{
				map[string]any{"type": "thinking", "thinking": "Let me read the file.", "signature": "sig"},
				map[string]any{"type": "text", "text": "I'll read it."},
				map[string]any{"type": "tool_use", "id": id, "name": "Tool1", "input": map[string]any{"file_path": "/src/a.go"}}}},
			map[string]any{"role": "user", "content": []any{
				map[string]any{"type": "tool_result", "tool_use_id": id, "content": strings.Repeat("     1\tpackage a\n", 40)}}})
	}
	b, _ := json.Marshal(map[string]any{"model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": stream, "temperature": 1,
		"system":   []any{map[string]any{"type": "text", "text": "You are Claude Code."}, map[string]any{"type": "text", "text": strings.Repeat("You are an interactive CLI tool. ", 300), "cache_control": map[string]any{"type": "ephemeral"}}},
		"messages": msgs, "tools": tools, "metadata": map[string]any{"user_id": "u"}, "thinking": map[string]any{"type": "enabled", "budget_tokens": 4000}})
	return b
}

func BenchmarkRequest(b *testing.B) {
	for _, c := range []struct {
		name string
		api  API
		body []byte
	}{{"responses-codex", APIResponses, codexBody(true)}, {"messages-claude-code", APIMessages, claudeCodeBody(true)}} {
		b.Run(c.name, func(b *testing.B) {
			r := &Request{}
			var dst []byte
			b.ReportAllocs()
			b.SetBytes(int64(len(c.body)))
			for i := 0; i < b.N; i++ {
				if err := r.Parse(c.api, c.body); err != nil {
					b.Fatal(err)
				}
				var err error
				if dst, err = r.AppendChat(dst[:0], nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// streamChunks is an answer of n text chunks, Chat Completions style.
func textChunk(word string) []byte {
	return []byte(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"qwen3:8b","choices":[{"index":0,"delta":{"content":"` + word + `"},"logprobs":null,"finish_reason":null}]}`)
}

// BenchmarkStreamEvent is the steady-state cost of one upstream text chunk
// turned into the dialect's delta event.
func BenchmarkStreamEvent(b *testing.B) {
	for _, c := range []struct {
		name, req string
		api       API
	}{
		{"responses", `{"model":"m","input":"x","stream":true}`, APIResponses},
		{"messages", `{"model":"m","max_tokens":9,"messages":[],"stream":true}`, APIMessages},
		{"completions", `{"model":"m","prompt":"x","stream":true}`, APICompletions},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := &Request{}
			if err := r.Parse(c.api, []byte(c.req)); err != nil {
				b.Fatal(err)
			}
			chunk := textChunk(" token")
			s := r.Stream()
			out, _ := s.Feed(nil, chunk)
			b.ReportAllocs()
			b.SetBytes(int64(len(chunk)))
			for i := 0; i < b.N; i++ {
				out, _ = s.Feed(out[:0], chunk)
			}
		})
	}
}

// BenchmarkStreamAnswer translates a whole streamed answer: 8 reasoning
// chunks, 64 text chunks, a tool call in 4 pieces, usage, with the
// opening and closing events; per op and per upstream event.
func BenchmarkStreamAnswer(b *testing.B) {
	chunks := [][]byte{}
	for i := 0; i < 8; i++ {
		chunks = append(chunks, []byte(ch(`{"reasoning_content":" think"}`)))
	}
	for i := 0; i < 64; i++ {
		chunks = append(chunks, textChunk(" word"))
	}
	chunks = append(chunks, []byte(ch(`{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"read","arguments":""}}]}`)))
	for i := 0; i < 3; i++ {
		chunks = append(chunks, []byte(ch(`{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":1}"}}]}`)))
	}
	chunks = append(chunks, []byte(`{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`), []byte(usageChunk))
	for _, c := range []struct {
		name, req string
		api       API
	}{
		{"responses", `{"model":"m","input":"x","stream":true}`, APIResponses},
		{"messages", `{"model":"m","max_tokens":9,"messages":[],"stream":true}`, APIMessages},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := &Request{}
			if err := r.Parse(c.api, []byte(c.req)); err != nil {
				b.Fatal(err)
			}
			var out []byte
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				s := r.Stream()
				for _, c := range chunks {
					out, _ = s.Feed(out[:0], c)
				}
				out = s.Finish(out[:0])
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(chunks)), "ns/upstream-event")
		})
	}
}

func BenchmarkAnswer(b *testing.B) {
	for _, c := range []struct {
		name, req string
		api       API
	}{
		{"responses", `{"model":"m","input":"x"}`, APIResponses},
		{"messages", `{"model":"m","max_tokens":9,"messages":[]}`, APIMessages},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := &Request{}
			if err := r.Parse(c.api, []byte(c.req)); err != nil {
				b.Fatal(err)
			}
			var out []byte
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				out, _ = r.AppendResponse(out[:0], []byte(chatWithCalls))
			}
		})
	}
}

func BenchmarkEstimate(b *testing.B) {
	r := &Request{}
	body := claudeCodeBody(false)
	if err := r.Parse(APICountTokens, body); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for i := 0; i < b.N; i++ {
		_ = r.EstimateInputTokens()
	}
}
