package edge

import (
	"testing"

	"github.com/valyala/fastjson"

	"github.com/geniehive/geniehive/routing"
)

// The request scanner against github.com/valyala/fastjson, so the claim
// that a hand-written scanner pays for itself is measured: both validate
// the whole body and extract what the edge routes on (model, stream,
// max_tokens, the last user message's text). fastjson's Parser is reused
// (its fastest mode); the scanner does the same work in one pass without
// building a value tree. BenchmarkScanRequest is the scan alone.

var benchBody = []byte(`{"model":"qwen3:8b","stream":true,"max_tokens":256,"messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"Write a haiku about bees and hives and honey, please."}],"temperature":0.7}`)

// A body with parts, escapes, a long key and an escaped key.
var benchBodyParts = []byte(`{"a_rather_long_key_name_of_forty_bytes__":1,"mo\u0064el":"qwen3:8b","max_t\u006fkens":64,"messages":[{"role":"user","content":[{"type":"text","text":"caf\u00e9 \"quoted\""},{"type":"image_url","image_url":{"url":"data:,x"}},{"type":"text","text":"second part"}]}]}`)

func BenchmarkScanVsFastjson(b *testing.B) {
	for _, c := range []struct {
		name string
		body []byte
	}{{"chat", benchBody}, {"parts", benchBodyParts}} {
		b.Run(c.name+"/rawjson-scanner", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.body)))
			var f bodyScan
			text := make([]byte, 0, routing.TextBytes+8)
			for b.Loop() {
				if err := scanRequest(c.body, &f); err != nil {
					b.Fatal(err)
				}
				text = appendText(text[:0], c.body, &f, routing.TextBytes)
			}
		})
		b.Run(c.name+"/fastjson", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.body)))
			var p fastjson.Parser
			text := make([]byte, 0, routing.TextBytes+8)
			for b.Loop() {
				v, err := p.ParseBytes(c.body)
				if err != nil {
					b.Fatal(err)
				}
				_ = v.GetStringBytes("model")
				_ = v.GetBool("stream")
				_ = v.GetInt("max_tokens")
				text = text[:0]
				msgs := v.GetArray("messages")
				for i := len(msgs) - 1; i >= 0; i-- {
					if string(msgs[i].GetStringBytes("role")) != "user" {
						continue
					}
					if s := msgs[i].GetStringBytes("content"); s != nil {
						text = append(text, s...)
					} else {
						for k, part := range msgs[i].GetArray("content") {
							if t := part.GetStringBytes("text"); t != nil {
								if k > 0 {
									text = append(text, ' ')
								}
								text = append(text, t...)
							}
						}
					}
					break
				}
			}
		})
	}
}
