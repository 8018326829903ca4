package loadtest

import (
	"bufio"
	"context"
	"io"
	"math"
	"math/rand"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// serve runs h on a loopback port until the test ends.
func serve(t *testing.T, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{Handler: h, Concurrency: 1 << 16}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown() })
	return "http://" + ln.Addr().String()
}

const okChat = `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`

func TestHistogramExactSmall(t *testing.T) {
	h := NewHistogram()
	for v := int64(100); v >= 1; v-- {
		h.RecordValue(v)
	}
	for _, c := range []struct {
		q    float64
		want int64
	}{{0.5, 50}, {0.9, 90}, {0.99, 99}, {0.999, 100}, {1, 100}, {0, 1}, {0.01, 1}, {0.011, 2}} {
		if got := h.Percentile(c.q); int64(got) != c.want {
			t.Errorf("p%v = %d, want %d", c.q*100, got, c.want)
		}
	}
	s := h.Summary()
	if s.Count != 100 || s.Min != 0.001 || s.Max != 0.1 {
		t.Errorf("summary %+v", s)
	}
}

func TestHistogramLargeWithinError(t *testing.T) {
	h := NewHistogram()
	rng := rand.New(rand.NewSource(1))
	vals := make([]int64, 200000)
	for i := range vals {
		// Log-normal-ish latencies from ~1µs to ~10s.
		v := int64(math.Exp(rng.NormFloat64()*2+13)) + 1
		vals[i] = v
		h.RecordValue(v)
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 0.9999} {
		rank := int(math.Ceil(q * float64(len(vals))))
		exact := vals[rank-1]
		got := int64(h.Percentile(q))
		if rel := math.Abs(float64(got-exact)) / float64(exact); rel > histMaxRelErr {
			t.Errorf("p%v: got %d, exact %d, rel err %.5f > %.5f", q*100, got, exact, rel, histMaxRelErr)
		}
	}
	// Every value lands in a bucket whose range holds it.
	for _, v := range []int64{0, 1, 255, 256, 257, 511, 512, 1 << 20, 1<<40 + 12345, math.MaxInt64} {
		lo, hi := bucketRange(histIndex(v))
		if v < lo || v > hi {
			t.Errorf("value %d in bucket [%d,%d]", v, lo, hi)
		}
	}
}

func TestHistogramMerge(t *testing.T) {
	a, b := NewHistogram(), NewHistogram()
	for i := int64(1); i <= 50; i++ {
		a.RecordValue(i)
		b.RecordValue(i + 50)
	}
	a.Merge(b)
	if a.Count() != 100 || a.Percentile(0.5) != 50 || a.Percentile(1) != 100 {
		t.Fatalf("merged: n=%d p50=%d max=%d", a.Count(), a.Percentile(0.5), a.Percentile(1))
	}
}

func TestHostAllowed(t *testing.T) {
	for _, c := range []struct {
		url   string
		allow []string
		ok    bool
	}{
		{"http://127.0.0.1:8080", nil, true},
		{"http://127.9.9.9:1", nil, true},
		{"http://[::1]:8080", nil, true},
		{"http://localhost:8080", nil, true},
		{"http://edge:8080", nil, true},
		{"http://sim-1:9000/v1", nil, true},
		{"http://example.com", nil, false},
		{"http://10.0.0.5:11434", nil, false},
		{"http://10.0.0.5:11434", []string{"10.0.0.0/8"}, true},
		{"http://10.0.0.5:11434", []string{"10.0.0.5"}, true},
		{"http://gpu1.lan:11434", []string{"GPU1.lan"}, true},
		{"http://gpu2.lan:11434", []string{"gpu1.lan"}, false},
		{"https://127.0.0.1", nil, false},
	} {
		err := CheckTarget(c.url, c.allow)
		if (err == nil) != c.ok {
			t.Errorf("CheckTarget(%s, %v) = %v, want ok=%v", c.url, c.allow, err, c.ok)
		}
	}
	if _, err := Run(context.Background(), Config{Targets: []Target{{Name: "x", URL: "http://example.com"}}}); err == nil ||
		!strings.Contains(err.Error(), "--allow-host") {
		t.Fatalf("Run to a remote host: %v", err)
	}
}

