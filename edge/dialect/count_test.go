package dialect

import (
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/tiktoken-go/tokenizer"

	"github.com/geniehive/geniehive/loadtest/sim"
)

// EstimateText against real byte-pair tokenizers (o200k_base, cl100k_base)
// on the kinds of text agents send: prose and markdown, Go source, JSON
// schemas, and a whole Claude Code-style request flattened. The bound is
// what the doc comment promises; bytes/4 is logged beside it.
func TestEstimateAccuracy(t *testing.T) {
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	r := &Request{}
	if err := r.Parse(APICountTokens, claudeCodeBody(false)); err != nil {
		t.Fatal(err)
	}
	var flat struct{ Content string }
	_ = json.Unmarshal(r.AppendLlamaTokenize(nil), &flat)
	schemas := "[" + string(r.tools) + "]"
	samples := map[string]string{
		"markdown (docs/UPSTREAMS.md)": read("../../docs/UPSTREAMS.md"),
		"go source (stream.go)":        read("stream.go"),
		"go source (chatbuild.go)":     read("chatbuild.go"),
		"json tool schemas":            schemas,
		"claude code request, flat":    flat.Content,
		"english prose":                strings.Repeat(sim.Text(16)+" The quick brown fox jumps over the lazy dog, twice; then it rests. ", 40),
	}
	for _, enc := range []tokenizer.Encoding{tokenizer.O200kBase, tokenizer.Cl100kBase} {
		codec, err := tokenizer.Get(enc)
		if err != nil {
			t.Fatal(err)
		}
		for name, text := range samples {
			n, err := codec.Count(text)
			if err != nil {
				t.Fatal(err)
			}
			if n < 100 {
				t.Fatalf("%s: sample too small (%d tokens)", name, n)
			}
			est := EstimateText([]byte(text))
			off := float64(est-n) / float64(n)
			quarter := float64(len(text)/4-n) / float64(n)
			t.Logf("%-12s %-30s real %6d estimate %6d (%+5.1f%%)  bytes/4 %6d (%+5.1f%%)", enc, name, n, est, 100*off, len(text)/4, 100*quarter)
			if math.Abs(off) > 0.15 {
				t.Errorf("%s %s: estimate %d is %.0f%% off the real %d", enc, name, est, 100*off, n)
			}
		}
	}
}

func TestEstimateInputTokens(t *testing.T) {
	small := &Request{}
	_ = small.Parse(APICountTokens, []byte(`{"model":"m","messages":[{"role":"user","content":"hello"}]}`))
	big := &Request{}
	_ = big.Parse(APICountTokens, []byte(`{"model":"m","system":"be brief","messages":[{"role":"user","content":"hello"},{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{"path":"/a/b/c"}}]},{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"`+strings.Repeat("A", 100000)+`"}}]}],"tools":[{"name":"f","input_schema":{"type":"object"}}]}`))
	s, b := small.EstimateInputTokens(), big.EstimateInputTokens()
	// hello (1) + a message (4) + the request (3); the big one adds its
	// system prompt, tool call, a flat 1000 for the image (not its base64)
	// and the tool's schema.
	if s != 8 || b < s+tokensPerImage || b > s+tokensPerImage+60 {
		t.Fatalf("estimates %d %d", s, b)
	}
	tok := big.AppendLlamaTokenize(nil)
	var body struct {
		Content    string
		AddSpecial bool `json:"add_special"`
	}
	if err := json.Unmarshal(tok, &body); err != nil || !strings.Contains(body.Content, "be brief\nhello\nf\n{\"path\":\"/a/b/c\"}") || strings.Contains(body.Content, "AAAA") {
		t.Fatalf("tokenize body %s", tok)
	}
	if n, err := CountTokenizeAnswer([]byte(`{"tokens":[1,2,3]}`)); n != 3 || err != nil {
		t.Fatal(n, err)
	}
	if n, err := CountTokenizeAnswer([]byte(`{"count":42,"max_model_len":8192,"tokens":[]}`)); n != 42 || err != nil {
		t.Fatal(n, err)
	}
	if _, err := CountTokenizeAnswer([]byte(`{}`)); err == nil {
		t.Fatal("no error for an answer without tokens")
	}
}

// The llama.cpp tokenize body works against the simulated llama-server.
func TestLlamaTokenizeSim(t *testing.T) {
	up, err := sim.Start(sim.Config{Flavor: sim.FlavorLlamaCPP, Models: []sim.Model{{Name: "m"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	r := &Request{}
	_ = r.Parse(APICountTokens, []byte(`{"model":"m","system":"s","messages":[{"role":"user","content":"hello there"}]}`))
	resp, err := httpPost(up.URL()+"/tokenize", r.AppendLlamaTokenize(nil))
	if err != nil {
		t.Fatal(err)
	}
	n, err := CountTokenizeAnswer(resp)
	if err != nil || n <= 0 {
		t.Fatalf("%d %v %s", n, err, resp)
	}
	if got := AppendCountTokens(nil, n+r.TokenizeOverhead()); !json.Valid(got) {
		t.Fatal(string(got))
	}
}
