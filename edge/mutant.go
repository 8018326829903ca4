//go:build mutants

package edge

import "os"

// mutant names a deliberate bug switched on by GENIEHIVE_MUTANT, compiled
// in only under the mutants build tag (`make test-mutants`), so the chaos
// suite can show it goes red when the product is wrong:
//
//	failover_off     one attempt per request, no failover
//	relay_drop_last  the SSE relay drops the final [DONE] event
//	inflight_leak    in-flight leases are never released
//
// Without the tag mutant is the constant "" and every check compiles away.
var mutant = os.Getenv("GENIEHIVE_MUTANT")
