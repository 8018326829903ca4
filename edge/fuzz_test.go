package edge

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzScanRequest checks the byte scanner against encoding/json on every
// valid object: same model, stream and max_tokens; setModel yields valid
// JSON whose model is the new one and whose other fields are unchanged.
func FuzzScanRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"qwen3:8b","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"a\"b\\c\u00e9","stream":false,"max_tokens":12}`,
		`{"stream":true,"model":"x","model":"y"}`,
		`{ "model" : 7 }`,
		`{"chat_template_kwargs":{"enable_thinking":false},"think":true,"model":"m"}`,
		`{}`, `[]`, `{"model":"m","x":[1,2,{"a":null}],"max_completion_tokens":3e2}`,
		`{"model":"\ud83d\ude00"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fa reqFacts
		err := scanRequest(b, &fa)
		if !json.Valid(b) {
			return // only "no panic" is required
		}
		var m map[string]any
		if json.Unmarshal(b, &m) != nil || m == nil {
			return
		}
		if err != nil {
			t.Fatalf("scanner rejected valid object %q: %v", b, err)
		}
		want, isStr := m["model"].(string)
		if fa.modelOK != isStr {
			t.Fatalf("%q: modelOK=%v, want %v", b, fa.modelOK, isStr)
		}
		if isStr {
			raw := b[fa.modelStart:fa.modelEnd]
			got := string(raw[1 : len(raw)-1])
			if fa.modelEscaped {
				got = unquote(raw)
			}
			var ref string
			_ = json.Unmarshal(raw, &ref)
			if got != ref || ref != want {
				t.Fatalf("%q: model %q, want %q", b, got, want)
			}
		}
		if s, _ := m["stream"].(bool); s != fa.stream {
			t.Fatalf("%q: stream %v", b, fa.stream)
		}
		if !isStr {
			return // the edge answers 400 before rewriting
		}
		out := setModel(nil, b, &fa, "new/model:1")
		var m2 map[string]any
		if err := json.Unmarshal(out, &m2); err != nil {
			t.Fatalf("setModel(%q) = %q: %v", b, out, err)
		}
		if m2["model"] != "new/model:1" {
			t.Fatalf("setModel(%q) model = %v", b, m2["model"])
		}
		delete(m, "model")
		delete(m2, "model")
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("setModel changed other fields: %q -> %q", b, out)
		}
	})
}

func dropKeys(v any, keys []string) any {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range keys {
			delete(x, k)
		}
		for k, e := range x {
			x[k] = dropKeys(e, keys)
		}
	case []any:
		for i := range x {
			x[i] = dropKeys(x[i], keys)
		}
	}
	return v
}

// FuzzStripKeys compares stripKeys with decoding, deleting and comparing.
func FuzzStripKeys(f *testing.F) {
	for _, s := range []string{
		`{"choices":[{"delta":{"reasoning_content":"hm","content":"x"}}]}`,
		`{"choices":[{"message":{"reasoning":"a","content":"b","reasoning_content":null}}],"usage":{"completion_tokens":3}}`,
		`[{"reasoning":1},{"a":{"reasoning":{"x":[1,2]}}}]`,
		`"plain"`, `{"a":"reasoning_content"}`, `{"reasoning\u005fcontent":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, _ := stripKeys(nil, b, reasoningKeys)
		if !json.Valid(b) {
			return
		}
		var want, got any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if dec.Decode(&want) != nil {
			return
		}
		if bytes.Contains(b, []byte(`\u`)) {
			// escaped keys are kept on purpose (never produced by upstreams)
			return
		}
		dec = json.NewDecoder(bytes.NewReader(out))
		dec.UseNumber()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("stripKeys(%q) = %q: invalid: %v", b, out, err)
		}
		want = dropKeys(want, reasoningKeys)
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("stripKeys(%q) = %q", b, out)
		}
	})
}

// FuzzMultipart feeds arbitrary bodies to the multipart parser and splicer.
func FuzzMultipart(f *testing.F) {
	ct, body := multipartBody(nil, "whisper-small", 64)
	f.Add([]byte(ct), body)
	f.Add([]byte("multipart/form-data; boundary=x"), []byte("--x\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm\r\n--x--"))
	f.Fuzz(func(t *testing.T, ct, b []byte) {
		info, err := parseMultipart(b, ct)
		if err != nil {
			return
		}
		out := spliceMultipartModel(nil, b, &info, "other")
		info2, err := parseMultipart(out, ct)
		if err != nil && info.valStart >= 0 {
			t.Fatalf("splice broke a valid body: %q -> %q: %v", b, out, err)
		}
		if err == nil && info.valStart >= 0 && info2.model != "other" {
			t.Fatalf("splice: model %q", info2.model)
		}
	})
}
