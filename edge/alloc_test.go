//go:build !race

package edge

import (
	"encoding/json"
	"testing"
)

var benchBody = []byte(`{"model":"qwen3:8b","stream":true,"max_tokens":256,"messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"Write a haiku about bees and hives and honey, please."}],"temperature":0.7}`)

func TestHotPathAllocations(t *testing.T) {
	var f reqFacts
	if n := testing.AllocsPerRun(200, func() {
		if !json.Valid(benchBody) {
			t.Fatal("invalid")
		}
		_ = scanRequest(benchBody, &f)
	}); n != 0 {
		t.Fatalf("validate+scan allocates %v per request", n)
	}
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(200, func() { buf = setModel(buf[:0], benchBody, &f, "qwen3:8b-q4") }); n != 0 {
		t.Fatalf("setModel allocates %v", n)
	}
	chunk := []byte(`{"choices":[{"delta":{"reasoning_content":"hmm","content":"x"}}]}`)
	if n := testing.AllocsPerRun(200, func() { buf, _ = stripKeys(buf[:0], chunk, reasoningKeys) }); n != 0 {
		t.Fatalf("stripKeys allocates %v", n)
	}
}

func BenchmarkScanRequest(b *testing.B) {
	b.ReportAllocs()
	var f reqFacts
	for b.Loop() {
		_ = json.Valid(benchBody)
		_ = scanRequest(benchBody, &f)
	}
}
