package replica_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/geniehive/geniehive/edge"
	"github.com/geniehive/geniehive/edge/replica"
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/loadtest/sim"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/state"
)

// An operator denial on top of the shipped policy: max_tokens 4242 is
// refused. The shipped policy lets it through.
const denyRego = `package geniehive

denials contains {"priority": 100, "status": 403, "code": "policy_denied", "reason": "operator rule"} if {
	input.max_tokens == 4242
}
`

func chatMax(url string) (int, string) {
	req, _ := http.NewRequest("POST", url+"/v1/chat/completions",
		strings.NewReader(`{"model":"llama3.1:8b","max_tokens":4242,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// An edge restarted while the stored bundle was broken served the
// *shipped* policy and silently dropped the operator's denials. Now it
// serves the last good bundle (recorded by the edge that loaded it), or,
// with none, refuses to serve (503, /readyz 503) until a good bundle is
// pushed; the refusal shows as degraded and clears with a good bundle.
func TestRestartWithBrokenBundleKeepsLastGood(t *testing.T) {
	good := policies.ShippedPolicy()
	good["operator.rego"] = denyRego
	goodPB := &fleet.PolicyBundle{Version: policy.BundleVersion(good), Files: good, PushedAt: time.Now()}
	rego := func(c *replica.Config) { c.Policy.Engine = replica.EngineRego }

	// Edge A loads the good bundle (and records it as the last good one).
	urlA, st, prefix, _, doneA, cancelA := start(t, rego, sim.Behavior{})
	ctx := context.Background()
	if err := st.PutPolicyBundle(ctx, goodPB); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "edge A denies with the pushed bundle", func() bool { c, _ := chatMax(urlA); return c == 403 })
	cancelA()
	awaitRun(t, doneA)

	// A broken bundle is pushed (bypassing push's tests), then edges restart.
	broken := map[string]string{"geniehive.rego": "package geniehive\n\ndecision := {"}
	if err := st.PutPolicyBundle(ctx, &fleet.PolicyBundle{Version: "broken-1", Files: broken, PushedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	sameStore := func(c *replica.Config) {
		rego(c)
		c.Edge.Redis = edge.RedisConfig{Prefix: prefix}
	}
	urlB := startOn(t, st, sameStore)
	// A 503 policy_unavailable is the fail-closed answer while the edge
	// cannot yet read the last good bundle (on the Sentinel and Cluster
	// runs another package may be failing the master over right now); it
	// retries on its own. Anything else — above all a 200 from the shipped
	// policy — is the answer under test.
	waitFor(t, "edge B answers with a policy loaded", func() bool {
		c, body := chatMax(urlB)
		return c != 503 || !strings.Contains(body, "policy_unavailable")
	})
	if c, body := chatMax(urlB); c != 403 {
		t.Fatalf("restarted edge with a broken stored bundle: %d %s, want 403 from the last good bundle (shipped policy served?)", c, body)
	}
	if c, body := get(urlB + "/readyz"); c != 200 || !strings.Contains(body, edge.DegradedPolicyRefused) {
		t.Fatalf("/readyz = %d %s, want 200 naming %s", c, body, edge.DegradedPolicyRefused)
	}

	// No last good bundle either: refuse to serve rather than run the shipped one.
	if err := st.Client().Del(ctx, prefix+"policy:good").Err(); err != nil {
		t.Fatal(err)
	}
	urlC := startOn(t, st, sameStore)
	if c, body := chatMax(urlC); c != 503 || !strings.Contains(body, "policy_unavailable") {
		t.Fatalf("edge with no usable policy: %d %s, want 503 policy_unavailable", c, body)
	}
	if c, body := get(urlC + "/readyz"); c != 503 {
		t.Fatalf("/readyz with no usable policy = %d %s, want 503", c, body)
	}
	// A good bundle pushed: C serves it, and the refusal clears.
	if err := st.PutPolicyBundle(ctx, goodPB); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "edge C ready with the refusal cleared", func() bool {
		c, body := get(urlC + "/readyz")
		return c == 200 && !strings.Contains(body, edge.DegradedPolicyRefused)
	})
	if c, _ := chatMax(urlC); c != 403 {
		t.Fatalf("edge C after the good bundle: %d, want 403", c)
	}
}

// startOn starts another replica on st (the fleet start registered), for
// restarts; it stops with the test.
func startOn(t *testing.T, st *state.Store, mutate func(*replica.Config)) string {
	t.Helper()
	var cfg replica.Config
	cfg.Edge = edge.Config{Listen: "127.0.0.1:0", ID: "edge-r"}
	mutate(&cfg)
	if err := cfg.Provision(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	r, err := replica.New(ctx, cfg, replica.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: st, Ready: func(a string) { ready <- a }})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { err := r.Run(ctx); _ = r.Close(); done <- err }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case a := <-ready:
		return "http://" + a
	case err := <-done:
		t.Fatalf("replica stopped: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("replica did not start")
	}
	return ""
}
