package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/geniehive/geniehive/fleet"
)

// BenchReport is the result of running a workload against one model: what
// `geniehive bench run` writes and `geniehive bench ingest` posts unchanged
// to POST /v1/cluster/benchmarks. The format is routing/BENCH_REPORT.md;
// the edge refuses unknown fields, so what is only for people (the checks
// and answers of each sample) goes to a separate details file
// (WriteDetails).
type BenchReport struct {
	Workload string `json:"workload"`
	// Model is the asset that answered (X-GenieHive-Model) when every
	// answered sample names the same one, else the model requested.
	Model string `json:"model"`
	// Service is the service that answered (X-GenieHive-Service), when
	// every answered sample names the same one.
	Service   string        `json:"service,omitempty"`
	StartedAt time.Time     `json:"started_at"`
	Samples   []BenchResult `json:"samples"`
	Summary   BenchSummary  `json:"summary"`
}

// BenchResult is one answered (or failed) sample. The fields tagged "-"
// are in the details file only.
type BenchResult struct {
	PromptID     string    `json:"prompt_id"`
	LatencyMS    float64   `json:"latency_ms"`
	TTFTMS       float64   `json:"ttft_ms"`
	TokensPerSec float64   `json:"tokens_per_sec"`
	Quality      float64   `json:"quality"` // 0..1
	OK           bool      `json:"ok"`      // answered (quality aside)
	Error        string    `json:"error,omitempty"`
	At           time.Time `json:"at"`
	// Workload and Model may repeat the report's; a mismatch is refused.
	Workload string `json:"workload,omitempty"`
	Model    string `json:"model,omitempty"`

	Asset            string  `json:"-"`
	Service          string  `json:"-"`
	CompletionTokens int     `json:"-"`
	Checks           []Check `json:"-"`
	Answer           string  `json:"-"`
}

// BenchSummary aggregates a report's samples (answered samples only for
// latency, TTFT and tokens/s). Informational: the edge recomputes its own.
type BenchSummary struct {
	Samples      int     `json:"samples"`
	OK           int     `json:"ok"`
	Errors       int     `json:"errors"`
	Quality      float64 `json:"quality"` // mean over all samples; failures count 0
	LatencyP50MS float64 `json:"latency_ms_p50"`
	LatencyP90MS float64 `json:"latency_ms_p90"`
	TTFTP50MS    float64 `json:"ttft_ms_p50"`
	TokensPerSec float64 `json:"tokens_per_sec"` // mean
	// RequestedModel is the model name sent (an asset or a role).
	RequestedModel string    `json:"requested_model,omitempty"`
	Endpoint       string    `json:"endpoint,omitempty"`
	FinishedAt     time.Time `json:"finished_at"`
}

// BenchOptions configures RunBench.
type BenchOptions struct {
	// Endpoint is the base URL of the edge or an upstream.
	Endpoint string
	Model    string
	APIKey   string
	// Repeat runs every sample this many times (default 1).
	Repeat int
	// Timeout per sample (default 2m).
	Timeout  time.Duration
	Progress io.Writer
	Client   *http.Client
}

