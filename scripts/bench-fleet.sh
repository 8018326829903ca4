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
# REQ_DURATION (30s), OUT (/tmp/geniehive-bench-fleet), GO_BENCH (1; 0 skips
# part 1). Needs redis-server.
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

if [ "${GO_BENCH:-1}" = 1 ]; then
note "1. go benchmarks"
go test -run XXX -bench 'ApplyNodeEvent|Resync' -benchtime 20x ./state 2>/dev/null | grep -E '^(Benchmark|\s+[0-9]+\s)' | tee "$OUT/bench-state.txt" | tee -a "$OUT/summary.txt"
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
"$GH" edge --redis-url "$URL" --prefix big: --id big --listen "127.0.0.1:$EBIG" --strategy scored --log-level error >"$OUT/edge-big.log" 2>&1 &
EBIG_PID=$!; PIDS+=("$EBIG_PID")
"$GH" edge --redis-url "$URL" --prefix small: --id small --listen "127.0.0.1:$ESMALL" --strategy scored --log-level error >"$OUT/edge-small.log" 2>&1 &
ESMALL_PID=$!; PIDS+=("$ESMALL_PID")
for e in $EBIG $ESMALL; do
  until curl -sf "http://127.0.0.1:$e/readyz" >/dev/null 2>&1; do sleep 0.2; done
done
until curl -sf "http://127.0.0.1:$EBIG/v1/models" | grep -q '"sim"' && curl -sf "http://127.0.0.1:$ESMALL/v1/models" | grep -q '"sim"'; do sleep 0.2; done
scrape() { curl -sf "http://127.0.0.1:$EBIG/metrics" | grep -E '^geniehive_(snapshot|state|policy_data|redis_round)' ; }

note "2. churn: $NODES nodes, edges idle"
scrape >"$OUT/metrics-big-before.txt" || true
"$GH" loadtest fleet --redis-url "$URL" --redis-prefix big: --nodes "$NODES" --services 5 --assets 4 --interval 5s \
  --duration "$DURATION" --watch edge-big="$EBIG_PID" --watch edge-small="$ESMALL_PID" --watch redis="$RPID" \
  --json "$OUT/fleet-$NODES.json" --quiet | tee -a "$OUT/summary.txt"
scrape >"$OUT/metrics-big-after.txt" || true
grep -E 'event_apply_seconds_(sum|count)|resync_seconds_(sum|count)|builds_total|events_(applied|dropped)|policy_data_builds' "$OUT/metrics-big-after.txt" | tee -a "$OUT/summary.txt" || true

note "3. 32 clients through big (under churn) and small, interleaved"
"$GH" loadtest fleet --redis-url "$URL" --redis-prefix big: --nodes "$NODES" --services 5 --assets 4 --interval 5s \
  --duration 10m --observe=false --quiet >"$OUT/fleet-bg.log" 2>&1 &
FLEET_PID=$!; PIDS+=("$FLEET_PID")
sleep 6
"$GH" loadtest --target big="http://127.0.0.1:$EBIG" --target small="http://127.0.0.1:$ESMALL" --baseline small \
  --model sim --concurrency 32 --duration "$REQ_DURATION" --watch edge-big="$EBIG_PID" --watch edge-small="$ESMALL_PID" \
  --json "$OUT/requests.json" --quiet | tee -a "$OUT/summary.txt"
kill -INT "$FLEET_PID" 2>/dev/null || true; wait "$FLEET_PID" 2>/dev/null || true

if [ "$BIG_NODES" -gt 0 ]; then
  note "4. churn: $BIG_NODES nodes, edges idle"
  "$GH" loadtest fleet --redis-url "$URL" --redis-prefix big: --nodes "$BIG_NODES" --services 5 --assets 4 --interval 5s \
    --duration 30s --watch edge-big="$EBIG_PID" --watch edge-small="$ESMALL_PID" --watch redis="$RPID" \
    --json "$OUT/fleet-$BIG_NODES.json" --quiet | tee -a "$OUT/summary.txt"
fi
note "done: $OUT/summary.txt"
