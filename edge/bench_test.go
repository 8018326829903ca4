package edge

import (
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/geniehive/geniehive/loadtest/sim"
)

// BenchmarkEdgeVsDirect measures the full edge path (auth, policy, routing,
// proxy, relay) against hitting the same simulated upstream directly, in the
// same run at the same concurrency. It reports req/s of both, their ratio,
// and the p50/p99 latency the edge adds.
//
//	go test ./edge -run XXX -bench EdgeVsDirect -benchtime 3s
func BenchmarkEdgeVsDirect(b *testing.B) {
	s := newStack(b, func(c *Config, _ *Deps) { f := false; c.AccessLog = &f })
	s.chat.Update(func(bh *sim.Behavior) { bh.Latency, bh.TTFT, bh.ChunkInterval, bh.Chunks = 0, 0, 0, 8 })
	for _, stream := range []bool{false, true} {
		name, body := benchChat(stream)
		for _, target := range []struct{ name, url string }{{"direct", s.chat.URL()}, {"edge", s.url}} {
			b.Run(name+"/"+target.name, func(b *testing.B) {
				hc := &fasthttp.Client{MaxConnsPerHost: 256}
				url := target.url + "/v1/chat/completions"
				var mu sync.Mutex
				var lat []time.Duration
				b.SetParallelism(8)
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					req := fasthttp.AcquireRequest()
					resp := fasthttp.AcquireResponse()
					req.SetRequestURI(url)
					req.Header.SetMethod("POST")
					req.Header.Set("Authorization", "Bearer "+testKey)
					req.Header.SetContentType("application/json")
					req.SetBody(body)
					var my []time.Duration
					for pb.Next() {
						t0 := time.Now()
						if err := hc.Do(req, resp); err != nil || resp.StatusCode() != 200 {
							b.Errorf("%v %d %s", err, resp.StatusCode(), resp.Body())
							return
						}
						my = append(my, time.Since(t0))
					}
					mu.Lock()
					lat = append(lat, my...)
					mu.Unlock()
				})
				el := time.Since(start)
				sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
				if len(lat) > 0 {
					b.ReportMetric(float64(len(lat))/el.Seconds(), "req/s")
					b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
					b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
				}
			})
		}
	}
}

// benchChat is the benchmarks' chat request to llama3.1:8b, streamed or
// not, and its sub-benchmark name.
func benchChat(stream bool) (name string, body []byte) {
	if stream {
		return "stream", []byte(`{"model":"llama3.1:8b","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	}
	return "nonstream", []byte(`{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}]}`)
}
