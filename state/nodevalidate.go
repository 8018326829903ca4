package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/redis/go-redis/v9"
)

// Nodes are untrusted: a node's Redis ACL confines which keys it writes,
// not what it writes. Every node state is checked here before a single
// prompt is routed to it (issue 16, item 2), where the edge decodes a node
// key (Store.ReadNode, readNodes), and against the operator's endpoint
// allowlist (the Watcher's nodeGate). A state that fails any check is
// refused whole: none of its services is routed, the refusal is logged
// (at most once a minute per host and reason) and listed in
// fleet.Snapshot.Refused.
//
// The checks:
//
//   - the key is exactly <prefix>node:{<host>}:state with a host id of
//     1–64 letters, digits, '.', '_' or '-' (ValidHostID): no braces,
//     colons or slashes, so a node cannot mint a second host through a key
//     its ACL glob allows (gh:node:{a}:x}:state);
//   - the stored state is at most MaxNodeStateBytes, and is not decoded
//     when larger; it is decoded exactly as encoding/json decodes it
//     (decodeNodeState: a hand decoder for what agents write, encoding/json
//     for anything else);
//   - the state's Host.ID is the key's host; every service's ID is
//     exactly "<host>/<name>" and its HostID the key's host, so a node
//     cannot shadow another host's service (and put it into cooldown);
//   - at most MaxServicesPerNode services, MaxAssetsPerService assets
//     each, names of at most MaxNameLen bytes, service names unique;
//   - at most MaxAPIsPerService native API names per service;
//   - no metrics or GPU figure is negative (metrics events are held to
//     the same, metricsevent.go);
//   - at most one asset of the node is loading (Asset.Loading: a load
//     command not yet confirmed; a node runs one command at a time), and
//     only on a service that can swap;
//   - endpoints are http or https URLs with a host, no userinfo, no query,
//     no fragment and at most a plain base path (letters, digits, '/', '.',
//     '_', '-', '~'; no "..", no escapes), at most MaxEndpointLen bytes;
//   - when the operator configured an allowlist (the hash
//     <prefix>nodes:allow: host id -> JSON list of CIDRs, IP addresses,
//     host names or "*.suffix" patterns; "*" as host id applies to hosts
//     without an entry of their own), every endpoint's host must match an
//     entry for that node, and a node with no entry is refused. Host names
//     are matched by name, never resolved: DNS answers are not the
//     operator's word. With no allowlist key at all every endpoint that
//     passes the other checks is routed, and the snapshot says so
//     (Snapshot.NodeAllowlist false, logged once);
//   - the deadline is the key's real TTL (PTTL, read in the same pipeline
//     as the GET), capped at MaxNodeTTL; a key without a TTL is not
//     routable (refused).

// Limits on a node state (see above).
const (
	MaxHostIDLen        = 64
	MaxNodeStateBytes   = 1 << 20
	MaxServicesPerNode  = 64
	MaxAssetsPerService = 4096
	MaxNameLen          = 256
	MaxEndpointLen      = 2048
	// MaxAPIsPerService caps Service.APIs (names the edge does not know
	// are ignored, so a newer agent's list is not refused).
	MaxAPIsPerService = 8
	// DefaultHeartbeatTTL is the node agent's default heartbeat_ttl
	// (nodeagent.DefaultTTL).
	DefaultHeartbeatTTL = 15 * time.Second
	// MaxNodeTTL caps a node's deadline whatever TTL its key carries.
	MaxNodeTTL = 10 * DefaultHeartbeatTTL
)

// EventAllow is announced (on <prefix>events:nodes:allow) when the node
// allowlist changes; watchers then rebuild everything.
const EventAllow = "nodes:allow"

