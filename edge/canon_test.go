package edge

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestCanonicalAttacks performs issue 16's parser-differential attacks:
// each body names one thing to the edge and another to an upstream that
// reads keys case-insensitively (Go's encoding/json, Ollama) or numbers
// leniently (Python, C++). The edge refuses every one with 400 in OpenAI's
// format; before, it routed them.
func TestCanonicalAttacks(t *testing.T) {
	for _, body := range []string{
		`{"model":"allowed","Model":"secret"}`,
		`{"model":"allowed","MODEL":"secret"}`,
		`{"model":"allowed","mod\u0045l":"secret"}`,
		`{"model":"m","max_tokens":1e5}`,
		`{"model":"m","max_tokens":100.0e3}`,
		`{"model":"m","max_tokens":100000.0}`,
		`{"model":"m","max_tokens":"100000"}`,
		`{"model":"m","max_tokens":-1}`,
		`{"model":"m","max_tokens":0}`,
		`{"model":"m","max_tokens":100,"Max_Tokens":100000}`,
		`{"model":"m","max_tokens":100,"max_tokens":100000}`,
		`{"model":"m","max_completion_tokens":[1]}`,
		`{"model":"m","stream":"true"}`,
		`{"model":"m","stream":1}`,
		`{"model":"m","ſtream":true}`,
		`{"model":"m","thin\u212a":true}`,
		`{"model":"m","think":"yes"}`,
		`{"model":"m","chat_template_kwargs":{"enable_thinking":"false"}}`,
		`{"model":"m","chat_template_kwargs":{"enable\u005fthinking":1}}`,
		`{"model":"m","chat_template_kwargs":true}`,
		`{"model":"m","reasoning_effort":3}`,
		`{"model":"m","reasoning":"high"}`,
		`{"model":"m","Temperature":2}`,
	} {
		var f bodyScan
		err := scanRequest([]byte(body), &f)
		if err == nil {
			t.Errorf("%s: accepted", body)
			continue
		}
		if e := Classify(err); e.Status != 400 || e.Type != "invalid_request_error" {
			t.Errorf("%s: %d %s", body, e.Status, e.Type)
		}
	}
	s := newStack(t)
	r, b := do(t, "POST", s.url+"/v1/chat/completions", testKey, []byte(`{"model":"coder","Model":"qwen3:8b","messages":[]}`), nil)
	if r.StatusCode != 400 || !contains(b, `"invalid_request"`) {
		t.Fatalf("case-variant model: %d %s", r.StatusCode, b)
	}
	// What stays accepted: canonical limits, null, thinking levels.
	for body, want := range map[string]int{
		`{"model":"m","max_tokens":100}`:                              100,
		`{"model":"m","max_tokens":null}`:                             0,
		`{"model":"m","max_tokens":100,"max_completion_tokens":4000}`: 4000,
		`{"model":"m","max_output_tokens":7,"think":"high"}`:          7,
	} {
		var f bodyScan
		if err := scanRequest([]byte(body), &f); err != nil || f.maxTokens != want {
			t.Errorf("%s: %v, max %d want %d", body, err, f.maxTokens, want)
		}
	}
}

