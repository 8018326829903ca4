package ghtest

import (
	"strings"
)

// HAProxyConfig renders the load balancer configuration for the given edge
// aliases (each reached on port 8080). deploy/haproxy/haproxy.cfg is this
// function's output for edge1, edge2, edge3 (a test keeps them equal).
func HAProxyConfig(edges []string) string {
	var b strings.Builder
	b.WriteString(haproxyHead)
	for _, e := range edges {
		b.WriteString("    server " + e + " " + e + ":8080\n")
	}
	return b.String()
}

const haproxyHead = `# HAProxy in front of the GenieHive edge replicas (compose.yaml mounts this at
# /usr/local/etc/haproxy/haproxy.cfg; works with haproxy 2.6 (Debian) and 2.8).
#
# - Health: GET /readyz on every edge each second; two failures take a
#   replica out of the pool, two successes bring it back. An edge told to
#   stop (SIGTERM) answers 503 there at once and keeps serving for its
#   timeouts.shutdown_delay (5s), so it leaves the pool before it stops
#   accepting connections. (/readyz stays 200 through a Redis outage: edges
#   serve from their snapshots.)
# - Failover: a request that could not reach an edge (connection refused or
#   reset, or closed with no response) is retried on another replica. Only
#   failures before any response byte are retried, so no completion is sent
#   twice to the client.
# - Names: servers are resolved through Docker's embedded DNS at run time, so
#   a replica that is down at start-up, or comes back with a new address, is
#   picked up without restarting HAProxy.
global
    log stdout format raw local0 notice
    maxconn 4096
    tune.bufsize 32768
    # stats socket for operators: docker exec ... (not needed by anything here)

resolvers docker
    nameserver dns 127.0.0.11:53
    resolve_retries 3
    timeout resolve 500ms
    timeout retry 500ms
    hold valid 1s
    hold other 1s
    hold refused 1s
    hold nx 1s
    hold timeout 1s
    hold obsolete 1s
    accepted_payload_size 8192

defaults
    mode http
    log global
    option httplog
    option dontlognull
    option http-buffer-request
    timeout connect 1s
    timeout client 600s
    timeout server 600s
    timeout http-request 30s
    timeout http-keep-alive 10s
    timeout queue 10s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response junk-response
    # Errors HAProxy itself answers (no edge reachable, an edge that broke
    # before answering) are in OpenAI format, like the edges' own, so
    # clients treat them as retryable server errors.
    http-error status 502 content-type application/json string '{"error":{"message":"no GenieHive edge answered (bad gateway)","type":"server_error","code":"edge_unavailable","param":null}}'
    http-error status 503 content-type application/json string '{"error":{"message":"no GenieHive edge is available","type":"server_error","code":"edge_unavailable","param":null}}'
    http-error status 504 content-type application/json string '{"error":{"message":"the GenieHive edge did not answer in time","type":"server_error","code":"edge_timeout","param":null}}'

frontend openai
    bind :8080
    # The LB itself; answers without touching an edge.
    monitor-uri /lb/healthz
    default_backend edges

frontend stats
    bind :8404
    stats enable
    stats uri /stats
    stats refresh 5s

backend edges
    balance roundrobin
    option http-no-delay
    option httpchk
    http-check send meth GET uri /readyz
    http-check expect status 200
    default-server inter 1s fastinter 500ms downinter 1s fall 2 rise 2 check resolvers docker resolve-prefer ipv4 init-addr last,libc,none
`
