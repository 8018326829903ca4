package sim

// Replays the real Ollama 0.17.4 recordings (testdata/ollama-0.17.4, see
// its README) against the simulator and compares what comes back:
// status, Content-Type (and the streaming headers), framing (NDJSON lines,
// SSE events with their names, "data: [DONE]"), the trailing newline, and
// the JSON shape of every answer — keys, value kinds, and the values that
// are part of the protocol (object/type/role names, booleans, error
// messages, model names, capabilities). Ids, timestamps, durations, token
// counts and the random text are ignored; runs of identical stream events
// are collapsed, since the number of tokens differs.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fixtureDir holds the recordings: a copy in testdata (the originals are
// in the shared fixtures, with their README); GENIEHIVE_OLLAMA_FIXTURES
// points elsewhere.
func fixtureDir(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("GENIEHIVE_OLLAMA_FIXTURES"); dir != "" {
		return dir
	}
	return filepath.Join("testdata", "ollama-0.17.4")
}

// recording is one recorded exchange.
type recording struct {
	name       string
	method     string
	path       string
	reqHeader  http.Header
	reqBody    []byte
	status     int
	respHeader http.Header
	respBody   []byte
	exactBody  bool // Content-Length known: the body is byte for byte
}

func parseRecording(name string, raw []byte) (recording, error) {
	rec := recording{name: name, reqHeader: http.Header{}, respHeader: http.Header{}}
	lines := strings.Split(string(raw), "\n")
	i := 0
	for i < len(lines) && strings.HasPrefix(lines[i], "#") {
		i++
	}
	f := strings.Fields(lines[i])
	if len(f) != 3 {
		return rec, fmt.Errorf("bad request line %q", lines[i])
	}
	rec.method, rec.path = f[0], f[1]
	for i++; i < len(lines) && lines[i] != ""; i++ {
		k, v, _ := strings.Cut(lines[i], ": ")
		rec.reqHeader.Add(k, v)
	}
	resp := bytes.Index(raw, []byte("\nHTTP/1.1 "))
	if resp < 0 {
		return rec, fmt.Errorf("no response")
	}
	head := strings.Join(lines[:i+1], "\n")
	rec.reqBody = bytes.TrimSpace(raw[len(head):resp])
	rest := raw[resp+1:]
	hdrEnd := bytes.Index(rest, []byte("\n\n"))
	hl := strings.Split(string(rest[:hdrEnd]), "\n")
	st := strings.Fields(hl[0])
	rec.status, _ = strconv.Atoi(st[1])
	for _, l := range hl[1:] {
		k, v, _ := strings.Cut(l, ": ")
		rec.respHeader.Add(k, v)
	}
	rec.respBody = rest[hdrEnd+2:]
	if cl := rec.respHeader.Get("Content-Length"); cl != "" && rec.method != http.MethodHead {
		n, _ := strconv.Atoi(cl)
		if n > len(rec.respBody) {
			return rec, fmt.Errorf("body shorter than Content-Length")
		}
		rec.respBody, rec.exactBody = rec.respBody[:n], true
	}
	return rec, nil
}

// fixtureOrder is the README's file list: the order they were recorded in
// (model residency and /api/ps depend on it).
func fixtureOrder(t *testing.T, dir string) []string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, files, _ := strings.Cut(string(readme), "## Files")
	var out []string
	for _, m := range regexp.MustCompile("(?m)^- `([^`]+\\.txt)`").FindAllStringSubmatch(files, -1) {
		out = append(out, m[1])
	}
	if len(out) < 70 {
		t.Fatalf("README lists %d recordings", len(out))
	}
	return out
}

// fixtureModels are the three recorded models (README "Models").
func fixtureModels() []Model {
	base := Model{Family: "llama", ParameterSize: "140K", Quantization: "F16", ContextLength: 2048,
		Size: 293955, SizeVRAM: 738816, Dims: 64}
	llama, qwen, embed := base, base, base
	llama.Name, llama.Capabilities = "tiny-llama", []string{CapCompletion}
	qwen.Name, qwen.Capabilities, qwen.ThinksOnly = "qwen3-tiny", []string{CapCompletion, CapTools, CapThinking}, true
	embed.Name, embed.Capabilities = "tiny-embed", []string{CapEmbedding}
	return []Model{llama, qwen, embed}
}

