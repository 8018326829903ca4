// Package policy is GenieHive's policy contract: the one input document
// (Input, with the caller's Key), the one data document (Data), and the one
// decision document (Decision: ordered Targets with their body Patch, or a
// Denial) that every engine — the plain-Go engine and the Rego/Wasm engines
// alike — reads and writes, plus the Engine interface, the Bundle a policy
// ships in, and the typed errors engines return.
//
// It imports only the standard library and package fleet; the engines live
// elsewhere (policies: the Go engine, hot reload, data building, patching;
// policies/opa: OPA's evaluator and test runner; wasm: the wazero host).
//
// # The contract
//
//   - Engine implementations are safe for concurrent use. SetData installs a
//     new data document; evaluations in flight finish on the one they
//     started with. Close releases the engine; later Evals fail with
//     ErrClosed. Whoever built an engine closes it (a policies.Holder closes
//     the engines it swapped out and, on Close, the current one).
//   - A denial is an answer, not an error: Eval returns nil with
//     Decision.Deny set.
//   - Every failure is an *Error with a stable Code; match with errors.Is
//     (ErrTimeout, ErrBusy, ErrClosed, ErrOutput, ErrMemory, ErrEval).
//     Retryable reports the transient ones (timeout, busy pool).
//   - SchemaVersion is carried in Input, Data and Decision; an engine whose
//     decision carries another version fails its smoke test and is refused.
package policy
