// Package wasm hosts GenieHive policies compiled to WebAssembly in wazero.
//
// Two engines implement policy.Engine:
//
//   - OPAEngine ("wasm", NewOPA / NewOPAFromWasm): Rego compiled in process
//     with OPA's compile package (target wasm, entrypoint
//     "geniehive/decision", plus "geniehive/derived" when the policy has
//     that data-only rule) and evaluated through OPA's Wasm ABI 1.2 (the
//     eval context calls, with the result read straight out of guest
//     memory; opa_eval and JSON when the value layout check fails). The
//     derived rule is evaluated once per data version, in SetData. See
//     README.md.
//   - ModuleEngine ("module", NewModule): custom wasip1 modules speaking the
//     JSON-in/JSON-out ABI in ABI.md.
//
// Lifetime and concurrency: an engine owns one wazero runtime, one compiled
// module and a bounded pool of Options.PoolSize instances (a channel, never
// a sync.Pool). Eval checks an instance out, so an instance is used by one
// goroutine at a time; Eval blocks while all are busy (until ctx is done).
// Engines are safe for concurrent use. SetData installs a new data document
// (ignored when it serialises like the current one) that idle instances
// load in the background and busy ones at their next checkout;
// evaluations in flight finish on the old one. Close waits for evaluations in flight, closes
// every instance and the runtime; later Evals return policy.ErrClosed. A reload
// builds a new engine while the old one serves, then closes the old one.
//
// Limits: each instance's memory is capped (Options.MaxMemoryPages), each
// evaluation bounded in time (Options.EvalTimeout) and call depth
// (Options.MaxCallDepth). Every module is instrumented at load
// (instrument.go): fuel is charged at every function entry and loop
// iteration, so a guest still running at the deadline traps within 4096
// calls or iterations (Eval returns policy.ErrTimeout), a guest deeper than
// the cap traps (policy.ErrMemory), and a running guest reaches a Go
// preemption point at the same rate, so it never stalls the collector or
// any other goroutine. The instance is then discarded and its pool slot
// refilled on the next checkout; evaluations on other instances go on. A
// module the instrumenter cannot walk (SIMD, threads, exceptions) is
// refused.
package wasm
