// Package loadtest measures what the gateway costs: a load generator that
// drives OpenAI-compatible endpoints (closed or open loop, streaming or
// not), a bare forwarder that is the floor of any extra HTTP hop, and
// benchmark workloads that measure the models themselves.
//
// Run drives every target of a Config in turn, in short time slices, so
// each target is measured under the same conditions on the same machine;
// the Report gives each target's throughput and latency and its cost over
// a baseline target as a ratio and in added microseconds.
//
// Targets must be loopback or the project's own containers (CheckTarget).
// A run is bounded by a duration or a request count and stops by itself.
package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Mode is how requests are issued.
type Mode string

const (
	// Closed is a fixed number of clients, each sending its next request
	// when the previous one is answered.
	Closed Mode = "closed"
	// Open sends at a fixed arrival rate whatever the answers do; latency
	// counts from each request's intended send time, so a stalled server
	// shows up in the percentiles (no coordinated omission).
	Open Mode = "open"
)

// Kind is the API driven.
type Kind string

// API kinds.
const (
	KindChat       Kind = "chat"
	KindEmbeddings Kind = "embeddings"
)

// Target is one endpoint to measure.
type Target struct {
	Name string `json:"name"`
	// URL is the base URL ("http://127.0.0.1:8080"); the API path is
	// appended unless the URL already ends with it.
	URL string `json:"url"`
}

// Config is one load run. Defaults are applied by Run.
type Config struct {
	Targets []Target
	// Baseline names the target the others are compared with (default:
	// the first).
	Baseline string
	Mode     Mode // default Closed
	// Concurrency is the number of clients (closed) or the most requests
	// outstanding at once (open). Default 32 closed, 1024 open.
	Concurrency int
	// Rate is requests per second sent to the target whose slice is
	// running (open loop only).
	Rate float64
	// Duration bounds the measured run (all targets together). Default
	// 10s when Requests is 0.
	Duration time.Duration
	// Requests bounds the run per target (0: duration only).
	Requests int
	// Warmup runs before measuring, interleaved the same way; not recorded.
	Warmup time.Duration
	// Slice is how long one target is driven before the next takes over
	// (default 250ms).
	Slice time.Duration
	Kind  Kind // default KindChat
	// Stream asks for SSE streams and measures time to first byte and the
	// gaps between chunks.
	Stream bool
	// Chunks is the max_tokens asked for (simulated upstreams send that
	// many chunks). Default 20.
	Chunks int
	Model  string // default "sim"
	APIKey string
	// Body replaces the generated request body when set.
	Body []byte
	// Timeout per request, including reading a stream. Default 30s.
	Timeout time.Duration
	// AllowHosts admits non-loopback targets (see CheckTarget).
	AllowHosts []string
	// Progress receives a line a second; nil for none.
	Progress io.Writer
	// Watch names processes whose RSS and CPU time the report samples
	// (name -> pid), e.g. the edge under test.
	Watch map[string]int
}

