package state

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// In-flight accounting is cluster-wide and crash-safe. Each request in
// flight is a member "<edge>:<seq>" of the sorted set gh:if:{<service>} with
// its lease deadline (unix ms) as score. Counting drops members past their
// deadline, so an edge that dies mid-request leaks its count for at most one
// lease; a live edge refreshes the deadline of its open requests every
// leaseTTL/3. Each in-flight key has its service as hash tag, so the sets of
// a fleet spread over a Cluster's shards. On one server (or a Sentinel
// group) the least-loaded pick is one atomic Lua call over the candidates'
// sets; on a Cluster, where they live in different slots, it is a
// pipelined count and a ZADD: two round trips (pickLeastLoadedSharded).

// Lease is one request's in-flight entry.
type Lease struct {
	Service string
	seq     uint64
}

// Valid reports whether l was issued (the zero Lease is not).
func (l Lease) Valid() bool { return l.seq != 0 }

type inflightOp struct {
	add     bool
	service string
	seq     uint64
	// orphan marks the removal of a lease a failed pick may have added
	// (see forget): not a finished request, so never counted as a
	// pending release.
	orphan bool
}

// Inflight tracks this edge's requests in the shared in-flight sets.
// It is safe for concurrent use. Begin and End only queue work; Run flushes
// it in pipelined batches off the request path.
type Inflight struct {
	s      *Store
	edgeID string
	ttl    time.Duration
	seq    atomic.Uint64

	mu      sync.Mutex
	pending []inflightOp
	open    map[uint64]string // seq -> service, for lease refresh
	// releasing counts, per service, removes taken by a Flush whose
	// pipeline has not returned: Redis may still count them.
	releasing map[string]int64
	// orphans are leases failed picks may have added (see forget),
	// removed again by every refresh until their deadline passes.
	orphans []orphanLease
	kick    chan struct{}
}

// maxOrphans bounds the failed picks an edge remembers.
const maxOrphans = 4096

type orphanLease struct {
	service string
	seq     uint64
	until   time.Time
}

// NewInflight returns a tracker for edge edgeID; leaseTTL bounds how long a
// crashed edge's entries count (default 2m when <= 0). Requests that run
// longer stay counted because Run refreshes their deadline.
func NewInflight(s *Store, edgeID string, leaseTTL time.Duration) *Inflight {
	if leaseTTL <= 0 {
		leaseTTL = 2 * time.Minute
	}
	return &Inflight{s: s, edgeID: edgeID, ttl: leaseTTL, open: map[uint64]string{}, releasing: map[string]int64{}, kick: make(chan struct{}, 1)}
}

func (f *Inflight) key(service string) string { return f.s.InflightKey(service) }

// InflightKey is the sorted set of service's in-flight leases.
func (s *Store) InflightKey(service string) string { return s.prefix + "if:{" + service + "}" }

func (f *Inflight) member(seq uint64) string {
	return f.edgeID + ":" + strconv.FormatUint(seq, 10)
}

// Begin counts a request to service. No round trip: the add is batched.
func (f *Inflight) Begin(service string) Lease {
	l := Lease{Service: service, seq: f.seq.Add(1)}
	f.mu.Lock()
	f.pending = append(f.pending, inflightOp{add: true, service: service, seq: l.seq})
	f.open[l.seq] = service
	f.mu.Unlock()
	f.poke()
	return l
}

// End uncounts a request. Safe to call once per lease; the zero Lease is ignored.
func (f *Inflight) End(l Lease) {
	if !l.Valid() {
		return
	}
	f.mu.Lock()
	if _, ok := f.open[l.seq]; ok {
		delete(f.open, l.seq)
		if i := f.pendingAdd(l.seq); i >= 0 {
			// Begun and ended within one batch: Redis never counts it.
			f.pending = append(f.pending[:i], f.pending[i+1:]...)
		} else {
			f.pending = append(f.pending, inflightOp{service: l.Service, seq: l.seq})
		}
	}
	f.mu.Unlock()
	f.poke()
}

