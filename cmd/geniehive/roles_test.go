package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/state"
)

func TestRolesLoadRefusesBadCatalogAndKeepsStored(t *testing.T) {
	c, prefix := testredis.New(t)
	url := testredis.URL(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("roles:\n  - name: coder\n    aliases: [code]\n    candidates: [qwen3:8b]\n"), 0o644)
	os.WriteFile(bad, []byte("roles:\n  - name: coder\n    candidates: [x]\n    operation: dancing\n"), 0o644)
	flags := []string{"--redis-url", url, "--prefix", prefix}

	if err := runRoles(append([]string{"load", good}, flags...)); err != nil {
		t.Fatal(err)
	}
	st := state.New(c, prefix)
	cat, err := st.GetCatalog(context.Background())
	if err != nil || len(cat.Roles) != 1 {
		t.Fatalf("catalog after load: %+v %v", cat, err)
	}
	err = runRoles(append([]string{"load", bad}, flags...))
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:4: roles[0].operation") {
		t.Fatalf("bad catalog: %v", err)
	}
	again, _ := st.GetCatalog(context.Background())
	if again.Version != cat.Version {
		t.Fatal("a refused catalog replaced the stored one")
	}
	if err := runRoles(append([]string{"frobnicate"}, flags...)); err == nil {
		t.Fatal("unknown subcommand accepted")
	}
}

func TestKeysAddStoresOnlyHash(t *testing.T) {
	c, prefix := testredis.New(t)
	url := testredis.URL(t)
	// Capture the secret printed on stdout.
	r, w, _ := os.Pipe()
	old := os.Stdout
	os.Stdout = w
	err := runKeys([]string{"add", "ci", "--scope", "reader", "--redis-url", url, "--prefix", prefix})
	w.Close()
	os.Stdout = old
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	n, _ := r.Read(buf)
	secret := strings.TrimSpace(string(buf[:n]))
	if !strings.HasPrefix(secret, "gh-") {
		t.Fatalf("secret %q", secret)
	}
	keys, err := state.New(c, prefix).ListKeys(context.Background())
	if err != nil || len(keys) != 1 || keys[0].Hash != fleet.HashKeyHex(secret) || keys[0].Scope != fleet.ScopeReader {
		t.Fatalf("stored keys %+v %v", keys, err)
	}
	raw, _ := c.HGetAll(context.Background(), prefix+"keys").Result()
	for _, v := range raw {
		if strings.Contains(v, secret) {
			t.Fatal("the secret itself is stored in Redis")
		}
	}
	if err := runKeys([]string{"add", "x", "--scope", "god", "--redis-url", url, "--prefix", prefix}); err == nil {
		t.Fatal("unknown scope accepted")
	}
}
