package state

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// replyError is a Redis error reply as go-redis returns it (proto.RedisError
// implements redis.Error).
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

// TestTopologyError: the errors a failing-over master causes reload a
// Cluster client's slot map; replies about the command itself, a missing
// key and a cancelled request do not.
func TestTopologyError(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("i/o timeout")}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{redis.Nil, false},
		{context.Canceled, false},
		{fmt.Errorf("heartbeat: %w", context.Canceled), false},
		{replyError("NOSCRIPT No matching script"), false},
		{replyError("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{replyError("ERR unknown command"), false},
		{replyError("CLUSTERDOWN The cluster is down"), true},
		{replyError("TRYAGAIN Multiple keys request during rehashing of slot"), true},
		{replyError("MASTERDOWN Link with MASTER is down"), true},
		{replyError("LOADING Redis is loading the dataset in memory"), true},
		{context.DeadlineExceeded, true},
		{dial, true},
		{io.EOF, true},
		{redis.ErrClosed, true},
	} {
		if got := topologyError(c.err); got != c.want {
			t.Errorf("topologyError(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// TestFailoverClientDefaults: Sentinel and Cluster clients dial with
// failoverDialTimeout and one attempt unless the URL says otherwise; a
// single server keeps go-redis's defaults.
func TestFailoverClientDefaults(t *testing.T) {
	for _, c := range []struct {
		url     string
		dial    time.Duration
		retries int
	}{
		{"redis+cluster://c1:7000?addr=c2:7001", failoverDialTimeout, failoverDialerRetries},
		{"redis+cluster://c1:7000?dial_timeout=7s&dialer_retries=3", 7 * time.Second, 3},
		{"redis+sentinel://s1:26379/0?master_name=gh", failoverDialTimeout, failoverDialerRetries},
		{"redis+sentinel://s1:26379/0?master_name=gh&dial_timeout=4s", 4 * time.Second, failoverDialerRetries},
	} {
		p, err := parseRedisURL(c.url)
		if err != nil {
			t.Fatal(err)
		}
		rc := p.newClient(Options{})
		var dial time.Duration
		var retries int
		switch x := rc.(type) {
		case *redis.ClusterClient:
			dial, retries = x.Options().DialTimeout, x.Options().DialerRetries
		case *redis.Client:
			dial, retries = x.Options().DialTimeout, x.Options().DialerRetries
		}
		rc.Close()
		if dial != c.dial || retries != c.retries {
			t.Errorf("%s: dial timeout %s, %d dial attempts; want %s, %d", c.url, dial, retries, c.dial, c.retries)
		}
	}
}
