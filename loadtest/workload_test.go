package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBuiltinWorkloads(t *testing.T) {
	all, err := BuiltinWorkloads()
	if err != nil {
		t.Fatal(err)
	}
	r, s := all["chat.short_reasoning"], all["chat.concise_support"]
	if r == nil || s == nil {
		t.Fatalf("built-ins: %v", all)
	}
	if len(r.Samples) < 12 || len(s.Samples) < 8 {
		t.Fatalf("samples: reasoning %d support %d", len(r.Samples), len(s.Samples))
	}
	if _, err := LoadWorkload("nope", ""); err == nil || !strings.Contains(err.Error(), "chat.short_reasoning") {
		t.Fatalf("unknown workload: %v", err)
	}
}

func sample(t *testing.T, expect string) *Sample {
	t.Helper()
	w, err := ParseWorkload("t", []byte("name: t\nsamples:\n  - id: a\n    prompt: p\n    expect: "+expect+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	return &w.Samples[0]
}

func TestScoringRules(t *testing.T) {
	for _, c := range []struct {
		expect, answer string
		want           float64
	}{
		{`{exact: "42"}`, "42", 1},
		{`{exact: "42"}`, "  42.\n", 1},
		{`{exact: "42"}`, "**42**", 1},
		{`{exact: "42"}`, "The answer is 42", 0},
		{`{exact: "Carl"}`, "carl", 1},
		{`{exact: "42"}`, "<think>6*7 is 42, or 41?</think>\n42", 1},
		{`{contains: ["paris"]}`, "It is Paris.", 1},
		{`{contains: ["paris", "france"]}`, "It is Paris.", 0.5},
		{`{contains_any: ["8", "eight"], not_contains: ["9"]}`, "Eight planets.", 1},
		{`{contains_any: ["8", "eight"], not_contains: ["9"]}`, "9, or 8 since 2006", 0.5},
		{`{regex: '(?i)^\W*yes\b'}`, "Yes, they are.", 1},
		{`{regex: '(?i)^\W*yes\b'}`, "No.", 0},
		{`{max_words: 5}`, "one two three four five", 1},
		{`{max_words: 5}`, "one two three four five six", 0},
		{`{max_words: 3}`, "- a\n- b\n- c", 1}, // markers are not words
		{`{min_words: 3}`, "two words", 0},
		{`{bullets: 3}`, "Intro:\n- one\n- two\n* three\n", 1},
		{`{bullets: 3}`, "1. one\n2) two\n3. three\n4. four", 0},
		{`{bullets: 2, max_words: 6}`, "- a b\n- c d\nthanks", 1},
		{`{max_bullets: 0}`, "Go to Billing.", 1},
		{`{max_bullets: 0}`, "- Go to Billing.", 0},
		{`{max_lines: 1, contains: ["refund"]}`, "Your refund\nis coming", 0.5},
	} {
		s := sample(t, c.expect)
		got, checks := s.Score(c.answer)
		if got != c.want {
			t.Errorf("%s on %q = %v, want %v (%+v)", c.expect, c.answer, got, c.want, checks)
		}
	}
}

func TestWorkloadValidation(t *testing.T) {
	for _, y := range []string{
		"name: x\nsamples: []\n",
		"samples:\n  - prompt: p\n    expect: {exact: a}\n",
		"name: x\nsamples:\n  - prompt: p\n    expect: {}\n",
		"name: x\nsamples:\n  - prompt: p\n    expect: {regex: '('}\n",
		"name: x\nsamples:\n  - prompt: p\n    expect: {exact: a, bogus: 1}\n",
		"name: x\nsamples:\n  - id: a\n    prompt: p\n    expect: {exact: a}\n  - id: a\n    prompt: q\n    expect: {exact: b}\n",
		"name: x\nkind: embeddings\nsamples:\n  - prompt: p\n    expect: {exact: a}\n",
	} {
		if _, err := ParseWorkload("t", []byte(y)); err == nil {
			t.Errorf("accepted:\n%s", y)
		}
	}
}

// fakeModel answers workload prompts over SSE: correctly for the prompts
// in answers, "I don't know" otherwise; "fail" prompts get a 500.
func fakeModel(t *testing.T, answers map[string]string, stream bool) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model    string `json:"model"`
			Messages []struct{ Role, Content string }
			Stream   bool `json:"stream"`
		}
		if r.URL.Path != "/v1/chat/completions" || json.NewDecoder(r.Body).Decode(&req) != nil || req.Model != "m1" {
			http.Error(w, `{"error":{"message":"bad request","type":"invalid_request_error"}}`, 400)
			return
		}
		prompt := req.Messages[len(req.Messages)-1].Content
		if strings.Contains(prompt, "fail") {
			w.WriteHeader(500)
			io.WriteString(w, `{"error":{"message":"upstream exploded","type":"server_error"}}`)
			return
		}
		ans, ok := answers[prompt]
		if !ok {
			ans = "I don't know"
		}
		w.Header().Set("X-GenieHive-Service", "host-a/ollama")
		w.Header().Set("X-GenieHive-Model", "qwen3:8b")
		if !stream {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"choices":[{"message":{"role":"assistant","content":%q}}],"usage":{"completion_tokens":3}}`, ans)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		time.Sleep(5 * time.Millisecond)
		words := strings.SplitAfter(ans, " ")
		for _, wd := range words {
			fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":%q}}]}\n\n", wd)
			fl.Flush()
			time.Sleep(2 * time.Millisecond)
		}
		fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":{\"completion_tokens\":%d}}\n\ndata: [DONE]\n\n", len(words))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRunBenchAndReport(t *testing.T) {
	w, err := ParseWorkload("t", []byte(`
name: test.mini
system: be brief
max_tokens: 32
samples:
  - id: add
    prompt: "What is 2+2?"
    expect: {exact: "4"}
  - id: cap
    prompt: "Capital of France?"
    expect: {contains: ["paris"], max_words: 3}
  - id: unknown
    prompt: "Hard one"
    expect: {exact: "x"}
  - id: broken
    prompt: "please fail"
    expect: {exact: "x"}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, stream := range []bool{true, false} {
		srv := fakeModel(t, map[string]string{"What is 2+2?": "4", "Capital of France?": "Paris is the capital"}, stream)
		var progress strings.Builder
		rep, err := RunBench(context.Background(), w, BenchOptions{Endpoint: srv.URL, Model: "m1", Progress: &progress})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Samples) != 4 || strings.Count(progress.String(), "\n") != 4 {
			t.Fatalf("samples %d, progress:\n%s", len(rep.Samples), progress.String())
		}
		q := map[string]float64{}
		for _, s := range rep.Samples {
			q[s.PromptID] = s.Quality
		}
		if q["add"] != 1 || q["cap"] != 0.5 || q["unknown"] != 0 || q["broken"] != 0 {
			t.Fatalf("stream=%v quality %v", stream, q)
		}
		b := rep.Samples[3]
		if b.OK || !strings.Contains(b.Error, "upstream exploded") {
			t.Fatalf("failed sample %+v", b)
		}
		a := rep.Samples[0]
		if !a.OK || a.LatencyMS <= 0 || a.TTFTMS <= 0 || a.TTFTMS > a.LatencyMS || a.Service != "host-a/ollama" {
			t.Fatalf("sample %+v", a)
		}
		if stream && (a.TTFTMS < 4 || rep.Samples[1].TokensPerSec <= 0) {
			t.Fatalf("stream timing %+v %+v", a, rep.Samples[1])
		}
		sm := rep.Summary
		if sm.Samples != 4 || sm.OK != 3 || sm.Errors != 1 || sm.Quality != 0.375 || rep.Service != "host-a/ollama" || rep.Model != "qwen3:8b" || sm.RequestedModel != "m1" {
			t.Fatalf("summary %+v service %q model %q", sm, rep.Service, rep.Model)
		}
		// Round trip through a file, and conversion for Redis.
		p := filepath.Join(t.TempDir(), "b.json")
		if err := rep.WriteJSON(p); err != nil {
			t.Fatal(err)
		}
		back, err := ReadBenchReport(p)
		if err != nil {
			t.Fatal(err)
		}
		if back.Summary != rep.Summary || len(back.Samples) != 4 || back.Samples[2].PromptID != "unknown" ||
			back.Samples[2].LatencyMS != rep.Samples[2].LatencyMS || !back.Samples[2].At.Equal(rep.Samples[2].At) || back.Samples[2].Checks != nil {
			t.Fatalf("round trip: %+v", back)
		}
		// The file is exactly the ingest format: no field the edge refuses.
		raw, _ := os.ReadFile(p)
		for _, f := range []string{`"version"`, `"asset"`, `"checks"`, `"answer"`, `"id"`} {
			if strings.Contains(string(raw), f) {
				t.Fatalf("report has %s:\n%s", f, raw)
			}
		}
		dp := filepath.Join(t.TempDir(), "b.details.json")
		if err := rep.WriteDetails(dp); err != nil {
			t.Fatal(err)
		}
		raw, _ = os.ReadFile(dp)
		if !strings.Contains(string(raw), `"max_words 3"`) || !strings.Contains(string(raw), `Paris is the capital`) {
			t.Fatalf("details:\n%s", raw)
		}
		ss := back.StateSamples()
		if len(ss) != 4 || ss[0].Model != "qwen3:8b" || ss[0].Workload != "test.mini" || ss[0].Prompt != "add" || ss[3].OK || ss[0].Service != "host-a/ollama" {
			t.Fatalf("state samples %+v", ss)
		}
	}
}

