#!/usr/bin/env bash
# `make test-mutants`: shows the chaos suite goes red when the product is
# wrong. The images are built with the mutants build tag (edge/mutant.go:
# deliberate bugs compiled in only there, switched on by GENIEHIVE_MUTANT);
# for each mutant the scenarios that must catch it run, and a mutant that
# leaves all of them green fails this script. MUTANTS="a b" narrows the
# list; SCENARIOS_<mutant> overrides a mutant's -run pattern.
set -uo pipefail
cd "$(dirname "$0")/.."
export GENIEHIVE_CHAOS=1 GENIEHIVE_BUILD_TAGS=mutants TESTCONTAINERS_RYUK_DISABLED=true
# Tagged images under their own names, so the normal ones stay untouched.
export GENIEHIVE_IMAGE="${GENIEHIVE_MUTANT_IMAGE:-geniehive:mutants}"

declare -A runs=(
  [failover_off]='TestKillNode|TestPartitionUpstream'
  [relay_drop_last]='TestRollingRestart'
  [inflight_leak]='TestRollingRestart'
)
survived=()
for m in ${MUTANTS:-failover_off relay_drop_last inflight_leak}; do
  pat_var="SCENARIOS_$m"
  pat="${!pat_var:-${runs[$m]}}"
  printf '== mutant %s: go test ./chaos -run %s (must FAIL)\n' "$m" "$pat" >&2
  out=$(mktemp)
  GENIEHIVE_MUTANT=$m go test -count=1 -timeout 30m -run "$pat" ./chaos/ >"$out" 2>&1
  rc=$?
  # What caught it: the failing tests and their messages, then the end.
  grep -E -- '--- FAIL|_test\.go:[0-9]+:' "$out" | grep -v 'level=' | head -20
  tail -5 "$out"; rm -f "$out"
  if [ "$rc" -eq 0 ]; then
    printf '== mutant %s SURVIVED: the suite stayed green\n' "$m" >&2
    survived+=("$m")
  else
    printf '== mutant %s killed: the suite went red\n' "$m" >&2
  fi
done
if [ ${#survived[@]} -gt 0 ]; then
  echo "surviving mutants: ${survived[*]}" >&2
  exit 1
fi
echo "every mutant was caught" >&2