func TestClosedLoopCountsAndBaseline(t *testing.T) {
	fast := serve(t, func(ctx *fasthttp.RequestCtx) { ctx.SetContentType("application/json"); ctx.SetBodyString(okChat) })
	var n atomic.Int64
	slow := serve(t, func(ctx *fasthttp.RequestCtx) {
		if n.Add(1)%10 == 0 {
			ctx.SetStatusCode(500)
			return
		}
		time.Sleep(2 * time.Millisecond)
		ctx.SetBodyString(okChat)
	})
	rep, err := Run(context.Background(), Config{
		Targets:     []Target{{Name: "fast", URL: fast}, {Name: "slow", URL: slow}},
		Concurrency: 4, Requests: 200, Slice: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	f, s := rep.Target("fast"), rep.Target("slow")
	if f.Requests != 200 || f.OK != 200 || s.Requests != 200 {
		t.Fatalf("requests: fast %d/%d slow %d", f.OK, f.Requests, s.Requests)
	}
	if s.Errors[ErrHTTP5xx] != 20 || s.OK != 180 {
		t.Fatalf("slow errors %v ok %d", s.Errors, s.OK)
	}
	// The slow server sleeps 2ms per answer: its p50 cannot be below that,
	// and the fast one's is lower (order, no ceiling on either).
	if s.Latency.P50 < 2000 || f.Latency.P50 >= s.Latency.P50 {
		t.Fatalf("p50 fast %v slow %v", f.Latency.P50, s.Latency.P50)
	}
	d := s.VsBaseline
	if d == nil || d.P50AddedUS < 1500 || d.RPSRatio >= 1 || f.VsBaseline != nil {
		t.Fatalf("delta %+v", d)
	}
	if f.ActiveSeconds <= 0 || s.ActiveSeconds <= f.ActiveSeconds {
		t.Fatalf("active fast %v slow %v", f.ActiveSeconds, s.ActiveSeconds)
	}
}

func TestOpenLoopPacing(t *testing.T) {
	var n atomic.Int64
	u := serve(t, func(ctx *fasthttp.RequestCtx) { n.Add(1); ctx.SetBodyString(okChat) })
	const rate = 400.0
	start := time.Now()
	rep, err := Run(context.Background(), Config{
		Targets: []Target{{Name: "a", URL: u}}, Mode: Open, Rate: rate, Duration: 1500 * time.Millisecond, Concurrency: 16,
	})
	if err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	got := float64(n.Load())
	want := rate * 1.5
	if math.Abs(got-want)/want > 0.05 {
		t.Fatalf("server saw %v requests, want %v ±5%%", got, want)
	}
	// The schedule's count is content; the wall clock a loaded machine
	// stretches is not asserted: the run lasts at least until its last
	// scheduled start ((want-1)/rate: the schedule's slots begin at 0, so
	// the run may end a slot before the nominal duration), so the reported
	// rate can only fall short of the schedule, never pass it.
	if last := time.Duration((want - 1) / rate * float64(time.Second)); el < last {
		t.Fatalf("run took %v, less than its last scheduled start %v", el, last)
	}
	a := rep.Target("a")
	if a.RPS <= 0 || a.RPS > rate*1.08 {
		t.Fatalf("reported rps %v, want > 0 and not above the schedule's %v", a.RPS, rate)
	}
	if a.Service == nil {
		t.Fatal("no service time in open loop")
	}
}

// A server that stalls for 300ms once: in open loop the requests
// scheduled meanwhile wait, and their latency (from the intended start)
// shows it; a closed loop client would have sent nothing and hidden it.
func TestOpenLoopShowsStall(t *testing.T) {
	var stalled atomic.Bool
	start := time.Now()
	u := serve(t, func(ctx *fasthttp.RequestCtx) {
		if time.Since(start) > 300*time.Millisecond && stalled.CompareAndSwap(false, true) {
			time.Sleep(300 * time.Millisecond)
		}
		ctx.SetBodyString(okChat)
	})
	run := func(m Mode) *TargetReport {
		stalled.Store(false)
		start = time.Now()
		cfg := Config{Targets: []Target{{Name: "a", URL: u}}, Mode: m, Rate: 200, Duration: time.Second, Concurrency: 1}
		rep, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return rep.Target("a")
	}
	open := run(Open)
	// ~60 of ~200 requests were scheduled during the stall.
	if open.Latency.P90 < 100_000 {
		t.Fatalf("open loop p90 %vµs: the stall is hidden", open.Latency.P90)
	}
	// Service time excludes the wait in the schedule: below the latency
	// that includes it.
	if open.Service.P50 >= open.Latency.P90 {
		t.Fatalf("service p50 %vµs not below latency p90 %vµs", open.Service.P50, open.Latency.P90)
	}
	closed := run(Closed)
	// The closed loop hides the stall (only the stalled request is slow):
	// its p90 is below the open loop's, its max still holds the stall.
	if closed.Latency.P90 >= open.Latency.P90 || closed.Latency.Max < 250_000 {
		t.Fatalf("closed loop p90 %v max %v: expected one slow request only", closed.Latency.P90, closed.Latency.Max)
	}
}

// sseServer streams n chunks, first after first, then every gap; trunc
// cuts the stream before [DONE]; bad sends a non-SSE line.
func sseServer(t *testing.T, first, gap time.Duration, n int, trunc, bad bool) string {
	return serve(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			time.Sleep(first)
			for i := 0; i < n; i++ {
				if i > 0 {
					time.Sleep(gap)
				}
				if bad && i == 1 {
					w.WriteString("this is not sse\n\n")
					w.Flush()
					return
				}
				w.WriteString(`data: {"choices":[{"delta":{"content":"x` + strconv.Itoa(i) + `"}}]}` + "\n\n")
				w.Flush()
			}
			if !trunc {
				w.WriteString("data: [DONE]\n\n")
			}
		})
	})
}

