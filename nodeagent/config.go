// Package nodeagent is the agent that runs beside each inference host. It
// discovers what the host's upstream servers offer (Ollama, llama.cpp, vLLM,
// faster-whisper, any OpenAI-compatible server), measures their health and
// load, and writes everything into Redis as one heartbeat with a TTL, so a
// host that stops beating drops out of routing when its key expires.
//
// # Lifetime
//
// New builds an Agent from a validated Config and a state.Store; Run beats
// every Interval until its context ends, then removes the node's key
// (graceful stop). Every beat writes the whole NodeState, so a Redis restart
// or FLUSHALL is repaired by the next beat. A Redis outage never stops the
// agent: failed writes are logged and retried with a backoff capped at
// Interval. Each service is discovered concurrently under its own timeout;
// one failing service is written unhealthy and never delays or hides the
// others.
package nodeagent

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/state"
)

// Defaults.
const (
	DefaultInterval         = 5 * time.Second
	DefaultTTL              = 15 * time.Second
	DefaultDiscoveryTimeout = 3 * time.Second
	// DefaultUnhealthyAfterTimeouts: a service whose health check times
	// out is reported unhealthy at the second timeout in a row.
	DefaultUnhealthyAfterTimeouts = 2
	// MaxUnhealthyAfterTimeouts bounds UnhealthyAfterTimeouts.
	MaxUnhealthyAfterTimeouts = 10
)

// Config is a node agent's configuration (YAML, flags, GENIEHIVE_* env).
type Config struct {
	// HostID names the host; services get ids "<host>/<name>". Letters,
	// digits and . _ - only.
	HostID string            `yaml:"host_id"`
	Labels map[string]string `yaml:"labels"`

	RedisURL      string `yaml:"redis_url"`
	RedisUsername string `yaml:"redis_username"`
	RedisPassword string `yaml:"redis_password"`
	Prefix        string `yaml:"prefix"` // default "gh:"

	// Interval between heartbeats (default 5s); TTL of the heartbeat key
	// (default 15s, must exceed Interval).
	Interval time.Duration `yaml:"heartbeat_interval"`
	TTL      time.Duration `yaml:"heartbeat_ttl"`
	// DiscoveryTimeout bounds one service's discovery and health check
	// (default 3s, never more than Interval).
	DiscoveryTimeout time.Duration `yaml:"discovery_timeout"`
	// UnhealthyAfterTimeouts is how many health checks in a row must time
	// out before a service that answered is reported unhealthy (default
	// 2, 1 to 10). Until then a beat reports what the last good check
	// found: a slow answer once (an upstream busy generating, a starved
	// host, a DNS lookup that timed out) is not a dead server, and
	// flapping it out of routing for one beat fails requests the edge
	// could have served. Any other failure (connection refused, an HTTP
	// error, an answer that does not decode) marks the service unhealthy
	// at once; so does a timeout of a service that was not healthy. 1
	// reports every timeout at once.
	UnhealthyAfterTimeouts int `yaml:"unhealthy_after_timeouts"`
	// NvidiaSMI is the nvidia-smi command: "" finds it on PATH (no GPU
	// figures when absent), "off" disables it.
	NvidiaSMI string `yaml:"nvidia_smi"`

	Services []ServiceConfig `yaml:"services"`
}

// ServiceConfig is one upstream server on the host.
type ServiceConfig struct {
	// Name is unique on the host; the service id is "<host>/<name>".
	Name string `yaml:"name"`
	// Kind: chat, embeddings, transcription, speech or images.
	Kind fleet.Kind `yaml:"kind"`
	// Endpoint is the base URL the edge proxies to, e.g. http://10.0.0.5:11434.
	Endpoint string `yaml:"endpoint"`
	// Protocol selects discovery: ollama (/api/tags + /api/ps), openai
	// (/v1/models), whisper (/v1/models or ModelsManifest), llamacpp and
	// vllm (/v1/models + /metrics for queue depth), or "" (static Assets
	// only, health by TCP connect or HealthPath).
	Protocol string `yaml:"discover_protocol"`
	// Assets are models declared statically. With discovery they add
	// metadata (tags, thinking, context length) to the discovered models;
	// discovery decides what is loaded.
	Assets []AssetConfig `yaml:"assets"`
	// MaxConcurrency the upstream accepts (0 = unlimited); routers honour it.
	MaxConcurrency int `yaml:"max_concurrency"`
	// HealthPath is GET before discovery and must answer 2xx. Default:
	// /health for llamacpp, vllm and whisper; none for ollama and openai
	// (discovery itself is the check).
	HealthPath string `yaml:"health_path"`
	// ModelsManifest lists models a whisper server offers without asking it.
	ModelsManifest []string `yaml:"models_manifest"`
	// Labels are free-form tags copied to the service.
	Labels []string `yaml:"labels"`
	// APIs, when set, are the client APIs the upstream serves natively
	// (chat, responses, messages, count_tokens, completions), replacing
	// what discovery finds from its version (apis.go). The edge passes
	// those through and translates the others to Chat Completions.
	APIs []string `yaml:"apis"`
	// VRAMTotal is the memory (bytes) this upstream's models may take, for
	// the swap controller, when nvidia-smi does not say (no GPU, a shared
	// GPU, a simulated one); it replaces the host's GPU total for this
	// service.
	VRAMTotal int64 `yaml:"vram_total"`
}

// AssetConfig is a statically declared model.
type AssetConfig struct {
	Name          string   `yaml:"name"`
	Family        string   `yaml:"family"`
	ParameterSize string   `yaml:"parameter_size"`
	Quantization  string   `yaml:"quantization"`
	ContextLength int      `yaml:"context_length"`
	Loaded        bool     `yaml:"loaded"`
	SizeVRAM      int64    `yaml:"size_vram"`
	Tags          []string `yaml:"tags"`
	// Thinking overrides the family-based guess (qwen3, deepseek-r1, qwq).
	Thinking *bool `yaml:"thinking"`
}

