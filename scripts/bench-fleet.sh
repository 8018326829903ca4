#!/usr/bin/env bash
# Reproduces the fleet figures of docs/CAPACITY.md (issue 12): not part of
# `make test` (it takes ~10 minutes and its figures are benchmarks, not
# assertions). Everything runs on loopback against a private redis-server:
#
#   1. Go benchmarks, each comparing in one run what the issue compares:
#      state:   a node event patched into the snapshot vs the full rebuild
#               every event used to cost; a full resync, cold and warm, at
#               1,000 and 10,000 nodes;
#      routing: a pick on a 2-host vs a 1,000-host fleet (scored,
#               round_robin, least_loaded, with Redis round trips per pick).
#   2. Churn: `geniehive loadtest fleet` (NODES nodes x 5 services x 4 assets,
#      heartbeats every 5 s) into the prefix of edge "big", while edge
#      "small" (a 2-node fleet) idles on its own prefix of the same Redis:
#      the difference of their CPU is the CPU spent on churn; RSS, Redis CPU,
#      heartbeat -> snapshot latency, and the big edge's own /metrics.
#   3. Requests under churn: 32 clients through both edges, interleaved in
#      250 ms slices by `geniehive loadtest` (baseline "small").
#   4. BIG_NODES (10,000) nodes once.
#
# Environment: NODES (1000), BIG_NODES (10000, 0 skips), DURATION (60s),
# REQ_DURATION (30s), OUT (/tmp/geniehive-bench-fleet), PHASES ("1 2 3 4"),
# GO_BENCH (1; 0 drops phase 1), PPROF (0; 1 serves the big edge's
# net/http/pprof and saves a 20 s CPU profile of phase 4's churn as
# $OUT/cpu-10k.pprof: `go tool pprof -top -cum $OUT/geniehive $OUT/cpu-10k.pprof`).
# Needs redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${NODES:-1000}
BIG_NODES=${BIG_NODES:-10000}
DURATION=${DURATION:-60s}
REQ_DURATION=${REQ_DURATION:-30s}
OUT=${OUT:-/tmp/geniehive-bench-fleet}
mkdir -p "$OUT"
GH="$OUT/geniehive"
go build -o "$GH" ./cmd/geniehive

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

RPORT=$(free_port)
redis-server --port "$RPORT" --save '' --appendonly no --bind 127.0.0.1 >"$OUT/redis.log" 2>&1 &
RPID=$!; PIDS+=("$RPID")
until redis-cli -p "$RPORT" ping >/dev/null 2>&1; do sleep 0.1; done
URL="redis://127.0.0.1:$RPORT/0"
export GENIEHIVE_TEST_REDIS="$URL"
note() { echo "== $* (load average: $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.txt"; }
: >"$OUT/summary.txt"