// ValidHostID reports whether id is a valid host id: 1–64 letters, digits,
// '.', '_' or '-'.
func ValidHostID(id string) bool {
	if id == "" || len(id) > MaxHostIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// parseNodeKey parses <prefix>node:{<host>}:<kind> strictly: kind is
// "state" or "gone" and host a ValidHostID. raw is the text between the
// braces when the key at least has the shape (for reporting).
func (s *Store) parseNodeKey(k string) (host, kind, raw string, ok bool) {
	rest, found := strings.CutPrefix(k, s.prefix+"node:{")
	if !found {
		return "", "", "", false
	}
	i := strings.IndexByte(rest, '}')
	if i < 0 || !strings.HasPrefix(rest[i:], "}:") {
		return "", "", rest, false
	}
	host, kind = rest[:i], rest[i+2:]
	if kind != "state" && kind != "gone" {
		return "", "", rest, false
	}
	if !ValidHostID(host) {
		return "", "", host, false
	}
	return host, kind, host, true
}

// NodeRefusal is the error for a node state the edge does not route to.
type NodeRefusal struct {
	Host   string
	Reason string
}

func (e *NodeRefusal) Error() string { return "node " + e.Host + " refused: " + e.Reason }

func refuse(host, format string, a ...any) *NodeRefusal {
	return &NodeRefusal{Host: host, Reason: fmt.Sprintf(format, a...)}
}

// decodeNode checks and decodes one node state read from key with its
// PTTL; now is when the pipeline was sent.
func (s *Store) decodeNode(key, raw string, pttl time.Duration, now time.Time) (NodeRecord, *NodeRefusal) {
	var rec NodeRecord
	host, kind, shown, ok := s.parseNodeKey(key)
	if !ok || kind != "state" {
		return rec, refuse(shown, "malformed node key %q (want %snode:{<host>}:state, host of 1-%d letters, digits, '.', '_', '-')", key, s.prefix, MaxHostIDLen)
	}
	if pttl == -1 {
		return rec, refuse(host, "its key has no TTL: a node must expire when it stops heartbeating")
	}
	if len(raw) > MaxNodeStateBytes {
		return rec, refuse(host, "state of %d bytes exceeds %d", len(raw), MaxNodeStateBytes)
	}
	if err := decodeNodeState(raw, &rec.State); err != nil {
		return rec, refuse(host, "corrupt state: %v", err)
	}
	if r := checkNodeState(host, &rec.State); r != nil {
		return rec, r
	}
	rec.Deadline = now.Add(min(max(pttl, 0), MaxNodeTTL))
	rec.sum = rawSum(raw)
	return rec, nil
}

// Bounds of an asset's capabilities (Ollama lists at most six).
const (
	maxCapabilities  = 16
	maxCapabilityLen = 32
)

// checkNodeState applies the structural checks to a decoded state.
func checkNodeState(host string, st *fleet.NodeState) *NodeRefusal {
	if st.Host.ID != host {
		return refuse(host, "state names host %.64q, its key %q", st.Host.ID, host)
	}
	if len(st.Services) > MaxServicesPerNode {
		return refuse(host, "%d services exceed %d", len(st.Services), MaxServicesPerNode)
	}
	for _, g := range st.Host.GPUs {
		if g.VRAMUsedBytes < 0 || g.VRAMTotalBytes < 0 || g.UtilPercent < 0 {
			return refuse(host, "gpu %d: negative figures", g.Index)
		}
	}
	names := make(map[string]bool, len(st.Services))
	loading := ""
	for i := range st.Services {
		svc := &st.Services[i]
		if !ValidHostID(svc.Name) {
			return refuse(host, "service name %.64q: want 1-%d letters, digits, '.', '_', '-'", svc.Name, MaxHostIDLen)
		}
		if svc.ID != host+"/"+svc.Name || svc.HostID != host {
			return refuse(host, "service %.128q (host %.64q) is not %s/%s: a node names only its own services", svc.ID, svc.HostID, host, svc.Name)
		}
		if names[svc.Name] {
			return refuse(host, "service %s listed twice", svc.ID)
		}
		names[svc.Name] = true
		if len(svc.Assets) > MaxAssetsPerService {
			return refuse(host, "service %s: %d assets exceed %d", svc.ID, len(svc.Assets), MaxAssetsPerService)
		}
		for j := range svc.Assets {
			if n := len(svc.Assets[j].Name); n == 0 || n > MaxNameLen {
				return refuse(host, "service %s: asset name of %d bytes (1-%d)", svc.ID, n, MaxNameLen)
			}
			if svc.Assets[j].Loading {
				// Only a load command makes an asset loading, and a node
				// runs one command at a time, on a service that can swap.
				if svc.Swap == fleet.SwapNone {
					return refuse(host, "service %s: asset %.64q loading on a service that cannot swap", svc.ID, svc.Assets[j].Name)
				}
				if loading != "" {
					return refuse(host, "service %s: asset %.64q loading beside %.64q: at most one load at a time per node", svc.ID, svc.Assets[j].Name, loading)
				}
				loading = svc.Assets[j].Name
			}
			if caps := svc.Assets[j].Capabilities; len(caps) > maxCapabilities {
				return refuse(host, "service %s: asset %.64q: %d capabilities exceed %d", svc.ID, svc.Assets[j].Name, len(caps), maxCapabilities)
			} else {
				for _, c := range caps {
					if len(c) == 0 || len(c) > maxCapabilityLen {
						return refuse(host, "service %s: asset %.64q: capability of %d bytes (1-%d)", svc.ID, svc.Assets[j].Name, len(c), maxCapabilityLen)
					}
				}
			}
		}
		if len(svc.APIs) > MaxAPIsPerService {
			return refuse(host, "service %s: %d apis exceed %d", svc.ID, len(svc.APIs), MaxAPIsPerService)
		}
		switch svc.Swap {
		case fleet.SwapNone, fleet.SwapOllama, fleet.SwapRouter:
		default:
			return refuse(host, "service %s: swap %.32q is not a known kind", svc.ID, svc.Swap)
		}
		if m := &svc.Metrics; m.VRAMTotalBytes < 0 || m.VRAMUsedBytes < 0 || m.LoadedModelCount < 0 || m.QueueDepth < 0 || m.InFlight < 0 || m.LatencyMS < 0 || m.TokensPerSecond < 0 {
			return refuse(host, "service %s: negative metrics figures", svc.ID)
		}
		if _, err := checkEndpoint(svc.Endpoint); err != nil {
			return refuse(host, "service %s: endpoint %.128q: %v", svc.ID, svc.Endpoint, err)
		}
	}
	return nil
}

// checkEndpoint validates an endpoint URL and returns its host (no port).
func checkEndpoint(ep string) (string, error) {
	if len(ep) > MaxEndpointLen {
		return "", fmt.Errorf("longer than %d bytes", MaxEndpointLen)
	}
	u, err := url.Parse(ep)
	if err != nil {
		return "", errors.New("not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", errors.New("scheme must be http or https")
	case u.Opaque != "" || u.Hostname() == "":
		return "", errors.New("no host")
	case u.User != nil:
		return "", errors.New("userinfo is not allowed")
	case u.RawQuery != "" || u.ForceQuery:
		return "", errors.New("a query is not allowed")
	case u.Fragment != "" || strings.Contains(ep, "#"):
		return "", errors.New("a fragment is not allowed")
	case u.RawPath != "" || strings.Contains(u.Path, ".."):
		return "", errors.New("the base path must be plain (no escapes, no ..)")
	}
	for _, c := range []byte(u.Path) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("/._-~", c) >= 0) {
			return "", fmt.Errorf("character %q in the base path", c)
		}
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", errors.New("bad port")
		}
	}
	return strings.ToLower(u.Hostname()), nil
}

