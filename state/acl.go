package state

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// NodeACLCommands are the Redis commands a node agent needs: its heartbeat
// and graceful stop are SET, DEL and PUBLISH in MULTI/EXEC
// (WriteHeartbeat, RemoveNode); GET and PTTL let it read its own key back,
// PING lets clients check the connection. XREADGROUP and XACK read and
// acknowledge its command stream (swapcmd.go; the results are SET NX);
// it has no XADD, so it cannot write commands, not even its own.
var NodeACLCommands = []string{"get", "set", "del", "pttl", "publish", "multi", "exec", "discard", "ping", "xreadgroup", "xack"}

// NodeACL returns the ACL SETUSER command (as arguments) that confines a
// node agent to its own keys (<prefix>node:{<host>}:*) and its own event
// channel (<prefix>events:node:<host>): the one source of the rule the
// README shows, `geniehive node acl` prints and the node agent's tests
// enforce.
//
// # Errors
// ErrInvalid-wrapped for a bad host id, or a secret with white space.
func NodeACL(prefix, host, secret string) ([]string, error) {
	if !ValidHostID(host) {
		return nil, fmt.Errorf("host id %q: use only letters, digits, '.', '_' and '-' (at most %d)", host, MaxHostIDLen)
	}
	if secret == "" || strings.ContainsAny(secret, " \t\r\n\"'") {
		return nil, errors.New("the secret must be non-empty, without white space or quotes")
	}
	p := globEscape(prefix)
	args := []string{"ACL", "SETUSER", "node-" + host, "on", ">" + secret, "resetkeys", "~" + p + "node:{" + host + "}:*",
		"resetchannels", "&" + p + "events:node:" + host, "-@all"}
	for _, c := range NodeACLCommands {
		args = append(args, "+"+c)
	}
	return args, nil
}

// globEscape escapes Redis glob characters in a key prefix.
func globEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(`*?[]\`, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ApplyACL runs an ACL command (NodeACL's) through the store's connection:
// on every master and replica of a cluster, else once.
func (s *Store) ApplyACL(ctx context.Context, args []string) error {
	a := make([]any, len(args))
	for i, x := range args {
		a[i] = x
	}
	if cc, ok := s.c.(*redis.ClusterClient); ok {
		return cc.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error { return c.Do(ctx, a...).Err() })
	}
	return s.c.Do(ctx, a...).Err()
}
