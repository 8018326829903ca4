package state

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/redis/go-redis/v9"
)

// DefaultPrefix is the key prefix used when none is configured.
const DefaultPrefix = "gh:"

// Options says how to reach Redis.
type Options struct {
	// URL names a single server, a Sentinel group or a Cluster; the forms
	// are listed in redisurl.go (redis://, rediss://, unix://,
	// redis+sentinel://, redis+cluster://, their rediss+ TLS forms, and the
	// older redis-sentinel:// and redis-cluster:// spellings).
	// Default: redis://127.0.0.1:6379/0.
	URL string
	// Prefix is put before every key and channel. Default "gh:".
	Prefix string
	// Username and Password override the servers' credentials in URL (so
	// secrets can come from the environment rather than a URL in a config
	// file). A Sentinel's own credentials come from the URL only.
	Username, Password string
	// TLS files (PEM) for rediss:// (and TLS to Sentinel or Cluster):
	// TLSCert and TLSKey are this client's certificate and key, for a
	// server that requires client certificates (redis-server
	// --tls-auth-clients yes); TLSCA verifies the server instead of the
	// system roots. Each overrides the URL's tls_cert, tls_key and tls_ca
	// query parameters (rediss://host:6380/0?tls_cert=/c.pem&tls_key=/k.pem&tls_ca=/ca.pem).
	TLSCert, TLSKey, TLSCA string
}

// tlsParams are the URL query parameters NewClient reads itself (go-redis
// refuses options it does not know).
var tlsParams = [...]string{"tls_cert", "tls_key", "tls_ca"}

// takeTLS returns raw without its tls_* query parameters and fills the
// empty TLS fields of o from them. The query is cut by hand: Sentinel and
// Cluster host lists (h1:p,h2:p) do not parse as URLs.
func takeTLS(raw string, o *Options) (string, error) {
	base, query, ok := strings.Cut(raw, "?")
	if !ok {
		return raw, nil
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", err
	}
	for i, p := range tlsParams {
		v := q.Get(p)
		q.Del(p)
		dst := [...]*string{&o.TLSCert, &o.TLSKey, &o.TLSCA}[i]
		if *dst == "" {
			*dst = v
		}
	}
	if len(q) == 0 {
		return base, nil
	}
	return base + "?" + q.Encode(), nil
}

// tlsConfig builds the client TLS config from o's files; nil when none is
// named. serverName is the host verified against the server certificate.
func tlsConfig(o Options, serverName string) (*tls.Config, error) {
	if o.TLSCert == "" && o.TLSKey == "" && o.TLSCA == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return nil, errors.New("redis tls: a client certificate needs both tls_cert and tls_key")
	}
	if o.TLSCert != "" {
		kp, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("redis tls: client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{kp}
	}
	if o.TLSCA != "" {
		pem, err := os.ReadFile(o.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("redis tls: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis tls: %s holds no PEM certificate", o.TLSCA)
		}
		c.RootCAs = pool
	}
	return c, nil
}

// Connect builds a UniversalClient from o and pings it.
//
// # Errors
// An invalid URL, or a server that does not answer PING within ctx.
func Connect(ctx context.Context, o Options) (redis.UniversalClient, error) {
	c, err := NewClient(o)
	if err != nil {
		return nil, err
	}
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redis %s: %w", RedactURL(o.URL), err)
	}
	return c, nil
}

// NewClient builds the client o.URL names (a *redis.Client for one server
// or a Sentinel group, a *redis.ClusterClient for a Cluster) without
// contacting the server. Every part of GenieHive (edge, node agent, dev,
// the CLI) connects through it.
//
// # Errors
// See parseRedisURL.
func NewClient(o Options) (redis.UniversalClient, error) {
	raw, err := takeTLS(o.URL, &o)
	if err != nil {
		return nil, fmt.Errorf("redis url %s: %w", RedactURL(o.URL), err)
	}
	p, err := parseRedisURL(raw)
	if err != nil {
		return nil, err
	}
	tc, err := tlsConfig(o, "")
	if err != nil {
		return nil, err
	}
	if err := p.setTLS(tc); err != nil {
		return nil, fmt.Errorf("redis url %s: %w", RedactURL(raw), err)
	}
	return p.newClient(o), nil
}

