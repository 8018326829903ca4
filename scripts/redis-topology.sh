#!/usr/bin/env bash
# Starts or stops the two replicated Redis topologies the tests also run on,
# on loopback, from Debian's redis-server / redis-sentinel (installed when
# missing):
#   - a Redis Cluster of 3 masters + 3 replicas (--cluster-enabled yes,
#     created with redis-cli --cluster create --cluster-replicas 1);
#   - a Sentinel group: 1 master, 1 replica, 3 sentinels (master name "gh").
#
#   scripts/redis-topology.sh start   # prints the two URLs as shell exports
#   scripts/redis-topology.sh stop
#
# Ports: GENIEHIVE_TOPO_BASE (default 7000): cluster BASE..BASE+5, sentinel
# master BASE+10, replica BASE+11, sentinels BASE+20..BASE+22. State lives in
# GENIEHIVE_TOPO_DIR (default /tmp/geniehive-topology-BASE); `start` also
# writes the exports to its env file. Nothing is persisted (no RDB, no AOF).
# Timeouts are short (cluster-node-timeout 2s, down-after-milliseconds 1s)
# so the failover tests finish quickly.
set -euo pipefail

base=${GENIEHIVE_TOPO_BASE:-7000}
dir=${GENIEHIVE_TOPO_DIR:-/tmp/geniehive-topology-$base}
host=127.0.0.1

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'redis-topology: %s\n' "$*" >&2; exit 1; }

install() {
  command -v redis-server >/dev/null && command -v redis-sentinel >/dev/null && command -v redis-cli >/dev/null && return
  log "installing redis-server and redis-sentinel from Debian packages"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server redis-sentinel redis-tools >/dev/null
}

wait_ping() { # port
  for _ in $(seq 1 100); do
    redis-cli -h $host -p "$1" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  return 1
}

server() { # port extra-args...
  local port=$1; shift
  mkdir -p "$dir/$port"
  redis-server --port "$port" --bind $host --save '' --appendonly no --dir "$dir/$port" \
    --daemonize yes --pidfile "$dir/$port/pid" --logfile "$dir/$port/log" "$@"
  wait_ping "$port" || { cat "$dir/$port/log" >&2; die "redis-server on $port did not start"; }
}

start_cluster() {
  local addrs=()
  for i in 0 1 2 3 4 5; do
    local p=$((base + i))
    server "$p" --cluster-enabled yes --cluster-config-file "$dir/$p/nodes.conf" --cluster-node-timeout 2000
    addrs+=("$host:$p")
  done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$dir/cluster-create.log" 2>&1 ||
    { cat "$dir/cluster-create.log" >&2; die "redis-cli --cluster create failed"; }
  for _ in $(seq 1 200); do
    local ok=1
    for i in 0 1 2 3 4 5; do
      redis-cli -h $host -p $((base + i)) cluster info 2>/dev/null | grep -q '^cluster_state:ok' || ok=0
    done
    [ $ok = 1 ] && return 0
    sleep 0.05
  done
  die "the cluster did not reach cluster_state:ok"
}

start_sentinel() {
  local m=$((base + 10)) r=$((base + 11))
  server $m
  server $r --replicaof $host $m
  for i in 0 1 2; do
    local p=$((base + 20 + i))
    mkdir -p "$dir/$p"
    cat >"$dir/$p/sentinel.conf" <<CONF
port $p
bind $host
daemonize yes
pidfile $dir/$p/pid
logfile $dir/$p/log
dir $dir/$p
sentinel monitor gh $host $m 2
sentinel down-after-milliseconds gh 1000
sentinel failover-timeout gh 5000
sentinel parallel-syncs gh 1
CONF
    redis-sentinel "$dir/$p/sentinel.conf"
    wait_ping "$p" || { cat "$dir/$p/log" >&2; die "redis-sentinel on $p did not start"; }
  done
  # Ready when the replica is in sync and every sentinel knows the others.
  for _ in $(seq 1 200); do
    if redis-cli -h $host -p $r info replication 2>/dev/null | grep -q '^master_link_status:up' &&
      [ "$(redis-cli -h $host -p $((base + 20)) sentinel master gh 2>/dev/null | awk 'f{print;exit} /^num-other-sentinels$/{f=1}')" = 2 ]; then
      return 0
    fi
    sleep 0.05
  done
  die "the sentinel group did not settle"
}

urls() {
  local s=$((base + 20))
  echo "export GENIEHIVE_TEST_REDIS_CLUSTER='redis+cluster://$host:$base?addr=$host:$((base + 1))&addr=$host:$((base + 2))'"
  echo "export GENIEHIVE_TEST_REDIS_SENTINEL='redis+sentinel://$host:$s/0?master_name=gh&addr=$host:$((s + 1))&addr=$host:$((s + 2))'"
}

stop() {
  [ -d "$dir" ] || return 0
  for pf in "$dir"/*/pid; do
    [ -f "$pf" ] && kill "$(cat "$pf")" 2>/dev/null || true
  done
  sleep 0.2
  rm -rf "$dir"
}

case "${1:-}" in
start)
  install
  stop
  mkdir -p "$dir"
  start_cluster
  start_sentinel
  urls | tee "$dir/env"
  ;;
stop) stop ;;
*) die "usage: $0 start|stop" ;;
esac
