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
#   scripts/redis-topology.sh start-tls   # the TLS variants (see below)
#   scripts/redis-topology.sh stop-tls
#
# TLS mode (start-tls) starts the same topologies plus a single server with
# TLS only (port 0, tls-port) and mutual TLS (--tls-auth-clients yes): the
# cluster with tls-cluster and tls-replication, the sentinel group with
# tls-replication and the sentinels themselves on TLS. A CA, a server
# certificate (127.0.0.1; also used as the servers' client certificate for
# replication and the cluster bus) and a client certificate are generated
# with openssl at start under the state directory and deleted by stop-tls;
# nothing secret is kept. It prints GENIEHIVE_TEST_REDIS_TLS,
# GENIEHIVE_TEST_REDIS_TLS_CLUSTER and GENIEHIVE_TEST_REDIS_TLS_SENTINEL,
# URLs with tls_cert, tls_key and tls_ca parameters. Ports: single BASE+30,
# cluster BASE+40..BASE+45, sentinel master BASE+50, replica BASE+51,
# sentinels BASE+60..BASE+62; state in GENIEHIVE_TOPO_DIR-tls.
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
# TLS mode: the redis-cli and server arguments that make a connection TLS
# (empty in plain mode).
cli_tls=()
srv_tls=()

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
    redis-cli "${cli_tls[@]}" -h $host -p "$1" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  return 1
}

server() { # port extra-args...
  local port=$1; shift
  mkdir -p "$dir/$port"
  local listen=(--port "$port")
  [ ${#srv_tls[@]} -gt 0 ] && listen=(--port 0 --tls-port "$port" "${srv_tls[@]}")
  redis-server "${listen[@]}" --bind $host --save '' --appendonly no --dir "$dir/$port" \
    --daemonize yes --pidfile "$dir/$port/pid" --logfile "$dir/$port/log" "$@"
  wait_ping "$port" || { cat "$dir/$port/log" >&2; die "redis-server on $port did not start"; }
}

start_cluster() { # first-port extra-server-args...
  local first=$1; shift
  local addrs=()
  for i in 0 1 2 3 4 5; do
    local p=$((first + i))
    server "$p" --cluster-enabled yes --cluster-config-file "$dir/$p/nodes.conf" --cluster-node-timeout 2000 "$@"
    addrs+=("$host:$p")
  done
  redis-cli "${cli_tls[@]}" --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$dir/cluster-create.log" 2>&1 ||
    { cat "$dir/cluster-create.log" >&2; die "redis-cli --cluster create failed"; }
  for _ in $(seq 1 200); do
    local ok=1
    for i in 0 1 2 3 4 5; do
      redis-cli "${cli_tls[@]}" -h $host -p $((first + i)) cluster info 2>/dev/null | grep -q '^cluster_state:ok' || ok=0
    done
    [ $ok = 1 ] && return 0
    sleep 0.05
  done
  die "the cluster did not reach cluster_state:ok"
}

start_sentinel() { # master-port first-sentinel-port extra-server-args...
  local m=$1 r=$(($1 + 1)) s0=$2; shift 2
  server $m "$@"
  server $r --replicaof $host $m "$@"
  for i in 0 1 2; do
    local p=$((s0 + i))
    mkdir -p "$dir/$p"
    local listen="port $p"
    if [ ${#srv_tls[@]} -gt 0 ]; then
      listen="port 0
tls-port $p
tls-cert-file $dir/certs/server.crt
tls-key-file $dir/certs/server.key
tls-ca-cert-file $dir/certs/ca.crt
tls-auth-clients yes
tls-replication yes"
    fi
    cat >"$dir/$p/sentinel.conf" <<CONF
$listen
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
    if redis-cli "${cli_tls[@]}" -h $host -p $r info replication 2>/dev/null | grep -q '^master_link_status:up' &&
      [ "$(redis-cli "${cli_tls[@]}" -h $host -p "$s0" sentinel master gh 2>/dev/null | awk 'f{print;exit} /^num-other-sentinels$/{f=1}')" = 2 ]; then
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

# certs writes a CA, a server certificate for 127.0.0.1 (serverAuth and
# clientAuth: servers present it to each other for replication and the
# cluster bus) and a client certificate under $dir/certs.
certs() {
  local c=$dir/certs
  mkdir -p "$c"
  (
    cd "$c"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=geniehive-test-ca \
      -keyout ca.key -out ca.crt 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >server.ext
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=redis -keyout server.key -out server.csr 2>/dev/null
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile server.ext -out server.crt 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=geniehive-test-client -keyout client.key -out client.csr 2>/dev/null
    openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile client.ext -out client.crt 2>/dev/null
    chmod 600 ./*.key
  ) || die "openssl could not generate the test certificates"
  srv_tls=(--tls-cert-file "$c/server.crt" --tls-key-file "$c/server.key" --tls-ca-cert-file "$c/ca.crt"
    --tls-auth-clients yes --tls-replication yes)
  cli_tls=(--tls --cert "$c/client.crt" --key "$c/client.key" --cacert "$c/ca.crt")
}

tls_urls() {
  local q="tls_cert=$dir/certs/client.crt&tls_key=$dir/certs/client.key&tls_ca=$dir/certs/ca.crt"
  local c=$((base + 40)) s=$((base + 60))
  echo "export GENIEHIVE_TEST_REDIS_TLS='rediss://$host:$((base + 30))/0?$q'"
  echo "export GENIEHIVE_TEST_REDIS_TLS_CLUSTER='rediss+cluster://$host:$c?addr=$host:$((c + 1))&addr=$host:$((c + 2))&$q'"
  echo "export GENIEHIVE_TEST_REDIS_TLS_SENTINEL='rediss+sentinel://$host:$s/0?master_name=gh&addr=$host:$((s + 1))&addr=$host:$((s + 2))&$q'"
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
  start_cluster "$base"
  start_sentinel $((base + 10)) $((base + 20))
  urls | tee "$dir/env"
  ;;
stop) stop ;;
start-tls)
  install
  if ! command -v openssl >/dev/null; then
    log "installing openssl from Debian packages (test certificates)"
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openssl >/dev/null
  fi
  command -v openssl >/dev/null || die "openssl is needed to generate the test certificates"
  dir=$dir-tls
  stop
  mkdir -p "$dir"
  certs
  server $((base + 30))
  start_cluster $((base + 40)) --tls-cluster yes
  start_sentinel $((base + 50)) $((base + 60))
  tls_urls | tee "$dir/env"
  ;;
stop-tls)
  dir=$dir-tls
  stop
  ;;
*) die "usage: $0 start|stop|start-tls|stop-tls" ;;
esac