// pendingAdd is the index of seq's queued add, or -1 (f.mu held).
func (f *Inflight) pendingAdd(seq uint64) int {
	for i := range f.pending {
		if op := &f.pending[i]; op.add && op.seq == seq {
			return i
		}
	}
	return -1
}

// PendingReleases returns, per service, how many of this edge's finished
// requests Redis may still count (their removal is queued or being
// written): least_loaded subtracts them so that a client's next request is
// never routed by counts that include its previous one.
func (f *Inflight) PendingReleases(services []string) []int64 {
	out := make([]int64, len(services))
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, svc := range services {
		out[i] = f.releasing[svc]
	}
	for _, op := range f.pending {
		if op.add || op.orphan {
			continue
		}
		for i, svc := range services {
			if svc == op.service {
				out[i]++
			}
		}
	}
	return out
}

// Open returns how many requests this edge holds open.
func (f *Inflight) Open() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.open)
}

func (f *Inflight) poke() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// Run flushes queued changes (batched, at most every 5ms) and refreshes open
// leases, until ctx is done; it then flushes once more, removing this edge's
// open entries is left to their deadline unless Close is called.
func (f *Inflight) Run(ctx context.Context) {
	refresh := time.NewTicker(f.ttl / 3)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			f.Flush(fctx)
			cancel()
			return
		case <-f.kick:
			f.Flush(ctx)
			time.Sleep(5 * time.Millisecond) // let a batch gather
		case <-refresh.C:
			f.refresh(ctx)
		}
	}
}

// Flush writes queued adds and removes now, in one pipeline.
func (f *Inflight) Flush(ctx context.Context) {
	f.mu.Lock()
	ops := f.pending
	f.pending = nil
	for _, op := range ops {
		if !op.add && !op.orphan {
			f.releasing[op.service]++
		}
	}
	f.mu.Unlock()
	if len(ops) == 0 {
		return
	}
	defer func() {
		f.mu.Lock()
		for _, op := range ops {
			if !op.add && !op.orphan {
				if f.releasing[op.service]--; f.releasing[op.service] <= 0 {
					delete(f.releasing, op.service)
				}
			}
		}
		f.mu.Unlock()
	}()
	// One ZADD and one ZREM per service, however many requests the batch
	// holds: fewer commands and allocations than one per request.
	dl := float64(time.Now().Add(f.ttl).UnixMilli())
	type group struct {
		adds []redis.Z
		rems []any
	}
	groups := make(map[string]*group, 4)
	for _, op := range ops {
		g := groups[op.service]
		if g == nil {
			g = &group{}
			groups[op.service] = g
		}
		if op.add {
			g.adds = append(g.adds, redis.Z{Score: dl, Member: f.member(op.seq)})
		} else {
			g.rems = append(g.rems, f.member(op.seq))
		}
	}
	_, err := f.s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for svc, g := range groups {
			// Adds before removes: a request that began and ended within
			// one batch is added and removed, never left behind.
			if len(g.adds) > 0 {
				p.ZAdd(ctx, f.key(svc), g.adds...)
			}
			if len(g.rems) > 0 {
				p.ZRem(ctx, f.key(svc), g.rems...)
			}
		}
		return nil
	})
	if err != nil {
		// Redis is away: removes are retried (they must not leak); adds of
		// requests still open are restored by the next refresh. An add
		// whose answer was lost may still run on the server after the
		// request's removal: it is remembered as an orphan, removed by
		// refreshes once the request has ended.
		until := time.Now().Add(f.ttl)
		f.mu.Lock()
		for _, op := range ops {
			if !op.add {
				f.pending = append(f.pending, op)
			} else {
				f.addOrphanLocked(op.service, op.seq, until)
			}
		}
		f.mu.Unlock()
	}
}

