package state_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/state"
	"github.com/redis/go-redis/v9"
)

// nodeUser returns a client logged in as host's node user, confined by
// exactly the ACL state.NodeACL builds (the README's rule).
func nodeUser(t *testing.T, srv *testredis.Server, admin redis.UniversalClient, host string) redis.UniversalClient {
	t.Helper()
	acl, err := state.NodeACL("gh:", host, "pw-"+host)
	if err != nil {
		t.Fatal(err)
	}
	args := make([]any, len(acl))
	for i, a := range acl {
		args[i] = a
	}
	if err := admin.Do(context.Background(), args...).Err(); err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "node-" + host, Password: "pw-" + host, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// setRaw writes a node key as a compromised node would: any content, with
// ttl (0 = none), and announces it.
func setRaw(t *testing.T, c redis.UniversalClient, key, host string, v any, ttl time.Duration) {
	t.Helper()
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	if err := c.Set(ctx, key, b, ttl).Err(); err != nil {
		t.Fatalf("node %s writing %s under its ACL: %v", host, key, err)
	}
	if strings.Contains(key, "x}") {
		return // its ACL lets it publish on its own channel only
	}
	if err := c.Publish(ctx, "gh:events:node:"+host, "up").Err(); err != nil {
		t.Fatal(err)
	}
}

func refusal(snap *fleet.Snapshot, host string) string {
	for _, r := range snap.Refused {
		if r.Host == host {
			return r.Reason
		}
	}
	return ""
}

// TestNodeStatesAreValidated performs issue 16's node attacks (item 2) as
// a node confined by exactly the README's ACL: each forged state is
// refused and reported, none of its services is routable, and the real
// node's service is untouched.
func TestNodeStatesAreValidated(t *testing.T) {
	srv := testredis.Private(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	op := state.New(admin, "")
	w := state.NewWatcher(state.New(admin, ""), state.WatcherOptions{Resync: time.Hour})
	go w.Run(ctx)
	waitFor(t, 5*time.Second, func() bool { return w.Current().RedisOK })

	// The real node, writing through its own confined user.
	real := state.New(nodeUser(t, srv, admin, "gpu1"), "")
	if err := real.WriteHeartbeat(ctx, node("gpu1", "chat"), time.Minute); err != nil {
		t.Fatal(err)
	}
	evil := nodeUser(t, srv, admin, "evil")
	waitFor(t, 5*time.Second, func() bool { _, ok := w.Current().ByID["gpu1/chat"]; return ok })
	realEndpoint := w.Current().ByID["gpu1/chat"].Endpoint

	// Nor can a node write the allowlist.
	if err := evil.HSet(ctx, "gh:nodes:allow", "evil", `["0.0.0.0/0"]`).Err(); err == nil {
		t.Fatal("a node wrote the operator's allowlist")
	}

	attacks := []struct {
		name, key, want string
		state           any
		ttl             time.Duration
	}{
		{"shadow another host's service", "gh:node:{evil}:state", "not evil/chat", func() *fleet.NodeState {
			st := node("evil", "chat")
			st.Services[0].ID = "gpu1/chat" // shadowing: fails would cool gpu1/chat down
			st.Services[0].Endpoint = "http://127.0.0.1:9"
			return st
		}(), time.Minute},
		{"redirect with path and query", "gh:node:{evil}:state", "query", func() *fleet.NodeState {
			st := node("evil", "chat")
			st.Services[0].Endpoint = "http://127.0.0.1:9/steal?to=me"
			return st
		}(), time.Minute},
		{"userinfo", "gh:node:{evil}:state", "userinfo", func() *fleet.NodeState {
			st := node("evil", "chat")
			st.Services[0].Endpoint = "http://user:pw@127.0.0.1:9"
			return st
		}(), time.Minute},
		{"second host through a crafted key", "gh:node:{evil}:x}:state", "malformed node key", func() *fleet.NodeState {
			st := node("evil}:x", "chat")
			st.Services[0].ID, st.Services[0].HostID = "evil}:x/chat", "evil}:x"
			return st
		}(), time.Minute},
		{"immortal key without TTL", "gh:node:{evil}:state", "no TTL", node("evil", "chat"), 0},
		{"unknown swap kind", "gh:node:{evil}:state", "swap", func() *fleet.NodeState {
			st := node("evil", "chat")
			st.Services[0].Swap = "rm -rf"
			return st
		}(), time.Minute},
		{"loading on a service that cannot swap", "gh:node:{evil}:state", "cannot swap", func() *fleet.NodeState {
			st := node("evil", "chat")
			st.Services[0].Assets[0].Loading = true
			return st
		}(), time.Minute},
		{"two loads at once", "gh:node:{evil}:state", "one load at a time", func() *fleet.NodeState {
			st := node("evil", "chat", "chat2")
			for i := range st.Services {
				st.Services[i].Swap = fleet.SwapOllama
				st.Services[i].Assets[0].Loading = true
			}
			return st
		}(), time.Minute},
		{"100k assets", "gh:node:{evil}:state", "exceeds", func() *fleet.NodeState {
			st := node("evil", "chat")
			st.Services[0].Assets = make([]fleet.Asset, 100000)
			for i := range st.Services[0].Assets {
				st.Services[0].Assets[i] = fleet.Asset{Name: "m" + strconv.Itoa(i), Family: "x", Loaded: true}
			}
			return st
		}(), time.Minute},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			admin.Del(ctx, "gh:node:{evil}:state", "gh:node:{evil}:x}:state")
			host := "evil"
			if strings.Contains(a.key, "x}") {
				host = "evil}:x"
			}
			before := w.Current().NodesRefusedTotal
			setRaw(t, evil, a.key, host, a.state, a.ttl)
			// The event path (ReadNode) ...
			if host != "evil" { // a crafted key is found by the resync's SCAN only
				if err := w.Refresh(ctx); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, 10*time.Second, func() bool { return w.Current().NodesRefusedTotal > before })
			check := func(path string) {
				snap := w.Current()
				shown := host // the crafted key is reported by what it names
				if host != "evil" {
					shown = "evil}:x}:state"
				}
				reason := refusal(snap, shown)
				if !strings.Contains(reason, a.want) {
					t.Fatalf("%s: refusal %q, want one mentioning %q (refused: %+v)", path, reason, a.want, snap.Refused)
				}
				for _, s := range snap.Services {
					if s.HostID != "gpu1" || s.Endpoint != realEndpoint {
						t.Fatalf("%s: forged service routed: %s %s on %s", path, s.ID, s.Endpoint, s.HostID)
					}
				}
				if len(snap.Hosts) != 1 || snap.Hosts["gpu1"] == nil {
					t.Fatalf("%s: hosts %v", path, snap.Hosts)
				}
			}
			check("event")
			// ... and the full rebuild (SCAN) agree.
			start := time.Now()
			if err := w.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			t.Logf("refresh with the forged state: %v", time.Since(start).Round(time.Millisecond))
			check("resync")
		})
	}

	// The operator's allowlist: once it exists, a node without an entry is
	// refused (fail closed), and endpoints outside a node's entry too.
	admin.Del(ctx, "gh:node:{evil}:state", "gh:node:{evil}:x}:state")
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := op.PutNodeAllow(ctx, "evil", []string{"10.1.0.0/16", "*.lan"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return w.Current().NodeAllowlist })
	if r := refusal(w.Current(), "gpu1"); !strings.Contains(r, "no allowlist entry") {
		t.Fatalf("gpu1 without an allowlist entry: refusal %q", r)
	}
	if err := op.PutNodeAllow(ctx, "gpu1", []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { _, ok := w.Current().ByID["gpu1/chat"]; return ok })
	for _, c := range []struct {
		endpoint string
		ok       bool
	}{
		{"http://127.0.0.1:9", false},
		{"http://10.1.2.3:11434", true},
		{"https://gpu-a.lan/base", true},
		{"http://gpu-a.lan.attacker.example", false},
		{"http://[::ffff:10.1.0.9]:80", true},
	} {
		st := node("evil", "chat")
		st.Services[0].Endpoint = c.endpoint
		before := w.Current().Version
		setRaw(t, evil, "gh:node:{evil}:state", "evil", st, time.Minute)
		waitFor(t, 10*time.Second, func() bool { return w.Current().Version > before })
		if err := w.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		_, routed := w.Current().ByID["evil/chat"]
		if routed != c.ok {
			t.Errorf("endpoint %s: routed %v, want %v (refusal %q)", c.endpoint, routed, c.ok, refusal(w.Current(), "evil"))
		}
	}
}

// TestNodeTTLCapped: a deadline comes from the key's real TTL, capped.
func TestNodeTTLCapped(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	if err := s.WriteHeartbeat(ctx, node("a", "o"), 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	rec, found, err := s.ReadNode(ctx, "a")
	if err != nil || !found {
		t.Fatal(found, err)
	}
	if d := time.Until(rec.Deadline); d > state.MaxNodeTTL || d < state.MaxNodeTTL-time.Minute {
		t.Fatalf("deadline %v from now, want the cap %v", d, state.MaxNodeTTL)
	}
	// What edges would refuse, the writer refuses first.
	bad := node("a", "o")
	bad.Services[0].Endpoint = "ftp://x"
	if err := s.WriteHeartbeat(ctx, bad, time.Minute); err == nil {
		t.Fatal("WriteHeartbeat stored an ftp endpoint")
	}
}
