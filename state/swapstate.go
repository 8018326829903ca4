package state

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geniehive/geniehive/fleet"
)

// Swap controller state (issue 14):
//
//	<prefix>swap:use:{<edge>}  hash    edge    3 publish periods  that edge's per-(service, model) in-flight and last use, per-model waiting requests
//	<prefix>swap:ctl           hash    edge    none             service -> SwapControl JSON (the lease holder writes)
//	<prefix>swap:log           list    edge    none, capped     SwapRecord JSON, newest first
//	<prefix>lease:swap         string  edge    lease length     id of the edge that runs the swap controller

// SwapLease is the lease the swap controller holds.
const SwapLease = "swap"

// SwapLogMax caps the swap log.
const SwapLogMax = 200

func (s *Store) swapUseKey(edge string) string { return s.prefix + "swap:use:{" + edge + "}" }
func (s *Store) swapCtlKey() string            { return s.prefix + "swap:ctl" }
func (s *Store) swapLogKey() string            { return s.prefix + "swap:log" }

// SwapUse is one edge's view of one (service, model): requests it has open
// there and when it last sent one.
type SwapUse struct {
	InFlight int64
	LastUsed time.Time
}

// SwapUsage is what one edge publishes.
type SwapUsage struct {
	// Use by service id, then model.
	Use map[string]map[string]SwapUse
	// Waiting requests per model (waiting for a load).
	Waiting map[string]int
}

// PutSwapUsage replaces the edge's usage record (one MULTI/EXEC), alive
// for ttl.
func (s *Store) PutSwapUsage(ctx context.Context, edge string, u *SwapUsage, ttl time.Duration) error {
	key := s.swapUseKey(edge)
	vals := make([]any, 0, 2*(len(u.Waiting)+8))
	for svc, m := range u.Use {
		for model, x := range m {
			vals = append(vals, "u\x00"+svc+"\x00"+model, strconv.FormatInt(x.InFlight, 10)+":"+strconv.FormatInt(x.LastUsed.UnixMilli(), 10))
		}
	}
	for model, n := range u.Waiting {
		vals = append(vals, "w\x00"+model, strconv.Itoa(n))
	}
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, key)
		if len(vals) > 0 {
			p.HSet(ctx, key, vals...)
			p.PExpire(ctx, key, ttl)
		}
		return nil
	})
	return err
}

// SwapUsages reads and sums the usage records of the given edges: in-flight
// counts add up, the latest use wins, waiting counts add up.
func (s *Store) SwapUsages(ctx context.Context, edges []string) (*SwapUsage, error) {
	out := &SwapUsage{Use: map[string]map[string]SwapUse{}, Waiting: map[string]int{}}
	if len(edges) == 0 {
		return out, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(edges))
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range edges {
			cmds[i] = p.HGetAll(ctx, s.swapUseKey(e))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	for _, c := range cmds {
		for f, v := range c.Val() {
			parts := strings.Split(f, "\x00")
			switch {
			case len(parts) == 3 && parts[0] == "u":
				a, b, _ := strings.Cut(v, ":")
				n, _ := strconv.ParseInt(a, 10, 64)
				ms, _ := strconv.ParseInt(b, 10, 64)
				m := out.Use[parts[1]]
				if m == nil {
					m = map[string]SwapUse{}
					out.Use[parts[1]] = m
				}
				x := m[parts[2]]
				x.InFlight += max(n, 0)
				if t := time.UnixMilli(ms); t.After(x.LastUsed) {
					x.LastUsed = t
				}
				m[parts[2]] = x
			case len(parts) == 2 && parts[0] == "w":
				n, _ := strconv.Atoi(v)
				out.Waiting[parts[1]] += max(n, 0)
			}
		}
	}
	return out, nil
}

// SwapControls reads the controller's state of every service.
func (s *Store) SwapControls(ctx context.Context) (map[string]*fleet.SwapControl, error) {
	m, err := s.c.HGetAll(ctx, s.swapCtlKey()).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make(map[string]*fleet.SwapControl, len(m))
	for k, v := range m {
		var c fleet.SwapControl
		if json.Unmarshal([]byte(v), &c) == nil {
			c.Service = k
			out[k] = &c
		}
	}
	return out, nil
}

// PutSwapControls writes changed service states and deletes gone ones, in
// one MULTI/EXEC.
func (s *Store) PutSwapControls(ctx context.Context, put map[string]*fleet.SwapControl, del []string) error {
	if len(put) == 0 && len(del) == 0 {
		return nil
	}
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if len(put) > 0 {
			vals := make([]any, 0, 2*len(put))
			for k, c := range put {
				b, err := json.Marshal(c)
				if err != nil {
					return err
				}
				vals = append(vals, k, string(b))
			}
			p.HSet(ctx, s.swapCtlKey(), vals...)
		}
		if len(del) > 0 {
			p.HDel(ctx, s.swapCtlKey(), del...)
		}
		return nil
	})
	return err
}

// AddSwapRecords prepends records to the swap log (capped at SwapLogMax).
func (s *Store) AddSwapRecords(ctx context.Context, recs ...fleet.SwapRecord) error {
	if len(recs) == 0 {
		return nil
	}
	vals := make([]any, len(recs))
	for i := range recs {
		b, err := json.Marshal(&recs[i])
		if err != nil {
			return err
		}
		vals[i] = string(b)
	}
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, s.swapLogKey(), vals...)
		p.LTrim(ctx, s.swapLogKey(), 0, SwapLogMax-1)
		return nil
	})
	return err
}

// SwapRecords returns the newest n swap log entries, newest first.
func (s *Store) SwapRecords(ctx context.Context, n int) ([]fleet.SwapRecord, error) {
	if n <= 0 || n > SwapLogMax {
		n = SwapLogMax
	}
	vs, err := s.c.LRange(ctx, s.swapLogKey(), 0, int64(n-1)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([]fleet.SwapRecord, 0, len(vs))
	for _, v := range vs {
		var r fleet.SwapRecord
		if json.Unmarshal([]byte(v), &r) == nil {
			out = append(out, r)
		}
	}
	return out, nil
}
