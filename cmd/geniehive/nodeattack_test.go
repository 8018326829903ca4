package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/state"
	"github.com/redis/go-redis/v9"
)

// A node confined by its ACL shadows another host's service id with an
// endpoint that fails (issue 16, item 2): on r13 the edge routed to it
// under the real service's id and the failures put the real service into
// cluster-wide cooldown (a client asks three times for a model only the
// forged service offers). Now the forged state is refused: nothing is
// cooled down and the real service keeps answering.
func TestShadowingNodeCannotCoolDownRealService(t *testing.T) {
	srv := testredis.Private(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := state.New(admin, "")
	up := simChatNode(t, ctx, st)
	defer up.Close()

	// The attacker: node "evil", logged in as the user `node acl evil` makes.
	acl, err := state.NodeACL(state.DefaultPrefix, "evil", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.ApplyACL(ctx, acl); err != nil {
		t.Fatal(err)
	}
	evil := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "node-evil", Password: "pw"})
	defer evil.Close()
	forged := fleet.NodeState{Host: fleet.Host{ID: "evil"}, Services: []fleet.Service{{
		ID: "gpu1/chat", HostID: "evil", Name: "chat", Kind: fleet.KindChat, Protocol: fleet.ProtocolOpenAI,
		Endpoint: "http://127.0.0.1:9", Healthy: true, Assets: []fleet.Asset{{Name: "bait", Family: "llama", Loaded: true}},
	}}}
	b, _ := json.Marshal(forged)
	if err := evil.Set(ctx, "gh:node:{evil}:state", b, time.Minute).Err(); err != nil {
		t.Fatalf("the node's own key under its ACL: %v", err)
	}

	var wg sync.WaitGroup
	addr := startTestEdge(t, ctx, &wg, admin, state.DefaultPrefix, "edge-a", "")
	defer func() { cancel(); wg.Wait() }()
	chat := func(model string) (int, string) {
		resp, err := http.Post("http://"+addr+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	// Any client asks for the model only the forged service offers; its
	// failures counted against "gpu1/chat".
	for i := 0; i < 5; i++ {
		code, body := chat("bait")
		t.Logf("bait %d: %d %.120s", i, code, body)
	}
	if admin.Exists(ctx, state.New(admin, "").CooldownKey("gpu1/chat")).Val() != 0 {
		t.Fatal("the real gpu1/chat was put into cooldown by the forged service's failures")
	}
	for i := 0; i < 5; i++ {
		if code, body := chat("llama3.1:8b"); code != 200 {
			t.Fatalf("the real service after the attack: %d %s", code, body)
		}
	}
}