func TestStreamTTFBAndGaps(t *testing.T) {
	u := sseServer(t, 30*time.Millisecond, 10*time.Millisecond, 5, false, false)
	rep, err := Run(context.Background(), Config{Targets: []Target{{Name: "s", URL: u}}, Stream: true, Concurrency: 2, Requests: 6})
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Target("s")
	if s.OK != 6 || len(s.Errors) != 0 {
		t.Fatalf("ok %d errors %v %s", s.OK, s.Errors, s.FirstError)
	}
	if s.Chunks != 30 || s.Gap.Count != 24 || s.TTFB.Count != 6 {
		t.Fatalf("chunks %d gaps %d ttfb %d", s.Chunks, s.Gap.Count, s.TTFB.Count)
	}
	// Order and causality, never a wall-clock ceiling (a loaded machine
	// stretches every figure upwards): the first byte cannot be measured
	// before the server released it after 30ms, each gap follows the
	// server's 10ms pacing, the first byte comes before the end, and the
	// end after the first byte plus four gaps.
	if s.TTFB.P50 < 29_000 {
		t.Fatalf("ttfb p50 %vµs, before the server's 30ms hold-back: measured from the wrong event", s.TTFB.P50)
	}
	if s.Gap.P50 < 9_000 {
		t.Fatalf("gap p50 %vµs, shorter than the server's 10ms pacing", s.Gap.P50)
	}
	if s.TTFB.P50 >= s.Latency.P50 || s.Latency.P50 < 70_000 {
		t.Fatalf("ttfb p50 %vµs, latency p50 %vµs: want first byte < end, end ≥ 70ms", s.TTFB.P50, s.Latency.P50)
	}
}

