// Package chaos is GenieHive's chaos suite: Go tests that start a cluster
// (Redis, three edges behind HAProxy, two node agents, simulated upstreams)
// from locally built images with the ghtest module, break parts of it under
// steady load through the load balancer, and check that nothing was lost.
//
// The load here is deliberately small and bounded (a few workers, paced)
// and aimed only at the cluster's own load balancer on loopback. Every
// request is classified:
//
//   - ok: 200 with a complete, well-formed body (non-streaming: a JSON
//     completion or embedding; streaming: SSE ending with data: [DONE]);
//   - retryable: a clean OpenAI-format error ({"error":{...}}) with a status
//     a client retries (408, 409, 429, 5xx), or a stream that ends with an
//     error event;
//   - cut: the connection broke while the replica serving it was being
//     killed (the client sees a transport error, never a silently short
//     body) — tolerated only where a scenario SIGKILLs an edge;
//   - other: anything else — a hang (client timeout), a truncated body, a
//     stream that ends without [DONE] or an error event, an error that is
//     not in OpenAI format, a non-retryable status. Always a failure.
package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Outcome of one request.
type Outcome int

// Outcomes.
const (
	OK Outcome = iota
	Retryable
	Cut
	Other
)

// LoadConfig shapes the load.
type LoadConfig struct {
	BaseURL string // OpenAI base URL (…/v1)
	APIKey  string
	Workers int           // concurrent clients (default 4)
	Pause   time.Duration // between a worker's requests (default 40ms)
	Timeout time.Duration // per request; exceeding it is a hang (default 20s)
	// Requests cycle through these; default chat, streamed chat, embeddings.
	Kinds      []string
	ChatModel  string
	EmbedModel string
}

// Summary is what a scenario prints.
type Summary struct {
	Requests, OK, Retryable, Cut, Other int64
	// SpannedRetryable and SpannedCut count the retryable and cut requests
	// that were in flight at a Mark (started before it, ended after it):
	// the only failures a scenario's fault may explain.
	SpannedRetryable, SpannedCut int64
	MaxLatency                   time.Duration
	Failures                     []string // first few non-ok descriptions
	// ByKind counts the non-ok requests by what they saw ("retryable HTTP
	// 503 service_unavailable", "cut", ...): the errors by kind.
	ByKind map[string]int64
	// LastFailure is when the latest non-ok request ended (zero if none).
	LastFailure time.Time
}

func (s Summary) String() string {
	return fmt.Sprintf("requests=%d ok=%d retryable=%d (cut=%d) other=%d in_flight_at_fault=%d max_latency=%s",
		s.Requests, s.OK, s.Retryable+s.Cut, s.Cut, s.Other, s.SpannedRetryable+s.SpannedCut, s.MaxLatency.Round(time.Millisecond))
}

// Load runs until Stop.
type Load struct {
	cfg    LoadConfig
	cancel context.CancelFunc
	wg     sync.WaitGroup
	client *http.Client

	n       [4]atomic.Int64
	spanned [4]atomic.Int64
	marks   []window // under mu
	maxLat  atomic.Int64
	mu      sync.Mutex
	fails   []string
	kept    [4]int
	kinds   map[string]int64 // under mu
	lastBad time.Time        // under mu
	stopped atomic.Bool
}

