package state_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/state"
)

// A corrupt catalog in Redis made every refresh fail: the snapshot froze
// (nodes included) and /readyz of a restarted edge answered 503. Now the
// last good catalog stays, the problem is reported, and the fleet keeps
// refreshing; a fresh watcher starts from the copy PutCatalog keeps.
func TestCorruptCatalogKeepsLastGood(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	cat, err := state.ParseCatalog("t", []byte("roles:\n  - name: coder\n    candidates: [m-a]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutCatalog(ctx, cat); err != nil {
		t.Fatal(err)
	}
	w := state.NewWatcher(s, state.WatcherOptions{Resync: time.Hour})
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, prefix+"catalog", `{"roles":[{"name":`, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteHeartbeat(ctx, node("a", "ollama"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := w.Refresh(ctx); err != nil {
		t.Fatalf("Refresh with a corrupt catalog: %v (the whole snapshot freezes)", err)
	}
	snap := w.Current()
	if !snap.RedisOK || snap.CatalogError == "" || len(snap.Catalog.Roles) != 1 || snap.ByID["a/ollama"] == nil {
		t.Fatalf("snapshot: redisOK=%v catalogError=%q roles=%d node=%v", snap.RedisOK, snap.CatalogError,
			len(snap.Catalog.Roles), snap.ByID["a/ollama"] != nil)
	}
	// A restarted edge: nothing of its own, the stored catalog corrupt.
	w2 := state.NewWatcher(s, state.WatcherOptions{Resync: time.Hour})
	if err := w2.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if sn := w2.Current(); sn.CatalogError == "" || len(sn.Catalog.Roles) != 1 || sn.Catalog.Roles[0].Name != "coder" {
		t.Fatalf("fresh watcher: catalogError=%q roles=%v", sn.CatalogError, sn.Catalog.Roles)
	}
	// Repaired: the error clears.
	if err := s.PutCatalog(ctx, cat); err != nil {
		t.Fatal(err)
	}
	if err := w.Refresh(ctx); err != nil || w.Current().CatalogError != "" {
		t.Fatalf("after repair: %v %q", err, w.Current().CatalogError)
	}
}

// Unparsable key entries are an error, never skipped into an empty
// keyring; the auth marker outlives the keys.
func TestKeyringStrictAndMarked(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	kr, err := s.ReadKeyring(ctx)
	if err != nil || kr.AuthOn || len(kr.Keys) != 0 {
		t.Fatalf("fresh: %+v %v", kr, err)
	}
	if err := s.PutKey(ctx, fleet.APIKey{ID: "a", Hash: fleet.HashKeyHex("x"), Scope: fleet.ScopeClient}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteKey(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if kr, err = s.ReadKeyring(ctx); err != nil || !kr.AuthOn {
		t.Fatalf("after delete: %+v %v, want the auth marker", kr, err)
	}
	c.HSet(ctx, prefix+"keys", "b", "{", "c", `{"id":"other","sha256":"`+fleet.HashKeyHex("y")+`","scope":"client"}`)
	kr, err = s.ReadKeyring(ctx)
	var ke *state.KeyringError
	if !errors.As(err, &ke) || !errors.Is(err, state.ErrCorrupt) || len(ke.BadIDs) != 2 || len(kr.Keys) != 0 {
		t.Fatalf("malformed entries: %+v %v", kr, err)
	}
	w := state.NewWatcher(s, state.WatcherOptions{Resync: time.Hour})
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if sn := w.Current(); sn.KeysError == "" || !sn.AuthOn {
		t.Fatalf("snapshot: keysError=%q authOn=%v", sn.KeysError, sn.AuthOn)
	}
}
