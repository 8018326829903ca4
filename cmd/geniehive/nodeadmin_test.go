package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/state"
)

// The README shows the rule `node acl` prints, and both come from
// state.NodeACL, which the node agent's ACL test applies.
func TestNodeACLCommandMatchesREADME(t *testing.T) {
	var out bytes.Buffer
	rf := &redisFlags{Prefix: state.DefaultPrefix}
	if err := nodeACL(context.Background(), &out, rf, "gpu-a", "SECRET", false); err != nil {
		t.Fatal(err)
	}
	rule, err := state.NodeACL(state.DefaultPrefix, "gpu-a", "SECRET")
	if err != nil {
		t.Fatal(err)
	}
	printed := strings.TrimSpace(out.String())
	if printed != strings.Join(rule, " ") {
		t.Fatalf("printed %q, want %q", printed, strings.Join(rule, " "))
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "\n"+printed+"\n") {
		t.Fatalf("README's ACL rule is not what `node acl` prints:\n%s", printed)
	}
	if err := nodeACL(context.Background(), &out, rf, "a}:x", "S", false); err == nil {
		t.Fatal("a host id with braces got an ACL")
	}
}

// `node acl --apply` creates the user through the operator's connection,
// and `node allow` writes, lists and clears the allowlist.
func TestNodeAdminCommands(t *testing.T) {
	srv := testredis.Private(t)
	rf := &redisFlags{URL: srv.URL(), Prefix: state.DefaultPrefix}
	ctx := context.Background()
	var out bytes.Buffer
	if err := nodeACL(ctx, &out, rf, "gpu-a", "", true); err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimSpace(out.String())
	admin := srv.Client(t)
	if who, err := admin.Do(ctx, "ACL", "GETUSER", "node-gpu-a").Result(); err != nil || who == nil {
		t.Fatalf("user not created: %v", err)
	}
	if len(secret) != 48 {
		t.Fatalf("secret %q", secret)
	}
	s, done, err := rf.store(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	out.Reset()
	if err := nodeAllow(ctx, &out, s, []string{"gpu-a", "10.0.0.0/24", "gpu-a.lan"}, false, false); err != nil {
		t.Fatal(err)
	}
	if err := nodeAllow(ctx, &out, s, []string{"gpu-b", "not a cidr!"}, false, false); err == nil {
		t.Fatal("a bad entry was stored")
	}
	out.Reset()
	if err := nodeAllow(ctx, &out, s, nil, true, false); err != nil || out.String() != "gpu-a\t10.0.0.0/24 gpu-a.lan\n" {
		t.Fatalf("list: %v %q", err, out.String())
	}
	if err := nodeAllow(ctx, &out, s, []string{"gpu-a"}, false, true); err != nil {
		t.Fatal(err)
	}
	if m, err := s.NodeAllowlists(ctx); err != nil || len(m) != 0 {
		t.Fatalf("after --clear: %v %v", m, err)
	}
}
