// Package fleet holds GenieHive's domain: the values every part of the
// gateway talks about — hosts, GPUs, services and the assets (models) they
// serve, load metrics, node heartbeats, the role catalog with its request
// policies, API keys and scopes, benchmark samples, policy bundles — and the
// Snapshot, the immutable view of all of them that an edge routes from.
//
// It imports only the standard library: Redis (package state), OPA
// (policies/opa, wasm) and HTTP (edge) live around it, never inside it. A
// test (internal/archtest) keeps it that way.
//
// Values here are plain data. A Snapshot and everything reachable from it is
// read-only once published: it is shared by every request that loaded it
// (but for the nodes' load figures, swapped atomically in a NodeCell:
// figures.go).
// Validation that needs no I/O (Catalog.Validate, ValidID, Scope.Valid) lives
// here; parsing YAML files with line numbers lives in state.
package fleet
