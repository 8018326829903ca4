package edge

import (
	"context"
	"errors"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// redisHook is a go-redis hook that counts, on the edge's /metrics, every
// Redis round trip (a command, or a whole pipeline / MULTI-EXEC) and every
// command and failed command by name. redis.Nil ("not found") is not a
// failure. It allocates nothing per command once a name was seen.
type redisHook struct {
	trips  prometheus.Counter
	cmds   *prometheus.CounterVec
	errs   *prometheus.CounterVec
	cmdC   handleCache[string, prometheus.Counter]
	errC   handleCache[string, prometheus.Counter]
	dialEr prometheus.Counter
}

func newRedisHook(reg prometheus.Registerer) *redisHook {
	h := &redisHook{
		trips: prometheus.NewCounter(prometheus.CounterOpts{Name: "geniehive_redis_round_trips_total",
			Help: "Round trips to Redis (one per command, pipeline or transaction)."}),
		cmds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geniehive_redis_commands_total",
			Help: "Redis commands sent, by command (pipelined ones included)."}, []string{"command"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geniehive_redis_errors_total",
			Help: "Redis commands that failed, by command (redis.Nil is not a failure)."}, []string{"command"}),
		dialEr: prometheus.NewCounter(prometheus.CounterOpts{Name: "geniehive_redis_dial_errors_total",
			Help: "Failed connection attempts to Redis."}),
	}
	reg.MustRegister(h.trips, h.cmds, h.errs, h.dialEr)
	return h
}

// count counts cmd and, when err (the command's outcome) is a failure, its
// error. (A single command's Err is set only after the hooks return: the
// hook's result is the outcome.)
func (h *redisHook) count(cmd redis.Cmder, err error) {
	name := cmd.Name()
	h.cmdC.get(name, func(n string) prometheus.Counter { return h.cmds.WithLabelValues(n) }).Inc()
	if err != nil && !errors.Is(err, redis.Nil) {
		h.errC.get(name, func(n string) prometheus.Counter { return h.errs.WithLabelValues(n) }).Inc()
	}
}

func (h *redisHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil {
			h.dialEr.Inc()
		}
		return c, err
	}
}

func (h *redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.trips.Inc()
		h.count(cmd, err)
		return err
	}
}

func (h *redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.trips.Inc()
		for _, c := range cmds {
			h.count(c, c.Err())
		}
		return err
	}
}

// RedisHook returns the hook that counts this edge's Redis round trips,
// commands and errors on its /metrics. Add it to the Redis client before
// the edge runs (edge/replica does).
func (s *Server) RedisHook() redis.Hook { return s.met.redis }