// RunBench sends every sample of w to the endpoint (streaming, one at a
// time), scores the answers and returns the report. A failed sample is
// recorded with its error and quality 0; RunBench fails only when it
// cannot run at all.
func RunBench(ctx context.Context, w *Workload, o BenchOptions) (*BenchReport, error) {
	if o.Endpoint == "" || o.Model == "" {
		return nil, errors.New("bench: endpoint and model are required")
	}
	if o.Repeat <= 0 {
		o.Repeat = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	endpoint := strings.TrimRight(o.Endpoint, "/")
	rep := &BenchReport{Workload: w.Name, Model: o.Model, StartedAt: time.Now().UTC()}
	u := endpoint
	if !strings.HasSuffix(u, "/v1") {
		u += "/v1"
	}
	u += "/chat/completions"
	total := len(w.Samples) * o.Repeat
	i := 0
	for r := 0; r < o.Repeat; r++ {
		for si := range w.Samples {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			s := &w.Samples[si]
			res := benchOne(ctx, o, u, w, s)
			res.Error = clip(res.Error, 1000)
			i++
			if o.Progress != nil {
				status := fmt.Sprintf("quality %.2f", res.Quality)
				if !res.OK {
					status = "error: " + res.Error
				}
				fmt.Fprintf(o.Progress, "[%d/%d] %-28s %7.0fms  ttft %6.0fms  %6.1f tok/s  %s\n", i, total, s.ID, res.LatencyMS, res.TTFTMS, res.TokensPerSec, status)
			}
			rep.Samples = append(rep.Samples, res)
		}
	}
	rep.summarize()
	rep.Summary.RequestedModel = o.Model
	rep.Summary.Endpoint = endpoint
	rep.Summary.FinishedAt = time.Now().UTC()
	return rep, nil
}

func (rep *BenchReport) summarize() {
	var lat, ttft []float64
	var q, tps float64
	var ntps int
	s := BenchSummary{Samples: len(rep.Samples)}
	assets, services := map[string]bool{}, map[string]bool{}
	for _, r := range rep.Samples {
		q += r.Quality
		if !r.OK {
			s.Errors++
			continue
		}
		s.OK++
		lat = append(lat, r.LatencyMS)
		ttft = append(ttft, r.TTFTMS)
		if r.TokensPerSec > 0 {
			tps += r.TokensPerSec
			ntps++
		}
		assets[r.Asset] = true
		services[r.Service] = true
	}
	if s.Samples > 0 {
		s.Quality = round3(q / float64(s.Samples))
	}
	s.LatencyP50MS = round1(nearestRank(lat, 0.5))
	s.LatencyP90MS = round1(nearestRank(lat, 0.9))
	s.TTFTP50MS = round1(nearestRank(ttft, 0.5))
	if ntps > 0 {
		s.TokensPerSec = round1(tps / float64(ntps))
	}
	rep.Summary = s
	if len(assets) == 1 {
		for a := range assets {
			if a != "" {
				rep.Model = a
			}
		}
	}
	if len(services) == 1 {
		for sv := range services {
			rep.Service = sv
		}
	}
}

// nearestRank is the exact nearest-rank percentile of vs (0 when empty).
func nearestRank(vs []float64, q float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	r := int(math.Ceil(q * float64(len(s))))
	if r < 1 {
		r = 1
	}
	return s[r-1]
}

type chatChunk struct {
	Choices []struct {
		Delta struct {
			Content          string `json:"content"`
			ReasoningContent string `json:"reasoning_content"`
			Reasoning        string `json:"reasoning"`
		} `json:"delta"`
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
	} `json:"choices"`
	Usage *struct {
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func benchOne(ctx context.Context, o BenchOptions, url string, w *Workload, s *Sample) BenchResult {
	res := BenchResult{PromptID: s.ID, At: time.Now().UTC()}
	msgs := []map[string]string{}
	sys := w.System
	if s.System != "" {
		sys = s.System
	}
	if sys != "" {
		msgs = append(msgs, map[string]string{"role": "system", "content": sys})
	}
	msgs = append(msgs, map[string]string{"role": "user", "content": s.Prompt})
	body := map[string]any{
		"model": o.Model, "messages": msgs, "max_tokens": w.MaxTokens, "stream": true,
		"stream_options": map[string]any{"include_usage": true},
	}
	if w.Temperature != nil {
		body["temperature"] = *w.Temperature
	}
	b, _ := json.Marshal(body)
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		res.Error = err.Error()
		return res
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	if o.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+o.APIKey)
	}
	start := time.Now()
	resp, err := o.Client.Do(req)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer resp.Body.Close()
	res.Service = resp.Header.Get("X-GenieHive-Service")
	res.Asset = resp.Header.Get("X-GenieHive-Model")
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		var e chatChunk
		if json.Unmarshal(msg, &e) == nil && e.Error != nil {
			res.Error = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, e.Error.Message)
		} else {
			res.Error = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, clip(strings.TrimSpace(string(msg)), 200))
		}
		res.LatencyMS = ms(time.Since(start))
		return res
	}
	var text strings.Builder
	var first time.Time
	chunks, tokens := 0, 0
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		// The server ignored stream: one JSON answer.
		var c chatChunk
		if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || len(c.Choices) == 0 {
			res.Error = "unreadable answer"
			return res
		}
		first = time.Now()
		text.WriteString(c.Choices[0].Message.Content)
		if c.Usage != nil {
			tokens = c.Usage.CompletionTokens
		}
	} else {
		r := NewSSEReader(resp.Body)
		for {
			d, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				if errors.Is(err, ErrStreamError) {
					var c chatChunk
					if json.Unmarshal(d, &c) == nil && c.Error != nil {
						err = errors.New(c.Error.Message)
					}
				}
				res.Error = err.Error()
				res.LatencyMS = ms(time.Since(start))
				return res
			}
			var c chatChunk
			if err := json.Unmarshal(d, &c); err != nil {
				res.Error = "bad chunk: " + err.Error()
				return res
			}
			if c.Usage != nil {
				tokens = c.Usage.CompletionTokens
			}
			for _, ch := range c.Choices {
				t := ch.Delta.Content + ch.Delta.ReasoningContent + ch.Delta.Reasoning
				if t == "" {
					continue
				}
				if first.IsZero() {
					first = time.Now()
				}
				chunks++
				text.WriteString(ch.Delta.Content)
			}
		}
	}
	end := time.Now()
	if first.IsZero() {
		first = end
	}
	res.OK = true
	res.LatencyMS = ms(end.Sub(start))
	res.TTFTMS = ms(first.Sub(start))
	if tokens == 0 {
		tokens = chunks
	}
	res.CompletionTokens = tokens
	if gen := end.Sub(first); tokens > 1 && gen > 0 {
		res.TokensPerSec = round1(float64(tokens-1) / gen.Seconds())
	}
	res.Quality, res.Checks = s.Score(text.String())
	res.Quality = round3(res.Quality)
	res.Answer = clip(text.String(), 500)
	return res
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

