package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/geniehive/geniehive/edge/replica"
	"github.com/geniehive/geniehive/ghtest"
	"github.com/geniehive/geniehive/internal/cli"
	"github.com/geniehive/geniehive/nodeagent"
	"github.com/geniehive/geniehive/state"
)

// The compose load balancer config is exactly what ghtest generates for
// three edges, so both are tested by the chaos suite.
func TestHAProxyConfigMatchesGhtest(t *testing.T) {
	b, err := os.ReadFile("haproxy/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	if got := ghtest.HAProxyConfig([]string{"edge1", "edge2", "edge3"}); got != string(b) {
		t.Errorf("deploy/haproxy/haproxy.cfg differs from ghtest.HAProxyConfig; regenerate one from the other")
	}
	if _, err := exec.LookPath("haproxy"); err == nil {
		out, err := exec.Command("haproxy", "-c", "-f", "haproxy/haproxy.cfg").CombinedOutput()
		if err != nil {
			t.Errorf("haproxy -c: %v\n%s", err, out)
		}
	}
}

func TestCatalog(t *testing.T) {
	c, err := state.LoadCatalogFile("catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"chat", "thinker", "embedder", "assistant"} {
		if _, ok := c.Role(r); !ok {
			t.Errorf("role %q missing", r)
		}
	}
}

func TestNodeConfigs(t *testing.T) {
	for _, f := range []string{"config/node-a.yaml", "config/node-b.yaml"} {
		var c nodeagent.Config
		if err := cli.LoadYAML(f, &c); err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestEdgeConfig(t *testing.T) {
	c, err := replica.LoadFile("config/edge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// No secret ships in the file: the compose "keys" service makes one at
	// first start (geniehive keys init), and edges refuse to run open.
	if c.Edge.Listen != ":8080" || len(c.Edge.Keys) != 0 || !c.Edge.AuthRequired {
		t.Errorf("edge.yaml: listen %q, %d keys, auth_required %v; compose needs :8080, no shipped key, auth_required", c.Edge.Listen, len(c.Edge.Keys), c.Edge.AuthRequired)
	}
}

// compose.yaml: every service the issue names, image variables with
// public defaults, and every mounted host path present in the repository.
func TestCompose(t *testing.T) {
	b, err := os.ReadFile("../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Image   string   `yaml:"image"`
			Volumes []string `yaml:"volumes"`
			Command []string `yaml:"command"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"redis", "edge1", "edge2", "edge3", "lb", "node-a", "node-b", "sim-ollama", "sim-openai", "sim-embed", "catalog"} {
		svc, ok := doc.Services[s]
		if !ok {
			t.Errorf("service %s missing", s)
			continue
		}
		img := svc.Image
		switch {
		case s == "redis":
			if img != "${REDIS_IMAGE:-redis:7-alpine}" {
				t.Errorf("redis image %q", img)
			}
		case s == "lb":
			if img != "${LB_IMAGE:-haproxy:2.8-alpine}" {
				t.Errorf("lb image %q", img)
			}
		default:
			if !strings.HasPrefix(img, "${GENIEHIVE_IMAGE:-") {
				t.Errorf("%s image %q", s, img)
			}
		}
		for _, v := range svc.Volumes {
			host := strings.SplitN(v, ":", 2)[0]
			if _, err := os.Stat(filepath.Join("..", host)); err != nil {
				t.Errorf("%s mounts %s: %v", s, host, err)
			}
		}
	}
	for _, cfg := range []string{"config/edge.yaml", "config/node-a.yaml", "config/node-b.yaml"} {
		if !strings.Contains(string(b), filepath.Base(cfg)) {
			t.Errorf("compose.yaml does not use %s", cfg)
		}
	}
}