func (c *Config) provision() error {
	if len(c.Targets) == 0 {
		return errors.New("no targets")
	}
	seen := map[string]bool{}
	for _, t := range c.Targets {
		if t.Name == "" {
			return fmt.Errorf("target %q has no name", t.URL)
		}
		if seen[t.Name] {
			return fmt.Errorf("target name %q used twice", t.Name)
		}
		seen[t.Name] = true
		if err := CheckTarget(t.URL, c.AllowHosts); err != nil {
			return err
		}
	}
	if c.Baseline == "" {
		c.Baseline = c.Targets[0].Name
	} else if !seen[c.Baseline] {
		return fmt.Errorf("baseline %q is not a target", c.Baseline)
	}
	switch c.Mode {
	case "":
		c.Mode = Closed
	case Closed, Open:
	default:
		return fmt.Errorf("mode %q: want closed or open", c.Mode)
	}
	if c.Mode == Open && c.Rate <= 0 {
		return errors.New("open loop needs a rate > 0")
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 32
		if c.Mode == Open {
			c.Concurrency = 1024
		}
	}
	if c.Duration <= 0 && c.Requests <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Slice <= 0 {
		c.Slice = 250 * time.Millisecond
	}
	switch c.Kind {
	case "":
		c.Kind = KindChat
	case KindChat:
	case KindEmbeddings:
		if c.Stream {
			return errors.New("embeddings do not stream")
		}
	default:
		return fmt.Errorf("kind %q: want chat or embeddings", c.Kind)
	}
	if c.Chunks <= 0 {
		c.Chunks = 20
	}
	if c.Model == "" {
		c.Model = "sim"
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	return nil
}

// requestBody is the JSON body each request sends.
func (c *Config) requestBody() []byte {
	if len(c.Body) > 0 {
		return c.Body
	}
	m := strconv.Quote(c.Model)
	if c.Kind == KindEmbeddings {
		return []byte(`{"model":` + m + `,"input":"The quick brown fox jumps over the lazy dog."}`)
	}
	return []byte(`{"model":` + m + `,"messages":[{"role":"user","content":"Say hello in a few words."}],"max_tokens":` +
		strconv.Itoa(c.Chunks) + `,"stream":` + strconv.FormatBool(c.Stream) + `}`)
}

// apiPath returns the path requests go to for base URL u.
func apiPath(u *url.URL, kind Kind) string {
	p := strings.TrimRight(u.Path, "/")
	suffix := "/chat/completions"
	if kind == KindEmbeddings {
		suffix = "/embeddings"
	}
	switch {
	case strings.HasSuffix(p, suffix):
		return p
	case strings.HasSuffix(p, "/v1"):
		return p + suffix
	}
	return p + "/v1" + suffix
}

// Error kinds counted per target.
const (
	ErrConnect    = "connect"
	ErrTimeout    = "timeout"
	ErrIO         = "io"
	ErrHTTP4xx    = "http_4xx"
	ErrHTTP5xx    = "http_5xx"
	ErrHTTPOther  = "http_other"
	ErrKTruncated = "truncated_stream"
	ErrKBadSSE    = "bad_sse"
	ErrKStreamErr = "stream_error"
)

var errKinds = []string{ErrConnect, ErrTimeout, ErrIO, ErrHTTP4xx, ErrHTTP5xx, ErrHTTPOther, ErrKTruncated, ErrKBadSSE, ErrKStreamErr}

func errKindIndex(k string) int {
	for i, e := range errKinds {
		if e == k {
			return i
		}
	}
	return 2
}

// classify maps a client error to an error kind.
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return ErrTimeout
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return ErrConnect
	case errors.As(err, &ne) && ne.Timeout():
		return ErrTimeout
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return ErrConnect
	}
	if strings.Contains(err.Error(), "dial") || strings.Contains(err.Error(), "connection refused") {
		return ErrConnect
	}
	return ErrIO
}

// target is the live state of one Target during a run.
type target struct {
	Target
	hc   *fasthttp.HostClient
	uri  string
	host string

	lat, svc, ttfb, gap *Histogram
	ok, chunks          atomic.Int64
	errs                [9]atomic.Int64
	issued              atomic.Int64 // request tickets taken (Requests bound)
	active              time.Duration
	firstErr            atomic.Pointer[string]
}

func (t *target) total() int64 {
	n := t.ok.Load()
	for i := range t.errs {
		n += t.errs[i].Load()
	}
	return n
}

func (t *target) fail(kind string, err error) {
	t.errs[errKindIndex(kind)].Add(1)
	if t.firstErr.Load() == nil && err != nil {
		s := kind + ": " + err.Error()
		t.firstErr.CompareAndSwap(nil, &s)
	}
}

type runner struct {
	cfg     *Config
	targets []*target
	body    []byte
	auth    string
	// recording is false during warmup.
	recording atomic.Bool
	inflight  atomic.Int64
	current   atomic.Int32 // index of the target in its slice
	readers   sync.Pool
}

// Run drives the targets as cfg says and returns the report. It stops at
// the bound, or early when ctx is done (the report then covers what ran).
//
// # Errors
// A bad configuration or a target that is not allowed; load errors are
// counted in the report, not returned.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.provision(); err != nil {
		return nil, err
	}
	r := &runner{cfg: &cfg, body: cfg.requestBody()}
	if cfg.APIKey != "" {
		r.auth = "Bearer " + cfg.APIKey
	}
	r.readers.New = func() any { return NewSSEReader(nil) }
	for _, t := range cfg.Targets {
		u, _ := url.Parse(t.URL)
		host := u.Host
		if u.Port() == "" {
			host += ":80"
		}
		tt := &target{
			Target: t,
			uri:    "http://" + u.Host + apiPath(u, cfg.Kind),
			host:   u.Host,
			lat:    NewHistogram(), svc: NewHistogram(), ttfb: NewHistogram(), gap: NewHistogram(),
		}
		tt.hc = &fasthttp.HostClient{
			Addr:                          host,
			MaxConns:                      cfg.Concurrency + 16,
			MaxConnWaitTimeout:            cfg.Timeout,
			ReadTimeout:                   cfg.Timeout,
			WriteTimeout:                  cfg.Timeout,
			MaxIdleConnDuration:           time.Minute,
			NoDefaultUserAgentHeader:      true,
			DisableHeaderNamesNormalizing: true,
			DisablePathNormalizing:        true,
			ReadBufferSize:                16 << 10,
		}
		r.targets = append(r.targets, tt)
	}
	started := time.Now()
	watch := startWatch(cfg.Watch)
	defer watch.stop()

	if cfg.Warmup > 0 {
		r.recording.Store(false)
		r.drive(ctx, cfg.Warmup, 0, false)
		// Warmup tickets do not count against Requests.
		for _, t := range r.targets {
			t.issued.Store(0)
			t.active = 0
		}
	}
	watch.reset()
	r.recording.Store(true)
	stopProgress := r.progress()
	measureStart := time.Now()
	r.drive(ctx, cfg.Duration, cfg.Requests, true)
	elapsed := time.Since(measureStart)
	stopProgress()
	return r.report(started, elapsed, watch.results()), nil
}