// goUpstream is how a Go upstream (Ollama's OpenAI layer, encoding/json)
// reads the fields the policy decides on: names matched case-insensitively
// with Unicode folding, the last duplicate winning.
type goUpstream struct {
	Model               *string         `json:"model"`
	Stream              *bool           `json:"stream"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	MaxOutputTokens     *int            `json:"max_output_tokens"`
	Think               json.RawMessage `json:"think"`
	ChatTemplateKwargs  json.RawMessage `json:"chat_template_kwargs"`
}

// lenientMembers reads the top-level members the way a lenient upstream
// does: names folded, the last duplicate winning.
func lenientMembers(b []byte) map[string]json.RawMessage {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	m := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return m
		}
		var v json.RawMessage
		if dec.Decode(&v) != nil {
			return m
		}
		m[foldName(tok.(string))] = v
	}
	return m
}

// foldName folds like bytes.EqualFold: ToUpper maps ſ to S, ToLower maps
// the Kelvin sign to k.
func foldName(s string) string { return strings.ToLower(strings.ToUpper(s)) }

// lenientInt reads a limit the way pydantic (lax) or a C++ reader does:
// integral floats, exponents and numeric strings count; ok false when it
// is no number at all.
func lenientInt(v json.RawMessage) (int, bool) {
	s := strings.TrimSpace(string(v))
	if s == "null" {
		return 0, true
	}
	var str string
	if json.Unmarshal(v, &str) == nil {
		s = strings.TrimSpace(str)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return int(f), true
}

// lenientBool is Python-style truthiness of a JSON value as pydantic lax
// mode or a Jinja template takes it.
func lenientBool(v json.RawMessage) bool {
	var x any
	if json.Unmarshal(v, &x) != nil {
		return false
	}
	switch y := x.(type) {
	case bool:
		return y
	case float64:
		return y != 0
	case string:
		return y != ""
	case nil:
		return false
	}
	return true
}

var plainLimit = regexp.MustCompile(`^(null|[1-9][0-9]{0,17})$`)

// canonViolation says why b (valid JSON, an object) is not canonical, ""
// when it is: the reference for the edge's refusals.
func canonViolation(b []byte) string {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return ""
	}
	seen := map[string]bool{}
	n := 0
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		k := tok.(string)
		var v json.RawMessage
		if dec.Decode(&v) != nil {
			return ""
		}
		n++
		if foldName(k) != k || strings.ContainsAny(k, "ſ") {
			return "case " + k
		}
		if len(k) >= 24 && bytes.Contains(b, []byte(`\`)) {
			return "long escaped name " + k
		}
		if seen[k] {
			return "duplicate " + k
		}
		seen[k] = true
		first := strings.TrimSpace(string(v))[0]
		isNull := string(v) == "null"
		switch k {
		case "max_tokens", "max_completion_tokens", "max_output_tokens":
			if !plainLimit.Match(v) {
				return "limit " + string(v)
			}
		case "stream":
			if first != 't' && first != 'f' && !isNull {
				return "stream " + string(v)
			}
		case "think":
			if first != 't' && first != 'f' && !isNull && !thinkLevel(v, 0, len(v)) {
				return "think " + string(v)
			}
		case "reasoning_effort":
			if first != '"' && !isNull {
				return "effort"
			}
		case "reasoning":
			if first != '{' && !isNull {
				return "reasoning"
			}
		case "chat_template_kwargs":
			if first != '{' && !isNull {
				return "kwargs"
			}
			if first == '{' {
				var kw map[string]json.RawMessage
				d := json.NewDecoder(bytes.NewReader(v))
				d.Token()
				for d.More() {
					kt, _ := d.Token()
					var kv json.RawMessage
					d.Decode(&kv)
					if kt == "enable_thinking" && kv[0] != 't' && kv[0] != 'f' && string(kv) != "null" {
						return "enable_thinking " + string(kv)
					}
				}
				_ = kw
			}
		}
	}
	if n > maxTopMembers {
		return "too many members"
	}
	return ""
}

// checkUpstreamReaders asserts that a body the edge accepted reads the same
// to the reference upstream readers: encoding/json into a struct (case-
// insensitive, last wins) and a lenient reader of numbers and booleans.
func checkUpstreamReaders(t *testing.T, b []byte, fa *bodyScan) {
	var g goUpstream
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("%q accepted, but a Go upstream refuses it: %v", b, err)
	}
	if g.Model != nil && fa.modelOK && utf8.Valid(b) {
		raw := b[fa.modelStart:fa.modelEnd]
		if got := rawjson_unquote(raw, fa.modelEscaped); got != *g.Model {
			t.Fatalf("%q: edge model %q, Go upstream %q", b, got, *g.Model)
		}
	}
	if (g.Model != nil) != fa.modelOK {
		t.Fatalf("%q: edge model present %v, Go upstream %v", b, fa.modelOK, g.Model != nil)
	}
	if g.Stream != nil && *g.Stream != fa.stream || g.Stream == nil && fa.stream {
		t.Fatalf("%q: edge stream %v, Go upstream %v", b, fa.stream, g.Stream)
	}
	goMax := 0
	for _, p := range []*int{g.MaxTokens, g.MaxCompletionTokens, g.MaxOutputTokens} {
		if p != nil {
			goMax = max(goMax, *p)
		}
	}
	if goMax != fa.maxTokens {
		t.Fatalf("%q: edge max tokens %d, Go upstream %d", b, fa.maxTokens, goMax)
	}
	m := lenientMembers(b)
	lenMax := 0
	for _, k := range []string{"max_tokens", "max_completion_tokens", "max_output_tokens"} {
		if v, ok := m[k]; ok {
			n, ok := lenientInt(v)
			if !ok {
				t.Fatalf("%q: accepted a %s a lenient reader cannot read: %s", b, k, v)
			}
			lenMax = max(lenMax, n)
		}
	}
	if lenMax != fa.maxTokens {
		t.Fatalf("%q: edge max tokens %d, lenient reader %d", b, fa.maxTokens, lenMax)
	}
	if v, ok := m["stream"]; ok && lenientBool(v) != fa.stream {
		t.Fatalf("%q: edge stream %v, lenient reader %s", b, fa.stream, v)
	}
	// Thinking: the switch the edge read must be what a lenient reader
	// reads of the member that decides (chat_template_kwargs wins when it
	// says something, else think).
	var want int8
	if v, ok := m["think"]; ok && string(v) != "null" {
		want = boolTri(lenientBool(v))
	}
	if v, ok := m["chat_template_kwargs"]; ok && len(v) > 0 && v[0] == '{' {
		km := lenientMembers(v)
		if e, ok := km["enable_thinking"]; ok && string(e) != "null" {
			want = boolTri(lenientBool(e))
		}
	}
	if want != fa.thinking && !thinkOrderDependent(b) {
		t.Fatalf("%q: edge thinking %d, lenient reader %d", b, fa.thinking, want)
	}
}

// thinkOrderDependent: with both think and chat_template_kwargs present the
// edge takes the later one (both are forwarded; each upstream reads the one
// it knows), so the reference's fixed precedence does not apply.
func thinkOrderDependent(b []byte) bool {
	return bytes.Contains(b, []byte(`"think"`)) && bytes.Contains(b, []byte(`chat_template_kwargs`))
}

func rawjson_unquote(raw []byte, escaped bool) string {
	if escaped {
		var s string
		_ = json.Unmarshal(raw, &s)
		return s
	}
	return string(raw[1 : len(raw)-1])
}

var _ = errors.Is