// Validate checks a report before it is sent anywhere, with the rules of
// routing/BENCH_REPORT.md that need no registry: names, sizes, figures in
// range, timestamps.
//
// # Errors
// A message naming the first problem found and its field.
func (rep *BenchReport) Validate() error {
	if err := checkWorkloadName(rep.Workload); err != nil {
		return err
	}
	if strings.TrimSpace(rep.Model) == "" {
		return errors.New("model: missing")
	}
	if rep.StartedAt.IsZero() {
		return errors.New("started_at: missing")
	}
	if rep.StartedAt.After(time.Now().Add(5 * time.Minute)) {
		return errors.New("started_at: in the future")
	}
	if len(rep.Samples) == 0 {
		return errors.New("samples: none")
	}
	if len(rep.Samples) > 10000 {
		return errors.New("samples: more than 10,000")
	}
	bad := func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) || v < 0 }
	for i, s := range rep.Samples {
		where := fmt.Sprintf("samples[%d]", i)
		switch {
		case s.PromptID == "" || len(s.PromptID) > 256:
			return fmt.Errorf("%s.prompt_id: must be 1-256 bytes", where)
		case bad(s.LatencyMS):
			return fmt.Errorf("%s.latency_ms: must be finite and ≥ 0", where)
		case bad(s.TTFTMS):
			return fmt.Errorf("%s.ttft_ms: must be finite and ≥ 0", where)
		case bad(s.TokensPerSec):
			return fmt.Errorf("%s.tokens_per_sec: must be finite and ≥ 0", where)
		case s.TTFTMS > s.LatencyMS:
			return fmt.Errorf("%s.ttft_ms: %.1f exceeds latency_ms %.1f", where, s.TTFTMS, s.LatencyMS)
		case math.IsNaN(s.Quality) || s.Quality < 0 || s.Quality > 1:
			return fmt.Errorf("%s.quality: %v is outside 0..1", where, s.Quality)
		case !s.OK && s.Quality != 0:
			return fmt.Errorf("%s.quality: a failed sample scores 0", where)
		case len(s.Error) > 1024:
			return fmt.Errorf("%s.error: longer than 1,024 bytes", where)
		case s.Workload != "" && s.Workload != rep.Workload:
			return fmt.Errorf("%s.workload: %q is not the report's %q", where, s.Workload, rep.Workload)
		case s.Model != "" && s.Model != rep.Model:
			return fmt.Errorf("%s.model: %q is not the report's %q", where, s.Model, rep.Model)
		}
	}
	return nil
}

