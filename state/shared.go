package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/redis/go-redis/v9"
)

// CooldownKey holds service's passive-health cooldown deadline; failKey
// its consecutive failure count. Both carry the service as hash tag: the
// failure script touches the two in one slot, and the services of a fleet
// spread over a Cluster's shards.
func (s *Store) CooldownKey(svc string) string { return s.prefix + "health:{" + svc + "}:cool" }
func (s *Store) failKey(svc string) string     { return s.prefix + "health:{" + svc + "}:fail" }

// failScript: INCR the failure counter (window = ARGV[3] ms); when it
// reaches the threshold ARGV[1], set the cooldown key to its deadline for
// ARGV[2] ms, reset the counter, and return 1.
var failScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if n >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[2])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`)

// RecordFailure counts a consecutive upstream failure of service; at
// threshold it puts the service in cooldown for the given time (shared by
// every edge) and announces it. cooledDown reports whether that happened.
func (s *Store) RecordFailure(ctx context.Context, service string, threshold int, cooldown time.Duration) (bool, error) {
	if threshold < 1 {
		threshold = 1
	}
	until := time.Now().Add(cooldown).UnixMilli()
	window := cooldown * 4
	if window < time.Minute {
		window = time.Minute
	}
	n, err := failScript.Run(ctx, s.c, []string{s.failKey(service), s.CooldownKey(service)},
		threshold, cooldown.Milliseconds(), window.Milliseconds(), until).Int()
	if err != nil {
		return false, err
	}
	if n == 1 {
		s.c.Publish(ctx, s.Channel(EventHealth), service)
		return true, nil
	}
	return false, nil
}

// RecordSuccess clears a service's failure count and cooldown.
func (s *Store) RecordSuccess(ctx context.Context, service string) error {
	n, err := s.c.Del(ctx, s.failKey(service), s.CooldownKey(service)).Result()
	if err == nil && n > 0 {
		s.c.Publish(ctx, s.Channel(EventHealth), service)
	}
	return err
}

// Cooldowns returns the services in cooldown and until when.
func (s *Store) Cooldowns(ctx context.Context, services []string) (map[string]time.Time, error) {
	if len(services) == 0 {
		return nil, nil
	}
	// One GET per service in one pipeline (one round trip; on a Cluster,
	// one per shard, in parallel): the keys live in different slots.
	gets := make([]*redis.StringCmd, len(services))
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, svc := range services {
			gets[i] = p.Get(ctx, s.CooldownKey(svc))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := map[string]time.Time{}
	for i, g := range gets {
		ms, err := strconv.ParseInt(g.Val(), 10, 64)
		if g.Err() == nil && err == nil {
			out[services[i]] = time.UnixMilli(ms)
		}
	}
	return out, nil
}

// MaxProbesPerWrite bounds the results one PutProbes call writes.
const MaxProbesPerWrite = 1000

// PutProbes records active health probe results (service id -> result)
// in one write and announces them with one health event, at most
// MaxProbesPerWrite of them. A health event makes every edge re-read the
// fleet's probes and cooldowns (O(services)), so a probing round announces
// its results in a few writes, never one per service.
//
// # Errors
// Redis errors; more than MaxProbesPerWrite results.
func (s *Store) PutProbes(ctx context.Context, results map[string]fleet.ProbeResult) error {
	if len(results) == 0 {
		return nil
	}
	if len(results) > MaxProbesPerWrite {
		return fmt.Errorf("%d probe results in one write (at most %d)", len(results), MaxProbesPerWrite)
	}
	args := make([]any, 0, 2*len(results))
	for id, r := range results {
		b, _ := json.Marshal(r)
		args = append(args, id, b)
	}
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.kProbe, args...)
		p.Publish(ctx, s.Channel(EventHealth), "probes")
		return nil
	})
	return err
}

// Probes returns every stored probe result.
func (s *Store) Probes(ctx context.Context) (map[string]fleet.ProbeResult, error) {
	m, err := s.c.HGetAll(ctx, s.kProbe).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]fleet.ProbeResult, len(m))
	for k, v := range m {
		var r fleet.ProbeResult
		if json.Unmarshal([]byte(v), &r) == nil {
			out[k] = r
		}
	}
	return out, nil
}

func (s *Store) leaseKey(name string) string { return s.prefix + "lease:" + name }

var leaseScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
`)

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// AcquireLease takes the named lease for holder, or renews it if holder has
// it already. It reports whether holder holds it now.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	n, err := leaseScript.Run(ctx, s.c, []string{s.leaseKey(name)}, holder, ttl.Milliseconds()).Int()
	return n == 1, err
}

// ReleaseLease gives the lease up if holder has it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	return releaseScript.Run(ctx, s.c, []string{s.leaseKey(name)}, holder).Err()
}

