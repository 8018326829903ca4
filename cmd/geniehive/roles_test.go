package main

import (
	"context"
	"io"
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

// Deleting the last stored key is what turned auth off at runtime (issue
// 16, item 3): the command refuses it without --force.
func TestKeysDeleteRefusesLastKey(t *testing.T) {
	c, prefix := testredis.New(t)
	url := testredis.URL(t)
	flags := []string{"--redis-url", url, "--prefix", prefix}
	keys := func(args ...string) error {
		// add prints the secret on stdout: keep it out of the test log.
		r, w, _ := os.Pipe()
		old := os.Stdout
		os.Stdout = w
		err := runKeys(append(args, flags...))
		w.Close()
		os.Stdout = old
		io.Copy(io.Discard, r)
		return err
	}
	stored := func() int {
		n, err := c.HLen(context.Background(), prefix+"keys").Result()
		if err != nil {
			t.Fatal(err)
		}
		return int(n)
	}
	for _, id := range []string{"a", "b"} {
		if err := keys("add", id, "--scope", "operator"); err != nil {
			t.Fatal(err)
		}
	}
	if err := keys("delete", "a"); err != nil || stored() != 1 {
		t.Fatalf("delete a: %v, %d stored", err, stored())
	}
	err := keys("delete", "b")
	if err == nil || !strings.Contains(err.Error(), "last key") || stored() != 1 {
		t.Fatalf("deleting the last key: err %v, %d stored, want a refusal and the key kept", err, stored())
	}
	if err := keys("delete", "nosuch"); err == nil {
		t.Fatal("deleting a key that is not stored succeeded")
	}
	if err := keys("delete", "b", "--force"); err != nil || stored() != 0 {
		t.Fatalf("delete --force: %v, %d stored", err, stored())
	}
}