func checkWorkloadName(n string) error {
	if n == "" || len(n) > 128 {
		return errors.New("workload: must be 1-128 bytes")
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("workload: %q has characters other than A-Z a-z 0-9 . _ -", n)
		}
	}
	return nil
}

// StateSamples converts the report into the samples stored in Redis.
func (rep *BenchReport) StateSamples() []fleet.BenchSample {
	out := make([]fleet.BenchSample, 0, len(rep.Samples))
	for _, s := range rep.Samples {
		out = append(out, fleet.BenchSample{
			Workload: rep.Workload, Model: rep.Model, Service: rep.Service, Prompt: s.PromptID,
			LatencyMS: s.LatencyMS, TTFTMS: s.TTFTMS, TokensPerSec: s.TokensPerSec,
			Quality: s.Quality, OK: s.OK, At: s.At,
		})
	}
	return out
}

// BenchDetail is what a person wants to see of one sample beyond the
// figures: who answered, the answer and each check.
type BenchDetail struct {
	PromptID         string  `json:"prompt_id"`
	Asset            string  `json:"asset,omitempty"`
	Service          string  `json:"service,omitempty"`
	CompletionTokens int     `json:"completion_tokens"`
	Quality          float64 `json:"quality"`
	Error            string  `json:"error,omitempty"`
	Checks           []Check `json:"checks,omitempty"`
	Answer           string  `json:"answer,omitempty"`
}

// WriteDetails writes each sample's answer and checks to path (not part
// of the ingested report).
func (rep *BenchReport) WriteDetails(path string) error {
	ds := make([]BenchDetail, 0, len(rep.Samples))
	for _, s := range rep.Samples {
		ds = append(ds, BenchDetail{PromptID: s.PromptID, Asset: s.Asset, Service: s.Service,
			CompletionTokens: s.CompletionTokens, Quality: s.Quality, Error: s.Error, Checks: s.Checks, Answer: s.Answer})
	}
	b, err := json.MarshalIndent(map[string]any{"workload": rep.Workload, "model": rep.Model, "samples": ds}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// WriteJSON writes the report to path.
func (rep *BenchReport) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadBenchReport reads and validates a report file.
//
// # Errors
// Unreadable file, invalid JSON (unknown fields included), or Validate's.
func ReadBenchReport(path string) (*BenchReport, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseBenchReport(b)
}

// ParseBenchReport decodes (strictly) and validates a report.
func ParseBenchReport(b []byte) (*BenchReport, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var rep BenchReport
	if err := dec.Decode(&rep); err != nil {
		return nil, fmt.Errorf("not a benchmark report: %w", err)
	}
	for i := range rep.Samples {
		if rep.Samples[i].At.IsZero() {
			rep.Samples[i].At = rep.StartedAt
		}
	}
	if err := rep.Validate(); err != nil {
		return nil, fmt.Errorf("invalid benchmark report: %w", err)
	}
	return &rep, nil
}

// IngestResult is the edge's answer to a posted report.
type IngestResult struct {
	Status int
	Body   []byte
}

// Ingest validates rep and posts it to edge's POST /v1/cluster/benchmarks.
//
// # Errors
// A report that fails Validate (nothing is sent), a transport error, or a
// non-2xx answer (its OpenAI-format message).
func Ingest(ctx context.Context, edge, apiKey string, rep *BenchReport, client *http.Client) (*IngestResult, error) {
	if err := rep.Validate(); err != nil {
		return nil, fmt.Errorf("invalid benchmark report, not sent: %w", err)
	}
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	b, _ := json.Marshal(rep)
	u := strings.TrimRight(edge, "/")
	u = strings.TrimSuffix(u, "/v1") + "/v1/cluster/benchmarks"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	res := &IngestResult{Status: resp.StatusCode, Body: body}
	if resp.StatusCode/100 != 2 {
		var e chatChunk
		if json.Unmarshal(body, &e) == nil && e.Error != nil {
			return res, fmt.Errorf("edge refused the report (HTTP %d): %s", resp.StatusCode, e.Error.Message)
		}
		return res, fmt.Errorf("edge refused the report (HTTP %d): %s", resp.StatusCode, clip(strings.TrimSpace(string(body)), 300))
	}
	return res, nil
}
