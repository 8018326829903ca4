package ghtest_test

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/geniehive/geniehive/ghtest"
	"github.com/geniehive/geniehive/loadtest/sim"
)

// The caller's own upstream, running on the Docker host, routed through the
// cluster: the node agent discovers it at host.docker.internal and the edge
// proxies to it.
func TestOwnUpstream(t *testing.T) {
	needDocker(t)
	up, err := sim.Start(sim.Config{Flavor: sim.FlavorOpenAI, Addr: "0.0.0.0:0", Models: []sim.Model{{Name: "own-model:1b"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	port := up.Addr()[strings.LastIndexByte(up.Addr(), ':')+1:]

	c := ghtest.Start(t,
		ghtest.WithUpstreams(ghtest.Upstream{Name: "mine", URL: "http://host.docker.internal:" + port, Protocol: "openai", Models: []string{"own-model:1b"}, Node: -1}),
		ghtest.WithAPIKey("sk-test-own"),
	)
	if c.APIKey != "sk-test-own" {
		t.Errorf("APIKey = %q", c.APIKey)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/chat/completions",
		strings.NewReader(`{"model":"own-model:1b","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+c.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"finish_reason":"stop"`) {
		t.Fatalf("%s: %s", resp.Status, b)
	}
	if n := up.Requests("/v1/chat/completions"); n != 1 {
		t.Errorf("own upstream saw %d chat requests, want 1", n)
	}
	// A wrong key is refused in OpenAI format.
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+"/models", nil)
	req.Header.Set("Authorization", "Bearer wrong")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(b), `"error"`) {
		t.Errorf("wrong key: %s %s", resp.Status, b)
	}
}

// Terminate removes every container and network, and is idempotent.
func TestTerminate(t *testing.T) {
	needDocker(t)
	ctx := context.Background()
	c, err := ghtest.Run(ctx, ghtest.WithEdges(2), ghtest.WithSimulatedUpstream("s", "ollama", "qwen3:8b"))
	if err != nil {
		t.Fatal(err)
	}
	if c.LB == nil || len(c.Edges) != 2 {
		t.Fatalf("LB %v, %d edges", c.LB, len(c.Edges))
	}
	ids, err := c.Models(ctx)
	if err != nil || len(ids) == 0 || ids[0] != "qwen3:8b" {
		t.Errorf("models %v %v", ids, err)
	}
	if err := c.Terminate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Terminate(ctx); err != nil {
		t.Errorf("second Terminate: %v", err)
	}
	out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label="+ghtest.LabelCluster+"="+c.ID).Output()
	if len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("containers left after Terminate: %s", out)
	}
	out, _ = exec.Command("docker", "network", "ls", "-q", "--filter", "label="+ghtest.LabelCluster+"="+c.ID).Output()
	if len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("networks left after Terminate: %s", out)
	}
}
