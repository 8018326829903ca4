package state_test

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/state"
)

// tlsTopologyURL returns GENIEHIVE_TEST_REDIS when it is a TLS URL with a
// client certificate (scripts/test.sh's TLS pass sets it to each of
// scripts/redis-topology.sh start-tls's URLs: one server, a Cluster, a
// Sentinel group, all with --tls-auth-clients yes); otherwise the test is
// skipped. The TLS pass checks that every such test ran and passed.
func tlsTopologyURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("GENIEHIVE_TEST_REDIS")
	if !strings.HasPrefix(u, "rediss") || !strings.Contains(u, "tls_cert=") {
		t.Skip("not a TLS topology (scripts/test.sh runs this with GENIEHIVE_TEST_REDIS=rediss...?tls_cert=...)")
	}
	return u
}

// withoutParams returns raw without the named query parameters.
func withoutParams(t *testing.T, raw string, names ...string) string {
	t.Helper()
	base, q, _ := strings.Cut(raw, "?")
	vals, err := url.ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		vals.Del(n)
	}
	if enc := vals.Encode(); enc != "" {
		return base + "?" + enc
	}
	return base
}

// Over mutual TLS on the topology GENIEHIVE_TEST_REDIS names (one server,
// Cluster with tls-cluster, Sentinel with TLS sentinels): the state
// connects with the URL's client certificate, writes and reads, and
// pub/sub (what the edge's watcher rides on) delivers; a client without a
// certificate, or without TLS at all, is refused.
func TestRedisTLSTopology(t *testing.T) {
	u := tlsTopologyURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := state.Connect(ctx, state.Options{URL: u})
	if err != nil {
		t.Fatalf("connect with a client certificate: %v", err)
	}
	defer c.Close()
	_, prefix := testredis.New(t) // a fresh prefix, cleaned up after
	s := state.New(c, prefix)

	// Writes and reads: a key and a node heartbeat.
	if err := s.PutKey(ctx, fleet.APIKey{ID: "tls", Hash: fleet.HashKeyHex("sk-tls"), Scope: fleet.ScopeClient}); err != nil {
		t.Fatalf("write over TLS: %v", err)
	}
	kr, err := s.ReadKeyring(ctx)
	if err != nil || len(kr.Keys) != 1 || kr.Keys[0].ID != "tls" {
		t.Fatalf("read over TLS: %+v %v", kr, err)
	}
	ns := &fleet.NodeState{Host: fleet.Host{ID: "tlsnode", StartedAt: time.Now(), UpdatedAt: time.Now()}}
	if err := s.WriteHeartbeat(ctx, ns, time.Minute); err != nil {
		t.Fatalf("heartbeat over TLS: %v", err)
	}
	recs, err := s.ReadNodes(ctx)
	if err != nil || len(recs) != 1 || recs[0].State.Host.ID != "tlsnode" {
		t.Fatalf("nodes over TLS: %+v %v", recs, err)
	}

	// Pub/sub: a pattern subscription on one TLS connection receives what
	// another TLS client publishes (on a Cluster, through the TLS bus).
	ps := c.PSubscribe(ctx, s.Channel("*"))
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatalf("psubscribe over TLS: %v", err)
	}
	pub, err := state.Connect(ctx, state.Options{URL: u})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Publish(ctx, s.Channel("tlstest"), "hello").Err(); err != nil {
		t.Fatalf("publish over TLS: %v", err)
	}
	// The heartbeat written above published on the node's channel too; on
	// a Cluster that message can cross the bus after the subscription is
	// made, so messages on other channels are passed over.
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	for {
		msg, err := ps.ReceiveMessage(rctx)
		if err != nil {
			t.Fatalf("pub/sub over TLS: %v", err)
		}
		if msg.Channel != s.Channel("tlstest") {
			continue
		}
		if msg.Payload != "hello" {
			t.Fatalf("pub/sub over TLS: %+v", msg)
		}
		break
	}

	// Refused: TLS without a client certificate, and plaintext.
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 5*time.Second) }
	noCert := withoutParams(t, u, "tls_cert", "tls_key")
	cctx, ccancel := short()
	if bad, err := state.Connect(cctx, state.Options{URL: noCert}); err == nil {
		bad.Close()
		t.Fatal("a TLS client without a certificate was let in")
	} else {
		t.Logf("without a client certificate: %v", err)
	}
	ccancel()
	scheme, rest, _ := strings.Cut(withoutParams(t, u, "tls_cert", "tls_key", "tls_ca"), "://")
	plain := strings.Replace(scheme, "rediss", "redis", 1) + "://" + rest
	cctx, ccancel = short()
	if bad, err := state.Connect(cctx, state.Options{URL: plain}); err == nil {
		bad.Close()
		t.Fatal("a plaintext client was let in")
	} else {
		t.Logf("plaintext: %v", err)
	}
	ccancel()
}