// addOrphanLocked remembers a lease whose add may reach Redis after its
// removal (f.mu held); bounded by maxOrphans, past which the oldest are
// left to their deadline.
func (f *Inflight) addOrphanLocked(service string, seq uint64, until time.Time) {
	f.orphans = append(f.orphans, orphanLease{service: service, seq: seq, until: until})
	if n := len(f.orphans) - maxOrphans; n > 0 {
		f.orphans = append(f.orphans[:0], f.orphans[n:]...)
	}
}

func (f *Inflight) refresh(ctx context.Context) {
	f.mu.Lock()
	open := make(map[uint64]string, len(f.open))
	for k, v := range f.open {
		open[k] = v
	}
	now := time.Now()
	var orphans []orphanLease
	if len(f.orphans) > 0 {
		kept := f.orphans[:0]
		for _, o := range f.orphans {
			if o.until.After(now) {
				kept = append(kept, o)
			}
		}
		f.orphans = kept
		for _, o := range kept {
			if _, ok := open[o.seq]; !ok { // an open request's lease stays
				orphans = append(orphans, o)
			}
		}
	}
	f.mu.Unlock()
	dl := float64(now.Add(f.ttl).UnixMilli())
	touched := map[string]bool{}
	_, err := f.s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for seq, svc := range open {
			p.ZAdd(ctx, f.key(svc), redis.Z{Score: dl, Member: f.member(seq)})
			touched[svc] = true
		}
		for _, o := range orphans {
			p.ZRem(ctx, f.key(o.service), f.member(o.seq))
		}
		for svc := range touched {
			p.ZRemRangeByScore(ctx, f.key(svc), "-inf", strconv.FormatInt(now.UnixMilli(), 10))
		}
		return nil
	})
	if len(open) == 0 {
		return
	}
	// A refresh re-adds the leases of the requests open when it began. One
	// that ended meanwhile may have its removal (Flush, on another
	// connection) run first and this add after it: with Redis restarting
	// or slow, the two connections' commands reach it in either order, and
	// the lease would then count until its deadline, refreshed by no one
	// (seen once in chaos/TestRedisRestart). Such leases are orphans, and
	// so are all of them when the answer was lost (as for a failed Flush).
	until := now.Add(f.ttl)
	f.mu.Lock()
	for seq, svc := range open {
		if _, still := f.open[seq]; err != nil || !still {
			f.addOrphanLocked(svc, seq, until)
		}
	}
	f.mu.Unlock()
}

// InflightCounts returns the live in-flight count of each service, summed
// over every edge, in one pipelined round trip.
func (s *Store) InflightCounts(ctx context.Context, services []string) ([]int64, error) {
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	cmds := make([]*redis.IntCmd, len(services))
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, svc := range services {
			cmds[i] = p.ZCount(ctx, s.InflightKey(svc), "("+now, "+inf")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(services))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}

// pickScript counts live members of each key (dropping expired ones), adds
// the caller's lease to the key with the lowest count+queue (first wins a
// tie: callers order keys by latency), and returns {index, counts...}.
// ARGV: now_ms, deadline_ms, member, queue_1..queue_n.
var pickScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local best, bestLoad = 0, nil
local res = {0}
for i, k in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
  local c = redis.call('ZCARD', k)
  res[i+1] = c
  local load = c + tonumber(ARGV[3+i] or '0')
  if bestLoad == nil or load < bestLoad then best, bestLoad = i, load end
end
if best > 0 then
  redis.call('ZADD', KEYS[best], ARGV[2], ARGV[3])
  res[best+1] = res[best+1] + 1