PHASES=${PHASES:-1 2 3 4}
[ "${GO_BENCH:-1}" = 1 ] || PHASES=${PHASES//1/}
on() { [[ " $PHASES " == *" $1 "* ]]; }
if on 1; then
note "1. go benchmarks"
go test -run XXX -bench 'ApplyNodeEvent|ApplyBatch|Resync' -benchtime 20x ./state 2>/dev/null | grep -E '^(Benchmark|\s+[0-9]+\s)' | tee "$OUT/bench-state.txt" | tee -a "$OUT/summary.txt"
go test -run XXX -bench 'FleetPick' -benchtime 300x ./routing 2>/dev/null | grep -E '^Benchmark' | tee "$OUT/bench-routing.txt" | tee -a "$OUT/summary.txt"
fi

SIM=$(free_port)
"$GH" sim --flavor openai --listen "127.0.0.1:$SIM" --models sim --chunks 16 >"$OUT/sim.log" 2>&1 &
PIDS+=("$!")
for p in big small; do
  "$GH" node --redis-url "$URL" --prefix "$p:" --host-id "sim-$p-1" --nvidia-smi off \
    --service "sim:chat:openai:http://127.0.0.1:$SIM" >"$OUT/node-$p-1.log" 2>&1 &
  PIDS+=("$!")
done
"$GH" node --redis-url "$URL" --prefix "small:" --host-id "sim-small-2" --nvidia-smi off \
  --service "sim:chat:openai:http://127.0.0.1:$SIM" >"$OUT/node-small-2.log" 2>&1 &
PIDS+=("$!")
EBIG=$(free_port); ESMALL=$(free_port)
PPROF_ARGS=()
if [ "${PPROF:-0}" = 1 ]; then PPORT=$(free_port); PPROF_ARGS=(--pprof "127.0.0.1:$PPORT"); fi
"$GH" edge --redis-url "$URL" --prefix big: --id big --listen "127.0.0.1:$EBIG" --strategy scored --log-level error "${PPROF_ARGS[@]}" >"$OUT/edge-big.log" 2>&1 &
EBIG_PID=$!; PIDS+=("$EBIG_PID")
"$GH" edge --redis-url "$URL" --prefix small: --id small --listen "127.0.0.1:$ESMALL" --strategy scored --log-level error >"$OUT/edge-small.log" 2>&1 &
ESMALL_PID=$!; PIDS+=("$ESMALL_PID")
for e in $EBIG $ESMALL; do
  until curl -sf "http://127.0.0.1:$e/readyz" >/dev/null 2>&1; do sleep 0.2; done
done
until curl -sf "http://127.0.0.1:$EBIG/v1/models" | grep -q '"sim"' && curl -sf "http://127.0.0.1:$ESMALL/v1/models" | grep -q '"sim"'; do sleep 0.2; done
scrape() { curl -sf "http://127.0.0.1:$EBIG/metrics" | grep -E '^geniehive_(snapshot|state|policy_data|redis_round)' ; }
# edge_delta BEFORE AFTER: what the big edge's own /metrics counted between
# two scrapes: events applied and dropped, resyncs, policy data builds, and
# the event apply latency's p50/p99 (upper bounds of histogram buckets).
edge_delta() {
  python3 - "$1" "$2" <<'PY'
import sys, re
def load(p):
    d = {}
    for line in open(p):
        m = re.match(r'(\S+?)(\{[^}]*\})?\s+(\S+)$', line.strip())
        if m: d[m.group(1) + (m.group(2) or '')] = float(m.group(3))
    return d
a, b = load(sys.argv[1]), load(sys.argv[2])
dl = lambda k: b.get(k, 0) - a.get(k, 0)
out = []
for k in ['geniehive_state_events_applied_total', 'geniehive_state_events_dropped_total', 'geniehive_state_resyncs_total',
          'geniehive_policy_data_builds_total', 'geniehive_snapshot_builds_total{kind="full"}', 'geniehive_snapshot_builds_total{kind="incremental"}', 'geniehive_snapshot_builds_total{kind="figures"}',
          'geniehive_state_metrics_events_total{result="applied"}', 'geniehive_state_metrics_events_total{result="stale"}', 'geniehive_state_metrics_events_total{result="refused"}']:
    out.append('%s +%d' % (k.replace('geniehive_', ''), dl(k)))
for h in ['geniehive_state_event_apply_seconds', 'geniehive_state_resync_seconds']:
    n = dl(h + '_count')
    if n <= 0: continue
    bk = sorted((float(re.search(r'le="([^"]+)"', k).group(1)), dl(k)) for k in b if k.startswith(h + '_bucket') and '+Inf' not in k)
    q = lambda f: next(('<=%gms' % (le * 1000) for le, c in bk if c >= f * n), '>10s')
    out.append('%s: n=%d mean=%.2fms p50%s p99%s' % (h.replace('geniehive_', ''), n, 1000 * dl(h + '_sum') / n, q(.5), q(.99)))
print('  edge-big /metrics: ' + '; '.join(out))
PY
}

# The edge is scraped after the fleet's warm-up (the nodes joining) and at
# its end, so its figures cover the measured minute only.
fleet_churn() { # NODES DURATION NAME
  ( sleep 6.5; scrape >"$OUT/metrics-$3-before.txt" ) &
  "$GH" loadtest fleet --redis-url "$URL" --redis-prefix big: --nodes "$1" --services 5 --assets 4 --interval 5s \
    --warmup 6s --duration "$2" --keep --watch edge-big="$EBIG_PID" --watch edge-small="$ESMALL_PID" --watch redis="$RPID" \
    --json "$OUT/fleet-$1.json" --quiet | tee -a "$OUT/summary.txt"
  scrape >"$OUT/metrics-$3-after.txt"
  edge_delta "$OUT/metrics-$3-before.txt" "$OUT/metrics-$3-after.txt" | tee -a "$OUT/summary.txt"
  redis-cli -p "$RPORT" --scan --pattern 'big:node:{fleet-*' | xargs -r -n 500 redis-cli -p "$RPORT" del >/dev/null
}
if on 2; then
note "2. churn: $NODES nodes, edges idle"
fleet_churn "$NODES" "$DURATION" churn
fi

if on 3; then
note "3. 32 clients through big (under churn) and small, interleaved"
"$GH" loadtest fleet --redis-url "$URL" --redis-prefix big: --nodes "$NODES" --services 5 --assets 4 --interval 5s \
  --duration 10m --observe=false --quiet >"$OUT/fleet-bg.log" 2>&1 &
FLEET_PID=$!; PIDS+=("$FLEET_PID")
sleep 6
"$GH" loadtest --target big="http://127.0.0.1:$EBIG" --target small="http://127.0.0.1:$ESMALL" --baseline small \
  --model sim --concurrency 32 --duration "$REQ_DURATION" --watch edge-big="$EBIG_PID" --watch edge-small="$ESMALL_PID" \
  --json "$OUT/requests.json" --quiet | tee -a "$OUT/summary.txt"
kill -INT "$FLEET_PID" 2>/dev/null || true; wait "$FLEET_PID" 2>/dev/null || true
fi

if on 4 && [ "$BIG_NODES" -gt 0 ]; then
  note "4. churn: $BIG_NODES nodes, edges idle"
  if [ "${PPROF:-0}" = 1 ]; then
    ( sleep 10; curl -sf -o "$OUT/cpu-10k.pprof" "http://127.0.0.1:$PPORT/debug/pprof/profile?seconds=20" ) &
  fi
  fleet_churn "$BIG_NODES" 30s churn10k
  echo "  edge-big log: $(grep -c 'policy_data_refused' "$OUT/edge-big.log" || true) policy_data_refused lines" | tee -a "$OUT/summary.txt"
fi
note "done: $OUT/summary.txt"