// StartLoad starts the workers.
func StartLoad(cfg LoadConfig) *Load {
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Pause <= 0 {
		cfg.Pause = 40 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 20 * time.Second
	}
	if len(cfg.Kinds) == 0 {
		cfg.Kinds = []string{"chat", "stream", "embed"}
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr := &http.Transport{
		MaxIdleConnsPerHost: cfg.Workers,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
	}
	l := &Load{cfg: cfg, cancel: cancel, client: &http.Client{Transport: tr}}
	for w := 0; w < cfg.Workers; w++ {
		l.wg.Add(1)
		go l.worker(ctx, w)
	}
	return l
}

// Stop waits for in-flight requests to finish (they are never cancelled:
// a hang shows up as a timeout) and returns the summary.
func (l *Load) Stop() Summary {
	l.stopped.Store(true)
	l.wg.Wait()
	l.cancel()
	return l.Summary()
}

// window is the time a fault took to happen: from just before the command
// that causes it to the moment that command returned (or, for a failover,
// the moment the scenario declares it over).
type window struct{ from, to time.Time }

// Mark records the start of a fault (a kill, a cut) and returns the function
// that ends it, to be called once the fault has happened (the kill command
// returned). A failed request in flight at any instant of that window is
// counted as spanning it: a request that starts while Docker is still
// killing a replica reaches the replica and is cut with it, exactly like one
// that started a moment before. Until the returned function is called the
// window stays open.
func (l *Load) Mark() (done func()) {
	l.mu.Lock()
	i := len(l.marks)
	// Open until done: a request failing while the fault is still under
	// way (a failover taking seconds) spans it, though it started after
	// the Mark and ended before done.
	l.marks = append(l.marks, window{from: time.Now(), to: time.Unix(1<<40, 0)})
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		l.marks[i].to = time.Now()
		l.mu.Unlock()
	}
}

// spans reports whether [t0, t1] overlaps a fault window.
func (l *Load) spans(t0, t1 time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.marks {
		if t0.Before(m.to) && t1.After(m.from) {
			return true
		}
	}
	return false
}

// Summary of the requests completed so far.
func (l *Load) Summary() Summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := Summary{OK: l.n[OK].Load(), Retryable: l.n[Retryable].Load(), Cut: l.n[Cut].Load(), Other: l.n[Other].Load(),
		SpannedRetryable: l.spanned[Retryable].Load(), SpannedCut: l.spanned[Cut].Load(),
		MaxLatency: time.Duration(l.maxLat.Load()), Failures: append([]string(nil), l.fails...),
		ByKind: make(map[string]int64, len(l.kinds)), LastFailure: l.lastBad}
	for k, n := range l.kinds {
		s.ByKind[k] = n
	}
	sort.SliceStable(s.Failures, func(i, j int) bool {
		return strings.HasPrefix(s.Failures[i], "OTHER") && !strings.HasPrefix(s.Failures[j], "OTHER")
	})
	s.Requests = s.OK + s.Retryable + s.Cut + s.Other
	return s
}

func (l *Load) worker(ctx context.Context, w int) {
	defer l.wg.Done()
	for i := w; !l.stopped.Load(); i++ {
		kind := l.cfg.Kinds[i%len(l.cfg.Kinds)]
		t0 := time.Now()
		out, desc := l.one(kind)
		lat := time.Since(t0)
		for {
			m := l.maxLat.Load()
			if int64(lat) <= m || l.maxLat.CompareAndSwap(m, int64(lat)) {
				break
			}
		}
		l.n[out].Add(1)
		if out != OK && l.spans(t0, t0.Add(lat)) {
			l.spanned[out].Add(1)
		}
		if out != OK {
			l.mu.Lock()
			if l.kinds == nil {
				l.kinds = map[string]int64{}
			}
			l.kinds[failureKind(out, desc)]++
			if end := t0.Add(lat); end.After(l.lastBad) {
				l.lastBad = end
			}
			// Keep the first few of each outcome, losses first in the report.
			if l.kept[out] < 6 {
				l.kept[out]++
				l.fails = append(l.fails, fmt.Sprintf("%s %s after %s: %s", [4]string{"ok", "retryable", "cut", "OTHER"}[out], kind, lat.Round(time.Millisecond), desc))
			}
			l.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(l.cfg.Pause):
		}
	}
}