// RedactURL hides the passwords in a Redis URL (user info, password= and
// sentinel_password= parameters) for logs.
func RedactURL(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	// Host lists (h1:p,h2:p) do not parse as URLs: hide the user info by hand.
	if at := strings.LastIndexByte(beforeAny(rest, "/?#"), '@'); at >= 0 {
		if user, _, hasPw := strings.Cut(rest[:at], ":"); hasPw {
			rest = user + ":xxxxx" + rest[at:]
		}
	}
	if q := strings.IndexByte(rest, '?'); q >= 0 {
		vals, err := url.ParseQuery(rest[q+1:])
		if err != nil {
			return scheme + "://" + rest[:q] + "?xxxxx"
		}
		for k := range vals {
			if strings.Contains(strings.ToLower(k), "password") {
				vals.Set(k, "xxxxx")
			}
		}
		rest = rest[:q+1] + vals.Encode()
	}
	return scheme + "://" + rest
}

// Store reads and writes GenieHive's shared state. It is safe for concurrent
// use; it does not own the client (Close it yourself).
type Store struct {
	c      redis.UniversalClient
	prefix string

	kCatalog, kKeys, kAuth, kPolicy, kProbe, kStats, kEdges, kBenchIndex, kSeeded string
	chPrefix                                                                      string
}

// New returns a Store over c with every key under prefix ("" = "gh:").
func New(c redis.UniversalClient, prefix string) *Store {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	s := &Store{c: c, prefix: prefix}
	s.kCatalog = prefix + "catalog"
	s.kKeys = prefix + "keys"
	s.kAuth = prefix + "auth:enabled"
	s.kPolicy = prefix + "policy:bundle"
	s.kProbe = prefix + "probe"
	s.kStats = prefix + "stats"
	s.kEdges = prefix + "edges"
	s.kBenchIndex = prefix + "bench:index"
	s.kSeeded = prefix + "seeded"
	s.chPrefix = prefix + "events:"
	return s
}

// Client returns the underlying client.
func (s *Store) Client() redis.UniversalClient { return s.c }

// Prefix returns the key prefix.
func (s *Store) Prefix() string { return s.prefix }

// Key joins parts under the prefix with ':'.
func (s *Store) Key(parts ...string) string { return s.prefix + strings.Join(parts, ":") }

// Event channel suffixes (the channel is <prefix>events:<suffix>).
const (
	EventCatalog = "catalog"
	EventKeys    = "keys"
	EventPolicy  = "policy"
	EventHealth  = "health"
	EventBench   = "bench"
	EventNode    = "node:" // + host id
)

// Channel returns the full pub/sub channel for an event suffix.
func (s *Store) Channel(event string) string { return s.chPrefix + event }

// NodeKey is the key holding a node's NodeState.
func (s *Store) NodeKey(hostID string) string { return s.prefix + "node:{" + hostID + "}:state" }

// goneKey is the tombstone a graceful stop leaves, so edges that missed the
// "down" event still drop the node at their next resync.
func (s *Store) goneKey(hostID string) string { return s.prefix + "node:{" + hostID + "}:gone" }

// goneTTL is how long a tombstone lives: longer than any heartbeat TTL.
const goneTTL = 5 * time.Minute

func (s *Store) nodeKeyPattern() string { return s.prefix + "node:{*}:*" }

// WriteHeartbeat stores st under the node's key with ttl and announces it
// ("up"), in one MULTI/EXEC (both keys share nothing cross-slot: PUBLISH
// has no key). It sets st.TTLSeconds and st.Shape.
//
// # Errors
// ErrInvalid for a bad host id, ttl < 1s or services of another host;
// Redis errors otherwise.
func (s *Store) WriteHeartbeat(ctx context.Context, st *fleet.NodeState, ttl time.Duration) error {
	return s.WriteBeat(ctx, st, ttl, nil)
}

// Beats is what one node's heartbeat writer remembers between beats: the
// shape of its last whole publish and the beats since. The zero value is
// ready (its first beat publishes "up"). Not safe for concurrent use.
type Beats struct {
	shape string
	since int
	buf   []byte
}

