package dialect

import (
	"strconv"

	"github.com/geniehive/geniehive/internal/jsonw"
)

// Error is a request the translator refuses, with the HTTP status and the
// OpenAI-style type and code the edge answers it with (AppendError writes
// it in the client's dialect).
type Error struct {
	Status  int
	Type    string // OpenAI error type: invalid_request_error, ...
	Code    string // stable: one of the Code* constants
	Param   string // the offending member, when there is one
	Message string
}

func (e *Error) Error() string { return e.Message }

// Is matches errors by Code, so errors.Is(err, &Error{Code: CodeStateful})
// holds for every stateful refusal whatever its message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Stable error codes.
const (
	CodeInvalidJSON     = "invalid_json"    // the body is not JSON, or not an object
	CodeInvalidRequest  = "invalid_request" // a member has the wrong type or value
	CodeMissing         = "missing_required_parameter"
	CodeDuplicate       = "duplicate_member"       // a member the edge reads appears twice (any letter case)
	CodeStateful        = "stateful_not_supported" // previous_response_id, conversation, background, item_reference
	CodeUnsupportedTool = "unsupported_tool"       // a built-in (server-side) tool
	CodeUnsupported     = "unsupported_parameter"  // a value with no Chat Completions equivalent
)

func invalid(code, param, msg string) *Error {
	return &Error{Status: 400, Type: "invalid_request_error", Code: code, Param: param, Message: msg}
}

// Refusals whose text never varies.
var (
	errNotJSON   = invalid(CodeInvalidJSON, "", "request body is not valid JSON")
	errNotObject = invalid(CodeInvalidJSON, "", "request body must be a JSON object")
	errNoModel   = invalid(CodeMissing, "model", "you must provide a model parameter")
	errStateful  = invalid(CodeStateful, "previous_response_id",
		"stateful Responses are not supported: GenieHive stores no responses, so previous_response_id cannot be resolved; send the whole conversation in input (store: false)")
	errConversation = invalid(CodeStateful, "conversation",
		"stateful Responses are not supported: GenieHive stores no conversations; send the whole conversation in input")
	errStore = invalid(CodeStateful, "store",
		"stateful Responses are not supported: GenieHive stores no responses; send store: false (or leave it out) and the whole conversation in input")
	errBackground = invalid(CodeStateful, "background",
		"background Responses are not supported: GenieHive stores no responses to poll; use stream or a plain request")
	errMaxTokens = invalid(CodeMissing, "max_tokens", "max_tokens: field required (a positive integer)")
)

// ErrorInfo is an error to write in a client's dialect.
type ErrorInfo struct {
	Status  int    // HTTP status the edge chose
	Type    string // OpenAI error type (invalid_request_error, server_error, ...)
	Code    string // OpenAI error code, may be empty
	Param   string // may be empty
	Message string
	// RequestID, when set, is written as Anthropic's request_id.
	RequestID string
}

// FromError is the ErrorInfo of a translator refusal.
func FromError(e *Error) ErrorInfo {
	return ErrorInfo{Status: e.Status, Type: e.Type, Code: e.Code, Param: e.Param, Message: e.Message}
}

// AnthropicType maps an HTTP status to Anthropic's error type and the
// status Anthropic would answer with (docs.claude.com/en/api/errors): 400
// invalid_request_error (also every other 4xx not listed), 401
// authentication_error, 402 billing_error, 403 permission_error, 404
// not_found_error, 413 request_too_large, 429 rate_limit_error, 500 and
// other 5xx api_error, 504 timeout_error, and 503 — no capacity right now —
// as 529 overloaded_error, the status Claude Code backs off and retries on.
func AnthropicType(status int) (int, string) {
	switch status {
	case 401:
		return status, "authentication_error"
	case 402:
		return status, "billing_error"
	case 403:
		return status, "permission_error"
	case 404:
		return status, "not_found_error"
	case 413:
		return status, "request_too_large"
	case 429:
		return status, "rate_limit_error"
	case 503, 529:
		return 529, "overloaded_error"
	case 504:
		return status, "timeout_error"
	}
	if status >= 500 {
		return status, "api_error"
	}
	return status, "invalid_request_error"
}

// AppendError appends the error body for a client of api and returns the
// HTTP status to answer with. OpenAI dialects (chat, responses,
// completions) get {"error":{"message","type","param","code"}} with the
// status unchanged; Anthropic ones get {"type":"error","error":{"type",
// "message"}[,"request_id"]} with the status and type AnthropicType gives.
func AppendError(dst []byte, api API, e ErrorInfo) (int, []byte) {
	if api.Anthropic() {
		status, typ := AnthropicType(e.Status)
		dst = append(dst, `{"type":"error","error":`...)
		dst = appendAnthropicError(dst, typ, e.Message)
		if e.RequestID != "" {
			dst = append(dst, `,"request_id":`...)
			dst = jsonw.AppendString(dst, e.RequestID)
		}
		return status, append(dst, '}')
	}
	dst = append(dst, `{"error":`...)
	dst = appendOpenAIError(dst, e)
	return e.Status, append(dst, '}')
}

func appendAnthropicError(dst []byte, typ, msg string) []byte {
	dst = append(dst, `{"type":`...)
	dst = jsonw.AppendString(dst, typ)
	dst = append(dst, `,"message":`...)
	dst = jsonw.AppendString(dst, msg)
	return append(dst, '}')
}

func appendOpenAIError(dst []byte, e ErrorInfo) []byte {
	dst = append(dst, `{"message":`...)
	dst = jsonw.AppendString(dst, e.Message)
	dst = append(dst, `,"type":`...)
	dst = appendStringOrNull(dst, e.Type)
	dst = append(dst, `,"param":`...)
	dst = appendStringOrNull(dst, e.Param)
	dst = append(dst, `,"code":`...)
	dst = appendStringOrNull(dst, e.Code)
	return append(dst, '}')
}

func appendStringOrNull(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, "null"...)
	}
	return jsonw.AppendString(dst, s)
}

func appendInt(dst []byte, n int) []byte { return strconv.AppendInt(dst, int64(n), 10) }
