package testollama

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fixtures holds the real Ollama 0.17.4 recordings, shared with the
// simulator's replay test (see its README for the format and the models).
const fixtures = "../../loadtest/sim/testdata/ollama-0.17.4"

// recording is one exchange from fixtures.
type recording struct {
	method, path string
	request      []byte // compact JSON, nil for none
	status       int
	body         []byte
}

func load(t *testing.T, name string) recording {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtures, name+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	i := 0
	for strings.HasPrefix(lines[i], "#") {
		i++
	}
	var r recording
	if f := strings.Fields(lines[i]); len(f) == 3 {
		r.method, r.path = f[0], f[1]
	} else {
		t.Fatalf("%s: request line %q", name, lines[i])
	}
	for i++; lines[i] != ""; i++ { // request headers
	}
	var req []string
	for i++; !strings.HasPrefix(lines[i], "HTTP/1.1 "); i++ {
		req = append(req, lines[i])
	}
	if s := strings.TrimSpace(strings.Join(req, "\n")); s != "" {
		var buf bytes.Buffer
		if err := json.Compact(&buf, []byte(s)); err != nil {
			t.Fatalf("%s: request: %v", name, err)
		}
		r.request = buf.Bytes()
	}
	if r.status, err = strconv.Atoi(strings.Fields(lines[i])[1]); err != nil {
		t.Fatalf("%s: status line %q", name, lines[i])
	}
	length := -1
	for i++; lines[i] != ""; i++ { // response headers
		if v, ok := strings.CutPrefix(lines[i], "Content-Length: "); ok {
			length, _ = strconv.Atoi(v)
		}
	}
	rest := strings.Join(lines[i+1:], "\n")
	if length >= 0 && length <= len(rest) {
		r.body = []byte(rest[:length]) // byte for byte, a trailing newline included
	} else {
		r.body = []byte(strings.TrimRight(rest, "\n")) // chunked: the rest of the file
	}
	return r
}

// replay sends the recorded request to s and checks the status; it returns
// the live body and the recording.
func replay(t *testing.T, s *Server, name string) ([]byte, recording) {
	t.Helper()
	rec := load(t, name)
	var body any
	if rec.request != nil {
		body = json.RawMessage(rec.request)
	}
	status, got := s.Do(t, rec.method, rec.path, body)
	if status != rec.status {
		t.Fatalf("%s %s (%s): status %d %s, recorded %d", rec.method, rec.path, name, status, got, rec.status)
	}
	return got, rec
}

// sameShape reports where live and recorded JSON differ in shape: object
// keys, and the kind of every value (arrays compare their first elements
// when both have one). Values themselves (random words, timings, ids) are
// not compared.
func sameShape(live, rec any, path string) []string {
	switch r := rec.(type) {
	case map[string]any:
		l, ok := live.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %s, recorded an object", path, kind(live))}
		}
		var diffs []string
		for _, k := range keysOf(r, l) {
			lv, lok := l[k]
			rv, rok := r[k]
			switch {
			case !lok:
				diffs = append(diffs, path+"."+k+": missing (recorded)")
			case !rok:
				diffs = append(diffs, path+"."+k+": not in the recording")
			default:
				diffs = append(diffs, sameShape(lv, rv, path+"."+k)...)
			}
		}
		return diffs
	case []any:
		l, ok := live.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %s, recorded an array", path, kind(live))}
		}
		if len(l) > 0 && len(r) > 0 {
			return sameShape(l[0], r[0], path+"[0]")
		}
		return nil
	}
	if kind(live) != kind(rec) {
		return []string{fmt.Sprintf("%s: %s, recorded %s", path, kind(live), kind(rec))}
	}
	return nil
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