// LeaseHolder returns who holds the lease ("" when nobody).
func (s *Store) LeaseHolder(ctx context.Context, name string) (string, error) {
	v, err := s.c.Get(ctx, s.leaseKey(name)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return v, err
}

// MergeStats writes edge-observed service figures. Each service's entry is
// blended with the stored one (request counts add up, averages weigh by
// requests), so several edges writing in turn converge on fleet figures.
func (s *Store) MergeStats(ctx context.Context, stats map[string]fleet.ServiceStats) error {
	if len(stats) == 0 {
		return nil
	}
	names := make([]string, 0, len(stats))
	for k := range stats {
		names = append(names, k)
	}
	old, err := s.c.HMGet(ctx, s.kStats, names...).Result()
	if err != nil {
		return err
	}
	vals := make([]any, 0, 2*len(names))
	for i, name := range names {
		n := stats[name]
		if str, ok := old[i].(string); ok {
			var o fleet.ServiceStats
			if json.Unmarshal([]byte(str), &o) == nil {
				n = blend(o, n)
			}
		}
		n.UpdatedAt = time.Now()
		b, _ := json.Marshal(n)
		vals = append(vals, name, b)
	}
	return s.c.HSet(ctx, s.kStats, vals...).Err()
}

// blend mixes a new batch into stored figures: an EWMA that gives the new
// batch a weight of at least 30%.
func blend(old, cur fleet.ServiceStats) fleet.ServiceStats {
	w := 0.3
	if cur.Requests > 0 && old.Requests > 0 {
		w = math.Max(w, float64(cur.Requests)/float64(old.Requests+cur.Requests))
	}
	mix := func(a, b float64) float64 {
		switch {
		case a == 0:
			return b
		case b == 0:
			return a
		}
		return a*(1-w) + b*w
	}
	return fleet.ServiceStats{
		Requests:     old.Requests + cur.Requests,
		Failures:     old.Failures + cur.Failures,
		LatencyMS:    mix(old.LatencyMS, cur.LatencyMS),
		TTFTMS:       mix(old.TTFTMS, cur.TTFTMS),
		TokensPerSec: mix(old.TokensPerSec, cur.TokensPerSec),
	}
}

// Stats returns every service's stored edge-observed figures.
func (s *Store) Stats(ctx context.Context) (map[string]fleet.ServiceStats, error) {
	m, err := s.c.HGetAll(ctx, s.kStats).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]fleet.ServiceStats, len(m))
	for k, v := range m {
		var st fleet.ServiceStats
		if json.Unmarshal([]byte(v), &st) == nil {
			out[k] = st
		}
	}
	return out, nil
}

// PutEdge records (or refreshes) an edge replica's presence for ttl.
func (s *Store) PutEdge(ctx context.Context, e fleet.EdgeInfo, ttl time.Duration) error {
	if !fleet.ValidID(e.ID) {
		return fmt.Errorf("%w: edge id %q", fleet.ErrInvalid, e.ID)
	}
	e.Deadline = time.Now().Add(ttl)
	b, _ := json.Marshal(e)
	return s.c.HSet(ctx, s.kEdges, e.ID, b).Err()
}

