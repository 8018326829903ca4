package nodeagent

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/cli"
)

func TestExampleConfigValidates(t *testing.T) {
	var c Config
	if err := cli.LoadYAML("testdata/node.example.yaml", &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.HostID != "gpu-a" || len(c.Services) != 6 || c.Interval != 5*time.Second || c.TTL != 15*time.Second {
		t.Fatalf("%+v", c)
	}
	if c.Services[2].HealthPath != "/health" || c.Services[4].Kind != fleet.KindTranscription {
		t.Fatalf("defaults not filled: %+v", c.Services)
	}
}

func TestConfigErrors(t *testing.T) {
	ok := func() Config {
		return Config{HostID: "h", Services: []ServiceConfig{{Name: "s", Endpoint: "http://x:1", Protocol: "ollama"}}}
	}
	cases := []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.HostID = "" }, "host_id is required"},
		{func(c *Config) { c.HostID = "a b" }, "host_id"},
		{func(c *Config) { c.HostID = "a/b" }, "host_id"},
		{func(c *Config) { c.Services = nil }, "at least one service"},
		{func(c *Config) { c.Services[0].Name = "" }, "name is required"},
		{func(c *Config) { c.Services = append(c.Services, c.Services[0]) }, "duplicate service name"},
		{func(c *Config) { c.Services[0].Kind = "video" }, `kind "video"`},
		{func(c *Config) { c.Services[0].Endpoint = "" }, "endpoint is required"},
		{func(c *Config) { c.Services[0].Endpoint = "ftp://x" }, "http:// or https://"},
		{func(c *Config) { c.Services[0].Endpoint = "http://x:1/v1" }, "without /v1"},
		{func(c *Config) { c.Services[0].Protocol = "tgi" }, `discover_protocol "tgi"`},
		{func(c *Config) { c.Services[0].Protocol = "" }, "list its models under assets"},
		{func(c *Config) { c.Services[0].ModelsManifest = []string{"m"} }, "models_manifest is only for"},
		{func(c *Config) { c.Services[0].MaxConcurrency = -1 }, "max_concurrency"},
		{func(c *Config) { c.Services[0].HealthPath = "health" }, "must start with '/'"},
		{func(c *Config) { c.Interval, c.TTL = 5*time.Second, 5*time.Second }, "must exceed heartbeat_interval"},
		{func(c *Config) { c.TTL = 1500 * time.Millisecond; c.Interval = time.Second }, "whole seconds"},
		{func(c *Config) { c.Services[0].Assets = []AssetConfig{{Name: "a"}, {Name: "a"}} }, "duplicate asset"},
	}
	for _, tc := range cases {
		c := ok()
		tc.mut(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want error containing %q, got %v", tc.want, err)
		}
	}
	c := ok()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// Several problems are all reported.
	c = Config{Services: []ServiceConfig{{Name: "s"}}}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "host_id") || !strings.Contains(err.Error(), "endpoint") {
		t.Fatalf("not every problem reported: %v", err)
	}
	c = Config{HostID: "h", Interval: time.Second, Services: ok().Services}
	if err := c.Validate(); err != nil || c.TTL != 15*time.Second || c.DiscoveryTimeout != time.Second {
		t.Fatalf("defaults: %v %+v", err, c)
	}
}

// Recorded from llama.cpp b5000 (--metrics) and vLLM 0.8 (abridged).
const llamacppMetrics = `# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 1094
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 2
# HELP llamacpp:requests_deferred Number of requests deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 5
`

const vllmMetrics = `# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="Qwen/Qwen3-8B"} 3.0
vllm:num_requests_running{model_name="odd \"name} x",engine="1"} 1.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="Qwen/Qwen3-8B"} 7.0 1712345678000
vllm:num_requests_waiting_by_reason{reason="capacity"} 99
vllm:gpu_cache_usage_perc{model_name="Qwen/Qwen3-8B"} 0.4
garbage line without value
vllm:num_requests_waiting{unterminated="x 5
`

func TestParseProm(t *testing.T) {
	m := parseProm(llamacppMetrics, "llamacpp:requests_processing", "llamacpp:requests_deferred")
	if m["llamacpp:requests_processing"] != 2 || m["llamacpp:requests_deferred"] != 5 || len(m) != 2 {
		t.Fatalf("%v", m)
	}
	m = parseProm(vllmMetrics, "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc")
	if m["vllm:num_requests_running"] != 4 || m["vllm:num_requests_waiting"] != 7 || m["vllm:gpu_cache_usage_perc"] != 0.4 {
		t.Fatalf("%v", m)
	}
}

// Recorded nvidia-smi output (two GPUs, one that cannot report utilisation).
const nvidiaOut = `0, NVIDIA GeForce RTX 4090, 18211, 24564, 87
1, NVIDIA A100-SXM4-80GB, 1, 81920, [N/A]
`

