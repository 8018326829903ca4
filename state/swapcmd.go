package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geniehive/geniehive/fleet"
)

// The command channel of a node (issue 14). Every key is under the node's
// own hash tag, so its ACL (~<prefix>node:{<host>}:*) covers them and a
// Cluster keeps them on one slot:
//
//	<prefix>node:{<host>}:cmds       stream  edge    cmdStreamTTL  SwapCommand JSON in field "c"; consumer group "agent"
//	<prefix>node:{<host>}:res:<id>   string  node/edge SwapResultTTL SwapResult JSON (SET NX: the first writer wins)
//
// Only edges XADD (a node's ACL has no +xadd, so it cannot forge commands
// for itself or anyone); the edge creates the consumer group with the
// stream, so the node needs only XREADGROUP and XACK besides SET.
const (
	// SwapGroup is the consumer group node agents read their stream with.
	SwapGroup = "agent"
	// SwapResultTTL is how long a command's result stays readable.
	SwapResultTTL = 10 * time.Minute
	// cmdStreamTTL: a stream nobody sends to for this long disappears
	// (each send renews it), so a node that left leaves nothing behind.
	cmdStreamTTL = time.Hour
	// cmdStreamMax bounds a stream (approximate MAXLEN trim).
	cmdStreamMax = 256
	// MaxSwapCommandBytes caps one command a node agrees to read.
	MaxSwapCommandBytes = 4096
)

// SwapStreamKey is a node's command stream.
func (s *Store) SwapStreamKey(host string) string { return s.prefix + "node:{" + host + "}:cmds" }

// SwapResultKey is where the result of command id on host is stored.
func (s *Store) SwapResultKey(host, id string) string {
	return s.prefix + "node:{" + host + "}:res:" + id
}

// SwapHost is the host of a service id "<host>/<name>" ("" when malformed).
func SwapHost(service string) string {
	h, _, ok := strings.Cut(service, "/")
	if !ok || !ValidHostID(h) {
		return ""
	}
	return h
}

// SendSwap appends cmd to its service's node stream, creating the stream
// and its consumer group when missing and renewing the stream's TTL. It
// returns the stream entry id.
//
// # Errors
// ErrInvalid for a command without id, with an unknown op, a malformed
// service id or no deadline; Redis errors otherwise.
func (s *Store) SendSwap(ctx context.Context, cmd *fleet.SwapCommand) (string, error) {
	host := SwapHost(cmd.Service)
	if cmd.ID == "" || len(cmd.ID) > 128 || strings.ContainsAny(cmd.ID, " {}*?[]\\") || !cmd.Op.Valid() || host == "" || cmd.Model == "" || cmd.Deadline.IsZero() {
		return "", fmt.Errorf("%w: swap command %+v", fleet.ErrInvalid, *cmd)
	}
	b, err := json.Marshal(cmd)
	if err != nil {
		return "", err
	}
	if len(b) > MaxSwapCommandBytes {
		return "", fmt.Errorf("%w: swap command of %d bytes", fleet.ErrInvalid, len(b))
	}
	key := s.SwapStreamKey(host)
	// One MULTI/EXEC: the group (created with the stream from id 0, so it
	// sees the entry added next; BUSYGROUP when it exists is expected),
	// the entry, the stream's TTL.
	var grp *redis.StatusCmd
	var add *redis.StringCmd
	var exp *redis.BoolCmd
	_, err = s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		grp = p.XGroupCreateMkStream(ctx, key, SwapGroup, "0")
		add = p.XAdd(ctx, &redis.XAddArgs{Stream: key, MaxLen: cmdStreamMax, Approx: true, Values: []string{"c", string(b)}})
		exp = p.PExpire(ctx, key, cmdStreamTTL)
		return nil
	})
	if err := grp.Err(); err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
		return "", err
	}
	if err := add.Err(); err != nil {
		return "", err
	}
	if err := exp.Err(); err != nil {
		return "", err
	}
	return add.Val(), nil
}

// ReceivedSwap is one command as a node read it.
type ReceivedSwap struct {
	StreamID string
	Cmd      fleet.SwapCommand
	// Err is set when the entry does not decode (it is acknowledged and
	// answered failed, never run).
	Err error
}

// ErrNoSwapStream means nobody ever sent the node a command (no stream or
// no group yet): nothing to read, try again later.
var ErrNoSwapStream = errors.New("no command stream yet")

