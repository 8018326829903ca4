package state

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Failover defaults for Sentinel and Cluster clients, applied when the URL
// does not set dial_timeout or dialer_retries. go-redis's own (5s, 5
// attempts) make one dial to a dead server cost up to 25s: a SIGKILLed
// master's address answers nothing (no RST), so a Cluster client that
// reloads its slot map through it, or a request routed to it, waits that
// long (the chaos suite's TestClusterKillMaster measured node heartbeats
// failing for 46s). A LAN dial that takes over 2s is a dead peer.
const (
	failoverDialTimeout   = 2 * time.Second
	failoverDialerRetries = 1
)

// clusterReload is a go-redis hook that asks a ClusterClient to reload its
// slot map (CLUSTER SLOTS, lazily: one reload at a time, go-redis spaces
// them by 200ms) when a command fails the way a master failing over makes
// it fail: a network error or timeout, CLUSTERDOWN, TRYAGAIN, MASTERDOWN or
// LOADING. go-redis reloads by itself only on MOVED/ASK/READONLY, which a
// dead master never sends, and otherwise every 60s: without the hook a
// client keeps sending a killed master's slots to its address for up to a
// minute after its replica took over.
type clusterReload struct{ c *redis.ClusterClient }

func (h clusterReload) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h clusterReload) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if topologyError(err) {
			h.c.ReloadState(ctx)
		}
		return err
	}
}

func (h clusterReload) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if topologyError(err) {
			h.c.ReloadState(ctx)
		}
		return err
	}
}

// topologyError reports whether err may mean the slot map is stale. A
// Redis error reply (a script's error, WRONGTYPE, NOSCRIPT) or a missing
// key does not; a cancelled request (the client left) does not.
func topologyError(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) && !errors.Is(err, context.DeadlineExceeded) {
		msg := re.Error()
		for _, p := range []string{"CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "LOADING"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	return true
}
