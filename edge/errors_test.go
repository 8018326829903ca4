package edge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/geniehive/geniehive/internal/rawjson"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/routing"
)

// TestClassify is the table of the one error mapper: every kind of failure
// the edge and the cluster API meet, with the status, code and Retry-After
// the client sees.
func TestClassify(t *testing.T) {
	opErr := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	cases := []struct {
		name   string
		err    error
		status int
		code   string
		retry  int
		param  string
	}{
		{"api error", errNoModel, 400, "missing_model", 0, "model"},
		{"bad json", rawjson.ErrSyntax, 400, "invalid_json", 0, ""},
		{"not an object", errNotObject, 400, "invalid_request", 0, ""},
		{"too deep", rawjson.ErrTooDeep, 400, "invalid_request", 0, ""},
		{"two models", errDupModel, 400, "invalid_request", 0, "model"},
		{"two model parts", errDupModelPart, 400, "invalid_request", 0, "model"},
		{"denial default", denied{&policy.Denial{Reason: "no"}}, 403, "policy_denied", 0, "model"},
		{"denial own status", denied{&policy.Denial{Status: 400, Code: "max_tokens_exceeded", Reason: "too many"}}, 400, "max_tokens_exceeded", 0, "model"},
		{"eval timeout", &policy.Error{Code: policy.CodeTimeout, Err: context.DeadlineExceeded}, 503, "policy_unavailable", 1, ""},
		{"busy pool", fmt.Errorf("wasm: %w", &policy.Error{Code: policy.CodeBusy}), 503, "policy_unavailable", 1, ""},
		{"joined timeout", errors.Join(policy.ErrTimeout, errors.New("detail")), 503, "policy_unavailable", 1, ""},
		{"engine closed", policy.ErrClosed, 503, "shutting_down", 1, ""},
		{"bad output", errors.Join(policy.ErrOutput, errors.New("x")), 500, "policy_error", 0, ""},
		{"eval error", &policy.Error{Code: policy.CodeEval, Err: errors.New("1/0")}, 500, "policy_error", 0, ""},
		{"memory", policy.ErrMemory, 500, "policy_error", 0, ""},
		{"no candidates", &routing.NoCandidatesError{Model: "m"}, 503, "no_available_upstream", 2, "model"},
		{"saturated", &routing.SaturatedError{Model: "m", RetryAfter: 2500 * time.Millisecond}, 429, "upstreams_saturated", 3, ""},
		{"shared state", fmt.Errorf("%w: %w", routing.ErrSharedState, opErr), 503, "state_unavailable", 1, ""},
		{"shared state timeout", fmt.Errorf("%w: %w", routing.ErrSharedState, context.DeadlineExceeded), 503, "state_unavailable", 1, ""},
		{"upstream refused", &upstreamError{service: "s", err: opErr}, 502, "upstream_unreachable", 0, ""},
		{"upstream timeout", &upstreamError{service: "s", err: fasthttp.ErrTimeout}, 504, "upstream_timeout", 0, ""},
		{"upstream 503", &upstreamError{service: "s", status: 503}, 503, "upstream_unavailable", 2, ""},
		{"upstream 429", &upstreamError{service: "s", status: 429}, 429, "upstream_rate_limited", 1, ""},
		{"upstream 500", &upstreamError{service: "s", status: 500}, 502, "upstream_error", 0, ""},
		{"upstream 400", &upstreamError{service: "s", status: 400}, 400, "upstream_rejected", 0, ""},
		{"header too big", &fasthttp.ErrSmallBuffer{}, 431, "headers_too_large", 0, ""},
		{"body too big", fasthttp.ErrBodyTooLarge, 413, "request_too_large", 0, ""},
		{"deadline", context.DeadlineExceeded, 504, "timeout", 0, ""},
		{"unknown", errors.New("secret detail"), 500, "internal_error", 0, ""},
	}
	for _, c := range cases {
		e := Classify(c.err)
		if e.Status != c.status || e.Code != c.code || e.RetryAfter != c.retry || e.Param != c.param {
			t.Errorf("%s: got %d %s retry=%d param=%q, want %d %s retry=%d param=%q", c.name, e.Status, e.Code, e.RetryAfter, e.Param, c.status, c.code, c.retry, c.param)
		}
		if e.Message == "" || e.Type == "" {
			t.Errorf("%s: empty message or type: %+v", c.name, e)
		}
	}
	if e := Classify(errors.New("secret detail")); e.Message == "secret detail" {
		t.Error("an unknown error's text reaches the client")
	}
}

// TestWriteErrorFormat: the one writer sends the OpenAI error document and
// Retry-After.
func TestWriteErrorFormat(t *testing.T) {
	var ctx fasthttp.RequestCtx
	WriteError(&ctx, policy.ErrBusy)
	if ctx.Response.StatusCode() != 503 || string(ctx.Response.Header.Peek("Retry-After")) != "1" {
		t.Fatalf("%d Retry-After=%q", ctx.Response.StatusCode(), ctx.Response.Header.Peek("Retry-After"))
	}
	want := `{"error":{"message":"the policy engine is busy; retry","type":"server_error","code":"policy_unavailable","param":null}}`
	if got := string(ctx.Response.Body()); got != want {
		t.Fatalf("body %s, want %s", got, want)
	}
}

// busyEngine fails every evaluation the way a saturated Wasm pool does.
type busyEngine struct{ err error }

func (busyEngine) Name() string                                                  { return "busy" }
func (busyEngine) Version() string                                               { return "v" }
func (busyEngine) SetData(context.Context, *policy.Data) error                   { return nil }
func (busyEngine) Close() error                                                  { return nil }
func (b busyEngine) Eval(context.Context, *policy.Input, *policy.Decision) error { return b.err }

// TestEngineErrorsThroughTheHandler: an evaluation timeout or a busy pool
// is a retryable 503 with Retry-After, not a 500 (defect 5).
func TestEngineErrorsThroughTheHandler(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		code   string
	}{
		{&policy.Error{Code: policy.CodeBusy, Err: context.DeadlineExceeded}, 503, "policy_unavailable"},
		{policy.ErrTimeout, 503, "policy_unavailable"},
		{policy.ErrOutput, 500, "policy_error"},
	} {
		s := newStack(t, func(_ *Config, d *Deps) { d.Engine = busyEngine{c.err} })
		resp, body := do(t, "POST", s.url+"/v1/chat/completions", testKey, []byte(`{"model":"coder","messages":[{"role":"user","content":"hi"}]}`), nil)
		if resp.StatusCode != c.status || !contains(body, c.code) {
			t.Fatalf("%v: %d %s, want %d %s", c.err, resp.StatusCode, body, c.status, c.code)
		}
		if c.status == 503 && resp.Header.Get("Retry-After") == "" {
			t.Fatalf("%v: no Retry-After", c.err)
		}
	}
}