// ReadSwaps reads the node's commands as consumer: those it took before
// and never acknowledged (a restart mid-command) when pending is true,
// else new ones, waiting up to block (0: do not wait).
//
// # Errors
// ErrNoSwapStream when the stream or group does not exist; Redis errors.
func (s *Store) ReadSwaps(ctx context.Context, host, consumer string, pending bool, count int, block time.Duration) ([]ReceivedSwap, error) {
	id := ">"
	if pending {
		id = "0"
	}
	if block <= 0 {
		block = -1 // go-redis: no BLOCK argument
	}
	res, err := s.c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: SwapGroup, Consumer: consumer,
		Streams: []string{s.SwapStreamKey(host), id}, Count: int64(count), Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		if strings.Contains(err.Error(), "NOGROUP") {
			return nil, ErrNoSwapStream
		}
		return nil, err
	}
	var out []ReceivedSwap
	for _, st := range res {
		for _, m := range st.Messages {
			rs := ReceivedSwap{StreamID: m.ID}
			raw, _ := m.Values["c"].(string)
			switch {
			case m.Values == nil:
				rs.Err = errors.New("entry deleted") // trimmed while pending
			case len(raw) > MaxSwapCommandBytes:
				rs.Err = fmt.Errorf("command of %d bytes", len(raw))
			default:
				if err := json.Unmarshal([]byte(raw), &rs.Cmd); err != nil {
					rs.Err = fmt.Errorf("command does not decode: %w", err)
				} else if !rs.Cmd.Op.Valid() || rs.Cmd.ID == "" || SwapHost(rs.Cmd.Service) != host {
					rs.Err = fmt.Errorf("command not for this node or malformed")
				}
			}
			out = append(out, rs)
		}
	}
	return out, nil
}

// FinishSwap stores the result of a command the node took (unless one is
// stored already: an edge that expired it first wins) and acknowledges its
// stream entry, in one MULTI/EXEC on the node's slot. It reports whether
// this result was the one stored.
func (s *Store) FinishSwap(ctx context.Context, host, streamID string, r *fleet.SwapResult) (bool, error) {
	if r.ID == "" || len(r.ID) > 128 {
		return false, fmt.Errorf("%w: swap result without id", fleet.ErrInvalid)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return false, err
	}
	var set *redis.BoolCmd
	_, err = s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		set = p.SetNX(ctx, s.SwapResultKey(host, r.ID), b, SwapResultTTL)
		if streamID != "" {
			p.XAck(ctx, s.SwapStreamKey(host), SwapGroup, streamID)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return set.Val(), nil
}

// ExpireSwap stores an "expired" result for a command whose deadline
// passed with no result (the node is dead or never got to it); a result
// stored meanwhile wins. It returns the result that stands.
func (s *Store) ExpireSwap(ctx context.Context, host, id, by string) (fleet.SwapResult, error) {
	r := fleet.SwapResult{ID: id, Status: fleet.SwapExpired, Error: "no result before the deadline", At: time.Now(), By: by}
	b, err := json.Marshal(&r)
	if err != nil {
		return r, err
	}
	ok, err := s.c.SetNX(ctx, s.SwapResultKey(host, id), b, SwapResultTTL).Result()
	if err != nil || ok {
		return r, err
	}
	got, found, err := s.SwapResult(ctx, host, id)
	if err != nil || !found {
		return r, err
	}
	return got, nil
}

// SwapResult reads the result of command id on host; found is false when
// there is none (yet, or it expired).
//
// # Errors
// Redis errors; a result that does not decode (nodes are untrusted) is
// ErrInvalid.
func (s *Store) SwapResult(ctx context.Context, host, id string) (r fleet.SwapResult, found bool, err error) {
	v, err := s.c.Get(ctx, s.SwapResultKey(host, id)).Result()
	if errors.Is(err, redis.Nil) {
		return r, false, nil
	}
	if err != nil {
		return r, false, err
	}
	if len(v) > MaxSwapCommandBytes {
		return r, false, fmt.Errorf("%w: swap result of %d bytes", fleet.ErrInvalid, len(v))
	}
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return r, false, fmt.Errorf("%w: swap result: %v", fleet.ErrInvalid, err)
	}
	switch r.Status {
	case fleet.SwapDone, fleet.SwapFailed, fleet.SwapExpired:
	default:
		return r, false, fmt.Errorf("%w: swap result status %q", fleet.ErrInvalid, r.Status)
	}
	if r.ID != id {
		return r, false, fmt.Errorf("%w: swap result for %q under %q", fleet.ErrInvalid, r.ID, id)
	}
	if len(r.Error) > 1024 {
		r.Error = r.Error[:1024]
	}
	return r, true, nil
}