// TestOllamaFixtureReplay sends every recorded request, in the recorded
// order, to a simulated Ollama 0.17.4 with the recorded models, and checks
// each answer against the recording.
func TestOllamaFixtureReplay(t *testing.T) {
	dir := fixtureDir(t)
	s := start(t, Config{Flavor: FlavorOllama, Version: "0.17.4", CPUOnly: true, Models: fixtureModels(),
		Behavior: Behavior{Chunks: 6, ReasoningChunks: 4}})
	hc := &http.Client{Timeout: 30 * time.Second}
	for _, name := range fixtureOrder(t, dir) {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		rec, err := parseRecording(name, raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Run(strings.TrimSuffix(name, ".txt"), func(t *testing.T) {
			replayOne(t, hc, s, rec)
		})
	}
}

func replayOne(t *testing.T, hc *http.Client, s *Server, rec recording) {
	var body io.Reader
	if len(rec.reqBody) > 0 {
		body = bytes.NewReader(compactJSON(rec.reqBody))
	}
	req, _ := http.NewRequest(rec.method, s.URL()+rec.path, body)
	for k, v := range rec.reqHeader {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != rec.status {
		t.Fatalf("status %d, recorded %d; body %s", resp.StatusCode, rec.status, got)
	}
	for _, h := range []string{"Content-Type", "Cache-Control", "Connection"} {
		if want := rec.respHeader.Get(h); want != "" && resp.Header.Get(h) != want {
			t.Errorf("%s %q, recorded %q", h, resp.Header.Get(h), want)
		}
	}
	if rec.method == http.MethodHead {
		if len(got) != 0 {
			t.Errorf("HEAD answered a body: %q", got)
		}
		return
	}
	ct := rec.respHeader.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "text/event-stream"):
		compareSeq(t, sseShapes(t, got), sseShapes(t, rec.respBody))
	case strings.HasPrefix(ct, "application/x-ndjson"):
		compareSeq(t, ndjsonShapes(t, got), ndjsonShapes(t, rec.respBody))
	case strings.HasPrefix(ct, "application/json"):
		if rec.exactBody && bytes.HasSuffix(got, []byte("\n")) != bytes.HasSuffix(rec.respBody, []byte("\n")) {
			t.Errorf("trailing newline differs: sim %q…, recorded %q…", tail(got), tail(rec.respBody))
		}
		if rec.status >= 400 {
			compareErrors(t, got, rec.respBody)
			return
		}
		if g, w := shapeOf(t, got), shapeOf(t, rec.respBody); g != w {
			t.Errorf("JSON shape differs\n sim:      %s\n recorded: %s", g, w)
		}
		if strings.HasPrefix(rec.path, "/api/ps") || strings.HasPrefix(rec.path, "/api/tags") || rec.path == "/v1/models" {
			if g, w := namesOf(t, got), namesOf(t, rec.respBody); g != w {
				t.Errorf("models %s, recorded %s", g, w)
			}
		}
	default:
		if !bytes.Equal(got, rec.respBody) {
			t.Errorf("body %q, recorded %q", got, rec.respBody)
		}
	}
}

func tail(b []byte) string {
	return string(b[max(0, len(b)-20):])
}

func compactJSON(b []byte) []byte {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return b // the bad-JSON recording
	}
	return out.Bytes()
}

// valueKeys are compared by value, not only by kind.
var valueKeys = map[string]bool{
	"object": true, "type": true, "role": true, "system_fingerprint": true, "owned_by": true,
	"status": true, "tool_choice": true, "truncation": true, "service_tier": true, "stop_reason": true,
	"model": true, "name": true, "format": true, "family": true, "parameter_size": true,
	"quantization_level": true, "version": true, "capabilities": true,
}