// drive runs the slices until dur passes (0: no time bound) or every target
// has had perTarget requests (0: no count bound).
func (r *runner) drive(ctx context.Context, dur time.Duration, perTarget int, record bool) {
	if r.cfg.Mode == Open {
		r.driveOpen(ctx, dur, perTarget)
		return
	}
	var deadline time.Time
	if dur > 0 {
		deadline = time.Now().Add(dur)
	}
	for i := 0; ; i = (i + 1) % len(r.targets) {
		if ctx.Err() != nil || (!deadline.IsZero() && !time.Now().Before(deadline)) {
			return
		}
		if perTarget > 0 && r.allDone(perTarget) {
			return
		}
		t := r.targets[i]
		if perTarget > 0 && t.issued.Load() >= int64(perTarget) {
			continue
		}
		end := time.Now().Add(r.cfg.Slice)
		if !deadline.IsZero() && end.After(deadline) {
			end = deadline
		}
		r.current.Store(int32(i))
		start := time.Now()
		var wg sync.WaitGroup
		for c := 0; c < r.cfg.Concurrency; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sr := r.readers.Get().(*SSEReader)
				defer r.readers.Put(sr)
				for ctx.Err() == nil && time.Now().Before(end) {
					if perTarget > 0 && t.issued.Add(1) > int64(perTarget) {
						return
					}
					r.do(t, sr, time.Now(), record)
				}
			}()
		}
		wg.Wait()
		t.active += time.Since(start)
	}
}

func (r *runner) allDone(perTarget int) bool {
	for _, t := range r.targets {
		if t.issued.Load() < int64(perTarget) {
			return false
		}
	}
	return true
}

type job struct {
	t        *target
	intended time.Time
}