// NodeAllowKey is the operator-written hash of per-node endpoint
// allowlists: host id (or "*") -> JSON list of entries.
func (s *Store) NodeAllowKey() string { return s.prefix + "nodes:allow" }

// ParseAllowEntry checks one allowlist entry: a CIDR ("10.0.0.0/24"), an
// IP address, a host name ("gpu-a.lan") or a suffix pattern ("*.lan").
func ParseAllowEntry(e string) (allowRule, error) {
	e = strings.ToLower(strings.TrimSpace(e))
	if p, err := netip.ParsePrefix(e); err == nil {
		return allowRule{prefix: p.Masked()}, nil
	}
	if a, err := netip.ParseAddr(e); err == nil {
		return allowRule{prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	}
	name, suffix := e, false
	if rest, ok := strings.CutPrefix(e, "*."); ok {
		name, suffix = rest, true
	}
	if name == "" || len(name) > 253 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789.-") != "" || strings.Contains(name, "..") {
		return allowRule{}, fmt.Errorf("allowlist entry %q: want a CIDR, an IP address, a host name or *.suffix", e)
	}
	return allowRule{name: name, suffix: suffix}, nil
}

type allowRule struct {
	prefix netip.Prefix
	name   string
	suffix bool
}

func (r allowRule) match(host string) bool {
	if r.prefix.IsValid() {
		a, err := netip.ParseAddr(host)
		return err == nil && r.prefix.Contains(a.Unmap())
	}
	if r.suffix {
		return strings.HasSuffix(host, "."+r.name)
	}
	return host == r.name
}

// nodeAllowlist is the operator's allowlist as loaded; configured is false
// when the key does not exist.
type nodeAllowlist struct {
	configured bool
	rules      map[string][]allowRule
	bad        map[string]string // host -> why its stored entry is unusable
}