// ListEdges returns the live edge replicas, sorted by id, and forgets dead ones.
func (s *Store) ListEdges(ctx context.Context) ([]fleet.EdgeInfo, error) {
	m, err := s.c.HGetAll(ctx, s.kEdges).Result()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []fleet.EdgeInfo
	var dead []string
	for k, v := range m {
		var e fleet.EdgeInfo
		if json.Unmarshal([]byte(v), &e) != nil || now.After(e.Deadline) {
			dead = append(dead, k)
			continue
		}
		out = append(out, e)
	}
	if len(dead) > 0 {
		s.c.HDel(ctx, s.kEdges, dead...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// RemoveEdge forgets an edge replica (graceful stop).
func (s *Store) RemoveEdge(ctx context.Context, id string) error {
	return s.c.HDel(ctx, s.kEdges, id).Err()
}

func (s *Store) benchKey(asset, workload string) string {
	return s.prefix + "bench:{" + asset + "}:" + workload
}

// AddBenchSamples stores benchmark samples, newest first, keeping at most
// keep (default 200) per asset and workload, and announces them. Samples
// must name a workload and a model.
func (s *Store) AddBenchSamples(ctx context.Context, samples []fleet.BenchSample, keep int) error {
	if keep <= 0 {
		keep = 200
	}
	for i, sm := range samples {
		if sm.Workload == "" || sm.Model == "" || strings.ContainsAny(sm.Model+sm.Workload, "{}\x00") {
			return fmt.Errorf("%w: sample %d: workload and model are required and may not hold braces", fleet.ErrInvalid, i)
		}
		if sm.Quality < 0 || sm.Quality > 1 || math.IsNaN(sm.Quality) {
			return fmt.Errorf("%w: sample %d: quality %v is outside 0..1", fleet.ErrInvalid, i, sm.Quality)
		}
	}
	groups := map[[2]string][]any{}
	for _, sm := range samples {
		b, err := json.Marshal(sm)
		if err != nil {
			return err
		}
		k := [2]string{sm.Model, sm.Workload}
		groups[k] = append(groups[k], b)
	}
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k, vals := range groups {
			key := s.benchKey(k[0], k[1])
			p.LPush(ctx, key, vals...)
			p.LTrim(ctx, key, 0, int64(keep-1))
			p.SAdd(ctx, s.kBenchIndex, k[0]+"\x00"+k[1])
		}
		p.Publish(ctx, s.Channel(EventBench), "add")
		return nil
	})
	return err
}

// BenchSamples returns up to n newest samples of one asset and workload.
func (s *Store) BenchSamples(ctx context.Context, asset, workload string, n int) ([]fleet.BenchSample, error) {
	if n <= 0 {
		n = 200
	}
	vals, err := s.c.LRange(ctx, s.benchKey(asset, workload), 0, int64(n-1)).Result()
	if err != nil {
		return nil, err
	}
	out := make([]fleet.BenchSample, 0, len(vals))
	for _, v := range vals {
		var sm fleet.BenchSample
		if json.Unmarshal([]byte(v), &sm) == nil {
			out = append(out, sm)
		}
	}
	return out, nil
}

// BenchSummaries aggregates every stored (asset, workload), sorted.
func (s *Store) BenchSummaries(ctx context.Context) ([]fleet.BenchSummary, error) {
	idx, err := s.c.SMembers(ctx, s.kBenchIndex).Result()
	if err != nil {
		return nil, err
	}
	sort.Strings(idx)
	var out []fleet.BenchSummary
	for _, e := range idx {
		asset, workload, ok := strings.Cut(e, "\x00")
		if !ok {
			continue
		}
		samples, err := s.BenchSamples(ctx, asset, workload, 0)
		if err != nil {
			return nil, err
		}
		if len(samples) == 0 {
			continue
		}
		sum := fleet.BenchSummary{Model: asset, Workload: workload, Samples: len(samples)}
		for _, sm := range samples {
			sum.Quality += sm.Quality
			sum.LatencyMS += sm.LatencyMS
			sum.TTFTMS += sm.TTFTMS
			sum.TokensPerSec += sm.TokensPerSec
		}
		n := float64(len(samples))
		sum.Quality /= n
		sum.LatencyMS /= n
		sum.TTFTMS /= n
		sum.TokensPerSec /= n
		out = append(out, sum)
	}
	return out, nil
}

// Cooldowns of (service, asset) pairs: per service, one hash of asset ->
// deadline ms beside a failure counter per pair, all under the service's
// hash tag (one slot per service, the services spread over a Cluster). A
// client that asks for a model whose upstream fails cools only that pair;
// the service's other models stay routable.
func (s *Store) assetCoolKey(svc string) string { return s.prefix + "health:{" + svc + "}:cool:assets" }
func (s *Store) assetFailKey(svc, asset string) string {
	return s.prefix + "health:{" + svc + "}:fail:" + asset
}

// assetFailScript: as failScript, with the cooldown kept as a field of
// the pairs hash; fields past their deadline are dropped on the way.
var assetFailScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if n >= tonumber(ARGV[1]) then
  local now = tonumber(ARGV[4]) - tonumber(ARGV[2])
  local all = redis.call('HGETALL', KEYS[2])
  for i = 1, #all, 2 do
    if tonumber(all[i+1]) < now then redis.call('HDEL', KEYS[2], all[i]) end
  end
  redis.call('HSET', KEYS[2], ARGV[5], ARGV[4])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`)

// RecordAssetFailure counts a consecutive failure of asset on service; at
// threshold it cools the pair down for every edge and announces it.
func (s *Store) RecordAssetFailure(ctx context.Context, service, asset string, threshold int, cooldown time.Duration) (bool, error) {
	if threshold < 1 {
		threshold = 1
	}
	until := time.Now().Add(cooldown).UnixMilli()
	window := max(cooldown*4, time.Minute)
	n, err := assetFailScript.Run(ctx, s.c, []string{s.assetFailKey(service, asset), s.assetCoolKey(service)},
		threshold, cooldown.Milliseconds(), window.Milliseconds(), until, asset).Int()
	if err != nil {
		return false, err
	}
	if n == 1 {
		s.c.Publish(ctx, s.Channel(EventHealth), service)
		return true, nil
	}
	return false, nil
}

// RecordAssetSuccess clears a pair's failure count and cooldown.
func (s *Store) RecordAssetSuccess(ctx context.Context, service, asset string) error {
	var hdel *redis.IntCmd
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, s.assetFailKey(service, asset))
		hdel = p.HDel(ctx, s.assetCoolKey(service), asset)
		return nil
	})
	if err == nil && hdel.Val() > 0 {
		s.c.Publish(ctx, s.Channel(EventHealth), service)
	}
	return err
}

// AssetCooldowns returns the pairs of services in cooldown: service ->
// asset -> until. One HGETALL per service in one pipeline.
func (s *Store) AssetCooldowns(ctx context.Context, services []string) (map[string]map[string]time.Time, error) {
	if len(services) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(services))
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, svc := range services {
			cmds[i] = p.HGetAll(ctx, s.assetCoolKey(svc))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := map[string]map[string]time.Time{}
	for i, c := range cmds {
		for asset, v := range c.Val() {
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil || !now.Before(time.UnixMilli(ms)) {
				continue
			}
			if out[services[i]] == nil {
				out[services[i]] = map[string]time.Time{}
			}
			out[services[i]][asset] = time.UnixMilli(ms)
		}
	}
	return out, nil
}