func TestBenchReportRefusedClientSide(t *testing.T) {
	good := func() *BenchReport {
		return &BenchReport{Workload: "w", Model: "m", StartedAt: time.Now(), Samples: []BenchResult{
			{PromptID: "a", LatencyMS: 10, TTFTMS: 2, Quality: 1, OK: true, At: time.Now()},
		}}
	}
	if err := good().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*BenchReport){
		"no workload":       func(r *BenchReport) { r.Workload = "" },
		"workload chars":    func(r *BenchReport) { r.Workload = "chat short" },
		"no start":          func(r *BenchReport) { r.StartedAt = time.Time{} },
		"future":            func(r *BenchReport) { r.StartedAt = time.Now().Add(time.Hour) },
		"long error":        func(r *BenchReport) { r.Samples[0].Error = strings.Repeat("e", 1025) },
		"failed scores":     func(r *BenchReport) { r.Samples[0].OK = false },
		"no model":          func(r *BenchReport) { r.Model = " " },
		"no samples":        func(r *BenchReport) { r.Samples = nil },
		"quality":           func(r *BenchReport) { r.Samples[0].Quality = 1.5 },
		"negative":          func(r *BenchReport) { r.Samples[0].LatencyMS = -1 },
		"ttft>latency":      func(r *BenchReport) { r.Samples[0].TTFTMS = 11 },
		"no id":             func(r *BenchReport) { r.Samples[0].PromptID = "" },
		"nan":               func(r *BenchReport) { r.Samples[0].TokensPerSec = math.NaN() },
		"model mismatch":    func(r *BenchReport) { r.Samples[0].Model = "other" },
		"workload mismatch": func(r *BenchReport) { r.Samples[0].Workload = "other" },
	} {
		r := good()
		mut(r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
		// Ingest refuses before sending anything.
		var hit bool
		srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hit = true }))
		_, err := Ingest(context.Background(), srv.URL, "k", r, nil)
		srv.Close()
		if err == nil || hit || !strings.Contains(err.Error(), "not sent") {
			t.Errorf("%s: ingest err %v, sent %v", name, err, hit)
		}
	}
	if _, err := ParseBenchReport([]byte(`{"workload":"w","model":"m","started_at":"2026-01-01T00:00:00Z","samples":[{"prompt_id":"a","latency_ms":1,"quality":1,"ok":true}],"extra":1}`)); err == nil {
		t.Error("unknown field accepted")
	}
	if _, err := ParseBenchReport([]byte(`[1,2]`)); err == nil || !strings.Contains(err.Error(), "not a benchmark report") {
		t.Errorf("garbage: %v", err)
	}
}