// NodeAllowlists reads the stored allowlists (host id -> entries).
func (s *Store) NodeAllowlists(ctx context.Context) (map[string][]string, error) {
	m, err := s.c.HGetAll(ctx, s.NodeAllowKey()).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string][]string, len(m))
	for h, v := range m {
		var l []string
		if err := json.Unmarshal([]byte(v), &l); err != nil {
			return nil, fmt.Errorf("allowlist of %s is corrupt: %w", h, err)
		}
		out[h] = l
	}
	return out, nil
}

// PutNodeAllow sets host's allowlist (replacing it; an empty list removes
// the entry) and announces it.
//
// # Errors
// ErrInvalid for a bad host id or entry.
func (s *Store) PutNodeAllow(ctx context.Context, host string, entries []string) error {
	if host != "*" && !ValidHostID(host) {
		return fmt.Errorf("%w: host id %q", fleet.ErrInvalid, host)
	}
	for _, e := range entries {
		if _, err := ParseAllowEntry(e); err != nil {
			return fmt.Errorf("%w: %v", fleet.ErrInvalid, err)
		}
	}
	b, _ := json.Marshal(entries)
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if len(entries) == 0 {
			p.HDel(ctx, s.NodeAllowKey(), host)
		} else {
			p.HSet(ctx, s.NodeAllowKey(), host, b)
		}
		p.Publish(ctx, s.Channel(EventAllow), host)
		return nil
	})
	return err
}

// loadAllowlist reads the allowlist for the watcher. An entry that does
// not parse refuses that host (fail closed), it does not widen anything.
func (s *Store) loadAllowlist(ctx context.Context) (nodeAllowlist, error) {
	n, err := s.c.Exists(ctx, s.NodeAllowKey()).Result()
	if err != nil || n == 0 {
		return nodeAllowlist{}, err
	}
	m, err := s.c.HGetAll(ctx, s.NodeAllowKey()).Result()
	if err != nil {
		return nodeAllowlist{}, err
	}
	al := nodeAllowlist{configured: true, rules: map[string][]allowRule{}, bad: map[string]string{}}
	for h, v := range m {
		var l []string
		if err := json.Unmarshal([]byte(v), &l); err != nil {
			al.bad[h] = "its allowlist entry is not a JSON list of strings"
			continue
		}
		for _, e := range l {
			r, err := ParseAllowEntry(e)
			if err != nil {
				al.bad[h] = err.Error()
				break
			}
			al.rules[h] = append(al.rules[h], r)
		}
	}
	return al, nil
}

// check refuses a node whose endpoints the allowlist does not cover.
func (al *nodeAllowlist) check(st *fleet.NodeState) *NodeRefusal {
	if !al.configured {
		return nil
	}
	host := st.Host.ID
	if why, ok := al.bad[host]; ok {
		return refuse(host, "unusable allowlist entry: %s", why)
	}
	rules, ok := al.rules[host]
	if !ok {
		if rules, ok = al.rules["*"]; !ok {
			return refuse(host, "no allowlist entry for this node (geniehive node allow %s CIDR...)", host)
		}
	}
	for i := range st.Services {
		h, err := checkEndpoint(st.Services[i].Endpoint)
		if err != nil {
			return refuse(host, "service %s: endpoint: %v", st.Services[i].ID, err)
		}
		allowed := false
		for _, r := range rules {
			allowed = allowed || r.match(h)
		}
		if !allowed {
			return refuse(host, "service %s: endpoint host %q is outside the node's allowlist", st.Services[i].ID, h)
		}
	}
	return nil
}

// nodeGate holds what the watcher knows about refused nodes: the current
// allowlist, the refusals in force and a rate limit for logging them.
type nodeGate struct {
	mu      sync.Mutex
	allow   nodeAllowlist
	refused map[string]fleet.RefusedNode
	logged  map[string]time.Time // host+reason -> last log line
	seen    map[string]bool      // refusals seen in the current full rebuild
	total   uint64
	warned  bool
	log     *slog.Logger
}

func newNodeGate(log *slog.Logger) *nodeGate {
	return &nodeGate{refused: map[string]fleet.RefusedNode{}, logged: map[string]time.Time{}, log: log}
}

// setAllowlist installs a freshly loaded allowlist.
func (g *nodeGate) setAllowlist(al nodeAllowlist) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.allow = al
	if !al.configured && !g.warned {
		g.warned = true
		g.log.Warn("no node endpoint allowlist (" + "geniehive node allow HOST CIDR...): nodes may point their services at any host; configure one to confine them")
	}
}

