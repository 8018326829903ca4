// Package dialect translates the agent-facing APIs — the OpenAI Responses
// API (Codex CLI), the Anthropic Messages API (Claude Code) and legacy
// Completions — to and from OpenAI Chat Completions, for upstreams that do
// not speak them natively. It imports only the standard library, our JSON
// string writer and fastjson: no edge, state, routing or policy code, so
// the edge decides when to translate and this package only translates.
//
// # One request, one Request
//
// A Request reads a client body once (Parse): it validates the JSON, refuses
// what cannot be served statelessly through Chat Completions (a typed
// *Error with an HTTP status and a stable code), and records the facts the
// policy needs (Facts: model, stream, token limit, explicit thinking choice,
// where the system prompt lives). From the same parse it then writes:
//
//   - AppendChat: the Chat Completions body for an upstream without the
//     dialect (stream_options.include_usage asked for when streaming);
//   - AppendPatched: the original body with the model and the system prompt
//     (instructions / system) rewritten, for an upstream that speaks it;
//   - AppendResponse: the dialect's answer from an upstream's non-streamed
//     Chat Completions answer;
//   - Stream: a state machine turning Chat Completions SSE chunks into the
//     dialect's events, one Feed per upstream event.
//
// # Ownership and goroutines
//
// A Request and its Stream belong to one goroutine at a time. Get one with
// AcquireRequest and give it back with ReleaseRequest once the exchange is
// over (its Stream goes with it); nothing it returned may be used after
// that. Every Append* function appends to the caller's buffer and returns
// it, so the caller owns (and may pool) every byte written. Parse keeps no
// reference to the body it was given: what later calls need is copied into
// the Request's own reused buffers.
//
// # What is translated and what is refused
//
// See README.md in this directory: every field of each dialect, what it
// maps to, what is ignored and what is refused with which message.
package dialect