func TestIngestPostsAndReportsRefusal(t *testing.T) {
	var got BenchReport
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		if r.URL.Path != "/v1/cluster/benchmarks" || r.Method != "POST" {
			w.WriteHeader(404)
			return
		}
		json.NewDecoder(r.Body).Decode(&got)
		if got.Model == "refuse" {
			w.WriteHeader(422)
			io.WriteString(w, `{"error":{"message":"model refuse is not in the registry","type":"invalid_request_error"}}`)
			return
		}
		io.WriteString(w, `{"accepted":1}`)
	}))
	defer srv.Close()
	rep, err := ParseBenchReport([]byte(`{"workload":"w","model":"m","started_at":"2026-01-01T00:00:00Z","samples":[{"prompt_id":"a","latency_ms":1,"quality":1,"ok":true}]}`))
	if err != nil || rep.Samples[0].At.IsZero() {
		t.Fatalf("minimal report: %v", err)
	}
	res, err := Ingest(context.Background(), srv.URL+"/v1", "sekret", rep, nil)
	if err != nil || res.Status != 200 || got.Workload != "w" || auth != "Bearer sekret" {
		t.Fatalf("ingest: %v %+v %+v %q", err, res, got, auth)
	}
	rep.Model = "refuse"
	if _, err := Ingest(context.Background(), srv.URL, "k", rep, nil); err == nil || !strings.Contains(err.Error(), "not in the registry") {
		t.Fatalf("refusal: %v", err)
	}
}