// admit applies the allowlist to a decoded node, or records r (a
// decoding refusal) for host; it reports whether the node may be routed.
func (g *nodeGate) admit(host string, st *fleet.NodeState, r *NodeRefusal, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r == nil && st != nil {
		r = g.allow.check(st)
	}
	if r == nil {
		delete(g.refused, host)
		return true
	}
	if g.seen != nil {
		g.seen[r.Host] = true
	}
	if prev, ok := g.refused[r.Host]; !ok || prev.Reason != r.Reason {
		g.total++
		g.refused[r.Host] = fleet.RefusedNode{Host: r.Host, Reason: r.Reason, Since: now}
	}
	k := r.Host + "\x00" + r.Reason
	if last, ok := g.logged[k]; !ok || now.Sub(last) >= time.Minute {
		g.logged[k] = now
		if len(g.logged) > 4096 { // bound the rate limiter's memory
			clear(g.logged)
		}
		g.log.Warn("node state refused: not routed", "node", r.Host, "reason", r.Reason)
	}
	return false
}

// logRefusedEvent logs a refused metrics event (at most once a minute per
// host and reason); the node's state is left as it was.
func (g *nodeGate) logRefusedEvent(host, why string, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := host + "\x00event\x00" + why
	if last, ok := g.logged[k]; ok && now.Sub(last) < time.Minute {
		return
	}
	g.logged[k] = now
	if len(g.logged) > 4096 {
		clear(g.logged)
	}
	g.log.Warn("node metrics event refused: ignored", "node", host, "reason", why)
}

// forget drops the refusal of a node whose key is gone.
func (g *nodeGate) forget(host string) {
	g.mu.Lock()
	delete(g.refused, host)
	g.mu.Unlock()
}

// beginRound starts a full rebuild; endRound then drops the refusals the
// rebuild did not see again (their keys are gone or now pass).
func (g *nodeGate) beginRound() {
	g.mu.Lock()
	g.seen = map[string]bool{}
	g.mu.Unlock()
}

func (g *nodeGate) endRound() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for h := range g.refused {
		if !g.seen[h] {
			delete(g.refused, h)
		}
	}
	g.seen = nil
}

// fill copies the refusals into a snapshot being built.
func (g *nodeGate) fill(snap *fleet.Snapshot) {
	g.mu.Lock()
	defer g.mu.Unlock()
	snap.NodesRefusedTotal = g.total
	snap.NodeAllowlist = g.allow.configured
	for _, r := range g.refused {
		snap.Refused = append(snap.Refused, r)
	}
	sort.Slice(snap.Refused, func(i, j int) bool { return snap.Refused[i].Host < snap.Refused[j].Host })
}

// admitAll runs a full rebuild's nodes through the gate and returns the
// routable ones by host.
func (g *nodeGate) admitAll(recs []NodeRecord, refused []*NodeRefusal, now time.Time) map[string]NodeRecord {
	g.beginRound()
	defer g.endRound()
	for _, r := range refused {
		g.admit(r.Host, nil, r, now)
	}
	nm := make(map[string]NodeRecord, len(recs))
	for _, n := range recs {
		if g.admit(n.State.Host.ID, &n.State, nil, now) {
			nm[n.State.Host.ID] = n
		}
	}
	return nm
}

// isRefused reports whether host's current state is refused.
func (g *nodeGate) isRefused(host string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.refused[host]
	return ok
}

// refreshAllowlist reloads the allowlist; on a Redis error the previous
// one stays.
func (g *nodeGate) refreshAllowlist(ctx context.Context, s *Store) {
	al, err := s.loadAllowlist(ctx)
	if err != nil {
		g.log.Warn("node allowlist unreadable: keeping the previous one", "err", err)
		return
	}
	g.setAllowlist(al)
}

// admitOne applies a node event's read (ReadNode's results) to the gate:
// it reports whether rec is routable.
func (g *nodeGate) admitOne(host string, rec *NodeRecord, found bool, err error, now time.Time) (routable bool, handled bool) {
	var r *NodeRefusal
	if errors.As(err, &r) {
		g.admit(host, nil, r, now)
		return false, true
	}
	if err != nil {
		return false, false
	}
	if !found {
		g.forget(host)
		return false, true
	}
	return g.admit(host, &rec.State, nil, now), true
}
