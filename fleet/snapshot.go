package fleet

import (
	"crypto/sha256"
	"time"
)

// HostEntry is a host as seen in a Snapshot, with the deadline past which it
// is no longer trusted (its Redis key's TTL, taken when it was read).
//
// The volatile figures (UpdatedAt, the GPUs' used VRAM and utilisation, the
// deadline) are read through UpdatedAt(), GPUs() and Expiry(), which read
// the node's cell (figures.go): the methods shadow the embedded fields, so
// h.UpdatedAt and h.GPUs do not compile as field reads. Host.UpdatedAt,
// Host.GPUs and Deadline are the figures the entry was built with.
type HostEntry struct {
	Host
	Deadline time.Time
	// Cell holds the node's current figures; nil for an entry built by
	// hand (its fields are then its figures). Set by the builder only.
	Cell *NodeCell
}

// ServiceEntry is a service as seen in a Snapshot. Fields are read-only: a
// Snapshot is shared by every request that loaded it.
//
// Its metrics and deadline move without a new entry: read them with
// Metrics() (which shadows the embedded Service.Metrics, so se.Metrics.X
// does not compile) and Expiry() (figures.go).
type ServiceEntry struct {
	// Service is the service as its node reported it, shared with the
	// watcher's copy of the node's state (never nil; read-only): an entry
	// holds one pointer instead of a second copy of the service's
	// pointer-bearing fields for the garbage collector to mark.
	*Service
	// Deadline is when the node's heartbeat key expired as of the report
	// the entry was built from; Expiry() is the current one.
	Deadline time.Time
	// Cell holds the node's current figures, CellIndex this service's
	// index in them (its index in the node's state); nil for an entry
	// built by hand. Set by the builder only.
	Cell      *NodeCell
	CellIndex int
	// CooldownUntil is set while passive health checks hold the service out
	// of rotation (shared across edges through Redis).
	CooldownUntil time.Time
	// AssetCooldowns holds the (service, asset) pairs passive health
	// checks hold out (asset name -> until), shared across edges; nil when
	// none. One model failing cools only its pair, never the service.
	AssetCooldowns map[string]time.Time
	// Stats are the figures edges observed for this service.
	Stats ServiceStats
	// Probe is the last active-probe verdict, if any.
	Probe *ProbeResult
}

// ProbeResult is one active health probe of a service, written by the edge
// that holds the probe lease.
type ProbeResult struct {
	Healthy   bool      `json:"healthy"`
	Error     string    `json:"error,omitempty"`
	LatencyMS float64   `json:"latency_ms"`
	At        time.Time `json:"at"`
}

// Live reports whether the entry's heartbeat is still within its TTL.
func (s *ServiceEntry) Live(now time.Time) bool { return now.Before(s.Expiry()) }

// InCooldown reports whether passive health checks hold the service out.
func (s *ServiceEntry) InCooldown(now time.Time) bool { return now.Before(s.CooldownUntil) }

// Healthy reports the service's health: the node's verdict, overridden by a
// failed active probe.
func (s *ServiceEntry) IsHealthy() bool {
	if s.Probe != nil && !s.Probe.Healthy {
		return false
	}
	return s.Service.Healthy
}

// AssetInCooldown reports whether the pair (this service, asset) is held
// out by passive health checks.
func (s *ServiceEntry) AssetInCooldown(asset string, now time.Time) bool {
	t, ok := s.AssetCooldowns[asset]
	return ok && now.Before(t)
}

// Routable reports whether a request may be sent to the service now:
// live, healthy and not in cooldown. Concurrency limits are the router's.
func (s *ServiceEntry) Routable(now time.Time) bool {
	return s.Live(now) && s.IsHealthy() && !s.InCooldown(now)
}

// Asset returns the service's asset with that exact name.
func (s *ServiceEntry) Asset(name string) (*Asset, bool) {
	for i := range s.Assets {
		if s.Assets[i].Name == name {
			return &s.Assets[i], true
		}
	}
	return nil, false
}

// Snapshot is an immutable view of the shared state, built from Redis and
// swapped atomically by a Watcher. Nothing in it may be modified after it is
// published; readers hold it for the life of one request. The one exception
// is the nodes' volatile figures (load metrics, GPU use, deadlines), which
// live in NodeCells the entries point at and move atomically, one node
// report at a time (figures.go).
type Snapshot struct {
	// Version increases with every rebuild in this process.
	Version uint64
	BuiltAt time.Time
	// RedisOK is false when the last refresh failed; the snapshot then
	// holds the last state read successfully.
	RedisOK bool

	Hosts    map[string]*HostEntry
	Services []*ServiceEntry // sorted by ID
	ByID     map[string]*ServiceEntry
	// AssetServices maps an asset name to the services that offer it,
	// sorted by service ID (the order round-robin counts in).
	AssetServices map[string][]*ServiceEntry

	Catalog *Catalog // never nil; empty when none is loaded
	// CatalogVersion changes whenever the stored catalog changes.
	CatalogVersion string
	// DataVersion changes when what the policy data document is built from
	// changes: the catalog, or a service's id, kind or assets (names,
	// families, tags, thinking, capabilities). Heartbeats that only move
	// metrics leave it as it was, so the edge rebuilds that document only
	// when it can differ (state/snapbuild.go).
	DataVersion uint64
	// FiguresVersion changes whenever a node's volatile figures moved in
	// its cell (a metrics-only event applied, figures.go): the entries
	// stay, their figures moved. A snapshot published for figures alone
	// shares every container with the previous one.
	FiguresVersion uint64
	// CatalogError is non-empty while the stored catalog does not decode;
	// Catalog is then the last good one this process read.
	CatalogError string

	// Keys maps the SHA-256 of a secret to its key.
	Keys map[[sha256.Size]byte]*APIKey
	// KeysError is non-empty when the stored keyring is unreadable in whole
	// or in part (an entry that does not parse, a key of the wrong type):
	// edges then refuse every request rather than guess. AuthOn reports
	// that a key was ever stored (the gh:auth:enabled marker), or that this
	// process saw one: from then on an empty keyring means "nobody passes",
	// never "auth is off".
	KeysError string
	AuthOn    bool

	// Bench maps asset name to its per-workload benchmark summaries.
	Bench map[string][]BenchSummary

	// Policy is the bundle pushed into Redis, nil when none.
	Policy *PolicyBundle

	// Refused lists the node states the edge does not route to (see
	// state/nodevalidate.go), sorted by key host; none of their services
	// is in Services. NodesRefusedTotal counts every refusal this process
	// has seen (a counter for /metrics). NodeAllowlist reports whether the
	// operator configured endpoint allowlists; without one any endpoint
	// that passes the structural checks is routed.
	Refused           []RefusedNode
	NodesRefusedTotal uint64
	NodeAllowlist     bool
}

// RefusedNode is a node state an edge refused to route to, and why.
type RefusedNode struct {
	// Host is the host id the key names (as stored, possibly malformed).
	Host   string    `json:"host"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
}

// Role returns the role with that name or alias (case-insensitive).
func (s *Snapshot) Role(name string) (*Role, bool) {
	return s.Catalog.Role(name)
}