end
res[1] = best - 1
return res
`)

// PickLeastLoaded atomically picks, among services, the one with the lowest
// cluster-wide in-flight count plus queueDepth (ties: the earlier one, so
// order services by latency), and counts this request against it. One round
// trip. counts are the in-flight figures including this request.
func (f *Inflight) PickLeastLoaded(ctx context.Context, services []string, queueDepth []int64) (idx int, counts []int64, l Lease, err error) {
	if len(services) == 0 {
		return -1, nil, Lease{}, nil
	}
	if _, cluster := f.s.c.(*redis.ClusterClient); cluster && len(services) > 1 {
		return f.pickLeastLoadedSharded(ctx, services, queueDepth)
	}
	keys := make([]string, len(services))
	for i, svc := range services {
		keys[i] = f.key(svc)
	}
	seq := f.seq.Add(1)
	now := time.Now()
	args := make([]any, 3, 3+len(services))
	args[0] = now.UnixMilli()
	args[1] = now.Add(f.ttl).UnixMilli()
	args[2] = f.member(seq)
	rel := f.PendingReleases(services)
	for i := range services {
		var q int64
		if i < len(queueDepth) {
			q = queueDepth[i]
		}
		args = append(args, q-rel[i]) // this edge's finished requests Redis still counts
	}
	res, err := pickScript.Run(ctx, f.s.c, keys, args...).Int64Slice()
	if err != nil {
		f.forget(services, seq)
		return -1, nil, Lease{}, err
	}
	idx = int(res[0])
	counts = res[1:]
	l = Lease{Service: services[idx], seq: seq}
	f.mu.Lock()
	f.open[seq] = l.Service
	f.mu.Unlock()
	return idx, counts, l, nil
}

// forget queues the removal of lease seq from every one of services after
// a pick that failed. A pick that fails on the client's side (its context
// ends: the client left, or a deadline passed while Redis was slow) may
// still have been written, and then runs on the server after the caller
// gave up: its lease would count against that service, refreshed by no
// one, until its deadline (inflight_lease, 30s by default). Removing a
// member that was never added is harmless. The removal goes through the
// batched queue at once and again with every lease refresh until the
// lease's deadline: the pick's command may reach a busy Redis on its own
// connection after the first removal does, so a leak lasts at most one
// refresh period (inflight_lease/3), not a whole lease.
func (f *Inflight) forget(services []string, seq uint64) {
	until := time.Now().Add(f.ttl)
	f.mu.Lock()
	for _, svc := range services {
		f.pending = append(f.pending, inflightOp{service: svc, seq: seq, orphan: true})
		f.addOrphanLocked(svc, seq, until)
	}
	f.mu.Unlock()
	f.poke()
}

// pickLeastLoadedSharded is PickLeastLoaded on a Redis Cluster, where the
// candidates' sets live in different slots and no script can touch them
// all: one pipelined ZCOUNT per candidate (one round trip, the shards
// answering in parallel), the pick made here, then the lease added to the
// chosen set (a second round trip) so every edge sees it before the pick
// returns. Two edges picking within that one round trip may both see the
// same counts: the balance is exact up to the picks in flight in it.
func (f *Inflight) pickLeastLoadedSharded(ctx context.Context, services []string, queueDepth []int64) (idx int, counts []int64, l Lease, err error) {
	counts, err = f.s.InflightCounts(ctx, services)
	if err != nil {
		return -1, nil, Lease{}, err
	}
	rel := f.PendingReleases(services) // this edge's finished requests Redis still counts
	best := int64(-1)
	for i, c := range counts {
		load := c - rel[i]
		if i < len(queueDepth) {
			load += queueDepth[i]
		}
		if best < 0 || load < best {
			idx, best = i, load
		}
	}
	seq := f.seq.Add(1)
	dl := float64(time.Now().Add(f.ttl).UnixMilli())
	if err := f.s.c.ZAdd(ctx, f.key(services[idx]), redis.Z{Score: dl, Member: f.member(seq)}).Err(); err != nil {
		f.forget(services[idx:idx+1], seq)
		return -1, nil, Lease{}, err
	}
	counts[idx]++
	l = Lease{Service: services[idx], seq: seq}
	f.mu.Lock()
	f.open[seq] = l.Service
	f.mu.Unlock()
	return idx, counts, l, nil
}