// WriteBeat is WriteHeartbeat for a writer that remembers its beats in
// b (nil: always "up"): when only st's volatile fields changed since b's
// last whole publish, and fewer than FullEvery beats ago, the beat
// announces a metrics event instead of "up" (metricsevent.go). The state
// stored is the whole state either way.
//
// # Errors
// As WriteHeartbeat. After an error b forgets its shape, so the next
// beat is announced whole.
func (s *Store) WriteBeat(ctx context.Context, st *fleet.NodeState, ttl time.Duration, b *Beats) error {
	if !ValidHostID(st.Host.ID) {
		return fmt.Errorf("%w: host id %q", fleet.ErrInvalid, st.Host.ID)
	}
	if ttl < time.Second {
		return fmt.Errorf("%w: heartbeat ttl %s < 1s", fleet.ErrInvalid, ttl)
	}
	for i := range st.Services {
		if st.Services[i].HostID != st.Host.ID {
			return fmt.Errorf("%w: service %q belongs to host %q, not %q", fleet.ErrInvalid, st.Services[i].ID, st.Services[i].HostID, st.Host.ID)
		}
	}
	if r := checkNodeState(st.Host.ID, st); r != nil { // what edges would refuse
		return fmt.Errorf("%w: %s", fleet.ErrInvalid, r.Reason)
	}
	st.TTLSeconds = int(ttl / time.Second)
	st.Shape = StateShape(st)
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	var ev any = "up"
	metrics := false
	if b != nil && b.shape == st.Shape && b.since < FullEvery-1 {
		if m, ok := appendMetricsEvent(b.buf[:0], st, fnvSum(raw)); ok {
			b.buf, ev, metrics = m, m, true
		}
	}
	_, err = s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, s.NodeKey(st.Host.ID), raw, ttl)
		p.Del(ctx, s.goneKey(st.Host.ID))
		p.Publish(ctx, s.Channel(EventNode+st.Host.ID), ev)
		return nil
	})
	switch {
	case b == nil:
	case err != nil:
		b.shape, b.since = "", 0
	case !metrics:
		b.shape, b.since = st.Shape, 0
	default:
		b.since++
	}
	return err
}

// RemoveNode deletes a node's state at once (graceful stop), leaves a
// short-lived tombstone so a resync drops it even where the event was
// missed, and announces it.
func (s *Store) RemoveNode(ctx context.Context, hostID string) error {
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, s.NodeKey(hostID))
		p.Set(ctx, s.goneKey(hostID), "1", goneTTL)
		p.Publish(ctx, s.Channel(EventNode+hostID), "down")
		return nil
	})
	return err
}

// NodeRecord is a node's stored state and when it expires.
type NodeRecord struct {
	State    fleet.NodeState
	Deadline time.Time
	// sum is a keyed hash of the stored JSON (rawSum), so a resync
	// recognises an unchanged node without decoding it or keeping its
	// bytes (6 KB a node of 5 services); 0 for none.
	sum uint64
	// nodeSum is, for a record a metrics event patched (metricsevent.go),
	// the FNV-1a 64 (|1) of the bytes the node says it stored with those
	// figures; 0 for a record decoded from Redis.
	nodeSum uint64
	// fig, for a record a metrics event patched (or a whole state of
	// the view's shape, sameShapeRecord), holds its figures (Metrics,
	// UpdatedAt, GPUs; Deadline set when stored, storeFigures): State
	// keeps the volatile fields of the report it was decoded from and
	// shares its services with it, so a metrics event retains and
	// allocates only its figures, not a copy of the node's services
	// (figuresOf reads fig first). nil for a record decoded from Redis.
	fig *fleet.Figures
}

// sameBytes reports whether raw, a node's stored state, is what rec was
// built from (by its keyed sum, or the sum a metrics event named).
func (rec *NodeRecord) sameBytes(raw string) bool {
	return (rec.sum != 0 && rec.sum == rawSum(raw)) || (rec.nodeSum != 0 && rec.nodeSum == fnvSum(raw)|1)
}

// sameRecord reports whether a and b were built from the same stored bytes.
func sameRecord(a, b *NodeRecord) bool {
	return (a.sum != 0 && a.sum == b.sum) || (a.nodeSum != 0 && a.nodeSum == b.nodeSum)
}

// ReadNode reads one node; found is false when its key is gone.
func (s *Store) ReadNode(ctx context.Context, hostID string) (rec NodeRecord, found bool, err error) {
	var get *redis.StringCmd
	var pttl *redis.DurationCmd
	now := time.Now()
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, s.NodeKey(hostID))
		pttl = p.PTTL(ctx, s.NodeKey(hostID))
		return nil
	})
	if errors.Is(err, redis.Nil) || (err == nil && get.Err() == redis.Nil) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, err
	}
	rec, r := s.decodeNode(s.NodeKey(hostID), get.Val(), pttl.Val(), now)
	if r != nil {
		return rec, false, r
	}
	return rec, true, nil
}

// nodeRead is one node's result in a batch read.
type nodeRead struct {
	rec   NodeRecord
	found bool
	err   error
}