func keysOf(a, b map[string]any) []string {
	var ks []string
	for k := range a {
		ks = append(ks, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	return ks
}

func decode(t *testing.T, what string, b []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v: %s", what, err, b)
	}
	return v
}

// replayJSON replays a recording with a JSON body and checks the live body
// has the recorded shape; it returns the live body decoded.
func replayJSON(t *testing.T, s *Server, name string) map[string]any {
	t.Helper()
	got, rec := replay(t, s, name)
	live := decode(t, name, got)
	if d := sameShape(live, decode(t, name+" (recorded)", rec.body), ""); len(d) > 0 {
		t.Errorf("%s: shape differs from the recording:\n%s\nlive: %s", name, strings.Join(d, "\n"), got)
	}
	return live
}

// replayExact replays a recording whose body is deterministic (errors) and
// requires the same bytes.
func replayExact(t *testing.T, s *Server, name string) {
	t.Helper()
	got, rec := replay(t, s, name)
	if !bytes.Equal(got, rec.body) {
		t.Errorf("%s: body %s, recorded %s", name, got, rec.body)
	}
}

// str reads a string at a dotted path ("choices.0.message.content"); ok is
// false when a step is missing.
func str(v any, path string) (string, bool) {
	for _, step := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[step]
		case []any:
			i, err := strconv.Atoi(step)
			if err != nil || i >= len(x) {
				return "", false
			}
			v = x[i]
		default:
			return "", false
		}
	}
	s, ok := v.(string)
	return s, ok
}

func TestVersionAndCapabilities(t *testing.T) {
	s := Start(t)
	replayExact(t, s, "api-version")
	for model, want := range map[string][]string{
		ChatModel:     {"completion"},
		ThinkingModel: {"completion", "tools", "thinking"},
		EmbedModel:    {"embedding"},
	} {
		show := replayJSON(t, s, "api-show."+model)
		var caps []string
		for _, c := range show["capabilities"].([]any) {
			caps = append(caps, c.(string))
		}
		if !slices.Equal(caps, want) {
			t.Errorf("%s: capabilities %q, want %q", model, caps, want)
		}
		details, _ := show["details"].(map[string]any)
		if details["family"] != "llama" || details["parameter_size"] != "140K" || details["quantization_level"] != "F16" {
			t.Errorf("%s: details %v, recorded family llama, 140K, F16", model, details)
		}
	}
}

func TestNativeChatThinkSwitch(t *testing.T) {
	s := Start(t)

	off := replayJSON(t, s, "api-chat.nonstream.think-false")
	if c, _ := str(off, "message.content"); c == "" {
		t.Errorf("think:false: empty content: %v", off)
	}
	if _, ok := str(off, "message.thinking"); ok {
		t.Errorf("think:false: thinking present: %v", off)
	}

	on := replayJSON(t, s, "api-chat.nonstream.think-true")
	if th, _ := str(on, "message.thinking"); th == "" {
		t.Errorf("think:true: no thinking: %v", on)
	}
	if c, ok := str(on, "message.content"); !ok || c != "" {
		t.Errorf("think:true: content %q, want empty (all of it is thinking): %v", c, on)
	}

	replayExact(t, s, "api-chat.think-true.non-thinking-model")
}

func TestOpenAIChatThinkSwitch(t *testing.T) {
	s := Start(t)
	for _, name := range []string{
		"v1-chat-completions.nonstream.reasoning-effort-none",
		"v1-chat-completions.nonstream.reasoning-object-effort-none",
	} {
		v := replayJSON(t, s, name)
		if c, _ := str(v, "choices.0.message.content"); c == "" {
			t.Errorf("%s: empty content: %v", name, v)
		}
		if _, ok := str(v, "choices.0.message.reasoning"); ok {
			t.Errorf("%s: reasoning present, so thinking stayed on: %v", name, v)
		}
	}

	// A top-level "think": false is not part of Ollama's OpenAI layer
	// (openai/openai.go reads only reasoning_effort and reasoning.effort):
	// the model still thinks.
	v := replayJSON(t, s, "v1-chat-completions.nonstream.think-false")
	if r, _ := str(v, "choices.0.message.reasoning"); r == "" {
		t.Errorf("think:false: no reasoning; Ollama's OpenAI layer is expected to ignore it: %v", v)
	}
	if c, _ := str(v, "choices.0.message.content"); c != "" {
		t.Errorf("think:false: content %q, want empty (all of it is reasoning)", c)
	}
}