func TestParseNvidiaSMI(t *testing.T) {
	g, err := parseNvidiaSMI(nvidiaOut)
	if err != nil {
		t.Fatal(err)
	}
	want := []fleet.GPU{
		{Index: 0, Name: "NVIDIA GeForce RTX 4090", VRAMUsedBytes: 18211 << 20, VRAMTotalBytes: 24564 << 20, UtilPercent: 87},
		{Index: 1, Name: "NVIDIA A100-SXM4-80GB", VRAMUsedBytes: 1 << 20, VRAMTotalBytes: 81920 << 20, UtilPercent: 0},
	}
	if len(g) != 2 || g[0] != want[0] || g[1] != want[1] {
		t.Fatalf("%+v", g)
	}
	if _, err := parseNvidiaSMI("garbage\n"); err == nil {
		t.Fatal("garbage accepted")
	}
	if g, err := parseNvidiaSMI(""); err != nil || len(g) != 0 {
		t.Fatal("empty output")
	}
}

func TestMergeStatic(t *testing.T) {
	yes, no := true, false
	sc := &ServiceConfig{Kind: fleet.KindChat, Assets: []AssetConfig{
		{Name: "qwen3:8b", Loaded: true, Tags: []string{"coder"}, ContextLength: 32768},
		{Name: "llama3:8b", Thinking: &yes},
		{Name: "gone", Loaded: true},
		{Name: "qwen3:4b", Thinking: &no},
	}}
	found := []fleet.Asset{{Name: "qwen3:8b", Loaded: false, Family: "qwen3"}, {Name: "llama3:8b", Loaded: true}, {Name: "qwen3:4b"}, {Name: "phi4"}}
	out, warn := merge(found, sc, true, nil)
	if len(out) != 4 || len(warn) != 1 || !strings.Contains(warn[0], `"gone"`) {
		t.Fatalf("%+v %v", out, warn)
	}
	by := map[string]fleet.Asset{}
	for _, a := range out {
		by[a.Name] = a
	}
	if q := by["qwen3:8b"]; q.Loaded || !q.Thinking || q.ContextLength != 32768 || q.Tags[0] != "coder" {
		t.Fatalf("qwen3:8b %+v", q)
	}
	if !by["llama3:8b"].Thinking || by["qwen3:4b"].Thinking || by["phi4"].Thinking || by["phi4"].Family != "phi4" {
		t.Fatalf("%+v", out)
	}
	// Without discovery the static list is the truth.
	out, _ = merge(nil, sc, false, nil)
	if len(out) != 4 || !out[0].Loaded || out[0].Name != "gone" {
		t.Fatalf("%+v", out)
	}
}

func TestNvidiaSMICommand(t *testing.T) {
	dir := t.TempDir()
	script := dir + "/nvidia-smi"
	body := "#!/bin/sh\n[ \"$1\" = \"" + nvidiaSMIArgs[0] + "\" ] || exit 9\nprintf '" + strings.ReplaceAll(nvidiaOut, "\n", "\\n") + "'\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{HostID: "h", NvidiaSMI: script, Services: []ServiceConfig{{Name: "s", Endpoint: "http://127.0.0.1:1", Protocol: "openai"}}}, nil, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	st := a.Collect(context.Background())
	if len(st.Host.GPUs) != 2 || st.Host.GPUs[1].VRAMTotalBytes != 81920<<20 || st.Services[0].Metrics.VRAMTotalBytes != (24564+81920)<<20 {
		t.Fatalf("%+v %+v", st.Host.GPUs, st.Services[0].Metrics)
	}
	if st.Services[0].Healthy {
		t.Fatal("unreachable service reported healthy")
	}
}

func TestAPIsByRelease(t *testing.T) {
	for _, c := range []struct {
		f    func(string) []string
		v    string
		want string
	}{
		{ollamaAPIs, "0.17.4", "chat,completions,responses,messages"},
		{ollamaAPIs, "0.14.0", "chat,completions,responses,messages"},
		{ollamaAPIs, "0.13.5", "chat,completions,responses"},
		{ollamaAPIs, "0.13.2", "chat,completions"},
		{ollamaAPIs, "0.1.30", "chat"},
		{ollamaAPIs, "garbage", "chat"},
		{vllmAPIs, "0.11.0+cu128", "chat,completions,responses"},
		{vllmAPIs, "0.9.2", "chat,completions"},
	} {
		if got := strings.Join(c.f(c.v), ","); got != c.want {
			t.Errorf("%s: got %s, want %s", c.v, got, c.want)
		}
	}
}

func TestNextBeatJitter(t *testing.T) {
	iv := 5 * time.Second
	if got := NextBeat(iv, time.Second, 0.5); got != 4*time.Second {
		t.Fatalf("no jitter at u=0.5: got %v, want 4s", got)
	}
	if lo, hi := NextBeat(iv, 0, 0), NextBeat(iv, 0, 0.999999); lo != 4500*time.Millisecond || hi < 5499*time.Millisecond || hi > 5500*time.Millisecond {
		t.Fatalf("jitter bounds: %v .. %v, want 4.5s .. 5.5s", lo, hi)
	}
	if got := NextBeat(iv, 10*time.Second, 0.9); got != 0 {
		t.Fatalf("a beat longer than the interval: wait %v, want 0", got)
	}
}
