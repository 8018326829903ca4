package edge

import (
	"context"
	"strings"
	"testing"

	"github.com/geniehive/geniehive/fleet"
)

// With no live model at all (the fleet is away: Redis lost, agents
// re-registering) the answer is a retryable 503, not a 404 that tells the
// client the model does not exist; a name unknown among live models stays 404.
func TestNoLiveModelsIsRetryable503(t *testing.T) {
	s := newStack(t)
	body := []byte(`{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}]}`)
	unknown := []byte(`{"model":"no-such-model","messages":[{"role":"user","content":"hi"}]}`)
	if resp, b := do(t, "POST", s.url+"/v1/chat/completions", testKey, unknown, nil); resp.StatusCode != 404 {
		t.Fatalf("unknown model among live ones: %d %s", resp.StatusCode, b)
	}
	if err := s.store.RemoveNode(context.Background(), "gpu1"); err != nil {
		t.Fatal(err)
	}
	s.waitFor(func(sn *fleet.Snapshot) bool { return len(sn.Services) == 0 })
	resp, b := do(t, "POST", s.url+"/v1/chat/completions", testKey, body, nil)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(b, `"code":"no_models_available"`) {
		t.Fatalf("empty fleet: %d Retry-After=%q %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
}