func TestOpenAIChatStreamThinkingOff(t *testing.T) {
	s := Start(t)
	got, rec := replay(t, s, "v1-chat-completions.stream.reasoning-effort-none")
	live, recorded := sseEvents(t, got), sseEvents(t, rec.body)
	if len(live) < 2 || live[len(live)-1] != "[DONE]" {
		t.Fatalf("stream does not end in [DONE]: %s", got)
	}
	// First chunk and last JSON chunk have the recorded shapes.
	for _, i := range [][2]int{{0, 0}, {len(live) - 2, len(recorded) - 2}} {
		l, r := decode(t, "live chunk", []byte(live[i[0]])), decode(t, "recorded chunk", []byte(recorded[i[1]]))
		if d := sameShape(l, r, ""); len(d) > 0 {
			t.Errorf("chunk %d: shape differs from the recording:\n%s\nlive: %s", i[0], strings.Join(d, "\n"), live[i[0]])
		}
	}
	var content strings.Builder
	for _, ev := range live[:len(live)-1] {
		v := decode(t, "chunk", []byte(ev))
		if r, ok := str(v, "choices.0.delta.reasoning"); ok {
			t.Errorf("reasoning %q in a stream with reasoning_effort none", r)
		}
		c, _ := str(v, "choices.0.delta.content")
		content.WriteString(c)
	}
	if content.Len() == 0 {
		t.Errorf("no content streamed: %s", got)
	}
}

// sseEvents returns the data of each "data: " line.
func sseEvents(t *testing.T, b []byte) []string {
	t.Helper()
	var evs []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			evs = append(evs, d)
		}
	}
	return evs
}

func TestEmbeddingModel(t *testing.T) {
	s := Start(t)
	v := replayJSON(t, s, "api-embed.embedding-model.batch")
	embs, _ := v["embeddings"].([]any)
	if len(embs) != 2 {
		t.Fatalf("%d embeddings for 2 inputs: %v", len(embs), v)
	}
	for i, e := range embs {
		checkUnitVector(t, fmt.Sprintf("/api/embed [%d]", i), e)
	}

	v = replayJSON(t, s, "v1-embeddings.embedding-model")
	data, _ := v["data"].([]any)
	if len(data) != 1 {
		t.Fatalf("/v1/embeddings: %d items: %v", len(data), v)
	}
	checkUnitVector(t, "/v1/embeddings", data[0].(map[string]any)["embedding"])

	// An embedding-only model refuses chat on both APIs.
	replayExact(t, s, "api-chat.embedding-model")
	replayExact(t, s, "v1-chat-completions.embedding-model")
}

// checkUnitVector: Ollama returns 64 numbers, L2-normalised.
func checkUnitVector(t *testing.T, what string, v any) {
	t.Helper()
	xs, _ := v.([]any)
	if len(xs) != 64 {
		t.Errorf("%s: %d dimensions, want 64", what, len(xs))
		return
	}
	var ss float64
	for _, x := range xs {
		f, _ := x.(float64)
		ss += f * f
	}
	if math.Abs(ss-1) > 1e-3 {
		t.Errorf("%s: squared norm %v, want 1", what, ss)
	}
}

// TestLoadedState uses its own server: it asserts exactly what is loaded.
func TestLoadedState(t *testing.T) {
	s := Private(t)
	replayExact(t, s, "api-ps.before-load")

	v := replayJSON(t, s, "api-generate.load")
	if v["done_reason"] != "load" {
		t.Errorf("load: done_reason %v", v["done_reason"])
	}
	ps := replayJSON(t, s, "api-ps.after-load")
	models, _ := ps["models"].([]any)
	if len(models) != 1 {
		t.Fatalf("after load: %d models loaded, want 1: %v", len(models), ps)
	}
	m := models[0].(map[string]any)
	if m["name"] != ChatModel+":latest" || m["size_vram"] != 0.0 || m["context_length"] != 2048.0 {
		t.Errorf("after load: %v, recorded tiny-llama:latest, size_vram 0, context_length 2048", m)
	}

	v = replayJSON(t, s, "api-generate.unload")
	if v["done_reason"] != "unload" {
		t.Errorf("unload: done_reason %v", v["done_reason"])
	}
	// The recording saw it gone at once; allow the runner a moment to stop
	// on a busy machine, and require it gone.
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, b := s.Do(t, http.MethodGet, "/api/ps", nil)
		if status != http.StatusOK {
			t.Fatalf("/api/ps: %d %s", status, b)
		}
		if !bytes.Contains(b, []byte(`"`+ChatModel+`:latest"`)) {
			if string(b) != `{"models":[]}` {
				t.Errorf("after unload: %s, want nothing loaded", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after unload %s is still listed: %s", ChatModel, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
