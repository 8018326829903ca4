package edge

import (
	"bufio"
	"bytes"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/loadtest/sim"
)

// BenchmarkMessagesStreamTTFB measures, in one run and interleaved (8
// clients, each cycling through the three paths), the time from sending a
// streamed Anthropic Messages request to its first content_block_delta:
// straight to the simulated upstream's native /v1/messages, through the
// edge passed through to that route, and through the edge translated to
// Chat Completions on the same upstream. It reports the medians and the
// edge's cost over direct for each path (no limit is asserted):
//
//	go test -run '^$' -bench MessagesStreamTTFB -benchtime 2000x ./edge/
func BenchmarkMessagesStreamTTFB(b *testing.B) {
	s := newStack(b)
	up := startSim(b, sim.Config{Flavor: sim.FlavorOpenAI, Responses: sim.On, Messages: sim.On,
		Behavior: sim.Behavior{Chunks: 4, ChunkInterval: 100 * time.Microsecond},
		Models:   []sim.Model{{Name: "nat:1b", Loaded: true}, {Name: "tr:1b", Loaded: true}}})
	nat := svc("gpu1", "nat", fleet.KindChat, up.URL(), fleet.Asset{Name: "nat:1b", Loaded: true})
	nat.APIs = allAPIs
	tr := svc("gpu1", "tr", fleet.KindChat, up.URL(), fleet.Asset{Name: "tr:1b", Loaded: true})
	heartbeat(b, s.store, "gpu1", nat, tr)
	s.waitFor(func(sn *fleet.Snapshot) bool { return sn.ByID["gpu1/tr"] != nil && sn.ByID["gpu1/nat"] != nil })

	body := func(model string) string {
		return `{"model":"` + model + `","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hello"}]}`
	}
	paths := [3]struct {
		name, url, body string
		key             bool
	}{
		{"direct", up.URL() + "/v1/messages", body("nat:1b"), false},
		{"native", s.url + "/v1/messages", body("nat:1b"), true},
		{"translated", s.url + "/v1/messages", body("tr:1b"), true},
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	ttfb := func(i int) time.Duration {
		p := &paths[i]
		req, _ := http.NewRequest("POST", p.url, strings.NewReader(p.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("anthropic-version", "2023-06-01")
		if p.key {
			req.Header.Set("x-api-key", testKey)
		}
		t0 := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var d time.Duration
		for sc.Scan() {
			if d == 0 && bytes.Contains(sc.Bytes(), []byte(`"content_block_delta"`)) {
				d = time.Since(t0)
			}
		}
		if d == 0 {
			b.Fatalf("%s: no content_block_delta (status %d)", p.name, resp.StatusCode)
		}
		return d
	}
	const clients = 8
	var mu sync.Mutex
	var got [3][]time.Duration
	var wg sync.WaitGroup
	next := make(chan int)
	b.ResetTimer()
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range next {
				d := ttfb(n % 3)
				mu.Lock()
				got[n%3] = append(got[n%3], d)
				mu.Unlock()
			}
		}()
	}
	for n := 0; n < b.N; n++ {
		next <- n
	}
	close(next)
	wg.Wait()
	b.StopTimer()
	med := func(ds []time.Duration) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	d, n, t := med(got[0]), med(got[1]), med(got[2])
	b.ReportMetric(float64(d.Microseconds()), "direct-p50-µs")
	b.ReportMetric(float64(n.Microseconds()), "native-p50-µs")
	b.ReportMetric(float64(t.Microseconds()), "translated-p50-µs")
	b.ReportMetric(float64((t - n).Microseconds()), "translated-minus-native-µs")
	if d > 0 {
		b.ReportMetric(float64(n)/float64(d), "native/direct")
		b.ReportMetric(float64(t)/float64(d), "translated/direct")
	}
}
