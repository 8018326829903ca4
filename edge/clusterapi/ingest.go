package clusterapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policies"
)

// BenchReport is the benchmark report format (routing/BENCH_REPORT.md).
type BenchReport struct {
	Workload  string          `json:"workload"`
	Model     string          `json:"model"`
	Service   string          `json:"service,omitempty"`
	StartedAt *time.Time      `json:"started_at"`
	Samples   []ReportSample  `json:"samples"`
	Summary   json.RawMessage `json:"summary,omitempty"`
}

// ReportSample is one measured answer in a BenchReport.
type ReportSample struct {
	PromptID     string     `json:"prompt_id"`
	LatencyMS    *float64   `json:"latency_ms"`
	TTFTMS       float64    `json:"ttft_ms"`
	TokensPerSec float64    `json:"tokens_per_sec"`
	Quality      *float64   `json:"quality"`
	OK           *bool      `json:"ok"`
	Error        string     `json:"error,omitempty"`
	Workload     string     `json:"workload,omitempty"`
	Model        string     `json:"model,omitempty"`
	At           *time.Time `json:"at,omitempty"`
}

// MaxReportSamples bounds one report.
const MaxReportSamples = 10000

// reportError is a 400 with a field and a code.
type reportError struct{ code, param, msg string }

func (e *reportError) Error() string { return e.msg }

func bad(code, param, msg string) error { return &reportError{code, param, msg} }

// IngestResponse is the answer of a successful ingest.
type IngestResponse struct {
	Object   string             `json:"object"`
	Model    string             `json:"model"`
	Workload string             `json:"workload"`
	Accepted int                `json:"accepted"`
	Summary  fleet.BenchSummary `json:"summary"`
}

func (a *API) ingest(ctx *fasthttp.RequestCtx) {
	body := ctx.PostBody()
	if len(body) > a.d.MaxBodyBytes {
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge, "invalid_request_error", "too_large", "",
			"benchmark report of "+strconv.Itoa(len(body))+" bytes exceeds "+strconv.Itoa(a.d.MaxBodyBytes))
		return
	}
	samples, err := ValidateReport(body, a.d.Snapshot(), time.Now())
	if err != nil {
		var re *reportError
		if errors.As(err, &re) {
			writeError(ctx, fasthttp.StatusBadRequest, "invalid_request_error", re.code, re.param, "benchmark report refused, nothing stored: "+re.msg)
		} else {
			writeError(ctx, fasthttp.StatusBadRequest, "invalid_request_error", "invalid_value", "", "benchmark report refused, nothing stored: "+err.Error())
		}
		return
	}
	c, cancel := opCtx(ctx)
	defer cancel()
	if err := a.d.Store.AddBenchSamples(c, samples, a.d.BenchKeep); err != nil {
		if errors.Is(err, fleet.ErrInvalid) {
			writeError(ctx, fasthttp.StatusBadRequest, "invalid_request_error", "invalid_value", "", "benchmark report refused, nothing stored: "+err.Error())
			return
		}
		writeError(ctx, fasthttp.StatusServiceUnavailable, "server_error", "redis_unavailable", "", "storing the benchmark failed: "+err.Error())
		return
	}
	sum := fleet.BenchSummary{Model: samples[0].Model, Workload: samples[0].Workload, Samples: len(samples)}
	for _, s := range samples {
		sum.Quality += s.Quality
		sum.LatencyMS += s.LatencyMS
		sum.TTFTMS += s.TTFTMS
		sum.TokensPerSec += s.TokensPerSec
	}
	n := float64(len(samples))
	sum.Quality, sum.LatencyMS, sum.TTFTMS, sum.TokensPerSec = sum.Quality/n, sum.LatencyMS/n, sum.TTFTMS/n, sum.TokensPerSec/n
	a.d.Logger.Info("benchmark ingested", "model", sum.Model, "workload", sum.Workload, "samples", len(samples))
	writeJSON(ctx, fasthttp.StatusOK, IngestResponse{Object: "benchmark.ingest", Model: sum.Model, Workload: sum.Workload, Accepted: len(samples), Summary: sum})
}

