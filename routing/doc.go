// Package routing turns a policy decision into an ordered list of concrete
// services to try, and keeps the shared health state those choices depend
// on.
//
// # Contract
//
// The policy engine decides *what* a request may go to: an ordered list of
// targets (assets or service ids) in groups (policy.Decision). The Router
// decides *where*: for each group it collects the services of the snapshot
// that offer the target and are routable now, applies the group's strategy
// (the first non-empty group only — later groups are fallbacks and are
// ordered by score without a Redis round trip), and returns the candidates
// in the order the edge should try them.
//
// Strategies:
//
//   - scored (default): a weighted sum of signals computed locally from the
//     snapshot (no Redis round trip). Every signal's contribution is kept on
//     the Candidate for explanation (POST /v1/cluster/routes/match).
//   - round_robin: one shared INCR (Store.NextRR) per request on a counter
//     keyed by the group's target set; candidates are sorted by service id so
//     every replica counts in the same order.
//   - least_loaded: one Lua round trip (Inflight.PickLeastLoaded) that reads
//     cluster-wide in-flight counts, adds reported queue depth, and adds the
//     in-flight lease for the chosen service atomically. Candidates are
//     passed in latency order, so the first minimum (the script's tie-break)
//     is the fastest.
//
// # Lifetime and goroutine safety
//
// A Router is safe for concurrent use. Route reads the snapshot it is given
// and never modifies it. A service's load figures (ServiceEntry.Metrics,
// HostEntry.GPUs) are read from its node's cell, which metrics events move
// without a new entry (fleet/figures.go, state/doc.go "Figures"): a pick
// scores each candidate with its node's latest report, read once per
// figure, and a wide asset's ranking is at most rankRefresh older than
// the figures (rank.go). Run must be running for ReportFailure and
// ReportSuccess to reach Redis (they are queued, never blocking the request
// path). The Prober is separate and optional.
//
// # Hot path
//
// Route with the scored strategy makes no allocation when the Plan is
// reused (see BenchmarkRoute*). Error values (ErrNoCandidates with what was
// tried) are built on the failure path only.
package routing
