package sim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go"
	"github.com/openai/openai-go/option"
)

func start(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func client(s *Server) openai.Client {
	return openai.NewClient(option.WithBaseURL(s.URL()+"/v1/"), option.WithAPIKey("sk-test"), option.WithMaxRetries(0))
}

func chatCfg() Config {
	return Config{Flavor: FlavorOpenAI, Models: []Model{
		{Name: "llama3.2:3b"},
		{Name: "qwen3:8b", Thinking: true},
		{Name: "nomic-embed-text", Dims: 32},
	}}
}

func userMsg(s string) []openai.ChatCompletionMessageParamUnion {
	return []openai.ChatCompletionMessageParamUnion{openai.UserMessage(s)}
}

func TestChatNonStreaming(t *testing.T) {
	s := start(t, chatCfg())
	c := client(s)
	ctx := context.Background()
	res, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "llama3.2:3b", Messages: userMsg("hello there")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Object != "chat.completion" || res.Model != "llama3.2:3b" || !strings.HasPrefix(res.ID, "chatcmpl-") || res.Created == 0 {
		t.Fatalf("bad envelope: %+v", res)
	}
	if len(res.Choices) != 1 || res.Choices[0].Message.Content != Text(16) || res.Choices[0].FinishReason != "stop" || res.Choices[0].Message.Role != "assistant" {
		t.Fatalf("bad choice: %+v", res.Choices)
	}
	if res.Usage.CompletionTokens != 16 || res.Usage.TotalTokens != res.Usage.PromptTokens+16 || res.Usage.PromptTokens < 1 {
		t.Fatalf("bad usage: %+v", res.Usage)
	}
	if _, ok := res.Choices[0].Message.JSON.ExtraFields["reasoning_content"]; ok {
		t.Fatal("non-thinking model returned reasoning_content")
	}

	// Thinking model: reasoning_content, and max_tokens caps reasoning
	// and content together (reasoning first), as the real servers do.
	res, err = c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "qwen3:8b", Messages: userMsg("why?"), MaxTokens: openai.Int(11)})
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Choices []struct {
			Message struct {
				ReasoningContent string `json:"reasoning_content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal([]byte(res.RawJSON()), &raw); err != nil {
		t.Fatal(err)
	}
	if raw.Choices[0].Message.ReasoningContent != Reasoning(8) {
		t.Fatalf("reasoning = %q", raw.Choices[0].Message.ReasoningContent)
	}
	if res.Choices[0].Message.Content != Text(3) || res.Choices[0].FinishReason != "length" || res.Usage.CompletionTokens != 11 {
		t.Fatalf("max_tokens not honoured: %+v %+v", res.Choices[0], res.Usage)
	}
	// A budget smaller than the reasoning: empty content, "length".
	res, err = c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "qwen3:8b", Messages: userMsg("why?"), MaxTokens: openai.Int(5)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Choices[0].Message.Content != "" || res.Choices[0].FinishReason != "length" || res.Usage.CompletionTokens != 5 {
		t.Fatalf("budget spent thinking: %+v %+v", res.Choices[0], res.Usage)
	}
	if lr := s.LastRequest(); lr == nil || !bytes.Contains(lr.Body, []byte(`"max_tokens":5`)) || lr.Header.Get("Authorization") != "Bearer sk-test" {
		t.Fatalf("last request not recorded: %+v", lr)
	}
}

func TestChatStreaming(t *testing.T) {
	s := start(t, chatCfg())
	c := client(s)
	for _, model := range []string{"llama3.2:3b", "qwen3:8b"} {
		st := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
			Model: model, Messages: userMsg("stream please"),
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		})
		acc := openai.ChatCompletionAccumulator{}
		var reasoning strings.Builder
		chunks, roleSeen, finish := 0, false, ""
		for st.Next() {
			ch := st.Current()
			acc.AddChunk(ch)
			chunks++
			if ch.Object != "chat.completion.chunk" || ch.Model != model {
				t.Fatalf("bad chunk %s", ch.RawJSON())
			}
			if len(ch.Choices) > 0 {
				if ch.Choices[0].Delta.Role == "assistant" {
					roleSeen = true
				}
				if f, ok := ch.Choices[0].Delta.JSON.ExtraFields["reasoning_content"]; ok {
					var r string
					_ = json.Unmarshal([]byte(f.Raw()), &r)
					reasoning.WriteString(r)
				}
				if ch.Choices[0].FinishReason != "" {
					finish = ch.Choices[0].FinishReason
				}
			}
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		wantReason, wantTokens := "", int64(16)
		if model == "qwen3:8b" {
			wantReason, wantTokens = Reasoning(8), 24
		}
		if acc.Choices[0].Message.Content != Text(16) || reasoning.String() != wantReason || !roleSeen || finish != "stop" {
			t.Fatalf("%s: content %q reasoning %q role %v finish %q", model, acc.Choices[0].Message.Content, reasoning.String(), roleSeen, finish)
		}
		if acc.Usage.CompletionTokens != wantTokens {
			t.Fatalf("%s: usage %+v", model, acc.Usage)
		}
		// role chunk + tokens + finish + usage
		if want := 1 + int(wantTokens) + 2; chunks != want {
			t.Fatalf("%s: %d chunks, want %d", model, chunks, want)
		}
	}
	if st := s.Stats(); st.StreamsCompleted != 2 || st.StreamsAborted != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestSSEFraming checks the raw bytes: headers, one event per token, [DONE],
// and that events arrive one at a time (flushed, not buffered).
func TestSSEFraming(t *testing.T) {
	cfg := chatCfg()
	cfg.Chunks = 4
	cfg.ChunkInterval = 30 * time.Millisecond
	s := start(t, cfg)
	resp, err := http.Post(s.URL()+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"llama3.2:3b","stream":true,"messages":[{"role":"user","content":"x"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content-type %q", ct)
	}
	r := bufio.NewReader(resp.Body)
	var events []string
	var at []time.Time
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if line == "\n" {
			continue
		}
		if !strings.HasPrefix(line, "data: ") {
			t.Fatalf("bad line %q", line)
		}
		blank, _ := r.ReadString('\n')
		if blank != "\n" {
			t.Fatalf("event not followed by a blank line: %q", blank)
		}
		events = append(events, strings.TrimSuffix(line[6:], "\n"))
		at = append(at, time.Now())
	}
	if len(events) != 1+4+1+1 || events[len(events)-1] != "[DONE]" {
		t.Fatalf("events: %q", events)
	}
	for _, e := range events[:len(events)-1] {
		if !json.Valid([]byte(e)) {
			t.Fatalf("invalid JSON event %q", e)
		}
	}
	// The content chunks are 30ms apart: the gap between the first and the
	// last content event proves they were not buffered into one write.
	if gap := at[4].Sub(at[1]); gap < 60*time.Millisecond {
		t.Fatalf("events were buffered: first-to-last content gap %v", gap)
	}
}

func TestStreamCancelledByClient(t *testing.T) {
	cfg := chatCfg()
	cfg.Chunks = 100
	cfg.ChunkInterval = 20 * time.Millisecond
	s := start(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := client(s)
	st := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "llama3.2:3b", Messages: userMsg("long")})
	n := 0
	for st.Next() {
		n++
		if n == 3 {
			cancel()
		}
	}
	if n >= 100 {
		t.Fatal("stream was not cut")
	}
	// The handler counts the abort, then returns and leaves the in-flight
	// count: wait for both, in that order, with a deadline for a loaded
	// machine (the count was read once between the two and the test failed).
	deadline := time.Now().Add(30 * time.Second)
	for s.StreamsAborted() != 1 || s.InFlight() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("StreamsAborted = %d (want 1), in flight %d (want 0) after the abort; stats %+v", s.StreamsAborted(), s.InFlight(), s.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestErrors(t *testing.T) {
	s := start(t, chatCfg())
	c := client(s)
	_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "nope", Messages: userMsg("x")})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" || apiErr.Type != "invalid_request_error" {
		t.Fatalf("unknown model: %v", err)
	}
	for body, want := range map[string]int{
		`{"model":`: 400,
		`[]`:        400,
		`{"messages":[{"role":"user","content":"x"}]}`:                            400,
		`{"model":"llama3.2:3b"}`:                                                 400,
		`{"model":"nomic-embed-text","messages":[{"role":"user","content":"x"}]}`: 400,
	} {
		resp, err := http.Post(s.URL()+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var e oaiError
		derr := json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != want || derr != nil || e.Error.Message == "" || e.Error.Type == "" {
			t.Fatalf("%s -> %d %+v %v", body, resp.StatusCode, e, derr)
		}
	}
	resp, _ := http.Get(s.URL() + "/v1/chat/completions")
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Fatalf("GET chat -> %d", resp.StatusCode)
	}

	// Injected failures, then heal.
	s.Update(func(b *Behavior) { b.ErrorRate = 1 })
	_, err = c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "llama3.2:3b", Messages: userMsg("x")})
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 500 {
		t.Fatalf("error rate 1: %v", err)
	}
	s.Update(func(b *Behavior) { b.ErrorRate = 0; b.FailBeforeFirstByte = true })
	if _, err := http.Get(s.URL() + "/health"); err == nil {
		t.Fatal("FailBeforeFirstByte: health answered")
	}
	_, err = c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "llama3.2:3b", Messages: userMsg("x")})
	if err == nil || errors.As(err, &apiErr) {
		t.Fatalf("FailBeforeFirstByte: want a transport error, got %v", err)
	}
	s.Update(func(b *Behavior) { b.FailBeforeFirstByte = false; b.Unhealthy = true })
	resp, err = http.Get(s.URL() + "/health")
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("unhealthy: %v", err)
	}
	resp.Body.Close()
	s.Update(func(b *Behavior) { b.Unhealthy = false })
	if _, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "llama3.2:3b", Messages: userMsg("x")}); err != nil {
		t.Fatalf("healed: %v", err)
	}
	st := s.Stats()
	if st.ErrorsInjected != 1 || st.ConnsDropped < 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFailAfterChunks(t *testing.T) {
	cfg := chatCfg()
	cfg.FailAfterChunks = 3
	s := start(t, cfg)
	c := client(s)
	st := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "llama3.2:3b", Messages: userMsg("x")})
	n := 0
	for st.Next() {
		n++
	}
	if st.Err() == nil || n != 4 { // role+first token together, 2 more tokens
		t.Fatalf("n=%d err=%v", n, st.Err())
	}
	if s.Stats().StreamsCut != 1 {
		t.Fatalf("stats %+v", s.Stats())
	}
}

func TestEmbeddings(t *testing.T) {
	s := start(t, chatCfg())
	c := client(s)
	for _, format := range []openai.EmbeddingNewParamsEncodingFormat{openai.EmbeddingNewParamsEncodingFormatFloat, openai.EmbeddingNewParamsEncodingFormatBase64} {
		res, err := c.Embeddings.New(context.Background(), openai.EmbeddingNewParams{
			Model: "nomic-embed-text", EncodingFormat: format,
			Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"alpha", "beta"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Object != "list" || len(res.Data) != 2 || res.Model != "nomic-embed-text" || res.Usage.PromptTokens < 2 {
			t.Fatalf("bad response %+v", res)
		}
		if format == openai.EmbeddingNewParamsEncodingFormatBase64 {
			continue // the SDK leaves base64 undecoded in v1
		}
		for i, in := range []string{"alpha", "beta"} {
			want := Embedding(in, 32)
			got := res.Data[i].Embedding
			if len(got) != 32 || res.Data[i].Index != int64(i) {
				t.Fatalf("dims %d", len(got))
			}
			for j := range want {
				if float32(got[j]) != want[j] {
					t.Fatalf("embedding %d[%d] = %v, want %v", i, j, got[j], want[j])
				}
			}
		}
	}
	resp, err := http.Post(s.URL()+"/v1/embeddings", "application/json", strings.NewReader(`{"model":"nomic-embed-text","input":"x","encoding_format":"base64"}`))
	if err != nil {
		t.Fatal(err)
	}
	var b64 struct {
		Data []struct {
			Embedding string `json:"embedding"`
		} `json:"data"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&b64)
	resp.Body.Close()
	if len(b64.Data) != 1 || len(b64.Data[0].Embedding) != 4*32*4/3+4-(4*32*4/3)%4 {
		t.Fatalf("base64 embedding: %+v", b64)
	}
	_, err = c.Embeddings.New(context.Background(), openai.EmbeddingNewParams{Model: "llama3.2:3b", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 {
		t.Fatalf("embeddings on a chat model: %v", err)
	}
}

func TestWhisper(t *testing.T) {
	s := start(t, Config{Flavor: FlavorWhisper, Models: []Model{{Name: "Systran/faster-whisper-small"}}})
	c := client(s)
	audio := bytes.Repeat([]byte{1, 2}, 32000)
	res, err := c.Audio.Transcriptions.New(context.Background(), openai.AudioTranscriptionNewParams{
		Model: "Systran/faster-whisper-small", File: openai.File(bytes.NewReader(audio), "a.wav", "audio/wav"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Text != Transcript("a.wav", 64000) {
		t.Fatalf("text %q", res.Text)
	}
	ms, err := c.Models.List(context.Background())
	if err != nil || len(ms.Data) != 1 || ms.Data[0].ID != "Systran/faster-whisper-small" || ms.Data[0].OwnedBy != "Systran" {
		t.Fatalf("models %+v %v", ms, err)
	}
	for format, check := range map[string]func(string) bool{
		"text": func(b string) bool { return b == Transcript("a.wav", 64000)+"\n" },
		"verbose_json": func(b string) bool {
			return strings.Contains(b, `"segments":[{`) && strings.Contains(b, `"duration":2`)
		},
		"json": func(b string) bool { return strings.HasPrefix(b, `{"text":`) },
		"vtt":  func(b string) bool { return strings.HasPrefix(b, "WEBVTT\n") },
	} {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		fw, _ := mw.CreateFormFile("file", "a.wav")
		fw.Write(audio)
		mw.WriteField("model", "Systran/faster-whisper-small")
		mw.WriteField("response_format", format)
		mw.Close()
		resp, err := http.Post(s.URL()+"/v1/audio/transcriptions", mw.FormDataContentType(), &body)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !check(string(b)) {
			t.Fatalf("%s: %d %s", format, resp.StatusCode, b)
		}
	}
	resp, _ := http.Post(s.URL()+"/v1/chat/completions", "application/json", strings.NewReader(`{}`))
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("whisper serves chat: %d", resp.StatusCode)
	}
	resp, _ = http.Get(s.URL() + "/health")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "OK" {
		t.Fatalf("health %q", b)
	}
}

func TestOllamaShapes(t *testing.T) {
	s := start(t, Config{Flavor: FlavorOllama, Models: []Model{
		{Name: "qwen3:8b", Family: "qwen3", ParameterSize: "8.2B", Quantization: "Q4_K_M", Loaded: true, SizeVRAM: 6_000_000_000, Thinking: true},
		{Name: "llama3.2:3b", ParameterSize: "3.2B"},
	}})
	get := func(path string) map[string]any {
		resp, err := http.Get(s.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, err)
		}
		return m
	}
	keys := func(what string, m map[string]any, ks ...string) {
		for _, k := range ks {
			if _, ok := m[k]; !ok {
				t.Fatalf("%s lacks %q: %v", what, k, m)
			}
		}
	}
	tags := get("/api/tags")["models"].([]any)
	if len(tags) != 2 {
		t.Fatalf("tags %v", tags)
	}
	// Most recently modified first: the second model.
	m0 := tags[1].(map[string]any)
	keys("tag", m0, "name", "model", "modified_at", "size", "digest", "details")
	d := m0["details"].(map[string]any)
	keys("details", d, "parent_model", "format", "family", "families", "parameter_size", "quantization_level")
	if d["family"] != "qwen3" || d["parameter_size"] != "8.2B" || d["quantization_level"] != "Q4_K_M" {
		t.Fatalf("details %v", d)
	}
	if _, err := time.Parse(time.RFC3339Nano, m0["modified_at"].(string)); err != nil {
		t.Fatal(err)
	}
	ps := get("/api/ps")["models"].([]any)
	if len(ps) != 1 {
		t.Fatalf("ps %v", ps)
	}
	p0 := ps[0].(map[string]any)
	keys("ps", p0, "name", "model", "size", "digest", "details", "expires_at", "size_vram")
	if p0["name"] != "qwen3:8b" || p0["size_vram"].(float64) != 6e9 {
		t.Fatalf("ps %v", p0)
	}
	if v := get("/api/version")["version"]; v == "" || v == nil {
		t.Fatal("no version")
	}
	// Ollama loads a model on first use.
	c := client(s)
	_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "llama3.2:3b", Messages: userMsg("x")})
	if err != nil {
		t.Fatal(err)
	}
	if ps := get("/api/ps")["models"].([]any); len(ps) != 2 {
		t.Fatalf("after use: %v", ps)
	}
	s.SetLoaded("qwen3:8b", false)
	if ps := get("/api/ps")["models"].([]any); len(ps) != 1 {
		t.Fatalf("after unload: %v", ps)
	}
	ms, err := c.Models.List(context.Background())
	if err != nil || len(ms.Data) != 2 || ms.Data[0].Object != "model" || ms.Data[0].OwnedBy != "library" {
		t.Fatalf("v1 models %+v %v", ms, err)
	}
	// Ollama has no /health: gin's 404.
	resp, err := http.Get(s.URL() + "/health")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || string(b) != "404 page not found" {
		t.Fatalf("/health: %d %q", resp.StatusCode, b)
	}
}

func TestMetrics(t *testing.T) {
	for _, fl := range []Flavor{FlavorLlamaCPP, FlavorVLLM} {
		cfg := Config{Flavor: fl, Slots: 1, Models: []Model{{Name: "m"}}}
		cfg.Latency = 300 * time.Millisecond
		s := start(t, cfg)
		for i := 0; i < 3; i++ {
			go func() {
				r, err := http.Post(s.URL()+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"x"}]}`))
				if err == nil {
					r.Body.Close()
				}
			}()
		}
		deadline := time.Now().Add(2 * time.Second)
		for s.Stats().Waiting != 2 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		resp, err := http.Get(s.URL() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var want []string
		if fl == FlavorLlamaCPP {
			want = []string{"llamacpp:requests_processing 1\n", "llamacpp:requests_deferred 2\n", "# TYPE llamacpp:requests_deferred gauge\n"}
		} else {
			want = []string{`vllm:num_requests_running{engine="0",model_name="m"} 1.0` + "\n", `vllm:num_requests_waiting{engine="0",model_name="m"} 2.0` + "\n", `vllm:kv_cache_usage_perc{engine="0",model_name="m"} 1` + "\n"}
		}
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				t.Fatalf("%s metrics lack %q:\n%s", fl, w, b)
			}
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{Flavor: "x", Models: []Model{{Name: "a"}}},
		{},
		{Models: []Model{{Name: ""}}},
		{Models: []Model{{Name: "a"}, {Name: "a"}}},
		{Models: []Model{{Name: "a", Kind: "video"}}},
		{Models: []Model{{Name: "a"}}, Behavior: Behavior{ErrorRate: 2}},
		{Flavor: FlavorOllama, Models: []Model{{Name: "b", CopyOf: "a"}, {Name: "a"}}},
		{Flavor: FlavorVLLM, Models: []Model{{Name: "a"}, {Name: "b", CopyOf: "a"}}},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

func benchChat(b *testing.B, stream bool) {
	s := start(b, Config{Models: []Model{{Name: "m"}}})
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"hello"}],"stream":false}`)
	if stream {
		body = []byte(`{"model":"m","messages":[{"role":"user","content":"hello"}],"stream":true}`)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	hc := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := hc.Post(s.URL()+"/v1/chat/completions", "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

func BenchmarkChat(b *testing.B)   { benchChat(b, false) }
func BenchmarkStream(b *testing.B) { benchChat(b, true) }

// BenchmarkStreamHandler measures the server side alone (no network).
func BenchmarkStreamHandler(b *testing.B) {
	s := start(b, Config{Models: []Model{{Name: "m"}}})
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"hello"}],"stream":true}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		req, _ := http.NewRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(body))
		w := &discardWriter{h: http.Header{}}
		s.ServeHTTP(w, req)
	}
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}
func (d *discardWriter) Flush()                      {}

func TestRestartSameAddress(t *testing.T) {
	s := start(t, chatCfg())
	s.Update(func(b *Behavior) { b.Chunks = 3 })
	s.SetLoaded("llama3.2:3b", true)
	addr := s.Addr()
	s.Close()
	if _, err := http.Get(s.URL() + "/health"); err == nil {
		t.Fatal("closed server answered")
	}
	s2 := start(t, s.Config())
	if s2.Addr() != addr || s2.Behavior().Chunks != 3 || !s2.Models()[0].Loaded {
		t.Fatalf("%s %+v %+v", s2.Addr(), s2.Behavior(), s2.Models())
	}
}