// shape renders a JSON value's structure canonically.
func shape(v any, key string) string {
	switch x := v.(type) {
	case map[string]any:
		if key == "model_info" {
			return "{…}" // the GGUF's own keys
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(k + ":" + shape(x[k], k))
		}
		return b.String() + "}"
	case []any:
		if key == "tensors" { // the GGUF's own tensors: only their fields
			for _, e := range x {
				if m, ok := e.(map[string]any); !ok || len(m) != 3 || m["name"] == nil || m["type"] == nil || m["shape"] == nil {
					return "[bad tensor]"
				}
			}
			return "[tensor]"
		}
		if valueKeys[key] {
			j, _ := json.Marshal(x)
			return string(j)
		}
		set := map[string]bool{}
		for _, e := range x {
			set[shape(e, "")] = true
		}
		var parts []string
		for p := range set {
			parts = append(parts, p)
		}
		sort.Strings(parts)
		return "[" + strings.Join(parts, "|") + "]"
	case string:
		if valueKeys[key] || (key == "done_reason" && (x == "load" || x == "unload")) {
			return strconv.Quote(x)
		}
		return "s"
	case float64:
		return "n"
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return "null"
	}
	return "?"
}

func shapeOf(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return shape(v, "")
}

// namesOf lists the model names of /api/tags, /api/ps and /v1/models, in order.
func namesOf(t *testing.T, b []byte) string {
	var v struct {
		Models []struct{ Name string }
		Data   []struct{ ID string }
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range v.Models {
		out = append(out, m.Name)
	}
	for _, m := range v.Data {
		out = append(out, m.ID)
	}
	if len(v.Data) > 0 || !strings.Contains(string(b), "expires_at") {
		// /api/tags and /v1/models list models modified in the same second
		// in any order; /api/ps is ordered by expiry.
		sort.Strings(out)
	}
	return strings.Join(out, ",")
}

// compareErrors: an error body must be the recorded one exactly, but for
// Anthropic's random request_id.
func compareErrors(t *testing.T, got, want []byte) {
	t.Helper()
	norm := func(b []byte) string {
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("error body not JSON: %s", b)
		}
		if _, ok := v["request_id"]; ok {
			v["request_id"] = "req_…"
		}
		j, _ := json.Marshal(v)
		return string(j)
	}
	if g, w := norm(got), norm(want); g != w {
		t.Errorf("error body\n sim:      %s\n recorded: %s", g, w)
	}
}

// sseShapes: one entry per event, "name|data shape", runs collapsed.
func sseShapes(t *testing.T, b []byte) []string {
	t.Helper()
	if !bytes.HasSuffix(b, []byte("\n\n")) {
		t.Errorf("SSE stream does not end with a blank line: %q", tail(b))
	}
	var out []string
	for _, ev := range strings.Split(strings.TrimSuffix(string(b), "\n\n"), "\n\n") {
		name, data := "", ""
		for _, l := range strings.Split(ev, "\n") {
			switch {
			case strings.HasPrefix(l, "event: "):
				name = l[7:]
			case strings.HasPrefix(l, "data: "):
				data = l[6:]
			default:
				t.Errorf("unexpected SSE line %q", l)
			}
		}
		sh := "[DONE]"
		if data != "[DONE]" {
			sh = shapeOf(t, []byte(data))
		}
		out = appendCollapsed(out, name+"|"+sh)
	}
	return out
}

func ndjsonShapes(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = appendCollapsed(out, shapeOf(t, sc.Bytes()))
	}
	if !bytes.HasSuffix(b, []byte("\n")) {
		t.Errorf("NDJSON stream does not end with a newline")
	}
	return out
}

func appendCollapsed(l []string, s string) []string {
	if n := len(l); n > 0 && l[n-1] == s {
		return l
	}
	return append(l, s)
}

func compareSeq(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") == strings.Join(want, "\n") {
		return
	}
	t.Errorf("stream differs (%d vs %d distinct steps)", len(got), len(want))
	for i := 0; i < max(len(got), len(want)); i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Errorf("step %d\n sim:      %s\n recorded: %s", i, g, w)
		}
	}
}