func validWorkload(w string) bool {
	if w == "" || len(w) > 128 {
		return false
	}
	for i := 0; i < len(w); i++ {
		c := w[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// ValidateReport parses and checks a benchmark report against the snapshot
// and returns the samples to store (model canonicalised to the asset name).
//
// # Errors
// A *reportError (code, param, message) for the first problem found.
func ValidateReport(body []byte, snap *fleet.Snapshot, now time.Time) ([]fleet.BenchSample, error) {
	var r BenchReport
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, bad("invalid_json", "", "not a benchmark report: "+err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, bad("invalid_json", "", "trailing data after the report")
	}
	if r.Workload == "" {
		return nil, bad("missing_field", "workload", "workload is required")
	}
	if !validWorkload(r.Workload) {
		return nil, bad("invalid_value", "workload", "workload "+strconv.Quote(r.Workload)+" must be 1-128 letters, digits, '.', '_' or '-'")
	}
	if r.Model == "" {
		return nil, bad("missing_field", "model", "model is required")
	}
	asset, err := canonicalModel(snap, r.Model)
	if err != nil {
		return nil, err
	}
	if r.Service != "" {
		s, ok := snap.ByID[r.Service]
		if !ok {
			return nil, bad("unknown_service", "service", "service "+strconv.Quote(r.Service)+" is not registered")
		}
		if _, ok := s.Asset(asset); !ok {
			return nil, bad("model_mismatch", "service", "service "+r.Service+" does not offer "+asset)
		}
	}
	if r.StartedAt == nil {
		return nil, bad("missing_field", "started_at", "started_at is required (RFC 3339)")
	}
	if r.StartedAt.After(now.Add(5 * time.Minute)) {
		return nil, bad("invalid_value", "started_at", "started_at "+r.StartedAt.Format(time.RFC3339)+" is in the future")
	}
	if len(r.Summary) > 0 && !bytes.HasPrefix(bytes.TrimSpace(r.Summary), []byte("{")) && string(bytes.TrimSpace(r.Summary)) != "null" {
		return nil, bad("invalid_value", "summary", "summary must be an object")
	}
	if len(r.Samples) == 0 {
		return nil, bad("missing_field", "samples", "samples must hold at least one sample")
	}
	if len(r.Samples) > MaxReportSamples {
		return nil, bad("too_many_samples", "samples", strconv.Itoa(len(r.Samples))+" samples; at most "+strconv.Itoa(MaxReportSamples)+" per report")
	}
	out := make([]fleet.BenchSample, len(r.Samples))
	for i := range r.Samples {
		s := &r.Samples[i]
		p := "samples[" + strconv.Itoa(i) + "]."
		switch {
		case s.PromptID == "" || len(s.PromptID) > 256:
			return nil, bad("missing_field", p+"prompt_id", p+"prompt_id is required (1-256 bytes)")
		case s.Workload != "" && s.Workload != r.Workload:
			return nil, bad("workload_mismatch", p+"workload", p+"workload "+strconv.Quote(s.Workload)+" differs from the report's "+strconv.Quote(r.Workload))
		case s.Model != "" && s.Model != r.Model && s.Model != asset:
			return nil, bad("model_mismatch", p+"model", p+"model "+strconv.Quote(s.Model)+" differs from the report's "+strconv.Quote(r.Model))
		case s.LatencyMS == nil:
			return nil, bad("missing_field", p+"latency_ms", p+"latency_ms is required")
		case !finite(*s.LatencyMS) || *s.LatencyMS < 0:
			return nil, bad("invalid_value", p+"latency_ms", p+"latency_ms must be a finite number >= 0")
		case !finite(s.TTFTMS) || s.TTFTMS < 0 || s.TTFTMS > *s.LatencyMS:
			return nil, bad("invalid_value", p+"ttft_ms", p+"ttft_ms must be >= 0 and <= latency_ms")
		case !finite(s.TokensPerSec) || s.TokensPerSec < 0:
			return nil, bad("invalid_value", p+"tokens_per_sec", p+"tokens_per_sec must be >= 0")
		case s.Quality == nil:
			return nil, bad("missing_field", p+"quality", p+"quality is required (0..1)")
		case !finite(*s.Quality) || *s.Quality < 0 || *s.Quality > 1:
			return nil, bad("invalid_value", p+"quality", p+"quality "+strconv.FormatFloat(*s.Quality, 'g', -1, 64)+" is outside 0..1")
		case s.OK == nil:
			return nil, bad("missing_field", p+"ok", p+"ok is required")
		case len(s.Error) > 1024:
			return nil, bad("invalid_value", p+"error", p+"error is longer than 1024 bytes")
		}
		at := *r.StartedAt
		if s.At != nil {
			at = *s.At
		}
		out[i] = fleet.BenchSample{Workload: r.Workload, Model: asset, Service: r.Service, Prompt: s.PromptID,
			LatencyMS: *s.LatencyMS, TTFTMS: s.TTFTMS, TokensPerSec: s.TokensPerSec, Quality: *s.Quality, OK: *s.OK, At: at}
	}
	return out, nil
}

// canonicalModel maps a report's model to exactly one live asset name.
func canonicalModel(snap *fleet.Snapshot, model string) (string, error) {
	if _, ok := snap.AssetServices[model]; ok {
		return model, nil
	}
	idx := policies.BuildModelIndex(snap.AssetServices)
	names := idx[policies.NormalizeModel(model)]
	switch len(names) {
	case 1:
		return names[0], nil
	case 0:
		return "", bad("unknown_model", "model", "model "+strconv.Quote(model)+" is not an asset of any registered service")
	}
	return "", bad("ambiguous_model", "model", "model "+strconv.Quote(model)+" matches several assets ("+joinN(names, 5)+"); name one exactly")
}

func joinN(s []string, n int) string {
	out := ""
	for i, v := range s {
		if i == n {
			return out + ", ..."
		}
		if i > 0 {
			out += ", "
		}
		out += v
	}
	return out
}
