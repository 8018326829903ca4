package edge

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/geniehive/geniehive/internal/rawjson"
	"github.com/geniehive/geniehive/routing"
)

// FuzzScanRequest checks the one-pass validating scanner against
// encoding/json: it accepts exactly what json.Valid accepts (up to its
// nesting bound), and on every valid object finds the same model, stream
// flag and prompt text as decoding does; setModel yields valid JSON whose
// model is the new one and whose other fields are unchanged.
func FuzzScanRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"qwen3:8b","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"a\"b\\c\u00e9","stream":false,"max_tokens":12}`,
		`{"stream":true,"model":"x","model":"y"}`, `{"model":"x","mod\u0065l":"y"}`,
		`{ "model" : 7 }`,
		`{"chat_template_kwargs":{"enable_thinking":false},"think":true,"model":"m"}`,
		`{}`, `[]`, `{"model":"m","x":[1,2,{"a":null}],"max_completion_tokens":3e2}`,
		`{"model":"\ud83d\ude00"}`,
		`{"model":"allowed","Model":"secret"}`, `{"model":"m","max_tokens":1e5}`, `{"model":"m","max_tokens":"100000"}`,
		`{"model":"m","max_tokens":100,"Max_Tokens":100000}`, `{"model":"m","ſtream":true}`, `{"model":"m","thin\u212a":true}`,
		`{"model":"m","chat_template_kwargs":{"enable\u005fthinking":"no"}}`, `{"model":"m","think":"high","max_completion_tokens":9}`,
		`{"model":"a","mod\u0065l":"b"}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"one"},{"type":"image_url","image_url":{"url":"x"}},{"text":"two","type":"text"}]},{"role":"assistant","content":"no"}]}`,
		`{"model":"m","messages":[{"role":"user","content":"a"},{"content":"b","role":"us\u0065r"}],"messages":null}`,
		`{"model":"m","prompt":"a cat on a mat"}`,
		`{"a":01}`, `{"a":1.}`, `{"a":-}`, `{"a":"\x"}`, `{"a":"` + "\x01" + `"}`, `{"a":tru}`, `{"a":1,}`, `{"a":1} x`, `"s"`, `nul`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fa bodyScan
		err := scanRequest(b, &fa)
		valid := json.Valid(b)
		switch {
		case err == rawjson.ErrTooDeep:
			if valid && nesting(b) < rawjson.MaxDepth {
				t.Fatalf("%q: too deep at nesting %d", b, nesting(b))
			}
			return
		case !valid:
			if err != rawjson.ErrSyntax {
				t.Fatalf("scanner accepted invalid JSON %q (err %v)", b, err)
			}
			return
		case err == rawjson.ErrSyntax:
			t.Fatalf("scanner rejected valid JSON %q", b)
		case err == errDupModel:
			if n := topLevelCount(b, "model"); n < 2 {
				t.Fatalf("%q: duplicate model reported, %d found", b, n)
			}
			return
		case errors.Is(err, errCanon):
			if why := canonViolation(b); why == "" {
				t.Fatalf("%q refused (%v) though every upstream reads it alike", b, err)
			}
			return
		}
		if why := canonViolation(b); why != "" && err != errNotObject {
			t.Fatalf("%q accepted though not canonical: %s", b, why)
		}
		if n := topLevelCount(b, "model"); n > 1 {
			t.Fatalf("%q: %d model members accepted", b, n)
		}
		var m map[string]any
		if json.Unmarshal(b, &m) != nil || m == nil {
			if err != errNotObject {
				t.Fatalf("%q: not an object, err %v", b, err)
			}
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
				got = rawjson.Unquote(raw)
			}
			var ref string
			_ = json.Unmarshal(raw, &ref)
			// (encoding/json replaces invalid UTF-8; the scanner keeps bytes)
			if utf8.Valid(raw) && (got != ref || ref != want) {
				t.Fatalf("%q: model %q, want %q", b, got, want)
			}
		}
		if s, _ := m["stream"].(bool); s != fa.stream {
			t.Fatalf("%q: stream %v", b, fa.stream)
		}
		if fa.modelOK { // (else the edge answers 400 and forwards nothing)
			checkUpstreamReaders(t, b, &fa)
		}
		if utf8.Valid(b) {
			// (encoding/json replaces invalid UTF-8; the scanner keeps bytes)
			got := string(appendText(nil, b, &fa, routing.TextBytes))
			ref := refText(m, routing.TextBytes)
			if got != ref {
				t.Fatalf("%q: text %q, want %q", b, got, ref)
			}
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

// topLevelCount counts the members named k of the object b (by decoding).
func topLevelCount(b []byte, k string) int {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return 0
	}
	n := 0
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return n
		}
		if tok == k {
			n++
		}
		var v json.RawMessage
		if dec.Decode(&v) != nil {
			return n
		}
	}
	return n
}

// nesting is the deepest array/object nesting of valid JSON b.
func nesting(b []byte) int {
	d, maxD, inStr := 0, 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inStr && c == '\\':
			i++
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '{' || c == '[':
			d++
			maxD = max(maxD, d)
		case c == '}' || c == ']':
			d--
		}
	}
	return maxD
}

// refText is the prompt text by decoding: the last user message's text
// (string content, or the "text" strings of its first maxTextParts parts
// that have one, space-separated), else a top-level "prompt" string; cut to
// max bytes at a UTF-8 boundary.
func refText(m map[string]any, max int) string {
	var parts []string
	found := false
	if msgs, ok := m["messages"].([]any); ok {
		for _, e := range msgs {
			mo, ok := e.(map[string]any)
			if !ok || mo["role"] != "user" {
				continue
			}
			found = true
			parts = parts[:0]
			switch c := mo["content"].(type) {
			case string:
				parts = append(parts, c)
			case []any:
				for _, p := range c {
					po, ok := p.(map[string]any)
					if !ok {
						continue
					}
					if t, ok := po["text"].(string); ok && len(parts) < maxTextParts {
						parts = append(parts, t)
					}
				}
			}
		}
	}
	if (!found || len(parts) == 0) && m["prompt"] != nil {
		if p, ok := m["prompt"].(string); ok {
			parts = []string{p}
		}
	}
	s := strings.Join(parts, " ")
	if len(s) > max {
		s = s[:max]
	}
	for len(s) > 0 {
		if r, size := utf8.DecodeLastRuneInString(s); r != utf8.RuneError || size > 1 {
			break
		}
		s = s[:len(s)-1]
	}
	return s
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

// FuzzMultipart feeds arbitrary bodies to the multipart parser and
// splicer, against mime/multipart as the reference: whatever parseMultipart
// accepts, mime/multipart reads the same model value and finds a file; a
// body mime/multipart reads with one model field and a file is accepted;
// and splicing yields a body whose model is the new one.
func FuzzMultipart(f *testing.F) {
	ct, body := multipartBody(nil, "whisper-small", 64)
	f.Add([]byte(ct), body)
	f.Add([]byte("multipart/form-data; boundary=x"), []byte("--x\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm\r\n--x--"))
	f.Add([]byte("multipart/form-data; boundary=x"), []byte("--x\nContent-Disposition: form-data; name=\"model\"\n\nm\n--x\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\n\nAAA\n--x--\n"))
	f.Add([]byte("multipart/form-data; boundary=x"), []byte("--x\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\na\r\n--x\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nb\r\n--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nA\r\n--x--"))
	f.Fuzz(func(t *testing.T, ct, b []byte) {
		info, err := parseMultipart(b, ct)
		refModel, refModels, refFile, refErr := referenceMultipart(b, ct)
		if err != nil {
			if refErr == nil && refModels == 1 && refFile && refModel != "" && len(refModel) <= maxModelField {
				t.Fatalf("refused %q (%v), mime/multipart reads model %q and a file", b, err, refModel)
			}
			return
		}
		if info.valStart < 0 || info.valEnd < info.valStart || info.valEnd > len(b) {
			t.Fatalf("accepted %q with a value span [%d,%d) outside the body", b, info.valStart, info.valEnd)
		}
		if refErr != nil || refModels != 1 || !refFile || refModel != info.model {
			t.Fatalf("accepted %q as model %q; mime/multipart: model %q (%d fields), file %v, err %v", b, info.model, refModel, refModels, refFile, refErr)
		}
		out := spliceMultipartModel(nil, b, &info, "other")
		info2, err := parseMultipart(out, ct)
		if err != nil || info2.model != "other" {
			t.Fatalf("splice of %q -> %q: model %q, err %v", b, out, info2.model, err)
		}
	})
}

// referenceMultipart reads a body with mime/multipart: the last model
// field's value (trimmed), how many model fields, whether a file part is
// there.
func referenceMultipart(b, ct []byte) (model string, models int, file bool, err error) {
	mt, params, err := mime.ParseMediaType(string(ct))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return "", 0, false, errors.New("not multipart/form-data")
	}
	r := multipart.NewReader(bytes.NewReader(b), params["boundary"])
	for {
		p, err := r.NextRawPart()
		if err == io.EOF {
			return model, models, file, nil
		}
		if err != nil {
			return "", 0, false, err
		}
		v, err := io.ReadAll(p)
		if err != nil {
			return "", 0, false, err
		}
		switch {
		case p.FormName() == "model" && p.FileName() == "":
			models++
			model = string(bytes.TrimSpace(v))
		case p.FileName() != "" || p.FormName() == "file":
			file = true
		}
	}
}
