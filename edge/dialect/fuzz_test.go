package dialect

import (
	"bytes"
	"encoding/json"
	"testing"
)

// The translators never panic, and every byte they write is valid JSON
// (request bodies, answers) or valid SSE with JSON data (streams),
// whatever the client or the upstream sends. Seeds: testdata/fuzz.

var fuzzAPIs = []API{APIResponses, APIMessages, APICompletions, APICountTokens}

func FuzzRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","input":"hi","instructions":"s","tools":[{"type":"function","name":"f","parameters":{"type":"object"}}]}`,
		`{"model":"m","input":[{"type":"reasoning","summary":[{"type":"summary_text","text":"r"}]},{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":[{"type":"input_image","image_url":"u"}]}]}`,
		`{"model":"m","max_tokens":5,"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA"}}]}]}],"stop_sequences":["\u0000x"]}`,
		`{"model":"m","prompt":["p"],"stop":["a"],"logit_bias":{"1":2}}`,
		`{"model":"\ud800","input":"\u2028<>&\"\\","text":{"format":{"type":"json_schema","schema":{"a\u0000":"\u007f"}}}}`,
	} {
		for i := range fuzzAPIs {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		api := fuzzAPIs[int(which)%len(fuzzAPIs)]
		r := AcquireRequest()
		defer ReleaseRequest(r)
		if err := r.Parse(api, body); err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("untyped error %T", err)
			}
			return
		}
		chat, err := r.AppendChat(nil, &ChatOptions{ReasoningKey: "reasoning", ForwardEffort: true, TopK: true})
		if err == nil && !json.Valid(chat) {
			t.Fatalf("chat body is not JSON: %s", chat)
		}
		p := "policy"
		for _, m := range []PromptMode{PromptPrepend, PromptAppend, PromptReplace} {
			if out := r.AppendPatched(nil, body, Patch{Model: "x", Prompt: &p, Mode: m}); !json.Valid(out) {
				t.Fatalf("patched body is not JSON: %s", out)
			}
		}
		if tok := r.AppendLlamaTokenize(nil); !json.Valid(tok) {
			t.Fatalf("tokenize body is not JSON: %s", tok)
		}
		if r.EstimateInputTokens() < 1 {
			t.Fatal("estimate below 1")
		}
	})
}

// FuzzStream feeds upstream data split at 0x1e bytes, then finishes (or
// fails, by the last byte of the input), and checks the client stream.
func FuzzStream(f *testing.F) {
	f.Add(uint8(0), []byte(string(bytes.Join(toBytes(piecesChunks), []byte{0x1e}))))
	f.Add(uint8(1), []byte(string(bytes.Join(toBytes(piecesChunks), []byte{0x1e}))))
	f.Add(uint8(2), []byte(ch(`{"content":"a\u0000"}`)+"\x1e"+`{"error":"x"}`))
	f.Add(uint8(1), []byte(ch(`{"tool_calls":[{"index":3,"function":{"arguments":{"a":[1,"\u00ff"]}}}]}`)+"\x1e"+ch(`{"tool_calls":[{"index":3,"id":"z","function":{"name":"apply_patch","arguments":"{\"input\":1}"}}]}`)))
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		api := []API{APIResponses, APIMessages, APICompletions}[int(which)%3]
		req := map[API]string{
			APIResponses:   `{"model":"m","input":"x","tools":[{"type":"custom","name":"apply_patch"}]}`,
			APIMessages:    `{"model":"m","max_tokens":1,"messages":[],"stop_sequences":["a"]}`,
			APICompletions: `{"model":"m","prompt":"x","stream_options":{"include_usage":true}}`,
		}[api]
		r := AcquireRequest()
		defer ReleaseRequest(r)
		if err := r.Parse(api, []byte(req)); err != nil {
			t.Fatal(err)
		}
		s := r.Stream()
		var out []byte
		for _, c := range bytes.Split(data, []byte{0x1e}) {
			out, _ = s.Feed(out, c)
		}
		if len(data) > 0 && data[len(data)-1]&1 == 1 {
			out = s.Fail(out, ErrorInfo{Status: 502, Message: "cut \x00"})
		} else {
			out = s.Finish(out)
		}
		parseSSE(t, out)
		if a, err := r.AppendResponse(nil, data); err == nil && !json.Valid(a) {
			t.Fatalf("answer is not JSON: %s", a)
		}
	})
}

func toBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}
