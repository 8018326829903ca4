package edge

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
)

// The hostile review's High 3: with auth_required, deleting the last key
// stored in Redis — or leaving only malformed entries in the keys hash —
// turned auth off on every edge and anonymous requests got operator
// access. Auth must fail closed: 401 for everyone, and the edge says why.
func TestAuthFailsClosedWhenKeyringEmptiesOrBreaks(t *testing.T) {
	const opSecret = "sk-operator-stored"
	ctx := context.Background()
	s := newStack(t, func(c *Config, d *Deps) {
		c.Keys, c.AuthRequired = nil, true
		if err := d.Store.PutKey(ctx, fleet.APIKey{ID: "op", Hash: fleet.HashKeyHex(opSecret), Scope: fleet.ScopeOperator}); err != nil {
			t.Fatal(err)
		}
	})
	s.waitFor(func(sn *fleet.Snapshot) bool { return len(sn.Keys) == 1 })
	get := func(path, key string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", s.url+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/v1/models", opSecret); code != 200 {
		t.Fatalf("operator key: %d", code)
	}
	if code, _ := get("/v1/models", ""); code != 401 {
		t.Fatalf("anonymous with a key stored: %d", code)
	}

	// Attack 1: the last stored key deleted (geniehive keys delete --force).
	if err := s.store.DeleteKey(ctx, "op"); err != nil {
		t.Fatal(err)
	}
	s.waitFor(func(sn *fleet.Snapshot) bool { return len(sn.Keys) == 0 })
	for _, p := range []string{"/v1/models", "/v1/cluster/hosts", "/v1/cluster/edges"} {
		if code, body := get(p, ""); code != 401 {
			t.Fatalf("anonymous %s after the last key was deleted: %d %s", p, code, body)
		}
	}
	if code, body := get("/readyz", ""); code != 200 || !strings.Contains(body, DegradedKeyringEmpty) {
		t.Fatalf("/readyz = %d %s, want 200 naming %s", code, body, DegradedKeyringEmpty)
	}
	if !hasProblem(s.srv.Problems(), DegradedKeyringEmpty) {
		t.Fatalf("Problems = %v", s.srv.Problems())
	}

	// Attack 2: only malformed entries left in the keys hash.
	c := s.store.Client()
	kk := s.store.Prefix() + "keys"
	if err := c.HSet(ctx, kk, "op", `{"id":"op","sha256":"not-hex","scope":"operator"}`, "x", "garbage").Err(); err != nil {
		t.Fatal(err)
	}
	_ = c.Publish(ctx, s.store.Channel("keys"), "put").Err()
	s.waitFor(func(sn *fleet.Snapshot) bool { return sn.KeysError != "" })
	if code, body := get("/v1/cluster/hosts", ""); code != 401 {
		t.Fatalf("anonymous with only malformed entries: %d %s", code, body)
	}
	if code, body := get("/readyz", ""); !strings.Contains(body, DegradedKeyringUnreadable) {
		t.Fatalf("/readyz = %d %s, want %s", code, body, DegradedKeyringUnreadable)
	}
	if code, body := get("/metrics", ""); code == 200 && !strings.Contains(body, `geniehive_degraded{reason="keyring_unreadable"} 1`) {
		t.Fatalf("metrics lack the degraded gauge:\n%s", grepLines(body, "geniehive_degraded"))
	}

	// Attack 3: the keys hash replaced by a string (WRONGTYPE on HGETALL).
	if err := c.Del(ctx, kk).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, kk, "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_ = c.Publish(ctx, s.store.Channel("keys"), "put").Err()
	time.Sleep(50 * time.Millisecond)
	_ = s.srv.Watcher().Refresh(ctx)
	if code, body := get("/v1/models", ""); code != 401 {
		t.Fatalf("anonymous with a keys key of the wrong type: %d %s", code, body)
	}
}

// The marker outlives the edge: an edge started without auth_required on
// a store where keys once existed (all deleted since) refuses anonymous
// requests instead of serving them with auth off.
func TestAuthMarkerKeepsAuthOnAcrossRestart(t *testing.T) {
	s := newStack(t, func(c *Config, _ *Deps) { c.Keys = nil })
	ctx := context.Background()
	if err := s.store.PutKey(ctx, fleet.APIKey{ID: "k", Hash: fleet.HashKeyHex("sk-x"), Scope: fleet.ScopeClient}); err != nil {
		t.Fatal(err)
	}
	if err := s.store.DeleteKey(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	s.stop()
	// A second edge on the same store, as after a restart.
	s2 := restartOn(t, s)
	resp, err := http.Get(s2.url + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("anonymous /v1/models on a restarted edge whose keyring was emptied: %d, want 401", resp.StatusCode)
	}
}

// restartOn starts another edge (its own watcher, no configured keys) on
// the store of s, as a restarted replica would.
func restartOn(t *testing.T, s *stack) *stack {
	t.Helper()
	cfg := Config{Listen: "127.0.0.1:0", ID: "edge-restarted"}
	cfg.Timeouts.Shutdown = 3 * time.Second
	if err := cfg.Provision(); err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, Deps{Store: s.store, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s2 := &stack{t: t, store: s.store, srv: srv, url: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { s2.done <- srv.Run(ctx, ln) }()
	t.Cleanup(s2.stop)
	waitUntil(t, 5*time.Second, "restarted edge", func() bool { return srv.Addr() != "" && srv.Watcher().Current().RedisOK })
	return s2
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
