package edge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/loadtest/sim"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/routing"
	"github.com/geniehive/geniehive/state"
)

func do(t *testing.T, method, url, key string, body []byte, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	resp, b, err := doErr(method, url, key, body, hdr)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// doErr is do for goroutines other than the test's own, where t.Fatal
// must not be called (it would end that goroutine, not the test, and the
// test would hang on the answer that never comes): the caller reports the
// error from the test goroutine.
func doErr(method, url, key string, body []byte, hdr map[string]string) (*http.Response, string, error) {
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func TestModelsListWithMetadata(t *testing.T) {
	s := newStack(t)
	c := s.client()
	page, err := c.Models.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
	}
	sort.Strings(ids)
	for _, want := range []string{"coder", "llama3.1:8b", "nomic-embed-text", "qwen3:8b", "summarizer", "thinker", "whisper-small"} {
		if !contains(strings.Join(ids, ","), want) {
			t.Errorf("model list %v lacks %s", ids, want)
		}
	}
	_, body := do(t, "GET", s.url+"/v1/models", testKey, nil, nil)
	var doc struct {
		Data []ModelEntry `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range doc.Data {
		if e.ID == "llama3.1:8b" {
			found = true
			g := e.GenieHive
			if g.Kind != "asset" || !g.Loaded || g.VRAMBytes != 5<<30 || len(g.Services) != 1 || g.Services[0].ID != "gpu1/chat" ||
				len(g.Hosts) != 1 || g.Offload == nil || g.Offload.Class == "" || !contains(strings.Join(g.Roles, ","), "coder") {
				t.Errorf("bad metadata: %+v", g)
			}
		}
		if e.ID == "summarizer" && e.GenieHive.Routable {
			t.Error("summarizer has no routable candidate but is marked routable")
		}
		if e.ID == "nomic-embed-text" && e.GenieHive.Offload.Class != "unsuitable" {
			t.Errorf("embeddings model offload = %+v", e.GenieHive.Offload)
		}
	}
	if !found {
		t.Fatal("llama3.1:8b missing")
	}
	m, err := c.Models.Get(context.Background(), "coder")
	if err != nil || m.ID != "coder" {
		t.Fatalf("get role: %v %+v", err, m)
	}
	resp, body := do(t, "GET", s.url+"/v1/models/nope", testKey, nil, nil)
	if resp.StatusCode != 404 || !contains(body, "/v1/models") {
		t.Fatalf("unknown model: %d %s", resp.StatusCode, body)
	}
}

func TestChatNonStreaming(t *testing.T) {
	s := newStack(t)
	c := s.client()
	for _, model := range []string{"llama3.1:8b", "coder", "CODE"} {
		r, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
			Model:    model,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
		})
		if err != nil {
			t.Fatalf("%s: %v", model, err)
		}
		if len(r.Choices) == 0 || r.Choices[0].Message.Content == "" {
			t.Fatalf("%s: empty answer %+v", model, r)
		}
	}
	// The upstream saw the asset name, not the role, and never the client key.
	last := s.chat.LastRequest()
	if !bytes.Contains(last.Body, []byte(`"model":"llama3.1:8b"`)) {
		t.Errorf("upstream body %s", last.Body)
	}
	if last.Header.Get("Authorization") != "" || last.Header.Get("X-Api-Key") != "" {
		t.Error("client key forwarded upstream")
	}
	waitUntil(t, 3*time.Second, "in-flight back to zero", func() bool { return s.srv.Inflight().Open() == 0 })
}

func TestChatStreamingNotBuffered(t *testing.T) {
	s := newStack(t)
	const interval = 60 * time.Millisecond
	s.chat.Update(func(b *sim.Behavior) { b.ChunkInterval = interval; b.Chunks = 6; b.TTFT = 0 })
	c := s.client()
	st := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:    "coder",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
	})
	var arrivals []time.Time
	var text strings.Builder
	for st.Next() {
		ch := st.Current()
		if len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != "" {
			arrivals = append(arrivals, time.Now())
			text.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if len(arrivals) < 5 {
		t.Fatalf("got %d content chunks", len(arrivals))
	}
	// Chunks must arrive spread out like the upstream sends them, not in one burst.
	spread := arrivals[len(arrivals)-1].Sub(arrivals[0])
	if min := time.Duration(len(arrivals)-2) * interval * 7 / 10; spread < min {
		t.Fatalf("chunks arrived within %v, want >= %v (buffered?)", spread, min)
	}
	var gaps int
	for i := 1; i < len(arrivals); i++ {
		if arrivals[i].Sub(arrivals[i-1]) >= interval/3 {
			gaps++
		}
	}
	if gaps < len(arrivals)-2 {
		t.Fatalf("only %d of %d gaps look like the upstream's pacing", gaps, len(arrivals)-1)
	}
}

func TestStripReasoning(t *testing.T) {
	s := newStack(t)
	c := s.client()
	// Direct: reasoning is relayed.
	raw := `{"model":"qwen3:8b","messages":[{"role":"user","content":"hi"}],"think":true}`
	_, body := do(t, "POST", s.url+"/v1/chat/completions", testKey, []byte(raw), nil)
	if !contains(body, "reasoning") {
		t.Fatalf("direct qwen3 answer has no reasoning: %s", body)
	}
	// Role with strip_reasoning: gone, streaming and not.
	raw = `{"model":"thinker","messages":[{"role":"user","content":"hi"}]}`
	_, body = do(t, "POST", s.url+"/v1/chat/completions", testKey, []byte(raw), nil)
	if contains(body, "reasoning_content") || !contains(body, "choices") {
		t.Fatalf("non-stream not stripped: %s", body)
	}
	raw = `{"model":"thinker","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	_, body = do(t, "POST", s.url+"/v1/chat/completions", testKey, []byte(raw), nil)
	if contains(body, "reasoning_content") || !contains(body, "[DONE]") {
		t.Fatalf("stream not stripped: %s", body)
	}
	_ = c
}

func TestEmbeddings(t *testing.T) {
	s := newStack(t)
	c := s.client()
	r, err := c.Embeddings.New(context.Background(), openai.EmbeddingNewParams{
		Model: "nomic-embed-text",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "b"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Data) != 2 || len(r.Data[0].Embedding) != 8 {
		t.Fatalf("bad embeddings: %+v", r)
	}
	// An embeddings model on the chat route is not found for chat.
	resp, body := do(t, "POST", s.url+"/v1/chat/completions", testKey, []byte(`{"model":"nomic-embed-text","messages":[]}`), nil)
	if resp.StatusCode != 404 {
		t.Fatalf("embeddings model via chat: %d %s", resp.StatusCode, body)
	}
}

func TestTranscriptionMultipart(t *testing.T) {
	s := newStack(t)
	c := s.client()
	audio := bytes.Repeat([]byte{1, 2, 3, 4}, 4096)
	r, err := c.Audio.Transcriptions.New(context.Background(), openai.AudioTranscriptionNewParams{
		Model: "whisper-small",
		File:  openai.File(bytes.NewReader(audio), "clip.wav", "audio/wav"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Text == "" {
		t.Fatal("empty transcript")
	}
	if n := s.whisper.Requests("/v1/audio/transcriptions"); n != 1 {
		t.Fatalf("whisper saw %d requests", n)
	}
	// Malformed multipart bodies are 400s.
	for _, bad := range []struct{ ct, body string }{
		{"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-small\r\n--x"},
		{"multipart/form-data", "garbage"},
		{"application/json", `{"model":"whisper-small"}`},
		{"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-small\r\n--x--\r\n"},
	} {
		resp, body := do(t, "POST", s.url+"/v1/audio/transcriptions", testKey, []byte(bad.body), map[string]string{"Content-Type": bad.ct})
		if resp.StatusCode != 400 || !contains(body, `"error"`) {
			t.Errorf("malformed multipart %q: %d %s", bad.body, resp.StatusCode, body)
		}
	}
}

func multipartBody(_ *testing.T, model string, size int) (string, []byte) {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	_ = w.WriteField("model", model)
	fw, _ := w.CreateFormFile("file", "a.wav")
	_, _ = fw.Write(make([]byte, size))
	_ = w.Close()
	return w.FormDataContentType(), b.Bytes()
}

func TestErrors(t *testing.T) {
	s := newStack(t, func(c *Config, _ *Deps) { c.BodyLimits.Chat = 4096; c.Timeouts.Request = 300 * time.Millisecond })
	chat := s.url + "/v1/chat/completions"
	okBody := []byte(`{"model":"coder","messages":[{"role":"user","content":"hi"}]}`)
	check := func(name string, resp *http.Response, body string, status int, code string) {
		t.Helper()
		if resp.StatusCode != status {
			t.Errorf("%s: status %d, want %d: %s", name, resp.StatusCode, status, body)
			return
		}
		var e struct {
			Error struct {
				Message string  `json:"message"`
				Type    string  `json:"type"`
				Code    *string `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
			t.Errorf("%s: not an OpenAI error: %s", name, body)
		}
		if code != "" && (e.Error.Code == nil || *e.Error.Code != code) {
			t.Errorf("%s: code %v, want %s", name, e.Error.Code, code)
		}
	}
	r, b := do(t, "POST", chat, testKey, []byte(`{"model":`), nil)
	check("bad json", r, b, 400, "invalid_json")
	r, b = do(t, "POST", chat, testKey, []byte(`{"messages":[]}`), nil)
	check("missing model", r, b, 400, "missing_model")
	r, b = do(t, "POST", chat, testKey, []byte(`{"model":7}`), nil)
	check("model not a string", r, b, 400, "missing_model")
	r, b = do(t, "POST", chat, "", okBody, nil)
	check("no key", r, b, 401, "invalid_api_key")
	r, b = do(t, "POST", chat, "wrong", okBody, nil)
	check("bad key", r, b, 401, "invalid_api_key")
	r, b = do(t, "POST", chat, "", okBody, map[string]string{"X-Api-Key": testKey})
	if r.StatusCode != 200 {
		t.Errorf("X-Api-Key: %d %s", r.StatusCode, b)
	}
	r, b = do(t, "POST", chat, testKey, []byte(`{"model":"gpt-17","messages":[]}`), nil)
	check("unknown model", r, b, 404, "model_not_found")
	if !contains(b, "llama3.1:8b") || !contains(b, "/v1/models") {
		t.Errorf("404 does not list models: %s", b)
	}
	big := `{"model":"coder","messages":[{"role":"user","content":"` + strings.Repeat("x", 5000) + `"}]}`
	r, b = do(t, "POST", chat, testKey, []byte(big), nil)
	check("too large", r, b, 413, "request_too_large")
	r, b = do(t, "POST", s.url+"/v2/whatever", testKey, nil, nil)
	check("unknown path", r, b, 404, "not_found")
	r, b = do(t, "GET", chat, testKey, nil, nil)
	check("method", r, b, 405, "")

	// 503: the only candidate is unhealthy.
	r, b = do(t, "POST", chat, testKey, []byte(`{"model":"summarizer","messages":[]}`), nil)
	if r.StatusCode != 503 && r.StatusCode != 404 {
		t.Errorf("role without routable candidate: %d %s", r.StatusCode, b)
	}
	heartbeat(t, s.store, "gpu2", func() fleet.Service {
		sv := svc("gpu2", "sick", fleet.KindChat, s.chat.URL(), fleet.Asset{Name: "sick-model"})
		sv.Healthy = false
		return sv
	}())
	s.waitFor(func(sn *fleet.Snapshot) bool { return sn.ByID["gpu2/sick"] != nil })
	r, b = do(t, "POST", chat, testKey, []byte(`{"model":"sick-model","messages":[]}`), nil)
	check("unavailable", r, b, 503, "no_available_upstream")
	if r.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}

	// 502: the upstream answers 500 every time.
	s.chat.Update(func(b *sim.Behavior) { b.ErrorRate = 1 })
	r, b = do(t, "POST", chat, testKey, okBody, nil)
	check("upstream 500", r, b, 502, "upstream_error")
	s.chat.Update(func(b *sim.Behavior) { b.ErrorRate = 0; b.FailBeforeFirstByte = true })
	r, b = do(t, "POST", chat, testKey, okBody, nil)
	check("upstream dead", r, b, 502, "upstream_unreachable")
	// 504: the upstream is slower than the request timeout.
	s.chat.Update(func(b *sim.Behavior) { b.FailBeforeFirstByte = false; b.Latency = time.Second })
	r, b = do(t, "POST", chat, testKey, okBody, nil)
	check("upstream timeout", r, b, 504, "upstream_timeout")
	s.chat.Update(func(b *sim.Behavior) { b.Latency = 0 })
	waitUntil(t, 3*time.Second, "in-flight back to zero", func() bool { return s.srv.Inflight().Open() == 0 })
}

func TestSaturatedIs429(t *testing.T) {
	s := newStack(t, func(_ *Config, d *Deps) {
		d.Router = stubRouter{err: &routing.SaturatedError{Model: "coder", RetryAfter: 2 * time.Second}}
	})
	r, b := do(t, "POST", s.url+"/v1/chat/completions", testKey, []byte(`{"model":"coder","messages":[]}`), nil)
	if r.StatusCode != 429 || r.Header.Get("Retry-After") != "2" || !contains(b, "upstreams_saturated") {
		t.Fatalf("saturated: %d %v %s", r.StatusCode, r.Header, b)
	}
	_ = errors.New
	_ = policy.SchemaVersion
}

func TestFailoverDeadToLive(t *testing.T) {
	s := newStack(t)
	dead := startSim(t, sim.Config{Models: []sim.Model{{Name: "llama3.1:8b"}}, Behavior: sim.Behavior{FailBeforeFirstByte: true}})
	// gpu0 sorts before gpu1: the built-in router tries the dead one first.
	heartbeat(t, s.store, "gpu0", svc("gpu0", "chat", fleet.KindChat, dead.URL(), fleet.Asset{Name: "llama3.1:8b", Loaded: true}))
	s.waitFor(func(sn *fleet.Snapshot) bool { return sn.ByID["gpu0/chat"] != nil })
	for _, stream := range []bool{false, true} {
		raw := `{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}],"stream":` + map[bool]string{true: "true", false: "false"}[stream] + `}`
		r, b := do(t, "POST", s.url+"/v1/chat/completions", testKey, []byte(raw), nil)
		if r.StatusCode != 200 || r.Header.Get("X-GenieHive-Service") != "gpu1/chat" {
			t.Fatalf("stream=%v: %d %s %s", stream, r.StatusCode, r.Header.Get("X-GenieHive-Service"), b)
		}
	}
	if dead.Stats().ConnsDropped < 2 {
		t.Fatalf("dead upstream not tried first: %+v", dead.Stats())
	}
	_, m := do(t, "GET", s.url+"/metrics", "", nil, nil)
	if !contains(m, `geniehive_failovers_total{service="gpu0/chat"} 2`) {
		t.Errorf("failover metric missing:\n%s", grep(m, "failover"))
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	s := newStack(t)
	s.chat.Update(func(b *sim.Behavior) { b.ChunkInterval = 100 * time.Millisecond; b.Chunks = 100 })
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	body := `{"model":"coder","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	req := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + testKey +
		"\r\nContent-Type: application/json\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	got := 0
	for got < 2 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "data: {") {
			got++
		}
	}
	waitUntil(t, time.Second, "stream open", func() bool { return s.srv.Open() == 1 })
	conn.Close()
	waitUntil(t, 3*time.Second, "upstream stream aborted", func() bool { return s.chat.StreamsAborted() == 1 })
	waitUntil(t, 3*time.Second, "edge request finished", func() bool { return s.srv.Open() == 0 })
	waitUntil(t, 3*time.Second, "in-flight lease ended", func() bool { return s.srv.Inflight().Open() == 0 })
	waitUntil(t, 3*time.Second, "cluster in-flight zero", func() bool {
		n, err := s.store.InflightCounts(context.Background(), []string{"gpu1/chat"})
		return err == nil && n[0] == 0
	})
}

func itoa(n int) string { return statusText(n) }

func TestUpstreamCutMidStreamEndsWithErrorEvent(t *testing.T) {
	s := newStack(t)
	s.chat.Update(func(b *sim.Behavior) { b.FailAfterChunks = 2; b.Chunks = 10 })
	_, body := do(t, "POST", s.url+"/v1/chat/completions", testKey, []byte(`{"model":"coder","stream":true,"messages":[{"role":"user","content":"hi"}]}`), nil)
	if !contains(body, `data: {"error"`) || contains(body, "[DONE]") {
		t.Fatalf("cut stream: %s", body)
	}
}

func TestHugeHeadersTruncatedBodiesSlowClients(t *testing.T) {
	s := newStack(t)
	addr := strings.TrimPrefix(s.url, "http://")
	// Huge header block: 431, not a crash.
	conn, _ := net.Dial("tcp", addr)
	_, _ = conn.Write([]byte("GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n"))
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || (resp.StatusCode != 431 && resp.StatusCode != 400) {
		t.Errorf("huge headers: %v %v", err, resp)
	}
	conn.Close()
	// Truncated body: the client announces more than it sends and hangs up.
	conn, _ = net.Dial("tcp", addr)
	_, _ = conn.Write([]byte("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"model\":\"co"))
	conn.Close()
	// Slow client (slowloris): the connection is closed after the read timeout.
	conn, _ = net.Dial("tcp", addr)
	_, _ = conn.Write([]byte("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"))
	// The server closes it (EOF or a 408 answer), not our own deadline.
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Error("slow client held the connection past the read timeout")
		}
	}
	conn.Close()
	// Still serving.
	r, b := do(t, "GET", s.url+"/v1/models", testKey, nil, nil)
	if r.StatusCode != 200 {
		t.Fatalf("edge unhealthy after abuse: %d %s", r.StatusCode, b)
	}
}

func TestGracefulShutdownDrainsStream(t *testing.T) {
	s := newStack(t)
	s.chat.Update(func(b *sim.Behavior) { b.ChunkInterval = 50 * time.Millisecond; b.Chunks = 10 })
	got := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		_, body, err := doErr("POST", s.url+"/v1/chat/completions", testKey, []byte(`{"model":"coder","stream":true,"messages":[{"role":"user","content":"hi"}]}`), nil)
		if err != nil {
			errc <- err
			return
		}
		got <- body
	}()
	waitUntil(t, 2*time.Second, "stream open", func() bool { return s.srv.Open() == 1 })
	s.stop()
	var body string
	select {
	case body = <-got:
	case err := <-errc:
		t.Fatalf("stream request: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("the stream never ended after shutdown")
	}
	if !contains(body, "[DONE]") {
		t.Fatalf("stream cut by shutdown: %s", body)
	}
}

// TestTranscriptionMultipartFraming: the model field is found and rewritten
// by the same parse that validates the body. With LF-only framing (which
// mime/multipart and Python's parsers accept) the upstream must receive the
// resolved asset name, not the name as sent; and two model fields are
// refused like a duplicate "model" member in JSON (before, the policy saw
// the last one while the splice rewrote the first).
func TestTranscriptionMultipartFraming(t *testing.T) {
	s := newStack(t)
	cat, err := state.ParseCatalog("t.yaml", []byte(testCatalog+"  - name: listener\n    operation: transcription\n    candidates: [whisper-small]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.store.PutCatalog(context.Background(), cat); err != nil {
		t.Fatal(err)
	}
	s.waitFor(func(sn *fleet.Snapshot) bool { _, ok := sn.Role("listener"); return ok })
	lf := "--x\nContent-Disposition: form-data; name=\"model\"\n\nlistener\n--x\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\nContent-Type: audio/wav\n\nRIFF0000\n--x--\n"
	resp, body := do(t, "POST", s.url+"/v1/audio/transcriptions", testKey, []byte(lf), map[string]string{"Content-Type": "multipart/form-data; boundary=x"})
	if resp.StatusCode != 200 {
		t.Fatalf("LF-only multipart: %d %s (the upstream must get the asset name, not the role)", resp.StatusCode, body)
	}
	crlf := "--x\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-small\r\n--x\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nnothing-here\r\n--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF0000\r\n--x--\r\n"
	before := s.whisper.Requests("/v1/audio/transcriptions")
	resp, body = do(t, "POST", s.url+"/v1/audio/transcriptions", testKey, []byte(crlf), map[string]string{"Content-Type": "multipart/form-data; boundary=x"})
	if resp.StatusCode != 400 || !contains(body, "more than one model") {
		t.Fatalf("two model fields: %d %s, want 400", resp.StatusCode, body)
	}
	if n := s.whisper.Requests("/v1/audio/transcriptions"); n != before {
		t.Fatalf("a refused upload reached the upstream (%d -> %d)", before, n)
	}
}

// TestMultipartSpliceLF: with LF-only framing the value span comes from the
// validating parse (before, a second CRLF-only scan returned -1 and the
// splice left the role name in the body).
func TestMultipartSpliceLF(t *testing.T) {
	lf := []byte("preamble\n--x\nContent-Disposition: form-data; name=\"model\"\n\nlistener\n--x\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\n\nRIFF\n--x--\nepilogue")
	ct := []byte("multipart/form-data; boundary=x")
	info, err := parseMultipart(lf, ct)
	if err != nil {
		t.Fatal(err)
	}
	if info.valStart < 0 || string(lf[info.valStart:info.valEnd]) != "listener" {
		t.Fatalf("value span [%d,%d)", info.valStart, info.valEnd)
	}
	out := spliceMultipartModel(nil, lf, &info, "whisper-small")
	model, n, file, err := referenceMultipart(out, ct)
	if err != nil || n != 1 || !file || model != "whisper-small" {
		t.Fatalf("spliced body reads as model %q (%d fields, file %v, err %v): %q", model, n, file, err, out)
	}
}

// TestDuplicateKeyHeaderRefused: a valid key followed by a second
// Authorization header (or two X-Api-Key headers, the Anthropic clients'
// way) is refused 400 in the route's error format, not authenticated by
// the first header; one header of each kind still works.
func TestDuplicateKeyHeaderRefused(t *testing.T) {
	s := newStack(t)
	okBody := []byte(`{"model":"coder","messages":[{"role":"user","content":"hi"}]}`)
	send := func(path string, hdr [][2]string) (int, string) {
		t.Helper()
		body := okBody
		if path == "/v1/messages" {
			body = []byte(`{"model":"coder","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`)
		}
		req, _ := http.NewRequest("POST", s.url+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for _, kv := range hdr {
			req.Header.Add(kv[0], kv[1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	chat := "/v1/chat/completions"
	if st, b := send(chat, [][2]string{{"Authorization", "Bearer " + testKey}}); st != 200 {
		t.Fatalf("one Authorization: %d %s", st, b)
	}
	if st, b := send("/v1/messages", [][2]string{{"X-Api-Key", testKey}}); st != 200 {
		t.Fatalf("one X-Api-Key on /v1/messages: %d %s", st, b)
	}
	for name, hdr := range map[string][][2]string{
		"two Authorization": {{"Authorization", "Bearer " + testKey}, {"Authorization", "Bearer x"}},
		"two X-Api-Key":     {{"X-Api-Key", testKey}, {"X-Api-Key", "x"}},
	} {
		st, b := send(chat, hdr)
		var e struct {
			Error struct{ Type, Code string } `json:"error"`
		}
		if st != 400 || json.Unmarshal([]byte(b), &e) != nil || e.Error.Type != "invalid_request_error" || e.Error.Code != "duplicate_auth_header" {
			t.Errorf("%s on %s: %d %s, want 400 invalid_request_error duplicate_auth_header", name, chat, st, b)
		}
		st, b = send("/v1/messages", hdr)
		var ae struct {
			Type  string `json:"type"`
			Error struct{ Type string }
		}
		if st != 400 || json.Unmarshal([]byte(b), &ae) != nil || ae.Type != "error" || ae.Error.Type != "invalid_request_error" {
			t.Errorf("%s on /v1/messages: %d %s, want an Anthropic 400 invalid_request_error", name, st, b)
		}
	}
}
