package swap_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geniehive/geniehive/edge/replica"
	"github.com/geniehive/geniehive/loadtest/sim"
)

// loadingOn reports whether the registry shows model as loading on service
// (the node agent's Asset.Loading) and whether the upstream already lists
// it as resident.
func (h *harness) loadingOn(service, model string) (loading, listed bool) {
	recs, err := h.st.ReadNodes(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	for _, r := range recs {
		for _, svc := range r.State.Services {
			if svc.ID != service {
				continue
			}
			for _, a := range svc.Assets {
				if a.Name == model {
					return a.Loading, a.Loaded
				}
			}
		}
	}
	return false, false
}

// chats counts the chat requests an upstream received (either API).
func chats(s *sim.Server) int64 {
	st := s.Stats()
	return st.Requests["/v1/chat/completions"] + st.Requests["/api/chat"]
}

// TestSwapWaitBoundedWhileLoading: Ollama lists a model in /api/ps while it
// loads (the simulator does as server/sched.go does), so a heartbeat alone
// would call it loaded and a request sent there would queue inside the
// upstream for the whole load, whatever swap.wait says. The node agent
// reports the model as loading until it has confirmed the load, and the
// edges wait for it as for a model loaded nowhere: a request through the
// edge with swap.wait 1s gets a retryable 503 model_loading while the
// 8s load is still under way (it never reached the upstream); requests
// through the edge with swap.wait 30s are served once the load ends, on
// the node that loaded it (the full node never loads it on demand).
func TestSwapWaitBoundedWhileLoading(t *testing.T) {
	slow := sim.Behavior{LoadTime: 8 * time.Second, UnloadTime: 20 * time.Millisecond, Chunks: 4, ChunkInterval: time.Millisecond}
	h := newHarness(t, map[string][]string{"n1": {"m1:latest", "m2:latest"}, "n2": {"m3:latest"}},
		map[string]sim.Behavior{"n2": slow}, func(c *replica.Config) {
			c.Edge.Swap.Wait = 30 * time.Second
			c.Edge.Swap.CommandTimeout = 30 * time.Second // longer than the load
			if c.Edge.ID == "e1" {
				c.Edge.Swap.Wait = time.Second
			}
		})
	short, long := h.edges[0], h.edges[1]

	// A request through the patient edge makes the controller load m4 on
	// n2, the node with room.
	var wg sync.WaitGroup
	codes := make([]int, 2)
	bodies := make([]string, 2)
	wg.Add(1)
	go func() { defer wg.Done(); codes[0], bodies[0] = chat(long, "m4:latest") }()
	h.waitFor("n2 reporting m4 as loading, listed by /api/ps", 20*time.Second, func() bool {
		loading, listed := h.loadingOn("n2/ollama", "m4:latest")
		return loading && listed
	})

	// A second patient request arrives during the load: served when it ends.
	wg.Add(1)
	go func() { defer wg.Done(); codes[1], bodies[1] = chat(long, "m4:latest") }()

	// The impatient edge: a clear retryable error while the load is still
	// under way, and the request never reached an upstream.
	req, _ := http.NewRequest(http.MethodPost, short.url+"/v1/chat/completions",
		strings.NewReader(`{"model":"m4:latest","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	stillLoading := false
	for _, r := range h.nodes["n2"].sim.Resident() {
		if r.Name == "m4:latest" && r.Loading {
			stillLoading = true
		}
	}
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), `"code":"model_loading"`) || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("request during the load through the edge with swap.wait 1s: %d %q (Retry-After %q), want 503 model_loading with Retry-After",
			resp.StatusCode, string(b), resp.Header.Get("Retry-After"))
	}
	if !stillLoading {
		t.Fatal("the 503 came after the load had ended: the wait was not bounded by swap.wait")
	}
	// Nor did the patient requests: they wait at the edge, not inside the
	// loading upstream.
	if n := chats(h.nodes["n2"].sim); n != 0 {
		t.Fatalf("%d chat requests reached n2 while m4 was loading", n)
	}

	wg.Wait()
	for i := range codes {
		if codes[i] != http.StatusOK {
			t.Errorf("request %d through the edge with swap.wait 30s: %d %s", i, codes[i], bodies[i])
		}
	}
	if got := resident(h.nodes["n2"].sim); !contains(got, "m4:latest") {
		t.Errorf("n2 holds %v, want m4", got)
	}
	if st := h.nodes["n1"].sim.Stats(); st.Loads != 0 || st.Unloads != 0 {
		t.Errorf("n1 loaded %d and unloaded %d models: a request went to a host that loads on demand", st.Loads, st.Unloads)
	}
	if loading, _ := h.loadingOn("n2/ollama", "m4:latest"); loading {
		h.waitFor("n2 no longer reporting m4 as loading", 5*time.Second, func() bool {
			loading, _ := h.loadingOn("n2/ollama", "m4:latest")
			return !loading
		})
	}
	h.checkInvariants()
}
