package edge

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/geniehive/geniehive/internal/jsonw"
	"github.com/geniehive/geniehive/internal/rawjson"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/routing"
)

// APIError is an error the edge answers in OpenAI's format. Every failure a
// handler meets — the edge's and the cluster API's — is turned into one by
// Classify, the one place that maps errors to HTTP statuses, and written by
// WriteError.
type APIError struct {
	Status  int
	Type    string // invalid_request_error, authentication_error, ...
	Code    string
	Param   string
	Message string
	// RetryAfter, in seconds, is sent as Retry-After when > 0.
	RetryAfter int
	// Body, when set, is an upstream's own error body relayed as is.
	Body []byte
}

func (e *APIError) Error() string { return e.Message }

func badRequest(code, param, msg string) *APIError {
	return &APIError{Status: 400, Type: "invalid_request_error", Code: code, Param: param, Message: msg}
}

var (
	errBadJSON      = badRequest("invalid_json", "", "request body is not valid JSON")
	errNoModel      = badRequest("missing_model", "model", "you must provide a model parameter (see GET /v1/models)")
	errModelType    = badRequest("invalid_model", "model", "model must be a string")
	errUnauthorized = &APIError{Status: 401, Type: "authentication_error", Code: "invalid_api_key",
		Message: "invalid or missing API key (send Authorization: Bearer <key> or X-Api-Key)"}
	errDuplicateKeyHeader = badRequest("duplicate_auth_header", "",
		"more than one Authorization or X-Api-Key header: send the key once")
	errForbiddenScope = &APIError{Status: 403, Type: "permission_error", Code: "insufficient_scope",
		Message: "this key's scope does not allow this endpoint"}
	errNotFound = &APIError{Status: 404, Type: "invalid_request_error", Code: "not_found",
		Message: "unknown endpoint; the OpenAI API is served under /v1 (see GET /v1/models)"}
	errMethod = &APIError{Status: 405, Type: "invalid_request_error", Code: "method_not_allowed",
		Message: "method not allowed"}
	errTooLarge = &APIError{Status: 413, Type: "invalid_request_error", Code: "request_too_large",
		Message: "request body exceeds this endpoint's size limit"}
	errHeadersTooLarge = &APIError{Status: 431, Type: "invalid_request_error", Code: "headers_too_large",
		Message: "request headers are too large"}
	errShuttingDown = &APIError{Status: 503, Type: "server_error", Code: "shutting_down",
		Message: "this edge is shutting down; retry", RetryAfter: 1}
	errSharedState = &APIError{Status: 503, Type: "server_error", Code: "state_unavailable",
		Message: "the shared routing state is unavailable; retry", RetryAfter: 1}
	errInternal = &APIError{Status: 500, Type: "server_error", Code: "internal_error",
		Message: "internal error"}
)

// upstreamError is a failed upstream attempt: a transport error or a non-2xx
// status before the first byte.
type upstreamError struct {
	service string
	status  int   // 0 for transport errors
	err     error // transport error
	body    []byte
}

func (e *upstreamError) Error() string {
	if e.err != nil {
		return "upstream " + e.service + ": " + e.err.Error()
	}
	return "upstream " + e.service + ": HTTP " + strconv.Itoa(e.status)
}

func (e *upstreamError) Unwrap() error { return e.err }

// retryable reports whether the next candidate should be tried: transport
// errors, timeouts, 5xx, 429 and 404 (model gone from that upstream).
func (e *upstreamError) retryable() bool {
	if e.err != nil {
		// A too-large answer would be as large again elsewhere.
		return !errors.Is(e.err, fasthttp.ErrBodyTooLarge)
	}
	return e.status >= 500 || e.status == 429 || e.status == 404 || e.status == 408
}

func isTimeout(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return false
}

// denied is a policy denial on its way to Classify: a decision, not an
// engine failure.
type denied struct{ d *policy.Denial }

func (e denied) Error() string { return e.d.Reason }

