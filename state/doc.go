// Package state owns GenieHive's shared state: the Redis key schema, every
// read and write of it, and the Watcher that keeps an edge's local snapshot
// (a fleet.Snapshot) fresh. The values it stores (hosts, services, the role
// catalog, keys, bundles) are the domain types of package fleet; this package
// adds Redis and YAML (LoadCatalogFile, with line numbers) around them.
//
// # Key schema
//
// Every key and channel starts with one configurable prefix (default "gh:").
// Keys are grouped by hash tag (the part in braces) so that every multi-key
// atomic operation touches one Redis Cluster slot. Hash tags are per target
// (a host, a round-robin target, a service, an asset), never one tag for a
// family of keys: the hottest keys (round-robin counters, in-flight sets,
// cooldowns) spread over a Cluster's shards (TestClusterKeysSpread). The
// keys without a tag (catalog, keys, policy, seeded, ...) are read and
// written one at a time, or in pipelines, never in one transaction or
// script; an operator write sets gh:seeded, then writes and announces its
// value in one MULTI/EXEC.
//
// The same code runs on one server, a Sentinel group and a Cluster (the
// URL forms are in redisurl.go). Where a Cluster cannot do what one server
// does atomically, the difference is documented where it is made: the
// least-loaded pick (inflight.go).
//
//	key                              type    writer  TTL              holds
//	gh:node:{<host>}:state           string  node    heartbeat TTL    NodeState JSON (host, services, assets, metrics, shape)
//	gh:node:{<host>}:gone            string  node    5m               tombstone of a graceful stop (deleted by the next heartbeat)
//	gh:node:{<host>}:cmds            stream  edge    1h (each send)   swap commands (SwapCommand JSON); consumer group "agent" (swapcmd.go)
//	gh:node:{<host>}:res:<id>        string  node/edge 10m            SwapResult JSON of one command (SET NX: first writer wins)
//	gh:catalog                       string  operator none            Catalog JSON (role catalog + asset policies)
//	gh:catalog:good                  string  operator none            copy of the last catalog PutCatalog wrote (a fresh edge's fallback when gh:catalog is corrupt)
//	gh:keys                          hash    operator none            key id -> APIKey JSON (SHA-256 only); an entry that does not parse is an error (keyring.go)
//	gh:auth:enabled                  string  operator none            set by every stored key, never by a delete: auth stays on with an empty keyring
//	gh:policy:bundle                 string  operator none            PolicyBundle JSON (files not valid UTF-8 base64, named in "encodings")
//	gh:policy:good                   hash    edge    none             version, digest, bundle: the last pushed bundle an edge loaded and tested
//	gh:nodes:allow                   hash    operator none            host id (or "*") -> JSON list of endpoint CIDRs / addresses / host names (nodevalidate.go)
//	gh:seeded                        string  operator none            set by every operator write; its absence means Redis lost its data
//	gh:rr:{<target>}                 string  edge    24h idle         round-robin counter (INCR)
//	gh:if:{<service>}                zset    edge    lease            in-flight leases: member=<edge>:<seq>, score=deadline ms
//	gh:health:{<service>}:cool       string  edge    cooldown length  passive-health cooldown deadline
//	gh:health:{<service>}:fail       string  edge    failure window   consecutive failure counter
//	gh:health:{<service>}:cool:assets hash   edge    none (pruned)    asset -> cooldown deadline ms of one model on that service
//	gh:health:{<service>}:fail:<asset> string edge   failure window   consecutive failures of that pair
//	gh:probe                         hash    edge    none             service -> ProbeResult JSON
//	gh:lease:probe                   string  edge    lease length     id of the edge that probes
//	gh:stats                         hash    edge    none             service -> ServiceStats JSON (batched)
//	gh:edges                         hash    edge    deadline field   edge id -> EdgeInfo JSON
//	gh:bench:{<asset>}:<workload>    list    edge    none, capped     BenchSample JSON, newest first
//	gh:bench:index                   set     edge    none             "<asset>\x00<workload>" of every bench list
//	gh:swap:use:{<edge>}             hash    edge    3 publications   that edge's in-flight and last use per (service, model), waiting requests per model (swapstate.go)
//	gh:swap:ctl                      hash    edge    none             service -> SwapControl JSON, written by the swap lease holder
//	gh:swap:log                      list    edge    none, capped     SwapRecord JSON (decisions and outcomes), newest first
//	gh:lease:swap                    string  edge    lease length     id of the edge that runs the swap controller
//
// A node writes only keys under gh:node:{<host>}: (reading its command
// stream with XREADGROUP, acknowledging with XACK) and publishes only on
// gh:events:node:<host>, so the ACL NodeACL builds (and `geniehive node
// acl HOST` prints)
//
//	ACL SETUSER node-<host> on >secret resetkeys ~gh:node:{<host>}:* resetchannels &gh:events:node:<host> -@all +get +set +del +pttl +publish +multi +exec +discard +ping +xreadgroup +xack
//
// confines it. See ACL in the README. What it writes is validated by every
// edge before anything is routed to it (nodevalidate.go).
//
// # Losing Redis
//
// A Redis restart without persistence, or a FLUSHALL, loses everything.
// Edges keep serving from their snapshots: a node missing from Redis stays
// routable until its own deadline (its agent re-registers within one
// heartbeat), unless it left a tombstone. Edges built with
// WatcherOptions.Restore write the role catalog, keys and policy bundle
// they hold back (SETNX, so racing edges agree) when gh:seeded is missing,
// so a restart neither drops the roles nor turns authentication off.
//
// # Change events
//
// Writers publish on gh:events:<what> (node:<host>, catalog, keys, policy,
// health, bench, stats, nodes:allow). Edges PSUBSCRIBE gh:events:* and refresh their
// snapshot within milliseconds; a periodic resync covers lost messages and
// expiry (which announces nothing). Every snapshot entry carries the deadline
// its key's TTL implies, so an expired node is not routable even before the
// next resync.
//
// A node's event (gh:events:node:<host>, published in the MULTI/EXEC that
// SETs its state) is one of:
//
//	up                     the state changed: read it (GET + PTTL)
//	down                   the node stopped (its key deleted, a tombstone left)
//	m1 <shape> <sum> ...   only its metrics moved: the figures themselves
//
// A node agent SETs its whole state every beat either way, and publishes
// "m1" (about 300 bytes for 5 services, at most MaxMetricsEventBytes)
// when nothing but its volatile figures (VolatileFields: each service's
// Metrics, the host's UpdatedAt, each GPU's used VRAM and utilisation)
// changed since its last "up", and "up" on any other change and at least
// every FullEvery beats. The state carries its shape (NodeState.Shape, a
// hash of everything but those figures); an edge holding that shape
// patches its copy of the node without reading Redis, an edge holding
// another shape or none reads the node as for "up", and any other payload
// means "read the node", so agents and edges of different versions mix.
// The event is the host's its channel names (the node's ACL confines it to
// that channel), is checked as a whole state is, and a refused one
// (malformed, oversized, a negative or non-finite figure, a service or
// GPU list not the held state's) changes nothing; the format and checks
// are in metricsevent.go. Events of one node that arrive together are
// superseded by the latest.
//
// # Figures
//
// An applied metrics event writes O(that node): the node's volatile
// figures (its services' metrics, the host's UpdatedAt and GPUs, the
// renewed deadline) live in one fleet.NodeCell its entries share, and the
// event stores a new fleet.Figures there and publishes a snapshot sharing
// every container and entry with the previous one (snapbuild.go). Readers
// read figures through ServiceEntry.Metrics/Expiry and HostEntry.
// UpdatedAt/GPUs/Expiry (the methods shadow the embedded fields, so a
// reader of the stale field does not compile). What that gives a routing
// decision, and why it is enough:
//
//   - each load is one report: a service's used and total VRAM, a GPU's
//     used and total, come from one heartbeat, never a mix, so no reader
//     sees used > total unless the node reported it (TestFiguresNeverTorn);
//   - figures are not pinned to the snapshot a request holds: a request
//     may read a newer report than the snapshot it loaded (as if it had
//     loaded the next one), and two loads may read two reports. Nothing
//     needs more: figures are up to a heartbeat old when they arrive, a
//     pick compares services of different nodes reported at different
//     times anyway, and nothing structural (which services exist, their
//     assets, health, cooldowns) moves in a cell;
//   - a node's deadline only moves forward, within a cell and from one
//     view of the node to the next, while the node keeps its TTL
//     (holdDeadline: a metrics event estimates it from its arrival, a read
//     from the key's PTTL, and the later estimate is kept); a node that
//     changes its TTL gets the new record's deadline;
//   - the scored ranking of a wide asset (routing/rank.go) is rebuilt at
//     most every rankRefresh while only figures move, re-scoring only the
//     services whose node's Figures pointer changed.
//
// TestMetricsEventSharesContainers checks that nothing is rebuilt,
// TestMetricsPatchMatchesFullBuild that the figures equal a full build's.
//
// On a Redis Cluster, PUBLISH reaches every node over the cluster bus, so
// a PSUBSCRIBE on any node receives every event; the watcher subscribes on
// a random master or replica, so the edges' subscriptions (and the work of
// delivering every event to every edge) spread over the cluster instead of
// all landing on the master of the pattern's slot. Sharded pub/sub
// (SPUBLISH/SSUBSCRIBE) is not used, on a measurement
// (BenchmarkClusterPublish, 3 masters + 3 replicas on one 2-core machine):
// a plain PUBLISH costs the cluster ~13 us of CPU and 5 bus messages (one
// per other node) per event, SPUBLISH ~4 us and 1 (to the shard's
// replica). At the fleet docs/CAPACITY.md projects (10,000 nodes
// heartbeating every 5s: 2,000 events/s) that is ~2.6% of one core summed
// over the six servers, against ~0.8%; the bus cost grows with the number
// of Cluster nodes (2S-1 messages per event for S shards with a replica
// each), so it stays small until a cluster has dozens of shards. Delivery
// to the edges, the larger cost (every edge needs every event), is the
// same in both forms. What sharding would cost instead: SSUBSCRIBE has
// no patterns, so every edge would hold one subscription per shard on a
// fixed set of shard channels, and a node's ACL would have to name a
// channel it shares with other nodes instead of its own. After any
// subscription error (a failover, a reconnect), or a subscription silent
// for 2s that does not answer a PING within 2s more (a dead host sends no
// RST), the watcher subscribes again and rebuilds its whole snapshot. The
// resync SCANs every master; a master failing over mid-scan fails only
// that resync (the snapshot stays, marked RedisOK=false, until the next
// one), and a Cluster client reloads its slot map on the errors a dead
// master causes (failover.go). TestWatcherAcrossClusterFailover fails
// every master over in turn under events and rebuilds.
package state