func TestStreamErrorsDetected(t *testing.T) {
	trunc := sseServer(t, 0, time.Millisecond, 3, true, false)
	bad := sseServer(t, 0, time.Millisecond, 3, false, true)
	rep, err := Run(context.Background(), Config{
		Targets: []Target{{Name: "trunc", URL: trunc}, {Name: "bad", URL: bad}}, Stream: true, Concurrency: 1, Requests: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	if e := rep.Target("trunc").Errors; e[ErrKTruncated] != 3 {
		t.Fatalf("trunc errors %v", e)
	}
	if e := rep.Target("bad").Errors; e[ErrKBadSSE] != 3 {
		t.Fatalf("bad errors %v", e)
	}
}

func TestConnectErrorAndStatusClasses(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	notFound := serve(t, func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(404) })
	rep, err := Run(context.Background(), Config{
		Targets: []Target{{Name: "dead", URL: dead}, {Name: "nf", URL: notFound}}, Concurrency: 1, Requests: 2, Timeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if e := rep.Target("dead").Errors; e[ErrConnect] != 2 {
		t.Fatalf("dead: %v %s", e, rep.Target("dead").FirstError)
	}
	if e := rep.Target("nf").Errors; e[ErrHTTP4xx] != 2 {
		t.Fatalf("nf: %v", e)
	}
}

func TestSSEReader(t *testing.T) {
	in := ": comment\r\nevent: x\r\ndata: {\"a\":1}\r\n\r\ndata: {\"b\":\ndata: 2}\n\nid: 3\ndata:[DONE]\n\n"
	r := NewSSEReader(strings.NewReader(in))
	d, err := r.Next()
	if err != nil || string(d) != `{"a":1}` {
		t.Fatalf("1: %q %v", d, err)
	}
	d, err = r.Next()
	if err != nil || string(d) != "{\"b\":\n2}" {
		t.Fatalf("2: %q %v", d, err)
	}
	if _, err = r.Next(); err != io.EOF {
		t.Fatalf("done: %v", err)
	}
	r.Reset(strings.NewReader("data: {\"error\":{\"message\":\"boom\"}}\n\n"))
	if _, err = r.Next(); err != ErrStreamError {
		t.Fatalf("error event: %v", err)
	}
	r.Reset(strings.NewReader("data: {\"a\":1}\n\n"))
	r.Next()
	if _, err = r.Next(); err != ErrTruncated {
		t.Fatalf("truncated: %v", err)
	}
	r.Reset(strings.NewReader("data: " + strings.Repeat("x", 40000) + "\n\n"))
	if _, err = r.Next(); err != ErrBadSSE {
		t.Fatalf("long non-json: %v", err)
	}
	long := `{"c":"` + strings.Repeat("y", 40000) + `"}`
	r.Reset(strings.NewReader("data: " + long + "\n\ndata: [DONE]\n\n"))
	if d, err = r.Next(); err != nil || string(d) != long {
		t.Fatalf("long line: %d %v", len(d), err)
	}
}

func TestForwarderPassesThrough(t *testing.T) {
	release := make(chan struct{})
	up := serve(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/v1/chat/completions" && strings.Contains(string(ctx.PostBody()), `"stream":true`) {
			ctx.SetContentType("text/event-stream")
			ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
				w.WriteString("data: {\"n\":1}\n\n")
				w.Flush()
				// The second event is released only once the client has
				// read the first (or after a minute, so a buffering
				// forwarder fails the test instead of hanging it).
				select {
				case <-release:
				case <-time.After(time.Minute):
				}
				w.WriteString("data: {\"n\":2}\n\ndata: [DONE]\n\n")
				w.Flush()
			})
			return
		}
		ctx.Response.Header.Set("X-Up", string(ctx.Request.Header.Peek("X-In")))
		ctx.SetStatusCode(201)
		ctx.SetBodyString("path=" + string(ctx.RequestURI()) + " body=" + string(ctx.PostBody()))
	})
	f, err := StartForwarder("127.0.0.1:0", up)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	req, _ := http.NewRequest("POST", f.URL()+"/x/y?q=1", strings.NewReader("hello"))
	req.Header.Set("X-In", "abc")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || string(b) != "path=/x/y?q=1 body=hello" || resp.Header.Get("X-Up") != "abc" {
		t.Fatalf("got %d %q %v", resp.StatusCode, b, resp.Header)
	}

	// The first event must arrive before the second is released (order, not
	// a wall-clock figure: the upstream holds the second event back until
	// the client has read the first).
	start := time.Now()
	resp, err = http.Post(f.URL()+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := NewSSEReader(resp.Body)
	if d, err := r.Next(); err != nil || string(d) != `{"n":1}` {
		t.Fatalf("first event %q %v", d, err)
	}
	if el := time.Since(start); el >= time.Minute {
		t.Fatalf("first event after %v: buffered until the upstream gave up holding the second", el)
	}
	close(release)
	if d, err := r.Next(); err != nil || string(d) != `{"n":2}` {
		t.Fatalf("second event %q %v", d, err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("done: %v", err)
	}
}

func TestForwarderUnderLoad(t *testing.T) {
	up := sseServer(t, 0, 0, 20, false, false)
	f, err := StartForwarder("", up)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := Run(context.Background(), Config{
		Targets: []Target{{Name: "direct", URL: up}, {Name: "fwd", URL: f.URL()}},
		Stream:  true, Concurrency: 8, Requests: 300,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range rep.Targets {
		if tr.OK != 300 || tr.Chunks != 300*20 {
			t.Fatalf("%s: ok %d chunks %d errors %v %s", tr.Name, tr.OK, tr.Chunks, tr.Errors, tr.FirstError)
		}
	}
}

func TestReportRoundTripAndCompare(t *testing.T) {
	u := serve(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString(okChat) })
	rep, err := Run(context.Background(), Config{Targets: []Target{{Name: "a", URL: u}, {Name: "b", URL: u}}, Baseline: "b", Requests: 50, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "r.json")
	if err := rep.WriteJSON(p); err != nil {
		t.Fatal(err)
	}
	back, err := ReadReport(p)
	if err != nil {
		t.Fatal(err)
	}
	if back.Baseline != "b" || len(back.Targets) != 2 || *back.Targets[0].Latency != *rep.Targets[0].Latency ||
		back.Targets[0].VsBaseline == nil || *back.Targets[0].VsBaseline != *rep.Targets[0].VsBaseline || back.Config != rep.Config {
		t.Fatalf("round trip differs:\n%+v\n%+v", back, rep)
	}
	// Compare against a doctored old report.
	old := *back
	old.Targets = append([]TargetReport(nil), back.Targets...)
	old.Targets[0].RPS = rep.Targets[0].RPS / 2
	lat := *old.Targets[0].Latency
	lat.P99 = rep.Targets[0].Latency.P99 * 2
	old.Targets[0].Latency = &lat
	old.Targets[1].Name = "gone"
	cs := Compare(&old, rep)
	if len(cs) != 3 || cs[0].Target != "a" || cs[0].RPSChange != 1 || math.Abs(cs[0].P99Change+0.5) > 0.001 ||
		!cs[1].OnlyInNew || !cs[2].OnlyInOld {
		t.Fatalf("compare %+v", cs)
	}
	var sb strings.Builder
	rep.WriteTable(&sb)
	WriteComparison(&sb, &old, rep)
	if !strings.Contains(sb.String(), "+100.0%") || !strings.Contains(sb.String(), "base") {
		t.Fatalf("table:\n%s", sb.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	_ = (&Report{Version: 99}).WriteJSON(bad)
	if _, err := ReadReport(bad); err == nil {
		t.Fatal("accepted a report of another version")
	}
}