func (l *Load) one(kind string) (Outcome, string) {
	var path, body string
	switch kind {
	case "embed":
		path = "/embeddings"
		body = `{"model":"` + l.cfg.EmbedModel + `","input":"the quick brown fox"}`
	case "stream":
		path = "/chat/completions"
		body = `{"model":"` + l.cfg.ChatModel + `","stream":true,"max_tokens":8,"messages":[{"role":"user","content":"hello"}]}`
	default:
		path = "/chat/completions"
		body = `{"model":"` + l.cfg.ChatModel + `","max_tokens":8,"messages":[{"role":"user","content":"hello"}]}`
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, l.cfg.BaseURL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+l.cfg.APIKey)
	resp, err := l.client.Do(req)
	if err != nil {
		return transportOutcome(err, false)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return transportOutcome(err, true)
		}
		return classifyError(resp.StatusCode, b)
	}
	if kind == "stream" {
		return readStream(resp.Body)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return transportOutcome(err, true)
	}
	var r struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Data []struct {
			Embedding []float64 `json:"embedding"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return Other, fmt.Sprintf("200 with a body that is not JSON (%v): %.120q", err, b)
	}
	if kind == "embed" {
		if len(r.Data) == 0 || len(r.Data[0].Embedding) == 0 {
			return Other, fmt.Sprintf("200 embeddings without data: %.120q", b)
		}
		return OK, ""
	}
	if len(r.Choices) == 0 || r.Choices[0].Message.Content == "" || r.Choices[0].FinishReason == "" {
		return Other, fmt.Sprintf("200 completion without content/finish_reason: %.120q", b)
	}
	return OK, ""
}

// failureKind is a failure's class for Summary.ByKind: the outcome and,
// for an error answer, its status and OpenAI error type.
func failureKind(out Outcome, desc string) string {
	name := [4]string{"ok", "retryable", "cut", "other"}[out]
	if strings.HasPrefix(desc, "HTTP ") {
		if i := strings.IndexByte(desc, ':'); i > 0 {
			return name + " " + desc[:i]
		}
	}
	if strings.HasPrefix(desc, "stream error event") {
		return name + " stream error event"
	}
	return name
}

// readStream checks an SSE body: every data event is JSON or [DONE]; it ends
// with [DONE] (nothing after it but EOF) or with an error event.
func readStream(r io.Reader) (Outcome, string) {
	br := bufio.NewReader(r)
	events := 0
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				// The framing says the body is complete: a silently short stream.
				return Other, fmt.Sprintf("stream ended cleanly without [DONE] or an error event after %d events", events)
			}
			return transportOutcome(err, true)
		}
		line = bytes.TrimRight(line, "\r\n")
		if !bytes.HasPrefix(line, []byte("data:")) {
			continue // comments, event:, id:, blank separators
		}
		data := bytes.TrimSpace(line[5:])
		if string(data) == "[DONE]" {
			rest, err := io.ReadAll(br)
			if err != nil {
				// [DONE] arrived: the answer is complete; a broken close is harmless.
				return OK, ""
			}
			if len(bytes.TrimSpace(rest)) != 0 {
				return Other, fmt.Sprintf("data after [DONE]: %.80q", rest)
			}
			return OK, ""
		}
		events++
		var ev struct {
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(data, &ev); err != nil {
			return Other, fmt.Sprintf("stream event is not JSON: %.80q", data)
		}
		if ev.Error != nil {
			return Retryable, "stream error event: " + ev.Error.Message
		}
	}
}

// classifyError accepts an OpenAI-format error body with a retryable status.
func classifyError(status int, b []byte) (Outcome, string) {
	var e struct {
		Error *struct {
			Message string `json:"message"`
			Type    string `json:"type"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil || e.Error == nil || e.Error.Message == "" {
		return Other, fmt.Sprintf("HTTP %d not in OpenAI error format: %.120q", status, b)
	}
	switch {
	case status == 408 || status == 409 || status == 429 || status >= 500:
		return Retryable, fmt.Sprintf("HTTP %d %s: %s", status, e.Error.Type, e.Error.Message)
	}
	return Other, fmt.Sprintf("HTTP %d (not retryable) %s: %s", status, e.Error.Type, e.Error.Message)
}

// transportOutcome: a client timeout is a hang (Other); a broken
// connection is a Cut (the client sees it; it never gets a short body).
func transportOutcome(err error, afterHeaders bool) (Outcome, string) {
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout") {
		return Other, "hang (client timeout): " + err.Error()
	}
	where := "before the response"
	if afterHeaders {
		where = "mid-body"
	}
	return Cut, "connection broke " + where + ": " + err.Error()
}