// Classify maps any error to the API error the client sees. It is total:
// an error it does not know is a 500 internal_error.
//
//   - *APIError: itself.
//   - request scan errors: 400 (invalid_json, invalid_request; a second
//     model member names param "model").
//   - a policy denial: its status (403 default) and code (policy_denied).
//   - policy engine errors (policy.Error): a timeout or a busy pool is 503
//     policy_unavailable with Retry-After (a retry may succeed); a closed
//     engine is 503 shutting_down; anything else 500 policy_error, with no
//     engine detail (it is logged).
//   - routing: *routing.NoCandidatesError 503, *routing.SaturatedError 429,
//     both with Retry-After; routing.ErrSharedState (a strategy's Redis
//     call failed: a failover, an outage) 503 state_unavailable with
//     Retry-After, also when that call timed out.
//   - upstream failures: see the cases below (502/503/504/429/4xx relayed).
//   - fasthttp's typed errors: ErrSmallBuffer 431, ErrBodyTooLarge 413,
//     timeouts 504 (408 while reading the request: see errorHandler).
func Classify(err error) *APIError {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae
	}
	switch {
	case errors.Is(err, rawjson.ErrSyntax):
		return errBadJSON
	case errors.Is(err, errNotObject):
		return badRequest("invalid_request", "", errNotObject.Error())
	case errors.Is(err, rawjson.ErrTooDeep):
		return badRequest("invalid_request", "", rawjson.ErrTooDeep.Error())
	case errors.Is(err, errDupModel):
		return badRequest("invalid_request", "model", errDupModel.Error())
	}
	var ce *canonError
	if errors.As(err, &ce) {
		return badRequest("invalid_request", ce.param, ce.msg)
	}
	var dn denied
	if errors.As(err, &dn) {
		return denialError(dn.d)
	}
	var pe *policy.Error
	if errors.As(err, &pe) {
		switch {
		case policy.Retryable(err):
			return &APIError{Status: 503, Type: "server_error", Code: "policy_unavailable", Message: "the policy engine is busy; retry", RetryAfter: 1}
		case errors.Is(err, policy.ErrClosed):
			return errShuttingDown
		}
		return &APIError{Status: 500, Type: "server_error", Code: "policy_error", Message: "policy evaluation failed"}
	}
	var nc *routing.NoCandidatesError
	if errors.As(err, &nc) {
		c := *nc
		c.Model = clipName(c.Model)
		return &APIError{Status: 503, Type: "server_error", Code: "no_available_upstream", Param: "model", Message: c.Error(), RetryAfter: 2}
	}
	var se *routing.SaturatedError
	if errors.As(err, &se) {
		ra := int(se.RetryAfter.Seconds() + 0.999)
		if ra < 1 {
			ra = 1
		}
		return &APIError{Status: 429, Type: "rate_limit_error", Code: "upstreams_saturated", Message: se.Error(), RetryAfter: ra}
	}
	if errors.Is(err, routing.ErrNoCandidates) {
		return &APIError{Status: 503, Type: "server_error", Code: "no_available_upstream", Message: err.Error(), RetryAfter: 2}
	}
	if errors.Is(err, routing.ErrSaturated) {
		return &APIError{Status: 429, Type: "rate_limit_error", Code: "upstreams_saturated", Message: err.Error(), RetryAfter: 1}
	}
	if errors.Is(err, routing.ErrSharedState) {
		// Redis failing over or down under round_robin / least_loaded; the
		// cause (addresses) goes to the log only.
		return errSharedState
	}
	var ue *upstreamError
	if errors.As(err, &ue) {
		switch {
		case ue.err != nil && isTimeout(ue.err):
			return &APIError{Status: 504, Type: "server_error", Code: "upstream_timeout", Message: "upstream " + ue.service + " timed out"}
		case errors.Is(ue.err, fasthttp.ErrBodyTooLarge):
			return &APIError{Status: 502, Type: "server_error", Code: "upstream_answer_too_large", Message: "upstream " + ue.service + "'s answer exceeds this endpoint's answer limit"}
		case ue.err != nil:
			// The transport error names addresses: it goes to the log only.
			return &APIError{Status: 502, Type: "server_error", Code: "upstream_unreachable", Message: "upstream " + ue.service + " is unreachable"}
		case ue.status == 429:
			return &APIError{Status: 429, Type: "rate_limit_error", Code: "upstream_rate_limited", Message: "upstream " + ue.service + " is busy", RetryAfter: 1}
		case ue.status == 503:
			return &APIError{Status: 503, Type: "server_error", Code: "upstream_unavailable", Message: "upstream " + ue.service + " is unavailable", RetryAfter: 2}
		case ue.status == 504 || ue.status == 408:
			return &APIError{Status: 504, Type: "server_error", Code: "upstream_timeout", Message: "upstream " + ue.service + " timed out"}
		case ue.status >= 500, ue.status == 401, ue.status == 403, ue.status == 404:
			return &APIError{Status: 502, Type: "server_error", Code: "upstream_error", Message: "upstream " + ue.service + " answered HTTP " + strconv.Itoa(ue.status)}
		case ue.status >= 400:
			// The upstream refused the request itself (bad parameters):
			// the client's fault, with the upstream's message when it
			// names nothing internal (never its document as is).
			msg := "upstream " + ue.service + " rejected the request"
			m, param := upstreamMessage(ue.body)
			if m != "" {
				msg += ": " + m
			}
			return &APIError{Status: ue.status, Type: "invalid_request_error", Code: "upstream_rejected", Param: param, Message: msg}
		}
		return &APIError{Status: 502, Type: "server_error", Code: "upstream_error", Message: "upstream " + ue.service + " answered HTTP " + strconv.Itoa(ue.status)}
	}
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &small):
		return errHeadersTooLarge
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return errTooLarge
	case isTimeout(err):
		return &APIError{Status: 504, Type: "server_error", Code: "timeout", Message: "timed out"}
	}
	return &APIError{Status: 500, Type: "server_error", Code: "internal_error", Message: "internal error"}
}