// driveOpen schedules requests at the configured rate. Each request's
// latency counts from its intended send time: when every worker is busy
// or the server stalls, the queueing shows in the figures.
func (r *runner) driveOpen(ctx context.Context, dur time.Duration, perTarget int) {
	record := r.recording.Load()
	jobs := make(chan job, 1<<16)
	var wg sync.WaitGroup
	for c := 0; c < r.cfg.Concurrency; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sr := r.readers.Get().(*SSEReader)
			defer r.readers.Put(sr)
			for j := range jobs {
				if ctx.Err() != nil {
					continue
				}
				r.do(j.t, sr, j.intended, record)
			}
		}()
	}
	interval := time.Duration(float64(time.Second) / r.cfg.Rate)
	start := time.Now()
	var deadline time.Time
	if dur > 0 {
		deadline = start.Add(dur)
	}
	ti := 0
	sliceStart := start
	sliceEnd := start.Add(r.cfg.Slice)
	r.current.Store(0)
	closeSlice := func(at time.Time) {
		r.targets[ti].active += at.Sub(sliceStart)
	}
	var timer *time.Timer
	for k := int64(0); ; k++ {
		at := start.Add(time.Duration(k) * interval)
		if !deadline.IsZero() && !at.Before(deadline) {
			closeSlice(deadline)
			break
		}
		if perTarget > 0 && r.allDone(perTarget) {
			closeSlice(at)
			break
		}
		// Advance the slice (skipping targets that have their count).
		for !at.Before(sliceEnd) || (perTarget > 0 && r.targets[ti].issued.Load() >= int64(perTarget)) {
			closeSlice(at)
			ti = (ti + 1) % len(r.targets)
			sliceStart, sliceEnd = at, at.Add(r.cfg.Slice)
			r.current.Store(int32(ti))
		}
		if d := time.Until(at); d > 0 {
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			select {
			case <-ctx.Done():
			case <-timer.C:
			}
		}
		if ctx.Err() != nil {
			closeSlice(time.Now())
			break
		}
		t := r.targets[ti]
		t.issued.Add(1)
		select {
		case jobs <- job{t: t, intended: at}:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
}

var (
	strPost        = []byte("POST")
	strJSON        = []byte("application/json")
	strAccept      = []byte("Accept")
	strEventStream = []byte("text/event-stream")
)

// do sends one request to t and records it. base is the instant latency
// counts from (the intended send time in open loop).
func (r *runner) do(t *target, sr *SSEReader, base time.Time, record bool) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(t.uri)
	req.Header.SetMethodBytes(strPost)
	req.Header.SetContentTypeBytes(strJSON)
	if r.auth != "" {
		req.Header.Set("Authorization", r.auth)
	}
	if r.cfg.Stream {
		req.Header.SetBytesKV(strAccept, strEventStream)
		resp.StreamBody = true
	}
	req.SetBodyRaw(r.body)
	r.inflight.Add(1)
	defer r.inflight.Add(-1)
	sent := time.Now()
	err := t.hc.DoDeadline(req, resp, sent.Add(r.cfg.Timeout))
	if err != nil {
		if record {
			t.fail(classify(err), err)
		}
		return
	}
	if code := resp.StatusCode(); code < 200 || code > 299 {
		if r.cfg.Stream {
			_ = resp.CloseBodyStream()
		}
		if record {
			kind := ErrHTTPOther
			switch {
			case code >= 500:
				kind = ErrHTTP5xx
			case code >= 400:
				kind = ErrHTTP4xx
			}
			t.fail(kind, errors.New("HTTP "+strconv.Itoa(code)))
		}
		return
	}
	if !r.cfg.Stream {
		end := time.Now()
		if record {
			t.ok.Add(1)
			t.lat.Record(end.Sub(base))
			t.svc.Record(end.Sub(sent))
		}
		return
	}
	body := resp.BodyStream()
	if body == nil { // short body read whole
		body = strings.NewReader(string(resp.Body()))
	}
	sr.Reset(body)
	var prev time.Time
	var n int64
	var kind string
	var serr error
	for {
		_, err := sr.Next()
		now := time.Now()
		if err == io.EOF {
			break
		}
		if err != nil {
			serr = err
			switch {
			case errors.Is(err, ErrTruncated):
				kind = ErrKTruncated
			case errors.Is(err, ErrBadSSE):
				kind = ErrKBadSSE
			case errors.Is(err, ErrStreamError):
				kind = ErrKStreamErr
			default:
				kind = classify(err)
				if kind == ErrIO {
					kind = ErrKTruncated
				}
			}
			break
		}
		if record {
			if n == 0 {
				t.ttfb.Record(now.Sub(base))
			} else {
				t.gap.Record(now.Sub(prev))
			}
		}
		prev = now
		n++
	}
	end := time.Now()
	if kind != "" {
		if rc, ok := resp.BodyStream().(fasthttp.ReadCloserWithError); ok {
			_ = rc.CloseWithError(serr)
		} else {
			_ = resp.CloseBodyStream()
		}
	} else {
		_ = resp.CloseBodyStream()
	}
	if !record {
		return
	}
	if kind != "" {
		t.fail(kind, serr)
		return
	}
	t.ok.Add(1)
	t.chunks.Add(n)
	t.lat.Record(end.Sub(base))
	t.svc.Record(end.Sub(sent))
}

// progress prints a line a second until the returned stop is called.
func (r *runner) progress() (stop func()) {
	w := r.cfg.Progress
	if w == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		last := make([]int64, len(r.targets))
		for {
			select {
			case <-done:
				return
			case <-tk.C:
			}
			var b strings.Builder
			fmt.Fprintf(&b, "[%4.0fs] in flight %d, now %s |", time.Since(start).Seconds(), r.inflight.Load(), r.targets[r.current.Load()].Name)
			for i, t := range r.targets {
				n := t.total()
				var errs int64
				for j := range t.errs {
					errs += t.errs[j].Load()
				}
				fmt.Fprintf(&b, " %s %d (+%d) p50 %s p99 %s err %d |", t.Name, n, n-last[i],
					fmtDur(t.lat.Percentile(0.5)), fmtDur(t.lat.Percentile(0.99)), errs)
				last[i] = n
			}
			fmt.Fprintln(w, strings.TrimSuffix(b.String(), " |"))
		}
	}()
	return func() { close(done); <-finished }
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e3, 'f', 0, 64) + "µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) + "ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
}

func hostInfo() HostInfo {
	h, _ := os.Hostname()
	return HostInfo{Hostname: h, NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
}