// readNodeBatch reads several nodes as ReadNode does, in one pipeline.
func (s *Store) readNodeBatch(ctx context.Context, ids []string) []nodeRead {
	out := make([]nodeRead, len(ids))
	gets := make([]*redis.StringCmd, len(ids))
	ttls := make([]*redis.DurationCmd, len(ids))
	now := time.Now()
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			gets[i] = p.Get(ctx, s.NodeKey(id))
			ttls[i] = p.PTTL(ctx, s.NodeKey(id))
		}
		return nil
	})
	for i, id := range ids {
		switch gerr := gets[i].Err(); {
		case errors.Is(gerr, redis.Nil):
		case gerr != nil:
			out[i].err = gerr
		case err != nil && !errors.Is(err, redis.Nil) && ttls[i].Err() != nil:
			out[i].err = ttls[i].Err()
		default:
			rec, r := s.decodeNode(s.NodeKey(id), gets[i].Val(), ttls[i].Val(), now)
			if r != nil {
				out[i].err = r
				continue
			}
			out[i].rec, out[i].found = rec, true
		}
	}
	return out
}

// ReadNodes reads every node's state. It SCANs (on every master of a
// cluster): call it on resync, never per request.
func (s *Store) ReadNodes(ctx context.Context) ([]NodeRecord, error) {
	recs, _, _, err := s.readNodes(ctx, nil)
	return recs, err
}

// readNodes also returns the hosts that left gracefully (tombstones) and
// the node states refused (nodevalidate.go). A state whose stored bytes
// equal those of its record in known is not decoded again: that record is
// returned (with the later deadline, should the key's TTL have been
// renewed with the same bytes).
func (s *Store) readNodes(ctx context.Context, known map[string]NodeRecord) ([]NodeRecord, map[string]bool, []*NodeRefusal, error) {
	var keys []string
	var mu sync.Mutex
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		var local []string
		iter := c.Scan(ctx, 0, s.nodeKeyPattern(), 512).Iterator()
		for iter.Next(ctx) {
			local = append(local, iter.Val())
		}
		mu.Lock()
		keys = append(keys, local...)
		mu.Unlock()
		return iter.Err()
	}
	if cc, ok := s.c.(*redis.ClusterClient); ok {
		if err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return scan(ctx, m) }); err != nil {
			return nil, nil, nil, err
		}
	} else if err := scan(ctx, s.c); err != nil {
		return nil, nil, nil, err
	}
	gone := map[string]bool{}
	stateKeys := keys[:0]
	for _, k := range keys {
		id, kind, _, ok := s.parseNodeKey(k)
		switch {
		case !ok && strings.HasSuffix(k, ":state"):
			stateKeys = append(stateKeys, k) // refused by decodeNode, and reported
		case !ok:
		case kind == "gone":
			gone[id] = true
		case kind == "state":
			stateKeys = append(stateKeys, k)
		}
	}
	if len(stateKeys) == 0 {
		return nil, gone, nil, nil
	}
	now := time.Now()
	gets := make([]*redis.StringCmd, len(stateKeys))
	ttls := make([]*redis.DurationCmd, len(stateKeys))
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range stateKeys {
			gets[i] = p.Get(ctx, k)
			ttls[i] = p.PTTL(ctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, nil, err
	}
	out := make([]NodeRecord, 0, len(stateKeys))
	var refused []*NodeRefusal
	for i := range stateKeys {
		if gets[i].Err() != nil {
			continue // expired between SCAN and GET
		}
		if host, _, _, ok := s.parseNodeKey(stateKeys[i]); ok {
			if k, ok := known[host]; ok && k.sameBytes(gets[i].Val()) && ttls[i].Val() > 0 {
				if d := now.Add(min(ttls[i].Val(), MaxNodeTTL)); d.Sub(k.Deadline) > time.Second {
					k.Deadline = d
				}
				out = append(out, k)
				continue
			}
		}
		rec, r := s.decodeNode(stateKeys[i], gets[i].Val(), ttls[i].Val(), now)
		if r != nil {
			refused = append(refused, r)
			continue
		}
		out = append(out, rec)
	}
	return out, gone, refused, nil
}