// denialError is the answer to a policy denial.
func denialError(d *policy.Denial) *APIError {
	st := d.Status
	if st == 0 {
		st = 403
	}
	typ := "invalid_request_error"
	if st == 403 {
		typ = "permission_error"
	}
	code := d.Code
	if code == "" {
		code = "policy_denied"
	}
	return &APIError{Status: st, Type: typ, Code: code, Param: "model", Message: d.Reason}
}

// WriteError answers the request with Classify(err) in OpenAI's format (the
// one error writer of the edge and the cluster API).
func WriteError(ctx *fasthttp.RequestCtx, err error) { writeError(ctx, Classify(err)) }

// appendErrorJSON appends {"error":{...}} for e.
func appendErrorJSON(dst []byte, e *APIError) []byte {
	dst = append(dst, `{"error":{"message":`...)
	dst = jsonw.AppendString(dst, e.Message)
	dst = append(dst, `,"type":`...)
	dst = jsonw.AppendString(dst, e.Type)
	dst = append(dst, `,"code":`...)
	if e.Code == "" {
		dst = append(dst, "null"...)
	} else {
		dst = jsonw.AppendString(dst, e.Code)
	}
	dst = append(dst, `,"param":`...)
	if e.Param == "" {
		dst = append(dst, "null"...)
	} else {
		dst = jsonw.AppendString(dst, e.Param)
	}
	return append(dst, "}}"...)
}

// writeError answers the request with e.
func writeError(ctx *fasthttp.RequestCtx, e *APIError) {
	ctx.Response.ResetBody()
	ctx.SetStatusCode(e.Status)
	ctx.SetContentType("application/json")
	if e.RetryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	if e.Status == 401 {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="geniehive"`)
	}
	if anthropicRoute(ctx) {
		writeAnthropicError(ctx, e)
		return
	}
	if len(e.Body) > 0 && isJSONObjectWithError(e.Body) {
		ctx.SetBody(e.Body)
		return
	}
	b := ctx.Response.BodyWriter()
	buf := getBuf()
	buf.B = appendErrorJSON(buf.B[:0], e)
	_, _ = b.Write(buf.B)
	putBuf(buf)
}

// isJSONObjectWithError reports whether an upstream body already is an
// OpenAI error document worth relaying.
func isJSONObjectWithError(b []byte) bool {
	i := rawjson.SkipWS(b, 0)
	return i < len(b) && b[i] == '{' && strings.Contains(string(b[:min(len(b), 64)]), `"error"`)
}