// ServiceID returns "<host>/<name>".
func (c *Config) ServiceID(name string) string { return c.HostID + "/" + name }

// Validate fills defaults and checks the configuration. Its error lists
// every problem found, each naming the field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.HostID == "" {
		bad("host_id is required")
	} else if !state.ValidHostID(c.HostID) {
		bad("host_id %q: use only letters, digits, '.', '_' and '-' (at most %d)", c.HostID, state.MaxHostIDLen)
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
		if c.TTL <= c.Interval {
			c.TTL = 3 * c.Interval
		}
	}
	if c.DiscoveryTimeout == 0 {
		c.DiscoveryTimeout = DefaultDiscoveryTimeout
	}
	if c.DiscoveryTimeout > c.Interval {
		c.DiscoveryTimeout = c.Interval
	}
	if c.UnhealthyAfterTimeouts == 0 {
		c.UnhealthyAfterTimeouts = DefaultUnhealthyAfterTimeouts
	}
	if c.UnhealthyAfterTimeouts < 1 || c.UnhealthyAfterTimeouts > MaxUnhealthyAfterTimeouts {
		bad("unhealthy_after_timeouts %d: must be 1 to %d (1: a service is unhealthy at its first timed-out health check)", c.UnhealthyAfterTimeouts, MaxUnhealthyAfterTimeouts)
	}
	switch {
	case c.Interval < 100*time.Millisecond:
		bad("heartbeat_interval %s: must be at least 100ms", c.Interval)
	case c.TTL < time.Second:
		bad("heartbeat_ttl %s: must be at least 1s", c.TTL)
	case c.TTL <= c.Interval:
		bad("heartbeat_ttl %s must exceed heartbeat_interval %s (3x is usual), or the node flaps between beats", c.TTL, c.Interval)
	}
	if c.TTL%time.Second != 0 {
		bad("heartbeat_ttl %s: must be whole seconds", c.TTL)
	}
	if len(c.Services) == 0 {
		bad("services: at least one service is required")
	}
	seen := map[string]bool{}
	for i := range c.Services {
		s := &c.Services[i]
		where := fmt.Sprintf("services[%d]", i)
		if s.Name != "" {
			where += " (" + s.Name + ")"
		}
		switch {
		case s.Name == "":
			bad("%s: name is required", where)
		case !state.ValidHostID(s.Name):
			bad("%s: name: use only letters, digits, '.', '_' and '-' (at most %d)", where, state.MaxHostIDLen)
		case seen[s.Name]:
			bad("%s: duplicate service name", where)
		}
		seen[s.Name] = true
		if s.Kind == "" {
			s.Kind = fleet.KindChat
			if s.Protocol == fleet.ProtocolWhisper {
				s.Kind = fleet.KindTranscription
			}
		}
		if !s.Kind.Valid() {
			bad("%s: kind %q: want chat, embeddings, transcription, speech or images", where, s.Kind)
		}
		u, err := url.Parse(s.Endpoint)
		switch {
		case s.Endpoint == "":
			bad("%s: endpoint is required (e.g. http://127.0.0.1:11434)", where)
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			bad("%s: endpoint %q: want an http:// or https:// base URL", where, s.Endpoint)
		case u.RawQuery != "" || u.Fragment != "":
			bad("%s: endpoint %q: no query or fragment", where, s.Endpoint)
		default:
			s.Endpoint = strings.TrimRight(s.Endpoint, "/")
			if strings.HasSuffix(s.Endpoint, "/v1") {
				bad("%s: endpoint %q: give the base URL without /v1 (the edge appends /v1/...)", where, s.Endpoint)
			}
		}
		switch s.Protocol {
		case fleet.ProtocolNone:
			if len(s.Assets) == 0 {
				bad("%s: without discover_protocol, list its models under assets", where)
			}
		case fleet.ProtocolOllama, fleet.ProtocolOpenAI, fleet.ProtocolLlamaCPP, fleet.ProtocolVLLM:
		case fleet.ProtocolWhisper:
		default:
			bad("%s: discover_protocol %q: want ollama, openai, whisper, llamacpp, vllm or empty", where, s.Protocol)
		}
		for _, api := range s.APIs {
			if !fleet.ValidAPI(api) {
				bad("%s: apis: %q: want chat, responses, messages, count_tokens or completions", where, api)
			}
		}
		if len(s.ModelsManifest) > 0 && s.Protocol != fleet.ProtocolWhisper {
			bad("%s: models_manifest is only for discover_protocol whisper (use assets)", where)
		}
		if s.MaxConcurrency < 0 {
			bad("%s: max_concurrency must be >= 0", where)
		}
		if s.VRAMTotal < 0 {
			bad("%s: vram_total must be >= 0", where)
		}
		if s.HealthPath == "" {
			switch s.Protocol {
			case fleet.ProtocolLlamaCPP, fleet.ProtocolVLLM, fleet.ProtocolWhisper:
				s.HealthPath = "/health"
			}
		} else if !strings.HasPrefix(s.HealthPath, "/") {
			bad("%s: health_path %q must start with '/'", where, s.HealthPath)
		}
		an := map[string]bool{}
		for j, a := range s.Assets {
			if a.Name == "" {
				bad("%s: assets[%d]: name is required", where, j)
			} else if an[a.Name] {
				bad("%s: assets[%d]: duplicate asset %q", where, j, a.Name)
			}
			an[a.Name] = true
		}
	}
	return errors.Join(errs...)
}
