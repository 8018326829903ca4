package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/state"
)

// The review: the embedded store of `geniehive dev` listened on loopback
// without a password, so any local user could write an operator key into
// it; and `geniehive dev --key` printed the key.
func TestDevStoreNeedsPasswordAndKeyIsNotPrinted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	m, pw, err := startEmbeddedStore(ctx, &wg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// The attack: another local user connects without the password.
	anon := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer anon.Close()
	if err := anon.HSet(ctx, "gh:keys", "evil", `{"id":"evil","sha256":"00","scope":"operator"}`).Err(); err == nil {
		t.Fatal("wrote into the dev store without a password")
	}
	ok := redis.NewClient(&redis.Options{Addr: m.Addr(), Password: pw})
	defer ok.Close()
	if err := ok.Ping(ctx).Err(); err != nil {
		t.Fatalf("with the password: %v", err)
	}
	var out bytes.Buffer
	printDevBanner(&out, devConfig{Key: "sk-very-secret", OperatorKey: "sk-op-secret"}, "embedded", "127.0.0.1:8080", nil)
	if s := out.String(); strings.Contains(s, "sk-very-secret") || strings.Contains(s, "sk-op-secret") || strings.Contains(s, pw) {
		t.Fatalf("the banner prints a secret:\n%s", s)
	}
	if !strings.Contains(out.String(), "console:    http://127.0.0.1:8080/ui/") {
		t.Fatalf("the banner does not name the console:\n%s", out.String())
	}
}

// The compose demo shipped a fixed operator secret. Its one-shot "keys"
// service runs `keys init`: a key at first start only, none after.
func TestKeysInitOnlyOnFirstStart(t *testing.T) {
	c, prefix := testredis.New(t)
	flags := []string{"admin", "--scope", "operator", "--redis-url", testredis.URL(t), "--prefix", prefix}
	for i := 0; i < 2; i++ {
		if err := runKeys(append([]string{"init"}, flags...)); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := state.New(c, prefix).ListKeys(context.Background())
	if err != nil || len(keys) != 1 || keys[0].Scope != fleet.ScopeOperator {
		t.Fatalf("after two inits: %+v %v", keys, err)
	}
	if b, _ := os.ReadFile("../../deploy/config/edge.yaml"); strings.Contains(string(b), "secret:") {
		t.Fatal("deploy/config/edge.yaml ships a secret")
	}
}