// PutCatalog validates and stores the role catalog, and announces it.
func (s *Store) PutCatalog(ctx context.Context, c *fleet.Catalog) error {
	if err := c.Validate(); err != nil {
		return err
	}
	c.Version = ""
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	c.Version = hex.EncodeToString(sum[:6])
	if b, err = json.Marshal(c); err != nil {
		return err
	}
	if err = s.markSeeded(ctx); err != nil {
		return err
	}
	_, err = s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, s.kCatalog, b, 0)
		p.Publish(ctx, s.Channel(EventCatalog), "put")
		return nil
	})
	if err != nil {
		return err
	}
	// The last good copy, after the live one is in (another slot: not in
	// the transaction); if this write fails the copy is the previous good.
	return s.c.Set(ctx, s.kCatalog+":good", b, 0).Err()
}

// GetCatalog reads the role catalog; an empty one when none is stored.
func (s *Store) GetCatalog(ctx context.Context) (*fleet.Catalog, error) {
	b, err := s.c.Get(ctx, s.kCatalog).Bytes()
	if errors.Is(err, redis.Nil) {
		return &fleet.Catalog{}, nil
	}
	if err != nil {
		return nil, err
	}
	var c fleet.Catalog
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("stored catalog is %w: %v", ErrCorrupt, err)
	}
	return &c, nil
}

// GoodCatalog reads the copy of the catalog PutCatalog keeps beside the
// live one (gh:catalog:good), for an edge that starts while gh:catalog is
// corrupt; nil, nil when there is none or it does not decode either.
func (s *Store) GoodCatalog(ctx context.Context) (*fleet.Catalog, error) {
	b, err := s.c.Get(ctx, s.kCatalog+":good").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var c fleet.Catalog
	if json.Unmarshal(b, &c) != nil {
		return nil, nil
	}
	return &c, nil
}

// PutKey stores an API key (its hash only) and announces it.
func (s *Store) PutKey(ctx context.Context, k fleet.APIKey) error {
	if !fleet.ValidID(k.ID) {
		return fmt.Errorf("%w: key id %q", fleet.ErrInvalid, k.ID)
	}
	if h, err := hex.DecodeString(k.Hash); err != nil || len(h) != sha256.Size {
		return fmt.Errorf("%w: key %q: sha256 must be 64 hex digits", fleet.ErrInvalid, k.ID)
	}
	if !k.Scope.Valid() {
		return fmt.Errorf("%w: key %q: scope %q (want client, reader or operator)", fleet.ErrInvalid, k.ID, k.Scope)
	}
	b, _ := json.Marshal(k)
	// Auth turns on before the key is stored (another slot: not in the
	// transaction), so a failure in between fails closed.
	if err := s.markSeeded(ctx); err != nil {
		return err
	}
	if err := s.c.Set(ctx, s.kAuth, "1", 0).Err(); err != nil {
		return err
	}
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.kKeys, k.ID, b)
		p.Publish(ctx, s.Channel(EventKeys), "put")
		return nil
	})
	return err
}

// DeleteKey removes an API key and announces it.
func (s *Store) DeleteKey(ctx context.Context, id string) error {
	if err := s.markSeeded(ctx); err != nil {
		return err
	}
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HDel(ctx, s.kKeys, id)
		p.Publish(ctx, s.Channel(EventKeys), "del")
		return nil
	})
	return err
}

// rrIdle is how long an unused round-robin counter lives.
const rrIdle = 24 * time.Hour

var rrScript = redis.NewScript(`
local n = redis.call('INCRBY', KEYS[1], ARGV[2])
local step = tonumber(ARGV[2])
-- refresh the idle expiry when the batch holds a value = 1 (mod 4096)
if math.floor((n - 1) / 4096) ~= math.floor((n - step - 1) / 4096) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
`)

// NextRR increments the shared round-robin counter of target and returns the
// new value (1 on first use). One round trip of one command (a script that
// also refreshes the counter's idle expiry every 4096 uses).
func (s *Store) NextRR(ctx context.Context, target string) (uint64, error) {
	return s.NextRRN(ctx, target, 1)
}

// NextRRN takes n consecutive values of target's round-robin counter at
// once and returns the last; the caller owns last-n+1 .. last. Callers that
// coalesce concurrent picks use it to keep the rotation exact with one
// round trip per batch.
//
// # Errors
// ErrInvalid for n < 1; Redis errors.
func (s *Store) NextRRN(ctx context.Context, target string, n int) (uint64, error) {
	if n < 1 {
		return 0, fmt.Errorf("%w: round-robin batch of %d", fleet.ErrInvalid, n)
	}
	v, err := rrScript.Run(ctx, s.c, []string{s.RRKey(target)}, int(rrIdle/time.Second), n).Int64()
	if err != nil {
		return 0, err
	}
	return uint64(v), nil
}

// RRKey is the round-robin counter of target. Its hash tag is the target,
// so on a Redis Cluster the counters of different targets spread over the
// shards.
func (s *Store) RRKey(target string) string { return s.prefix + "rr:{" + target + "}" }

// PeekRR returns the current counter without changing it (dry runs).
func (s *Store) PeekRR(ctx context.Context, target string) (uint64, error) {
	v, err := s.c.Get(ctx, s.RRKey(target)).Uint64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return v, err
}

// PutPolicyBundle stores a policy bundle and announces it.
func (s *Store) PutPolicyBundle(ctx context.Context, b *fleet.PolicyBundle) error {
	if b.Version == "" || len(b.Files) == 0 {
		return fmt.Errorf("%w: policy bundle needs a version and files", fleet.ErrInvalid)
	}
	raw, err := json.Marshal(b)
	if err != nil {
		return err
	}
	if err = s.markSeeded(ctx); err != nil {
		return err
	}
	_, err = s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, s.kPolicy, raw, 0)
		p.Publish(ctx, s.Channel(EventPolicy), b.Version)
		return nil
	})
	return err
}

// GetPolicyBundle reads the pushed bundle; nil, nil when none.
func (s *Store) GetPolicyBundle(ctx context.Context) (*fleet.PolicyBundle, error) {
	raw, err := s.c.Get(ctx, s.kPolicy).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var b fleet.PolicyBundle
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("stored policy bundle is corrupt: %w", err)
	}
	return &b, nil
}

// LoadScripts loads every Lua script the store uses into Redis, so the
// first request of a new edge costs one round trip like the rest (EVALSHA
// rather than a NOSCRIPT miss and an EVAL). Edges call it at start; a Redis
// restart flushes scripts and the first call after it falls back to EVAL.
func (s *Store) LoadScripts(ctx context.Context) error {
	for _, sc := range []*redis.Script{rrScript, pickScript, failScript, assetFailScript, leaseScript, releaseScript} {
		if err := sc.Load(ctx, s.c).Err(); err != nil {
			return err
		}
	}
	return nil
}

// markSeeded sets the marker Seeded reads. Operator writes set it first,
// then write and announce their value in one MULTI/EXEC: the marker and the
// value live in different Cluster slots, so they cannot share the
// transaction, and a marker without the value (the write failed) only says
// what was true before.
func (s *Store) markSeeded(ctx context.Context) error {
	return s.c.Set(ctx, s.kSeeded, "1", 0).Err()
}

// Seeded reports whether an operator has written state (catalog, keys or
// policy) into this Redis since its data was last lost. Every operator write
// sets the marker, so its absence alongside a non-empty edge snapshot means
// Redis lost its data (a restart without persistence, a FLUSHALL), not that
// an operator deleted everything.
func (s *Store) Seeded(ctx context.Context) (bool, error) {
	n, err := s.c.Exists(ctx, s.kSeeded).Result()
	return n == 1, err
}

// Reseed writes operator state an edge still holds back into a Redis that
// lost it: each piece only where it is missing (SETNX / HSETNX), so edges
// racing to restore the same state are harmless, and an operator write
// that got there first wins. It sets the seeded marker and announces what
// it wrote.
func (s *Store) Reseed(ctx context.Context, c *fleet.Catalog, keys []fleet.APIKey, authOn bool, pb *fleet.PolicyBundle) error {
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		if c != nil && len(c.Roles) > 0 {
			if b, err := json.Marshal(c); err == nil {
				p.SetNX(ctx, s.kCatalog, b, 0)
				p.Publish(ctx, s.Channel(EventCatalog), "reseed")
			}
		}
		for _, k := range keys {
			if b, err := json.Marshal(k); err == nil {
				p.HSetNX(ctx, s.kKeys, k.ID, b)
			}
		}
		if authOn || len(keys) > 0 {
			p.Set(ctx, s.kAuth, "1", 0)
		}
		if len(keys) > 0 {
			p.Publish(ctx, s.Channel(EventKeys), "reseed")
		}
		if pb != nil {
			if b, err := json.Marshal(pb); err == nil {
				p.SetNX(ctx, s.kPolicy, b, 0)
				p.Publish(ctx, s.Channel(EventPolicy), pb.Version)
			}
		}
		p.Set(ctx, s.kSeeded, "1", 0)
		return nil
	})
	return err
}
